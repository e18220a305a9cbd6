r"""Checked quadrature for :math:`\log Z = \log\int e^{-E(x)}\,dx` on a box (THEORY §8.3).

The product trapezoid rule on a uniform grid over the box :math:`B = \prod_i [l_i, u_i]`, in log
space:

.. math::

    \log\hat Z_h = \operatorname{logsumexp}_j\big(-E(x_j) + \log w_j\big),\qquad
    w_j = \prod_i h_i c_{j_i},\quad c = \tfrac12 \text{ at the two ends of an axis, else } 1.

For smooth, rapidly decaying integrands on a box wide enough to hold the mass, the error decays
geometrically in :math:`1/h`. Two checks make the value trustworthy, and a failed one raises:

* **refinement**: the rule on ``n`` nodes per axis and on the nested grid with the spacing halved
  (``2n - 1`` nodes) must agree, :math:`|\log\hat Z_{h} - \log\hat Z_{h/2}| \le` ``tol``; the
  finer value is returned (its error is far below the difference for geometric convergence);
* **truncation**: the fraction of the mass on nodes within ``edge_width`` (a fraction of each
  side) of the box boundary must be at most ``edge_tol``; for a decaying integrand it bounds the
  mass that the box misses (THEORY asks for :math:`e^{-E} < 10^{-12}` at the boundary).

This is an exact-tier reference (bias: discretisation and truncation only, both checked), not an
estimator: it evaluates :math:`(2n-1)^d` energies and is meant for :math:`d \le 3`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

__all__ = ["QuadratureResult", "quadrature_log_z"]

MAX_NODES = 2**24
"""Largest number of grid nodes (fine grid) evaluated in one call."""


class QuadratureResult(NamedTuple):
    """Output of :func:`quadrature_log_z`.

    Attributes:
        log_z: ``()`` :math:`\\log\\hat Z` on the fine grid (spacing halved).
        refinement_error: ``()`` :math:`|\\log\\hat Z_h - \\log\\hat Z_{h/2}|`.
        edge_mass: ``()`` fraction of the fine-grid mass within ``edge_width`` of the boundary.
        num_points: nodes per axis of the fine grid.
    """

    log_z: jax.Array
    refinement_error: jax.Array
    edge_mass: jax.Array
    num_points: tuple


def _check_bounds(bounds) -> np.ndarray:
    array = np.asarray(bounds, dtype=np.float64)
    if array.ndim == 1 and array.shape == (2,):
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 1:
        raise ValueError(
            f"`bounds` must be a sequence of (low, high) pairs, one per dimension; got {bounds!r}."
        )
    if not np.all(np.isfinite(array)) or np.any(array[:, 0] >= array[:, 1]):
        raise ValueError(f"`bounds` must be finite with low < high on every axis; got {bounds!r}.")
    return array


def _check_points(num_points, dim: int) -> tuple:
    points = (num_points,) * dim if isinstance(num_points, (int, np.integer)) else num_points
    points = tuple(points)
    if len(points) != dim or any(
        isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3 for n in points
    ):
        raise ValueError(
            f"`num_points` must be an int >= 3 or one such int per dimension ({dim}); got "
            f"{num_points!r}."
        )
    return tuple(int(n) for n in points)


def quadrature_log_z(
    energy_fn: Callable,
    bounds: Sequence,
    num_points: int | Sequence[int] = 513,
    *,
    tol: float = 1e-8,
    edge_tol: float = 1e-8,
    edge_width: float = 0.05,
    check: bool = True,
    dtype=None,
) -> QuadratureResult:
    """:math:`\\log\\int_B e^{-E(x)}dx` by the trapezoid rule, with a convergence check.

    Args:
        energy_fn: :math:`E`, mapping one point ``(d,)`` to a scalar (vmapped over the grid;
            ``+inf`` is allowed and means zero density, NaN is an error).
        bounds: ``((l_1, u_1), ..., (l_d, u_d))``, the box; ``(l, u)`` alone for ``d = 1``.
        num_points: nodes per axis ``n`` of the coarse grid (int or one per axis, each ``>= 3``);
            the returned value uses ``2n - 1`` (the spacing halved).
        tol: largest accepted change of :math:`\\log\\hat Z` between the two grids.
        edge_tol: largest accepted fraction of the mass within ``edge_width`` of the boundary.
        edge_width: width of the boundary band, as a fraction of each side (in ``(0, 0.5)``).
        check: raise when a check fails (the checks read values on the host, so this function is
            not jit-able with ``check=True``).
        dtype: floating dtype of the grid (default: JAX's default float; float64 when x64 is on).

    Returns:
        :class:`QuadratureResult` (the fine-grid value and both diagnostics).

    Raises:
        ValueError: on bad arguments, a NaN energy, or (``check=True``) a failed check, naming
            the remedy (more ``num_points`` or wider ``bounds``).
    """
    box = _check_bounds(bounds)
    dim = box.shape[0]
    coarse = _check_points(num_points, dim)
    fine = tuple(2 * n - 1 for n in coarse)
    if math.prod(fine) > MAX_NODES:
        raise ValueError(
            f"`num_points` = {num_points!r} gives {math.prod(fine)} fine-grid nodes in {dim} "
            f"dimensions, above the limit {MAX_NODES}; use fewer points."
        )
    if not 0 < edge_width < 0.5:
        raise ValueError(f"`edge_width` must lie in (0, 0.5); got {edge_width!r}.")
    if not (tol > 0 and edge_tol > 0):
        raise ValueError(f"`tol` and `edge_tol` must be > 0; got {tol!r} and {edge_tol!r}.")
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)

    h_fine = [(hi - lo) / (n - 1) for (lo, hi), n in zip(box, fine, strict=True)]

    def log_weights(shape, spacing):
        total = jnp.zeros(shape, dtype)
        for axis, (n, h) in enumerate(zip(shape, spacing, strict=True)):
            ends = jnp.ones((n,), dtype).at[0].set(0.5).at[-1].set(0.5)
            view = [1] * dim
            view[axis] = n
            total = total + jnp.log(h * ends).reshape(view)
        return total

    def band_mask():
        band = jnp.zeros(fine, bool)
        for axis, n in enumerate(fine):
            width = max(1, int(math.ceil(edge_width * (n - 1))))
            index = jnp.arange(n)
            view = [1] * dim
            view[axis] = n
            band = band | ((index < width) | (index > n - 1 - width)).reshape(view)
        return band

    def core():  # one compiled program per call (eager dispatch of each op is far slower)
        axes = [jnp.linspace(lo, hi, n, dtype=dtype) for (lo, hi), n in zip(box, fine, strict=True)]
        mesh = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, dim)
        energies = jax.vmap(energy_fn)(mesh)
        if energies.shape != (mesh.shape[0],):
            raise ValueError(
                f"`energy_fn` must map one point (d,) = ({dim},) to a scalar; got output shape "
                f"{energies.shape[1:]} per point."
            )
        nan = jnp.isnan(energies)
        log_f = (-energies).astype(dtype).reshape(fine)
        terms = log_f + log_weights(fine, h_fine)
        log_z = logsumexp(terms)
        coarse_f = log_f[tuple(slice(None, None, 2) for _ in range(dim))]
        log_z_coarse = logsumexp(coarse_f + log_weights(coarse, [2 * h for h in h_fine]))
        edge_mass = jnp.exp(logsumexp(jnp.where(band_mask(), terms, -jnp.inf)) - log_z)
        return log_z, jnp.abs(log_z - log_z_coarse), edge_mass, jnp.any(nan), mesh[jnp.argmax(nan)]

    log_z, refinement, edge_mass, any_nan, first_nan = jax.jit(core)()
    if bool(any_nan):
        raise ValueError(f"`energy_fn` returned NaN at x = {np.asarray(first_nan)}.")
    result = QuadratureResult(log_z, refinement, edge_mass, fine)
    if not check:
        return result
    if not bool(jnp.isfinite(log_z)):
        raise ValueError(f"quadrature gave log Z = {float(log_z)}: no mass on the grid in {box}.")
    if float(edge_mass) > edge_tol:
        raise ValueError(
            f"quadrature not converged: {float(edge_mass):.3g} of the mass lies within "
            f"{edge_width:g} of the boundary of `bounds` = {box.tolist()} (tolerance "
            f"{edge_tol:g}); widen `bounds`."
        )
    if float(refinement) > tol:
        raise ValueError(
            f"quadrature not converged: log Z changed by {float(refinement):.3g} between {coarse} "
            f"and {fine} nodes per axis (tolerance {tol:g}); increase `num_points`."
        )
    return result
