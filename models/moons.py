r"""2-D data sets for neural energy-based models: two moons and a ring of Gaussians.

Each data set is an exact i.i.d. sample from a stated law, whose log-density
:func:`data_log_density` computes (so a learned density can be scored against the truth):

* ``"moons"``: a fair coin picks a moon, :math:`t\sim\mathcal U(0,\pi)`, then
  :math:`x = c_k(t) + \sigma\varepsilon` with :math:`c_0(t) = (\cos t, \sin t)` and
  :math:`c_1(t) = (1-\cos t, \tfrac12-\sin t)` (the two-moons shape, with the moon drawn per point
  rather than in fixed halves, so the sample is i.i.d.). Density
  :math:`p(x) = \tfrac12\sum_k\frac1\pi\int_0^\pi\mathcal N(x; c_k(t), \sigma^2 I)\,dt`, by the
  trapezoid rule in :math:`t` (``num_nodes`` nodes; with :math:`\sigma = 0.1` and the default
  1025 nodes the spacing :math:`\pi/1024` is 30 times below :math:`\sigma`, so the rule's error is
  negligible against any statistical comparison);
* ``"ring"``: an equal mixture of 8 isotropic Gaussians of scale :math:`\sigma` centred at
  radius ``radius`` and angles :math:`2\pi k/8`; the density is closed form.

The problem's energy model is :class:`~ebm_ppl.energy.mlp.MLPEnergy` (no output bias, a fixed
Gaussian confinement so that every :math:`\theta` is normalisable). There are no true parameters
(the data law is not in the model class) and no :math:`\log Z`, so ``true_params`` and ``log_z``
are ``None``; :math:`\log Z` of a learned energy comes from
:func:`ebm_ppl.exact.quadrature.quadrature_log_z`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ebm_ppl.energy.mlp import MLPEnergy
from ebm_ppl.problems import DensityProblem

__all__ = ["DATASETS", "DEFAULT_NOISE", "sample_data", "data_log_density", "make_problem"]

DATASETS = ("moons", "ring")
DEFAULT_NOISE = {"moons": 0.1, "ring": 0.2}
_NUM_RING = 8
_LOG_2PI = math.log(2 * math.pi)


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"`dataset` must be one of {DATASETS}; got {dataset!r}.")


def _noise(dataset: str, noise) -> float:
    noise = DEFAULT_NOISE[dataset] if noise is None else noise
    if not (math.isfinite(float(noise)) and float(noise) > 0):
        raise ValueError(f"`noise` must be a finite number > 0; got {noise!r}.")
    return float(noise)


def _radius(radius) -> float:
    if not (math.isfinite(float(radius)) and float(radius) > 0):
        raise ValueError(f"`radius` must be a finite number > 0; got {radius!r}.")
    return float(radius)


def _moon_centres(t):
    """``(2, ..., 2)``: the two moons' centre curves at parameters ``t``."""
    upper = jnp.stack([jnp.cos(t), jnp.sin(t)], -1)
    lower = jnp.stack([1 - jnp.cos(t), 0.5 - jnp.sin(t)], -1)
    return jnp.stack([upper, lower])


def _ring_centres(radius: float, dtype) -> jax.Array:
    angles = 2 * jnp.pi * jnp.arange(_NUM_RING, dtype=dtype) / _NUM_RING
    return radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)


