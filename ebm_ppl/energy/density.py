r"""Energy models on :math:`\mathbb R^d` as NumPyro models (THEORY §5.1, §8.3).

Sign convention (DESIGN §3): :math:`p_\theta(x) = e^{-E_\theta(x)}/Z(\theta)` with
:math:`\log Z(\theta) = \log\int e^{-E_\theta(x)}\,dx`. Each model exposes

* ``energy(params, x)``: :math:`E_\theta(x)` for **one** point ``x`` of shape ``(d,)`` (a scalar;
  pure, jit- and vmap-safe, computed in the dtype of ``x`` and ``params``);
* ``prior()``: a NumPyro model that samples named sites and returns the ``params`` dict;
* ``init_params()``: a deterministic starting point (the prior's centre);
* ``sample(rng_key, params, num_samples)``: **exact** draws from :math:`p_\theta`, shape
  ``(num_samples, d)`` (direct construction or an exact rejection sampler, stated per model);
* ``log_z(params)`` where :math:`Z(\theta)` has a closed form (not for :class:`DoubleWellEnergy`,
  whose :math:`Z` comes from quadrature, :func:`ebm_ppl.exact.quadrature.quadrature_log_z`).

Positive quantities (scales, the barrier height) are learned on the log scale, so every site has
an unconstrained Gaussian prior. Models are registered pytrees: arrays that are not learned are
leaves, settings are static.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp

from ebm_ppl._validation import check_finite, check_probabilities, is_host_data

__all__ = ["GaussianEnergy", "BananaEnergy", "DoubleWellEnergy", "GaussianMixtureEnergy"]

_LOG_2PI = math.log(2 * math.pi)


def _positive(name: str, value: float) -> float:
    if not float(value) > 0:
        raise ValueError(f"`{name}` must be > 0; got {value!r}.")
    return float(value)


def _dim(value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`dim` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _param(params, name: str, shape: tuple, model: str) -> jax.Array:
    """``params[name]`` as an array of ``shape`` (shapes are static, so this is jit-safe)."""
    if name not in params:
        raise ValueError(f"`params` of {model} must hold {name!r}; got keys {sorted(params)}.")
    value = jnp.asarray(params[name])
    if value.shape != shape:
        raise ValueError(
            f"`params['{name}']` of {model} must have shape {shape}; got {value.shape}."
        )
    return value


def _point(x, dim: int, model: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.shape != (dim,):
        raise ValueError(
            f"`x` of {model}.energy must be one point of shape (d,) = ({dim},); got {x.shape} "
            "(vmap over points)."
        )
    return x


def _float_dtype(params):
    """The floating dtype of ``params`` (the default float if it holds none)."""
    leaves = [jnp.asarray(leaf) for leaf in jax.tree.leaves(params)]
    floats = [leaf.dtype for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


def _num_samples(num_samples) -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be an int >= 1; got {num_samples!r}.")
    return num_samples


def _normal_prior(scale: float, shape: tuple) -> dist.Distribution:
    return dist.Normal(0.0, scale).expand(list(shape)).to_event(len(shape))


# ---------------------------------------------------------------------- Gaussian
@dataclasses.dataclass(frozen=True)
class GaussianEnergy:
    """Diagonal Gaussian energy, :math:`E(x) = \\tfrac12\\sum_i (x_i - m_i)^2 / s_i^2`.

    Closed form (THEORY §8.3): :math:`\\log Z = \\tfrac d2\\log 2\\pi + \\sum_i \\log s_i`
    (:meth:`log_z`). Exact sampler: :math:`x = m + s\\odot\\varepsilon`.

    Params: ``loc`` :math:`m` ``(d,)`` and ``log_scale`` :math:`\\log s` ``(d,)``, both with
    i.i.d. :math:`\\mathcal N(0, \\sigma^2)` priors (``prior_scale`` = :math:`\\sigma`).

    Args:
        dim: dimension ``d`` (static).
        prior_scale: prior standard deviation :math:`\\sigma > 0`.
    """

    dim: int = 2
    prior_scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "dim", _dim(self.dim))
        _positive("prior_scale", self.prior_scale)

    def _unpack(self, params):
        name = type(self).__name__
        loc = _param(params, "loc", (self.dim,), name)
        log_scale = _param(params, "log_scale", (self.dim,), name)
        return loc, log_scale

    def energy(self, params, x) -> jax.Array:
        loc, log_scale = self._unpack(params)
        x = _point(x, self.dim, type(self).__name__)
        return 0.5 * jnp.sum(jnp.square((x - loc) * jnp.exp(-log_scale)))

    def log_z(self, params) -> jax.Array:
        _, log_scale = self._unpack(params)
        return 0.5 * self.dim * _LOG_2PI + jnp.sum(log_scale)

    def sample(self, rng_key, params, num_samples: int) -> jax.Array:
        loc, log_scale = self._unpack(params)
        num = _num_samples(num_samples)
        eps = jax.random.normal(rng_key, (num, self.dim), _float_dtype(params))
        return loc + jnp.exp(log_scale) * eps

    def prior(self) -> dict:
        return {
            name: numpyro.sample(name, _normal_prior(self.prior_scale, (self.dim,)))
            for name in ("loc", "log_scale")
        }

    def init_params(self) -> dict:
        return {"loc": jnp.zeros((self.dim,)), "log_scale": jnp.zeros((self.dim,))}


jax.tree_util.register_dataclass(GaussianEnergy, data_fields=[], meta_fields=["dim", "prior_scale"])


# ---------------------------------------------------------------------- banana
@dataclasses.dataclass(frozen=True)
class BananaEnergy:
    """Banana (sheared Gaussian) energy on :math:`\\mathbb R^2` (THEORY §8.3).

    .. math::

        E(x) = \\frac{x_1^2}{2 s_1^2} + \\frac{(x_2 - \\beta x_1^2)^2}{2 s_2^2},\\qquad
        Z = 2\\pi s_1 s_2 \\text{ for every } \\beta

    (the shear :math:`x_2 \\mapsto x_2 - \\beta x_1^2` has unit Jacobian; with :math:`s_1 = 1,
    s_2 = 1/2` the value is :math:`\\pi`). Exact sampler: :math:`x_1 = s_1\\varepsilon_1`,
    :math:`x_2 = \\beta x_1^2 + s_2\\varepsilon_2`.

    Params: ``log_scale`` :math:`(\\log s_1, \\log s_2)` ``(2,)`` and ``curvature``
    :math:`\\beta` ``()``, with i.i.d. :math:`\\mathcal N(0, \\sigma^2)` priors.

    Args:
        prior_scale: prior standard deviation :math:`\\sigma > 0`.
    """

    prior_scale: float = 1.0

    def __post_init__(self):
        _positive("prior_scale", self.prior_scale)

    @property
    def dim(self) -> int:
        return 2

    def _unpack(self, params):
        name = type(self).__name__
        return _param(params, "log_scale", (2,), name), _param(params, "curvature", (), name)

    def energy(self, params, x) -> jax.Array:
        log_scale, curvature = self._unpack(params)
        x = _point(x, 2, type(self).__name__)
        sheared = jnp.stack([x[0], x[1] - curvature * x[0] ** 2])
        return 0.5 * jnp.sum(jnp.square(sheared * jnp.exp(-log_scale)))

    def log_z(self, params) -> jax.Array:
        log_scale, _ = self._unpack(params)
        return _LOG_2PI + jnp.sum(log_scale)

    def sample(self, rng_key, params, num_samples: int) -> jax.Array:
        log_scale, curvature = self._unpack(params)
        num = _num_samples(num_samples)
        eps = jax.random.normal(rng_key, (num, 2), _float_dtype(params)) * jnp.exp(log_scale)
        return jnp.stack([eps[:, 0], curvature * eps[:, 0] ** 2 + eps[:, 1]], axis=-1)

    def prior(self) -> dict:
        return {
            "log_scale": numpyro.sample("log_scale", _normal_prior(self.prior_scale, (2,))),
            "curvature": numpyro.sample("curvature", dist.Normal(0.0, self.prior_scale)),
        }

    def init_params(self) -> dict:
        return {"log_scale": jnp.zeros((2,)), "curvature": jnp.zeros(())}


jax.tree_util.register_dataclass(BananaEnergy, data_fields=[], meta_fields=["prior_scale"])


# ---------------------------------------------------------------------- double well
@dataclasses.dataclass(frozen=True)
class DoubleWellEnergy:
    """Double-well energy, THEORY §8.3: :math:`E(x) = a(x_1^2-1)^2 + \\tfrac12\\sum_{i\\ge2}x_i^2`.

    Separable: :math:`Z = (2\\pi)^{(d-1)/2}\\int e^{-a(u^2-1)^2}du`; no closed form, so ``log Z``
    comes from quadrature (at :math:`a = 2`, :math:`d = 2`: :math:`\\log Z = 1.263176752934`).

    Exact sampler: :math:`x_{i\\ge2}\\sim\\mathcal N(0, 1)`; :math:`x_1` by rejection from the
    proposal :math:`g(u)\\propto e^{-a(u-1)^2} + e^{-a(u+1)^2}` (an equal mixture of
    :math:`\\mathcal N(\\pm1, 1/(2a))`), accepting with probability
    :math:`e^{-a(u^2-1)^2}/(e^{-a(u-1)^2} + e^{-a(u+1)^2}) \\le 1`: since
    :math:`(u^2-1)^2 = (|u|-1)^2(|u|+1)^2 \\ge (|u|-1)^2` the target is below one of the two terms.
    The acceptance rate is :math:`Z_1 / (2\\sqrt{\\pi/a})` (0.56 at :math:`a = 2`).

    Params: ``log_barrier`` :math:`\\log a` ``()`` with a :math:`\\mathcal N(0, \\sigma^2)` prior.

    Args:
        dim: dimension ``d >= 1`` (static; THEORY's case is 2).
        prior_scale: prior standard deviation :math:`\\sigma > 0`.
    """

    dim: int = 2
    prior_scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "dim", _dim(self.dim))
        _positive("prior_scale", self.prior_scale)

    def _barrier(self, params) -> jax.Array:
        return jnp.exp(_param(params, "log_barrier", (), type(self).__name__))

    def energy(self, params, x) -> jax.Array:
        barrier = self._barrier(params)
        x = _point(x, self.dim, type(self).__name__)
        return barrier * (x[0] ** 2 - 1) ** 2 + 0.5 * jnp.sum(jnp.square(x[1:]))

    def sample(self, rng_key, params, num_samples: int) -> jax.Array:
        barrier = self._barrier(params)
        num = _num_samples(num_samples)
        dtype = _float_dtype(params)
        key_well, key_rest = jax.random.split(rng_key)
        std = jnp.sqrt(0.5 / barrier).astype(dtype)

        def one(key):
            def body(carry):
                key, _, _ = carry
                key, key_sign, key_step, key_accept = jax.random.split(key, 4)
                sign = jnp.where(jax.random.bernoulli(key_sign), 1, -1).astype(dtype)
                u = sign + std * jax.random.normal(key_step, (), dtype)
                log_accept = -barrier * (u**2 - 1) ** 2 - jnp.logaddexp(
                    -barrier * (u - 1) ** 2, -barrier * (u + 1) ** 2
                )
                accepted = jnp.log(jax.random.uniform(key_accept, (), dtype)) < log_accept
                return key, accepted, u

            init = (key, jnp.zeros((), bool), jnp.zeros((), dtype))
            return jax.lax.while_loop(lambda carry: ~carry[1], body, init)[2]

        first = jax.vmap(one)(jax.random.split(key_well, num))
        rest = jax.random.normal(key_rest, (num, self.dim - 1), dtype)
        return jnp.concatenate([first[:, None], rest], axis=-1)

    def prior(self) -> dict:
        return {"log_barrier": numpyro.sample("log_barrier", dist.Normal(0.0, self.prior_scale))}

    def init_params(self) -> dict:
        return {"log_barrier": jnp.zeros(())}


jax.tree_util.register_dataclass(
    DoubleWellEnergy, data_fields=[], meta_fields=["dim", "prior_scale"]
)


# ---------------------------------------------------------------------- Gaussian mixture
@dataclasses.dataclass(frozen=True)
class GaussianMixtureEnergy:
    """Gaussian-mixture energy with a known normaliser (THEORY §8.3).

    .. math::

        E(x) = -\\log\\sum_k w_k\\,\\mathcal N(x;\\mu_k, \\sigma_k^2 I_d) - \\beta,
        \\qquad \\log Z = \\beta \\text{ for every } \\mu, \\sigma.

    Multimodal: importance sampling with a unimodal proposal fails on it, which PSIS
    :math:`\\hat k` should flag. Exact sampler: a component :math:`k\\sim w`, then
    :math:`\\mu_k + \\sigma_k\\varepsilon`.

    Params: ``locs`` :math:`\\mu` ``(K, d)`` with an i.i.d. :math:`\\mathcal N(0, \\sigma_\\mu^2)`
    prior (``loc_prior_scale``) and ``log_scales`` :math:`\\log\\sigma` ``(K,)`` with an i.i.d.
    :math:`\\mathcal N(0, \\sigma^2)` prior. The weights :math:`w` and the offset :math:`\\beta`
    are fixed (the offset only moves :math:`Z` and is not identifiable from data).

    Args:
        weights: ``(K,)`` mixture weights summing to 1 (a pytree leaf).
        dim: dimension ``d`` (static).
        offset: :math:`\\beta`, so that :math:`\\log Z = \\beta` (static).
        prior_scale: prior standard deviation of ``log_scales``.
        loc_prior_scale: prior standard deviation of ``locs``.
    """

    weights: jax.Array
    dim: int = 2
    offset: float = 0.0
    prior_scale: float = 1.0
    loc_prior_scale: float = 3.0

    def __post_init__(self):
        if is_host_data(self.weights):
            weights = jnp.asarray(self.weights)
            if weights.ndim != 1 or weights.shape[0] < 1:
                raise ValueError(f"`weights` must have shape (K,); got {weights.shape}.")
            if not jnp.issubdtype(weights.dtype, jnp.floating):
                weights = weights.astype(jnp.result_type(float))
            check_probabilities("weights", weights)
            object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "dim", _dim(self.dim))
        check_finite("offset", self.offset)
        _positive("prior_scale", self.prior_scale)
        _positive("loc_prior_scale", self.loc_prior_scale)

    @property
    def num_components(self) -> int:
        return self.weights.shape[0]

    def _unpack(self, params):
        name = type(self).__name__
        locs = _param(params, "locs", (self.num_components, self.dim), name)
        log_scales = _param(params, "log_scales", (self.num_components,), name)
        return locs, log_scales

    def energy(self, params, x) -> jax.Array:
        locs, log_scales = self._unpack(params)
        x = _point(x, self.dim, type(self).__name__)
        sq = jnp.sum(jnp.square(x - locs), axis=-1) * jnp.exp(-2 * log_scales)
        log_normal = -0.5 * sq - self.dim * log_scales - 0.5 * self.dim * _LOG_2PI
        log_weights = jnp.log(self.weights).astype(log_normal.dtype)
        return -logsumexp(log_weights + log_normal) - self.offset

    def log_z(self, params) -> jax.Array:
        _, log_scales = self._unpack(params)
        return jnp.asarray(self.offset, log_scales.dtype)

    def sample(self, rng_key, params, num_samples: int) -> jax.Array:
        locs, log_scales = self._unpack(params)
        num = _num_samples(num_samples)
        key_component, key_noise = jax.random.split(rng_key)
        component = jax.random.categorical(key_component, jnp.log(self.weights), shape=(num,))
        eps = jax.random.normal(key_noise, (num, self.dim), _float_dtype(params))
        return locs[component] + jnp.exp(log_scales)[component][:, None] * eps

    def prior(self) -> dict:
        shape = (self.num_components, self.dim)
        return {
            "locs": numpyro.sample("locs", _normal_prior(self.loc_prior_scale, shape)),
            "log_scales": numpyro.sample(
                "log_scales", _normal_prior(self.prior_scale, (self.num_components,))
            ),
        }

    def init_params(self) -> dict:
        """Zeros (all components at the origin with unit scale): the prior's centre."""
        return {
            "locs": jnp.zeros((self.num_components, self.dim)),
            "log_scales": jnp.zeros((self.num_components,)),
        }


jax.tree_util.register_dataclass(
    GaussianMixtureEnergy,
    data_fields=["weights"],
    meta_fields=["dim", "offset", "prior_scale", "loc_prior_scale"],
)
