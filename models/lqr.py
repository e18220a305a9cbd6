r"""Linear-Gaussian (LQR) MaxEnt IRL problems with exact likelihoods (THEORY §8.1).

Two systems, the reference cases of THEORY §8.1:

* ``"reference"``: :math:`A = [[1, 0.1], [0, 1]]`, :math:`B = [0, 0.1]^\top` (a discretised
  double integrator), :math:`Q = \mathrm{diag}(1, 0.5)`, :math:`R = 0.3`, :math:`Q_f = 2Q`,
  :math:`x_0 = (1, -0.5)`, :math:`T = 3`. :math:`\log Z(x_0) = 2.112306461529`; with
  :math:`\Sigma_w = 0.05I`: causal :math:`V_0 = 1.775506020547`, trajectory-level
  :math:`\log Z = 2.246814855126`.
* ``"scalar"``: :math:`A = 0.9`, :math:`B = 0.5`, :math:`Q = 1`, :math:`R = 0.3`,
  :math:`Q_f = 2`, :math:`x_0 = 1`, :math:`T = 1`; with :math:`\Sigma_w = 0.2`: trajectory-level
  :math:`\log Z = 0.196498902892`, causal :math:`V_0 = 0.026760308862`.

The cost model is :class:`~ebm_ppl.energy.quadratic.QuadraticCost` with :math:`\kappa = 2`
(:math:`Q_f = 2Q`), so the parameters are :math:`\theta = (\log\mathrm{diag}\,Q,
\log\mathrm{diag}\,R)`: 3 for ``"reference"``, 2 for ``"scalar"``. The demonstrations are
**exact** draws of the chosen model at the true parameters, from starts
:math:`x_0\sim\mathcal N(\bar x_0, \sigma_0^2I)` (``initial_std`` :math:`\sigma_0`; 0 gives the
fixed reference start).

:func:`control_space_problem` views a deterministic problem from one start as an R^d
energy-based model over the stacked controls (a :class:`~ebm_ppl.problems.DensityProblem` with the
closed-form :math:`\log Z`), so the R^d :math:`\log Z` estimators of :mod:`ebm_ppl.logz` apply.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from ebm_ppl._validation import check_finite
from ebm_ppl.continuous import LinearGaussianProblem
from ebm_ppl.energy.quadratic import ControlSpaceEnergy, QuadraticCost
from ebm_ppl.exact.lqr import MODELS, batch_gaussian
from ebm_ppl.problems import DensityProblem, check_num_demos
from ebm_ppl.spaces.linear_gaussian import LinearGaussianSystem, from_observed

__all__ = [
    "SYSTEMS",
    "TERMINAL_SCALE",
    "control_space_problem",
    "energy_model",
    "make_problem",
    "reference_params",
    "reference_system",
]

SYSTEMS = ("reference", "scalar")
TERMINAL_SCALE = 2.0
""":math:`\\kappa` of both reference cases: :math:`Q_f = 2Q`."""

_SYSTEMS = {
    "reference": dict(
        transition=((1.0, 0.1), (0.0, 1.0)),
        control_matrix=((0.0,), (0.1,)),
        x0=(1.0, -0.5),
        state_weights=(1.0, 0.5),
        control_weights=(0.3,),
        horizon=3,
    ),
    "scalar": dict(
        transition=((0.9,),),
        control_matrix=((0.5,),),
        x0=(1.0,),
        state_weights=(1.0,),
        control_weights=(0.3,),
        horizon=1,
    ),
}


def _check_system_name(system: str) -> dict:
    if system not in SYSTEMS:
        raise ValueError(f"`system` must be one of {SYSTEMS}; got {system!r}.")
    return _SYSTEMS[system]


def _non_negative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"`{name}` must be a real number >= 0; got {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite; got {value!r}.")
    return float(value)


def reference_system(
    system: str = "reference",
    *,
    noise: float = 0.0,
    horizon: int | None = None,
    initial_std: float = 0.0,
) -> LinearGaussianSystem:
    """The dynamics of ``system`` with :math:`\\Sigma_w = \\text{noise}\\cdot I` (a variance).

    Args:
        system: one of :data:`SYSTEMS`.
        noise: :math:`\\Sigma_w = \\text{noise}\\cdot I_n`, ``>= 0`` (0: deterministic).
        horizon: ``T`` (default: 3 for ``"reference"``, 1 for ``"scalar"``).
        initial_std: :math:`\\sigma_0 \\ge 0`, :math:`\\Sigma_0 = \\sigma_0^2I` around the
            reference start.
    """
    spec = _check_system_name(system)
    noise = _non_negative("noise", noise)
    initial_std = _non_negative("initial_std", initial_std)
    horizon = spec["horizon"] if horizon is None else horizon
    n = len(spec["x0"])
    return LinearGaussianSystem(
        transition=jnp.asarray(spec["transition"], float),
        control_matrix=jnp.asarray(spec["control_matrix"], float),
        noise_cov=noise * jnp.eye(n),
        initial_mean=jnp.asarray(spec["x0"], float),
        initial_cov=initial_std**2 * jnp.eye(n),
        horizon=horizon,
    )


def reference_params(system: str = "reference") -> dict:
    """The reference ("true") parameters: ``log_q = log diag Q``, ``log_r = log diag R``."""
    spec = _check_system_name(system)
    return {
        "log_q": jnp.log(jnp.asarray(spec["state_weights"], float)),
        "log_r": jnp.log(jnp.asarray(spec["control_weights"], float)),
    }


def energy_model(system: str = "reference", *, prior_scale: float = 1.0) -> QuadraticCost:
    """The cost model of ``system``: diagonal :math:`Q, R` on the log scale, :math:`Q_f = 2Q`,
    i.i.d. :math:`\\mathcal N(0, \\text{prior\\_scale}^2)` priors."""
    spec = _check_system_name(system)
    return QuadraticCost(
        state_dim=len(spec["x0"]),
        control_dim=len(spec["control_weights"]),
        terminal_scale=TERMINAL_SCALE,
        prior_scale=prior_scale,
    )


def _stated_params(true_params, model: QuadraticCost, default: dict) -> dict:
    if true_params is None:
        return default
    if not isinstance(true_params, Mapping) or set(true_params) != {"log_q", "log_r"}:
        got = sorted(true_params) if isinstance(true_params, Mapping) else type(true_params)
        raise ValueError(
            f"`true_params` must be {{'log_q': ({model.state_dim},), 'log_r': "
            f"({model.control_dim},)}}; got {got}."
        )
    params = {name: jnp.asarray(value, float) for name, value in true_params.items()}
    model.matrices(params)  # checks the shapes
    for name, value in params.items():
        check_finite(f"true_params['{name}']", value)
    return params


def make_problem(
    rng_key=None,
    *,
    system: str = "reference",
    noise: float = 0.0,
    horizon: int | None = None,
    num_demos: int = 50,
    model: str = "causal",
    true_params=None,
    prior_scale: float = 1.0,
    initial_std: float = 0.0,
) -> LinearGaussianProblem:
    """Build a linear-Gaussian MaxEnt IRL problem with exact demonstrations.

    Args:
        rng_key: key for the demonstrations (default ``key(0)``).
        system: one of :data:`SYSTEMS` (module docstring).
        noise: :math:`\\Sigma_w = \\text{noise}\\cdot I` (a variance, ``>= 0``).
        horizon: ``T`` (default: that of the reference case).
        num_demos: exact draws at the true parameters (0: no demonstrations).
        model: the inference likelihood and the law of the demonstrations, ``"causal"`` or
            ``"trajectory"``.
        true_params: ``{"log_q": (n,), "log_r": (m,)}``; default :func:`reference_params`.
        prior_scale: prior standard deviation of every log-weight.
        initial_std: :math:`\\sigma_0`: starts drawn from :math:`\\mathcal N(\\bar x_0,
            \\sigma_0^2I)` (0: the fixed reference start).

    Returns:
        A :class:`~ebm_ppl.continuous.LinearGaussianProblem` named ``"lqr"``.
    """
    if model not in MODELS:
        raise ValueError(f"`model` must be one of {MODELS}; got {model!r}.")
    num_demos = check_num_demos(num_demos)
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    dynamics = reference_system(system, noise=noise, horizon=horizon, initial_std=initial_std)
    cost_model = energy_model(system, prior_scale=prior_scale)
    params = _stated_params(true_params, cost_model, reference_params(system))
    problem = LinearGaussianProblem(
        name="lqr", system=dynamics, energy_model=cost_model, model=model, true_params=params
    )
    if num_demos == 0:
        return problem
    observed = problem.trajectory_distribution(params).sample(rng_key, (num_demos,))
    return problem.replace(demos=from_observed(observed, dynamics.state_dim))


def control_space_problem(
    problem: LinearGaussianProblem, *, x0=None, params=None
) -> DensityProblem:
    """A deterministic LQR problem from one start as an EBM on :math:`\\mathbb R^{Tm}`.

    The energy is :math:`c_\\theta` of the rolled-out stacked controls
    (:class:`~ebm_ppl.energy.quadratic.ControlSpaceEnergy`); ``log_z`` is the closed-form
    :math:`\\log Z(x_0)` at ``params`` (THEORY §8.1a). The problem has no data.

    Args:
        problem: a problem with a deterministic system.
        x0: ``(n,)`` start (default the system's initial mean).
        params: parameters for ``true_params``/``log_z`` (default ``problem.true_params``).

    Raises:
        ValueError: for a system with noise.
    """
    system = problem.system
    x0 = system.initial_mean if x0 is None else jnp.asarray(x0, system.dtype)
    params = problem.true_params if params is None else params
    energy = ControlSpaceEnergy(system=system, x0=x0, cost_model=problem.energy_model)
    log_z = None
    if params is not None:
        log_z = batch_gaussian(system, problem.cost_matrices(params), x0).log_z
    return DensityProblem(
        name="lqr_controls", energy_model=energy, dim=energy.dim, true_params=params, log_z=log_z
    )
