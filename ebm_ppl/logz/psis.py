r"""Pareto-smoothed importance sampling (PSIS) in JAX (THEORY §7.6).

A generalized Pareto distribution (GPD) is fitted to the :math:`M` largest importance weights and
those weights are replaced by the expected order statistics of the fit, truncated at the largest raw
weight. The fitted shape :math:`\hat k` says how many moments the weights have (about
:math:`1/\hat k`); it is the reliability diagnostic of every importance-sampling estimate.

This module re-implements, in JAX (``jit``/``vmap``-able, dtype-agnostic), the algorithm of
ArviZ-stats 1.3 ``array_stats.psislw`` (``_psislw`` → ``_ps_tail`` → ``_gpdfit`` / ``_gpinv``):

* **Tail length** (``_get_ps_tails``): :math:`M = \lfloor 3\sqrt{S/r_{\text{eff}}}\rfloor` when
  :math:`S\,r_{\text{eff}} > 225`, else :math:`\lfloor S/5\rfloor`, i.e.
  :math:`M = \lfloor\min(S/5,\ 3\sqrt{S/r_{\text{eff}}})\rfloor`. THEORY §7.6 and the PSIS paper
  write :math:`\lceil\cdot\rceil`; ArviZ floors, and so do we (the oracle is ArviZ). :math:`M \ge 5`
  is required (:math:`S \ge 25` for :math:`r_{\text{eff}} = 1`).
* **Tail.** With :math:`\ell` the log weights shifted so that :math:`\max\ell = 0`, sorted
  ascending, the tail is the last :math:`M` values and the cutoff :math:`u` the value just below.
  The GPD is fitted to the exceedances :math:`e^{\ell_{(i)}} - e^{u}`.
* **Fit** (Zhang & Stephens 2009 with the prior adjustment of Vehtari et al. 2024): with
  :math:`x` the sorted exceedances, :math:`m = 30 + \lfloor\sqrt M\rfloor` grid points
  :math:`b_j = 1/x_{(M)} + (1 - \sqrt{m/(j - 1/2)})/(3x^*)`, :math:`x^*` the first quartile
  :math:`x_{(\lfloor M/4 + 1/2\rfloor)}`; profile :math:`k(b) = \overline{\log(1 - b x)}`,
  weights :math:`\propto\exp\{M(\log(-b/k(b)) - k(b) - 1)\}` (those below
  :math:`10\,\epsilon_{64}` dropped),
  posterior mean :math:`\bar b`, then :math:`k = \overline{\log(1-\bar b x)}`,
  :math:`\sigma = -k/\bar b` and :math:`\hat k = (Mk + 10\cdot\tfrac12)/(M + 10)`.
  :math:`\hat k` is NaN when :math:`x^* \le x_{(1)}` (the tail is far from a GPD, typically many
  ties), :math:`+\infty` when the fit itself is NaN.
* **Smoothing** (only when :math:`\hat k` is finite): the tail is replaced by
  :math:`\log F^{-1}((i - 1/2)/M)` of the fitted GPD (location :math:`e^u`), truncated at the
  largest raw log weight, and put back in the original positions.

Differences from ArviZ, all deliberate: ArviZ raises when the tail is constant (all :math:`M`
largest weights equal); here :math:`\hat k` is NaN and nothing is smoothed (no raising inside
``jit``). ArviZ returns **normalised** smoothed log weights; :func:`psis_smooth` returns them on the
scale of the input (unnormalised), which is what :math:`\log\hat Z` needs. ArviZ's ``psislw`` is
written for LOO log-likelihoods and negates its input: the oracle for log importance weights
``lw`` is ``array_stats.psislw(-lw)`` (DESIGN §7).

References: THEORY §7.6; Vehtari, Simpson, Gelman, Yao & Gabry, *Pareto Smoothed Importance
Sampling*, JMLR 25(72) 2024; Zhang & Stephens, Technometrics 51(3) 2009.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

__all__ = [
    "PSISResult",
    "psis_tail_length",
    "khat_threshold",
    "gpd_fit",
    "gpd_quantile",
    "psis_smooth",
    "pareto_khat",
]

_PRIOR_BS = 3.0  # ArviZ's `prior_bs`: scale of the b grid in units of the first quartile
_PRIOR_K = 10.0  # ArviZ's `prior_k`: weight (pseudo-observations) of the prior on k
_PRIOR_K_CENTRE = 0.5  # the prior on k is centred at 1/2
_NEGLIGIBLE = 10.0 * float(np.finfo(np.float64).eps)  # ArviZ drops grid weights below this


class PSISResult(NamedTuple):
    """Output of :func:`psis_smooth`.

    Attributes:
        log_weights: smoothed log weights, same shape and scale as the input (unnormalised).
        khat: the GPD shape estimate, shape ``log_weights.shape[:-1]``.
    """

    log_weights: jax.Array
    khat: jax.Array


def psis_tail_length(num_samples: int, r_eff: float = 1.0) -> int:
    """ArviZ's tail length :math:`M = \\lfloor\\min(S/5, 3\\sqrt{S/r_{eff}})\\rfloor` (static).

    Args:
        num_samples: number of draws :math:`S`.
        r_eff: relative efficiency of the draws (1 for independent draws).

    Returns:
        The number of largest weights the GPD is fitted to.
    """
    num_samples = int(num_samples)
    r_eff = float(r_eff)
    if not r_eff > 0:
        raise ValueError(f"`r_eff` must be > 0; got {r_eff!r}.")
    if num_samples * r_eff > 225:
        return int(math.floor(3.0 * math.sqrt(num_samples / r_eff)))
    return int(math.floor(num_samples / 5.0))


def khat_threshold(num_samples: int) -> float:
    """The sample-size dependent k-hat threshold :math:`\\min(1 - 1/\\log_{10}S,\\ 0.7)` (§7.6).

    Below it the PSIS estimate is reliable ("good"); it equals 0.5, 0.6, 0.67 and 0.7 at
    :math:`S = 100, 320, 1000, \\ge 2200`.

    Args:
        num_samples: number of draws :math:`S \\ge 2`.
    """
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 2:
        raise ValueError(f"`num_samples` must be an int >= 2; got {num_samples!r}.")
    return min(1.0 - 1.0 / math.log10(int(num_samples)), 0.7)


@jax.jit
def gpd_fit(exceedances: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Empirical-Bayes GPD fit with the weakly informative prior on :math:`k` (ArviZ ``_gpdfit``).

    Args:
        exceedances: ``(M,)`` sorted ascending, non-negative (tail values minus the cutoff).

    Returns:
        ``(khat, sigma)`` scalars: the prior-adjusted shape and the scale. ``(nan, nan)`` when the
        first quartile does not exceed the minimum; ``(inf, nan)`` when the fit is NaN.
    """
    x = jnp.asarray(exceedances)
    n = x.shape[-1]
    dtype = x.dtype
    m_est = 30 + int(n**0.5)
    x_star = x[int((n / 4 + 0.5) - 1)]  # first quartile
    degenerate = x_star <= x[0]
    safe_star = jnp.where(degenerate, jnp.ones((), dtype), x_star)
    grid = jnp.arange(1, m_est + 1, dtype=dtype)
    b = 1.0 - jnp.sqrt(m_est / (grid - 0.5))
    b = b / (_PRIOR_BS * safe_star) + 1.0 / x[-1]
    k_grid = jnp.mean(jnp.log1p(-b[:, None] * x[None, :]), axis=1)
    log_lik = n * (jnp.log(-b / k_grid) - k_grid - 1.0)
    weights = jnp.exp(log_lik - logsumexp(log_lik))
    weights = jnp.where(weights >= _NEGLIGIBLE, weights, 0)
    weights = weights / jnp.sum(weights)
    b_post = jnp.sum(b * weights)
    k_raw = jnp.mean(jnp.log1p(-b_post * x))
    sigma = -k_raw / b_post
    khat = (n * k_raw + _PRIOR_K * _PRIOR_K_CENTRE) / (n + _PRIOR_K)
    is_nan = jnp.isnan(khat)
    khat = jnp.where(is_nan, jnp.inf, khat)
    sigma = jnp.where(is_nan, jnp.nan, sigma)
    nan = jnp.full((), jnp.nan, dtype)
    return jnp.where(degenerate, nan, khat), jnp.where(degenerate, nan, sigma)