def sample_data(
    rng_key, dataset: str = "moons", num_data: int = 2000, *, noise=None, radius: float = 2.0
) -> jax.Array:
    """Exact i.i.d. draws ``(num_data, 2)`` from ``dataset`` (see the module docstring).

    Args:
        rng_key: key.
        dataset: ``"moons"`` or ``"ring"``.
        num_data: number of points (int >= 1).
        noise: Gaussian noise scale :math:`\\sigma` (default :data:`DEFAULT_NOISE`).
        radius: radius of the ring (``"ring"`` only).
    """
    _check_dataset(dataset)
    if isinstance(num_data, bool) or not isinstance(num_data, int) or num_data < 1:
        raise ValueError(f"`num_data` must be an int >= 1; got {num_data!r}.")
    sigma = _noise(dataset, noise)
    dtype = jnp.result_type(float)
    key_component, key_position, key_noise = jax.random.split(rng_key, 3)
    eps = sigma * jax.random.normal(key_noise, (num_data, 2), dtype)
    if dataset == "moons":
        moon = jax.random.bernoulli(key_component, 0.5, (num_data,)).astype(jnp.int32)
        t = jax.random.uniform(key_position, (num_data,), dtype, 0.0, jnp.pi)
        centres = _moon_centres(t)  # (2, N, 2)
        return centres[moon, jnp.arange(num_data)] + eps
    component = jax.random.randint(key_component, (num_data,), 0, _NUM_RING)
    return _ring_centres(_radius(radius), dtype)[component] + eps


def data_log_density(
    x, dataset: str = "moons", *, noise=None, radius: float = 2.0, num_nodes: int = 1025
) -> jax.Array:
    """:math:`\\log p(x)` of the data law at points ``x`` ``(..., 2)``; returns ``(...)``.

    Exact for ``"ring"``; for ``"moons"`` the integral over :math:`t` is the trapezoid rule on
    ``num_nodes`` nodes (module docstring).
    """
    _check_dataset(dataset)
    sigma = _noise(dataset, noise)
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != 2:
        raise ValueError(f"`x` must have shape (..., 2); got {x.shape}.")
    if dataset == "ring":
        centres = _ring_centres(_radius(radius), x.dtype)  # (8, 2)
        log_weights = jnp.full((_NUM_RING,), -math.log(_NUM_RING), x.dtype)
    else:
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 3:
            raise ValueError(f"`num_nodes` must be an int >= 3; got {num_nodes!r}.")
        t = jnp.linspace(0.0, jnp.pi, num_nodes, dtype=x.dtype)
        ends = jnp.ones((num_nodes,), x.dtype).at[0].set(0.5).at[-1].set(0.5)
        # (1/2) per moon, (1/pi) dt per node with trapezoid weights: sum = 1 per moon
        node_log_weights = jnp.log(ends / (num_nodes - 1))
        centres = _moon_centres(t).reshape(-1, 2)  # (2 * num_nodes, 2)
        log_weights = jnp.concatenate([node_log_weights, node_log_weights]) - math.log(2.0)
    sq = jnp.sum(jnp.square(x[..., None, :] - centres), -1)
    log_normal = -0.5 * sq / sigma**2 - 2 * math.log(sigma) - _LOG_2PI
    return logsumexp(log_weights + log_normal, axis=-1)


def make_problem(
    rng_key=None,
    *,
    dataset: str = "moons",
    num_data: int = 2000,
    noise=None,
    radius: float = 2.0,
    hidden: tuple = (32, 32),
    prior_scale: float = 1.0,
    confinement_scale: float = 3.0,
) -> DensityProblem:
    """A 2-D data set with a neural energy model.

    Args:
        rng_key: key for the data (default ``key(0)``).
        dataset: ``"moons"`` or ``"ring"``.
        num_data: number of points (int >= 1).
        noise: Gaussian noise scale (default :data:`DEFAULT_NOISE`).
        radius: radius of the ring (``"ring"`` only).
        hidden: hidden widths of the :class:`~ebm_ppl.energy.mlp.MLPEnergy`.
        prior_scale: prior standard deviation of its weights.
        confinement_scale: its fixed confinement scale :math:`\\sigma_c`.

    Returns:
        A :class:`~ebm_ppl.problems.DensityProblem` named ``"moons"`` with ``dim = 2``, ``data``
        ``(num_data, 2)``, ``true_params = None`` and ``log_z = None``.
    """
    _check_dataset(dataset)
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    data = sample_data(rng_key, dataset, num_data, noise=noise, radius=radius)
    model = MLPEnergy(
        dim=2, hidden=hidden, prior_scale=prior_scale, confinement_scale=confinement_scale
    )
    return DensityProblem(name="moons", energy_model=model, dim=2, data=data)
