r"""A neural energy on :math:`\mathbb R^d`: a ``tanh`` MLP with no free output bias (THEORY §3.6).

.. math::

    E_\theta(x) = w_{\mathrm{out}}^\top h_L(x) + \frac{\lVert x - c\rVert^2}{2\sigma_c^2},\qquad
    h_l = \tanh(W_l h_{l-1} + b_l),\quad h_0 = x .

* **No output bias.** A constant added to :math:`E` trades off exactly against
  :math:`\log Z`; in the adversarial trainers the discriminator's free :math:`\zeta` plays
  :math:`\log Z`, so an output bias would be unidentified (THEORY §3.6, §1.6).
* **Always normalisable.** The hidden units are bounded, so
  :math:`|w_{\mathrm{out}}^\top h_L|\le\lVert w_{\mathrm{out}}\rVert_1`, and the fixed Gaussian
  confinement (centre :math:`c`, scale :math:`\sigma_c`, not learned) makes
  :math:`Z(\theta)\le(2\pi\sigma_c^2)^{d/2}e^{\lVert w_{\mathrm{out}}\rVert_1} < \infty` for every
  :math:`\theta`. At :math:`w_{\mathrm{out}} = 0` the model is :math:`\mathcal N(c, \sigma_c^2 I)`
  with :math:`\log Z = \tfrac d2\log(2\pi\sigma_c^2)`. Choose :math:`\sigma_c` a few times wider
  than the data, so the confinement only shapes the far tails.

Conventions of :mod:`ebm_ppl.energy.density`: ``energy(params, x)`` for one point ``x`` ``(d,)``,
``prior()`` a NumPyro model (i.i.d. :math:`\mathcal N(0,\sigma^2)` on every weight and bias),
``init_params(rng_key)``. There is no closed-form ``log_z`` and no exact sampler: use
:func:`ebm_ppl.exact.quadrature.quadrature_log_z` for ``d <= 3``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

__all__ = ["MLPEnergy"]


def _check_point(x, dim: int) -> jax.Array:
    x = jnp.asarray(x)
    if x.shape != (dim,):
        raise ValueError(
            f"`x` of MLPEnergy.energy must be one point of shape (d,) = ({dim},); got {x.shape} "
            "(vmap over points)."
        )
    return x


@dataclasses.dataclass(frozen=True)
class MLPEnergy:
    """``tanh`` MLP energy with a fixed Gaussian confinement and no output bias.

    Params: ``w{l}`` ``(n_{l-1}, n_l)``, ``b{l}`` ``(n_l,)`` for each hidden layer ``l`` and
    ``w_out`` ``(n_L,)``; no ``b_out``.

    Args:
        dim: dimension ``d >= 1`` (static).
        hidden: hidden-layer widths (at least one).
        prior_scale: prior standard deviation :math:`\\sigma > 0` of every weight and bias.
        confinement_scale: :math:`\\sigma_c > 0` of the fixed quadratic term.
        confinement_center: :math:`c`, a length-``d`` tuple (default the origin).
    """

    dim: int = 2
    hidden: tuple = (32, 32)
    prior_scale: float = 1.0
    confinement_scale: float = 3.0
    confinement_center: tuple | None = None

    def __post_init__(self):
        if (
            isinstance(self.dim, bool)
            or not isinstance(self.dim, (int, np.integer))
            or self.dim < 1
        ):
            raise ValueError(f"`dim` must be an int >= 1; got {self.dim!r}.")
        object.__setattr__(self, "dim", int(self.dim))
        hidden = tuple(self.hidden)
        if not hidden or any(
            isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden
        ):
            raise ValueError(
                f"`hidden` must be a non-empty tuple of ints >= 1; got {self.hidden!r}."
            )
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        for name in ("prior_scale", "confinement_scale"):
            value = getattr(self, name)
            if not (math.isfinite(float(value)) and float(value) > 0):
                raise ValueError(f"`{name}` must be a finite number > 0; got {value!r}.")
        center = self.confinement_center
        center = (0.0,) * self.dim if center is None else tuple(float(c) for c in center)
        if len(center) != self.dim or not all(math.isfinite(c) for c in center):
            raise ValueError(
                f"`confinement_center` must hold d = {self.dim} finite numbers; got "
                f"{self.confinement_center!r}."
            )
        object.__setattr__(self, "confinement_center", center)

    def _shapes(self) -> dict:
        sizes = (self.dim, *self.hidden)
        shapes = {}
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            shapes[f"w{i}"] = (n_in, n_out)
            shapes[f"b{i}"] = (n_out,)
        shapes["w_out"] = (sizes[-1],)
        return shapes

    def _check_params(self, params) -> None:
        for name, shape in self._shapes().items():
            if name not in params:
                raise ValueError(
                    f"`params` of MLPEnergy must hold {name!r}; got keys {sorted(params)}."
                )
            if jnp.shape(params[name]) != shape:
                raise ValueError(
                    f"`params['{name}']` of MLPEnergy must have shape {shape}; got "
                    f"{jnp.shape(params[name])}."
                )
        if "b_out" in params:
            raise ValueError(
                "`params` of MLPEnergy must not hold an output bias 'b_out': it is unidentified "
                "against log Z (THEORY §3.6)."
            )

    def energy(self, params, x) -> jax.Array:
        """:math:`E_\\theta(x)` for one point ``x`` ``(d,)``; a scalar."""
        self._check_params(params)
        x = _check_point(x, self.dim)
        h = x
        for i in range(len(self.hidden)):
            h = jnp.tanh(h @ params[f"w{i}"] + params[f"b{i}"])
        center = jnp.asarray(self.confinement_center, x.dtype)
        confinement = 0.5 * jnp.sum(jnp.square(x - center)) / self.confinement_scale**2
        return h @ params["w_out"] + confinement

    def log_z_confinement(self) -> float:
        """The exact :math:`\\log Z` at :math:`w_{\\mathrm{out}} = 0`:
        :math:`\\tfrac d2\\log(2\\pi\\sigma_c^2)`."""
        return 0.5 * self.dim * math.log(2 * math.pi * self.confinement_scale**2)

    def prior(self) -> dict:
        return {
            name: numpyro.sample(
                name, dist.Normal(0.0, self.prior_scale).expand(list(shape)).to_event(len(shape))
            )
            for name, shape in self._shapes().items()
        }

    def init_params(self, rng_key=None, dtype=None) -> dict:
        """Hidden weights :math:`\\mathcal N(0, 1/\\text{fan-in})`, zero biases, small ``w_out``.

        ``w_out`` is :math:`\\mathcal N(0, 0.01^2)`, so the initial model is close to the
        confinement Gaussian. ``rng_key`` defaults to ``key(0)``; ``dtype`` to JAX's default
        float.
        """
        rng_key = jax.random.key(0) if rng_key is None else rng_key
        dtype = jnp.result_type(float) if dtype is None else dtype
        shapes = self._shapes()
        weights = {name: shape for name, shape in shapes.items() if not name.startswith("b")}
        # one draw for all weights: one random-number kernel to compile, whatever the depth
        flat = jax.random.normal(rng_key, (sum(math.prod(s) for s in weights.values()),), dtype)
        params, start = {}, 0
        for name, shape in shapes.items():
            if name.startswith("b"):
                params[name] = jnp.zeros(shape, dtype)
                continue
            size = math.prod(shape)
            scale = 0.01 if name == "w_out" else 1 / math.sqrt(shape[0])
            params[name] = scale * flat[start : start + size].reshape(shape)
            start += size
        return params


jax.tree_util.register_dataclass(
    MLPEnergy,
    data_fields=[],
    meta_fields=["dim", "hidden", "prior_scale", "confinement_scale", "confinement_center"],
)
