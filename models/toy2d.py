r"""Toy 2-D energy-based models with :math:`\log Z` by checked quadrature (THEORY §8.3).

Four energies, each a learnable EBM with a prior (:mod:`ebm_ppl.energy.density`), at reference
("true") parameters chosen so that the THEORY anchors hold:

* ``"gaussian"``: diagonal Gaussian, :math:`m = (0.5, -1)`, :math:`s = (1.5, 0.5)`:
  :math:`\log Z = \log 2\pi + \log 0.75`;
* ``"banana"``: :math:`s_1 = 1, s_2 = 1/2, \beta = 1`: :math:`Z = \pi`;
* ``"double_well"``: :math:`a = 2`: :math:`\log Z = 1.263176752934` (no closed form);
* ``"mixture"``: three well-separated isotropic components (weights 0.5, 0.3, 0.2) and offset
  :math:`\beta = 1`: :math:`\log Z = 1`; multimodal, so importance sampling with a unimodal
  proposal fails on it.

The data are **exact** draws at the reference parameters (``energy_model.sample``: direct
constructions, and for the double well an exact rejection sampler). ``problem.log_z`` is the
trapezoid-rule value of :func:`ebm_ppl.exact.quadrature.quadrature_log_z` on the box
:func:`reference_bounds`, which raises unless the grid refinement and the mass near the box edge
both pass their checks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ebm_ppl.energy.density import (
    BananaEnergy,
    DoubleWellEnergy,
    GaussianEnergy,
    GaussianMixtureEnergy,
)
from ebm_ppl.exact.quadrature import quadrature_log_z
from ebm_ppl.problems import DensityProblem

__all__ = ["ENERGIES", "energy_model", "reference_params", "reference_bounds", "make_problem"]

ENERGIES = ("gaussian", "banana", "double_well", "mixture")

_MIXTURE_WEIGHTS = (0.5, 0.3, 0.2)
_MIXTURE_LOCS = ((-2.5, 0.0), (2.5, 0.5), (0.0, 3.0))
_MIXTURE_SCALES = (0.6, 0.8, 0.5)
_MIXTURE_OFFSET = 1.0

_BOUNDS = {
    "gaussian": ((-14.5, 15.5), (-6.0, 4.0)),
    "banana": ((-7.0, 7.0), (-6.0, 50.0)),
    "double_well": ((-4.0, 4.0), (-10.0, 10.0)),
    "mixture": ((-10.0, 10.0), (-10.0, 10.0)),
}


def _check_energy(energy: str) -> None:
    if energy not in ENERGIES:
        raise ValueError(f"`energy` must be one of {ENERGIES}; got {energy!r}.")


def energy_model(energy: str = "banana", *, prior_scale: float = 1.0):
    """The energy model of ``energy`` (one of :data:`ENERGIES`)."""
    _check_energy(energy)
    if energy == "gaussian":
        return GaussianEnergy(dim=2, prior_scale=prior_scale)
    if energy == "banana":
        return BananaEnergy(prior_scale=prior_scale)
    if energy == "double_well":
        return DoubleWellEnergy(dim=2, prior_scale=prior_scale)
    return GaussianMixtureEnergy(
        jnp.asarray(_MIXTURE_WEIGHTS), dim=2, offset=_MIXTURE_OFFSET, prior_scale=prior_scale
    )


def reference_params(energy: str = "banana") -> dict:
    """The reference ("true") parameters of ``energy`` (THEORY §8.3 anchors)."""
    _check_energy(energy)
    if energy == "gaussian":
        return {
            "loc": jnp.asarray([0.5, -1.0]),
            "log_scale": jnp.log(jnp.asarray([1.5, 0.5])),
        }
    if energy == "banana":
        return {"log_scale": jnp.log(jnp.asarray([1.0, 0.5])), "curvature": jnp.asarray(1.0)}
    if energy == "double_well":
        return {"log_barrier": jnp.asarray(math.log(2.0))}
    return {
        "locs": jnp.asarray(_MIXTURE_LOCS),
        "log_scales": jnp.log(jnp.asarray(_MIXTURE_SCALES)),
    }


def reference_bounds(energy: str = "banana") -> tuple:
    """The quadrature box of ``energy`` at its reference parameters."""
    _check_energy(energy)
    return _BOUNDS[energy]


def make_problem(
    rng_key=None,
    *,
    energy: str = "banana",
    num_data: int = 1000,
    prior_scale: float = 1.0,
    num_points: int = 513,
) -> DensityProblem:
    """Build a toy 2-D EBM problem.

    Args:
        rng_key: key for the data (default ``key(0)``).
        energy: one of :data:`ENERGIES`.
        num_data: exact draws at the reference parameters (0: no data).
        prior_scale: prior standard deviation of the energy model's sites.
        num_points: coarse-grid nodes per axis of the quadrature (the value uses
            ``2 * num_points - 1``).

    Returns:
        A :class:`~ebm_ppl.problems.DensityProblem` named ``"toy2d"`` with ``dim = 2``,
        ``true_params``, ``data`` ``(num_data, 2)`` and the quadrature ``log_z``.
    """
    _check_energy(energy)
    if isinstance(num_data, bool) or not isinstance(num_data, int) or num_data < 0:
        raise ValueError(f"`num_data` must be an int >= 0; got {num_data!r}.")
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    model = energy_model(energy, prior_scale=prior_scale)
    params = reference_params(energy)
    log_z = quadrature_log_z(
        lambda x: model.energy(params, x), reference_bounds(energy), num_points
    ).log_z
    data = model.sample(rng_key, params, num_data) if num_data > 0 else None
    return DensityProblem(
        name="toy2d", energy_model=model, dim=2, true_params=params, data=data, log_z=log_z
    )