def gpd_quantile(probs: jax.Array, khat, sigma, location) -> jax.Array:
    """GPD quantile :math:`\\mu + \\sigma((1-p)^{-k} - 1)/k` (:math:`\\mu - \\sigma\\log(1-p)` at
    :math:`k = 0`); NaN when :math:`\\sigma \\le 0` (ArviZ ``_gpinv``)."""
    probs = jnp.asarray(probs)
    zero = khat == 0
    safe_k = jnp.where(zero, jnp.ones_like(khat), khat)
    general = location + sigma * jnp.expm1(-safe_k * jnp.log1p(-probs)) / safe_k
    exponential = location - sigma * jnp.log1p(-probs)
    quantile = jnp.where(zero, exponential, general)
    return jnp.where(sigma <= 0, jnp.nan, quantile)


def _check_tail(num_samples: int, r_eff: float) -> int:
    tail = psis_tail_length(num_samples, r_eff)
    if tail < 5:
        raise ValueError(
            "PSIS needs a tail of at least 5 draws (S * r_eff >= 25 under the rule "
            f"M = floor(min(S/5, 3 sqrt(S/r_eff)))); got S = {num_samples} draws, r_eff = {r_eff} "
            f"(M = {tail})."
        )
    return tail


def _smooth_one(log_weights: jax.Array, tail: int, smooth: bool):
    """PSIS of one ``(S,)`` vector: ``(smoothed log weights on the input scale, khat)``."""
    num = log_weights.shape[0]
    dtype = log_weights.dtype
    top = jnp.max(log_weights)
    shifted = log_weights - top
    order = jnp.argsort(shifted)
    ordered = shifted[order]
    tail_values = ordered[num - tail :]
    cutoff = ordered[num - tail - 1]
    max_tail = tail_values[-1]
    constant = jnp.abs(max_tail - tail_values[0]) < jnp.finfo(dtype).tiny
    khat, sigma = gpd_fit(jnp.exp(tail_values) - jnp.exp(cutoff))
    khat = jnp.where(constant, jnp.nan, khat)
    if not smooth:
        return log_weights, khat
    probs = (jnp.arange(tail, dtype=dtype) + 0.5) / tail
    smoothed = jnp.log(gpd_quantile(probs, khat, sigma, jnp.exp(cutoff)))
    smoothed = jnp.where(smoothed > max_tail, max_tail, smoothed)
    positions = order[num - tail :]
    # the body keeps its exact input values; the tail is put back on the input scale
    replaced = jnp.where(jnp.isfinite(khat), smoothed + top, log_weights[positions])
    return log_weights.at[positions].set(replaced), khat


@partial(jax.jit, static_argnums=(1, 2))
def _batched(log_weights, tail: int, smooth: bool):
    flat = log_weights.reshape((-1, log_weights.shape[-1]))
    smoothed, khat = jax.vmap(lambda lw: _smooth_one(lw, tail, smooth))(flat)
    return smoothed.reshape(log_weights.shape), khat.reshape(log_weights.shape[:-1])


def psis_smooth(log_weights, *, r_eff: float = 1.0) -> PSISResult:
    """Pareto-smooth log importance weights over the last axis (ArviZ ``psislw``, unnormalised).

    :math:`\\log\\hat Z_{\\text{PSIS}} = \\operatorname{logsumexp}(\\tilde\\ell) - \\log S` for the
    returned :math:`\\tilde\\ell`. Where :math:`\\hat k` is NaN or infinite nothing is smoothed.
    To compare with ArviZ: ``array_stats.psislw(-log_weights)`` returns
    ``(smoothed - logsumexp(smoothed), khat)``.

    Args:
        log_weights: ``(..., S)`` log importance weights (log target minus log proposal).
        r_eff: relative efficiency of the draws (1 for independent draws); static.

    Returns:
        :class:`PSISResult` with ``log_weights`` ``(..., S)`` and ``khat`` ``(...)``.

    Raises:
        ValueError: when the tail would have fewer than 5 draws.
    """
    log_weights = jnp.asarray(log_weights)
    if log_weights.ndim < 1:
        raise ValueError(f"`log_weights` must have shape (..., S); got shape {log_weights.shape}.")
    if not jnp.issubdtype(log_weights.dtype, jnp.floating):
        log_weights = log_weights.astype(jnp.result_type(float))
    tail = _check_tail(log_weights.shape[-1], r_eff)
    smoothed, khat = _batched(log_weights, tail, True)
    return PSISResult(log_weights=smoothed, khat=khat)


def pareto_khat(log_weights, *, r_eff: float = 1.0) -> jax.Array:
    """:math:`\\hat k` of the right tail of the weights over the last axis (no smoothing).

    Args:
        log_weights: ``(..., S)`` log importance weights.
        r_eff: relative efficiency of the draws; static.

    Returns:
        ``(...)`` shape estimates; NaN where the GPD fit is undefined (see module docstring).
    """
    log_weights = jnp.asarray(log_weights)
    if log_weights.ndim < 1:
        raise ValueError(f"`log_weights` must have shape (..., S); got shape {log_weights.shape}.")
    if not jnp.issubdtype(log_weights.dtype, jnp.floating):
        log_weights = log_weights.astype(jnp.result_type(float))
    tail = _check_tail(log_weights.shape[-1], r_eff)
    return _batched(log_weights, tail, False)[1]
