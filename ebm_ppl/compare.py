r"""The comparison harness: sampling-based and adversarial estimators side by side (DESIGN §1).

:func:`compare` runs a grid of **cells**, one per (problem, kind, method, budget, seed), on
tabular MDPs, densities on :math:`\mathbb R^d` and the control problems (LQR, Pendulum,
MountainCar); :data:`METHODS_BY_KIND` lists what runs where, and a method that does not apply to
a problem is skipped with a note:

* ``kind="estimator"``: a :class:`~ebm_ppl.logz.LogZEstimator` (``exact``, ``importance``, ``psis``,
  ``gcl_mixture``, ``elbo``, ``iwae``, ``eubo``, ``particle_smc``, ``ais``, ``tempered_smc``,
  ``thermodynamic_integration``, and the adversarial ``gan_zeta``) run once at the problem's true
  parameters with ``budget`` samples/particles (:func:`make_estimator`). Measured:
  :math:`\log\hat Z` and its error against the exact value where one exists (RMS over start states
  for the ``"trajectory"`` model), the gradient :math:`\nabla_\theta\log\hat Z` against the exact
  gradient (cosine and relative norm error), the reported standard error, PSIS :math:`\hat k`
  where the estimator reports one, energy evaluations, compile and run time.
* ``kind="trainer"`` (``budget`` is the number of updates, ``steps``): on tabular problems the
  adversarial ``gan_gcl``, ``gcl``, ``airl``, ``gail`` — EPIC and hard EVD of the learned reward
  against the truth (GAIL: the EVD of its own policy only), and for GAN-GCL
  :math:`|\zeta - \log Z|` of the learned reward (for GCL the mixture :math:`\log\hat Z` it
  used); on LQR, Pendulum and MountainCar ``gan_gcl``, ``gcl`` and ``airl`` with linear-Gaussian
  (Pendulum: squashed into the torque box) / linear softmax generators, and on LQR's stacked
  controls the MCMC ``cd`` and ``pcd`` — the relative error of the learned cost parameters
  against the truth (``param_error``) and, on LQR, the excess negative log-likelihood per
  demonstration over the exact maximum likelihood (``nll_gap``: with few demonstrations the MLE
  itself is far from the truth, or at infinity, so this is the trainer's own shortfall), and
  :math:`|\zeta - \log Z|` (AIRL: :math:`h_0`; the exact log Z of the learned cost, where
  known); on densities the contrastive ``nce``, ``gan_ebm``, ``fce`` and the MCMC ``cd`` (CD-1)
  and ``pcd`` — the parameter error, the Pearson correlation of the learned with the true energy
  where the true density exceeds 1e-3 (2-D), and for the contrastive ones
  :math:`|\zeta - \log Z|` of the learned energy (quadrature); wall time.
* ``kind="posterior"``: Bayesian inference (``nuts`` on the exact likelihood, ``blackjax-nuts``,
  ``exchange``, ``plugin:<estimator>`` for the plug-in likelihood, ``sgld``/``sghmc`` with
  persistent-chain gradients on densities). Measured against a
  reference exact-likelihood NUTS run with four times the draws where the likelihood is exact
  (tabular, LQR, densities with a closed-form log Z; NaN otherwise): the 1-D Wasserstein-1
  distance per parameter (mean, in units of the reference sd), the error of the posterior mean
  (in reference sds); and everywhere the 90 % interval coverage of the true parameters, the
  largest R-hat, the smallest bulk ESS and ESS/s. The DataTree of every posterior cell is saved
  (netCDF).

Keys: every cell of seed ``i`` uses ``cell_key(rng_key, i) = fold_in(rng_key, i)`` (common random
numbers across methods and budgets), so a table entry equals calling the estimator directly:
``estimator.run(cell_key(rng_key, i), problem, problem.true_params, data=demos)``.

Resumable and safe (``out`` given): each finished cell is written at once to
``out/cells/<cell id>.json`` (atomically: a temporary file renamed into place); a rerun skips the
cells already there, so an interrupt or a crash loses at most the running cell; a cell that raises
records ``status="error"`` and its message and the grid goes on (it is retried on the next run).
``out/results.csv`` and ``out/results.json`` hold the tidy table (one row per cell) and are
rewritten after every cell; ``out/figures/`` holds the figures, ``out/posteriors/`` the DataTrees,
``out/study.json`` the grid's definition (a rerun with a different definition into the same
directory is refused rather than mixed).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ebm_ppl._validation import is_concrete

__all__ = [
    "ESTIMATOR_NAMES",
    "TRAINER_NAMES",
    "POSTERIOR_NAMES",
    "QUICK",
    "Cell",
    "cell_key",
    "compare",
    "load_results",
    "make_estimator",
    "METHODS_BY_KIND",
    "PROBLEM_KINDS",
    "exact_log_z_fn",
    "problem_kind",
    "problem_model",
    "summarize",
]

ESTIMATOR_NAMES = (
    "exact",
    "importance",
    "psis",
    "gcl_mixture",
    "elbo",
    "iwae",
    "eubo",
    "particle_smc",
    "ais",
    "tempered_smc",
    "thermodynamic_integration",
    "gan_zeta",
)
"""Log-partition estimators the harness can build by name (which problems each serves:
:data:`METHODS_BY_KIND`)."""

TRAINER_NAMES = ("gan_gcl", "gcl", "airl", "gail", "nce", "gan_ebm", "fce", "cd", "pcd")
r"""Trainers the harness can build by name: the adversarial ``gan_gcl`` and ``gcl`` (tabular
problems with ``discount == 1``, LQR, Pendulum, MountainCar), ``airl`` (tabular; and on LQR,
Pendulum and MountainCar the finite-horizon form with time-indexed shaping,
:func:`ebm_ppl.adversarial.continuous.airl`), ``gail`` (tabular), and on
densities in :math:`\mathbb R^d` the contrastive ``nce``, ``gan_ebm``, ``fce`` and the MCMC
``cd`` (CD-1) and ``pcd`` (persistent chains).

``airl`` (linear state-only :math:`g`) and ``gail`` train on the demonstrations' transitions
weighted by :math:`\gamma_{\rm AIRL}^t` with :data:`AIRL_DISCOUNT`, because AIRL's stationary
discounted model needs :math:`\gamma < 1`; they have no :math:`\zeta`, and GAIL has no reward
(its row reports only the EVD of its own policy, ``policy_evd``)."""

AIRL_DISCOUNT = 0.9
"""Discount of AIRL's and GAIL's stationary model in the harness (THEORY §9.4)."""

POSTERIOR_NAMES = ("nuts", "blackjax-nuts", "exchange", "sgld", "sghmc")
r"""Posterior samplers by name; ``"plugin:<estimator>"`` adds the plug-in likelihood. ``nuts`` is
the exact likelihood (tabular recursion, LQR closed form, a density's closed-form log Z);
``exchange`` the exchange algorithm (tabular trajectory-level likelihoods; LQR, with exact
soft-Riccati auxiliary draws: four times the draws, thinned by 4);
``sgld``/``sghmc`` are stochastic-gradient MCMC with persistent-chain :math:`\nabla\log Z`
(approximate) on densities (on LQR's stacked controls their default step of 0.5/N diverged, so
they are not offered there)."""

PROBLEM_KINDS = ("tabular", "density", "lqr", "torques", "discrete_actions")
"""What the harness sees in a problem (:func:`problem_kind`)."""

_IMPORTANCE = ("importance", "psis", "gcl_mixture", "elbo", "iwae")
_SAMPLERS = ("ais", "tempered_smc", "thermodynamic_integration")

METHODS_BY_KIND: dict[str, dict[str, tuple]] = {
    "tabular": {
        "estimator": ("exact", *_IMPORTANCE, "eubo", "particle_smc", "gan_zeta"),
        "trainer": ("gan_gcl", "gcl", "airl", "gail"),
        "posterior": ("nuts", "blackjax-nuts", "exchange", "plugin:"),
    },
    "density": {
        "estimator": (*_IMPORTANCE, "eubo", *_SAMPLERS),
        "trainer": ("nce", "gan_ebm", "fce", "cd", "pcd"),
        "posterior": ("nuts", "sgld", "sghmc"),
    },
    "lqr": {
        "estimator": ("exact", *_IMPORTANCE, *_SAMPLERS, "gan_zeta"),
        "trainer": ("gan_gcl", "gcl", "airl", "cd", "pcd"),
        "posterior": ("nuts", "exchange"),
    },
    "torques": {
        "estimator": (*_IMPORTANCE, *_SAMPLERS, "gan_zeta"),
        "trainer": ("gan_gcl", "gcl", "airl"),
        "posterior": ("plugin:",),
    },
    "discrete_actions": {
        "estimator": ("exact", *_IMPORTANCE, "particle_smc", "gan_zeta"),
        "trainer": ("gan_gcl", "gcl", "airl"),
        "posterior": ("plugin:",),
    },
}
r"""Problem kind -> cell kind -> the methods that apply (``"plugin:"``: any plug-in likelihood).

* ``lqr`` (deterministic, one start): the stacked controls are an energy on :math:`\mathbb
  R^{Tm}` (``models.lqr.control_space_problem``), so every estimator on :math:`\mathbb R^d` runs
  on it with its default proposal/reference; ``exact`` is the closed form (THEORY §8.1a);
  ``gan_zeta`` and the adversarial trainers use a linear-Gaussian policy; ``cd``/``pcd`` run on
  the stacked controls of the demonstrations as data (MCMC over action sequences, issue 8).
* ``torques`` (Pendulum): per start state (:func:`ebm_ppl.logz.control.per_start`), the
  importance family under the Gaussian fitted to the demonstrations' torques on the box
  (:func:`~ebm_ppl.logz.control.moment_matched_box_proposal`; uniform without demonstrations),
  the samplers from the uniform base measure; no exact value (errors are NaN, the spread and the
  standard errors remain); ``gan_zeta`` and the trainers use a linear-Gaussian policy squashed
  into the torque box (``linear_gaussian(2, 1, bound=2.0)``).
* ``discrete_actions`` (MountainCar): per start state under uniform action sequences
  (:func:`~ebm_ppl.logz.control.sequence_proposal`), ``particle_smc`` is
  :func:`~ebm_ppl.logz.control.sequence_smc` over time, ``exact`` enumerates the :math:`A^T`
  sequences (short horizons), ``gan_zeta`` and the trainers use a linear softmax policy.
"""

QUICK: dict[str, Any] = {
    "problem_options": {
        "objectworld": {"size": 4, "horizon": 8, "num_demos": 32},
        "frozenlake": {"num_demos": 32},
        "cliffwalking": {"num_demos": 32},
        "toy2d": {"energy": "banana", "num_data": 256},
        "lqr": {"num_demos": 32},
        "pendulum": {"num_starts": 2, "num_demos": 4},
        "mountaincar": {"horizon": 6, "num_starts": 3, "num_demos": 8},
    },
    "estimators": (
        "exact",
        "importance",
        "psis",
        "gcl_mixture",
        "particle_smc",
        "gan_zeta",
        "iwae",
        "ais",
        "thermodynamic_integration",
    ),
    "trainers": ("gan_gcl", "gcl", "airl", "gail", "nce", "pcd"),
    "posteriors": (),
    "budgets": (64, 256),
    "num_seeds": 2,
    "steps": 40,
}
"""Settings of ``--quick``: small problems, two budgets, two seeds, short training."""

_COLUMNS = (
    "problem",
    "kind",
    "method",
    "budget",
    "seed",
    "status",
    "model",
    "log_z_exact",
    "log_z",
    "error",
    "bias",
    "stderr",
    "khat",
    "grad_cosine",
    "grad_rel_error",
    "energy_evals",
    "epic",
    "evd",
    "policy_evd",
    "zeta_error",
    "param_error",
    "nll_gap",
    "energy_pearson",
    "w1",
    "mean_error",
    "coverage",
    "rhat_max",
    "ess_min",
    "ess_per_second",
    "seconds",
    "compile_seconds",
    "error_message",
)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell of the grid."""

    problem: str
    kind: str
    method: str
    budget: int
    seed: int

    @property
    def id(self) -> str:
        method = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.method)
        return f"{self.problem}__{self.kind}__{method}__b{self.budget}__s{self.seed}"


def cell_key(rng_key, seed: int):
    """The key of every cell of seed ``seed``: ``jax.random.fold_in(rng_key, seed)``."""
    return jax.random.fold_in(rng_key, seed)


def problem_kind(problem) -> str:
    r"""One of :data:`PROBLEM_KINDS`: ``"tabular"`` (a tabular MDP), ``"density"`` (an EBM on
    :math:`\mathbb R^d`), ``"lqr"`` (a linear-Gaussian control problem), ``"torques"`` or
    ``"discrete_actions"`` (an action-sequence problem with bounded continuous or with discrete
    actions)."""
    from ebm_ppl.continuous import LinearGaussianProblem
    from ebm_ppl.envs.classic_control import ActionSequenceProblem

    if hasattr(problem, "mdp"):
        return "tabular"
    if isinstance(problem, LinearGaussianProblem):
        return "lqr"
    if isinstance(problem, ActionSequenceProblem):
        continuous = hasattr(problem.energy_model, "unconstrained_energy")
        return "torques" if continuous else "discrete_actions"
    return "density"


def problem_model(problem) -> str:
    r"""The model whose :math:`\log Z` the harness estimates: ``"trajectory_global"`` for tabular
    problems (one number per problem), ``"ebm"`` for densities on :math:`\mathbb R^d`,
    ``"trajectory"`` (one :math:`\log Z(x_0)` per start state) for the control problems."""
    kind = problem_kind(problem)
    return {"tabular": "trajectory_global", "density": "ebm"}.get(kind, "trajectory")


def make_estimator(name: str, budget: int, model: str, problem=None):
    """The estimator ``name`` (one of :data:`ESTIMATOR_NAMES`) with ``budget`` samples.

    For tabular problems and densities (``problem`` ``None`` or of those kinds) it is the library's
    estimator for ``model``; for the control problems it is the same estimator adapted to the
    problem as :data:`METHODS_BY_KIND` states, run on the problem itself:
    ``make_estimator(name, budget, problem_model(problem), problem).run(key, problem, params)``.
    """
    from ebm_ppl.logz.report import make_estimator as make_logz_estimator

    kind = "tabular" if problem is None else problem_kind(problem)
    if kind in ("tabular", "density"):
        if name == "gan_zeta":
            if model == "ebm":
                raise ValueError(
                    "gan_zeta serves tabular and control problems (a policy generator); not 'ebm'."
                )
            from ebm_ppl.adversarial import gan_zeta

            return gan_zeta(budget, model=model)
        return make_logz_estimator(name, budget, model)
    if name not in METHODS_BY_KIND[kind]["estimator"]:
        raise ValueError(f"estimator {name!r} does not serve {kind} problems ({problem.name!r}).")
    if name == "exact":
        return _exact_estimator(problem)
    if name == "gan_zeta":
        return _control_gan_zeta(problem, budget)
    if kind == "lqr":
        return _on_controls(make_logz_estimator(name, budget, "ebm"))
    from ebm_ppl.logz import control

    if name == "particle_smc":
        return control.sequence_smc(budget)
    if kind == "discrete_actions":
        proposal = control.sequence_proposal(problem.horizon, _num_actions(problem))
    else:
        bound = problem.energy_model.dynamics.max_torque
        proposal = control.box_proposal(problem.horizon, bound)
        if name in _IMPORTANCE and problem.demos is not None:
            proposal = control.moment_matched_box_proposal(problem.demos, bound)
    return control.per_start(make_logz_estimator(name, budget, "ebm", proposal=proposal))


def _control_gan_zeta(problem, budget: int):
    """GAN-GCL's zeta* on a control problem, its demonstrations converted once on the host (so
    that ``run`` jits with the problem as an argument)."""
    from ebm_ppl.adversarial import continuous
    from ebm_ppl.logz.base import LogZEstimator

    inner = continuous.gan_zeta(_control_policy(problem), budget, generator_steps=300)
    demos = None if problem.demos is None else continuous.demonstrations(problem)

    def run(rng_key, problem, params, *, data=None, s0=None):
        if not isinstance(data, continuous.Demonstrations):
            data = demos
        return inner.run(rng_key, problem, params, data=data, s0=s0)

    return LogZEstimator(name=inner.name, models=inner.models, run=run, smooth=inner.smooth)


def _num_actions(problem) -> int:
    from ebm_ppl.logz.control import MOUNTAINCAR_NUM_ACTIONS

    return int(getattr(problem.energy_model, "num_actions", MOUNTAINCAR_NUM_ACTIONS))


def _control_policy(problem):
    from ebm_ppl.policies import linear_gaussian, linear_softmax

    kind = problem_kind(problem)
    if kind == "lqr":
        return linear_gaussian(problem.system.state_dim, problem.system.control_dim)
    starts = np.asarray(problem.start_states, np.float64)
    if kind == "torques":  # squashed into the torque box, inputs centred on the starts
        bound = float(problem.energy_model.dynamics.max_torque)
        return linear_gaussian(starts.shape[-1], 1, bound=bound, loc=starts.mean(axis=0))
    return linear_softmax(starts.shape[-1], _num_actions(problem))


def _controls_view(problem):
    """A deterministic LQR problem from its fixed start as a density on the stacked controls."""
    from ebm_ppl.problems import DensityProblem

    system = problem.system
    if is_concrete(system.noise_cov) and not system.is_deterministic():
        raise ValueError(
            f"problem {problem.name!r}: the estimators run on the stacked controls of a "
            "deterministic system (noise 0); this one has noise."
        )
    demos = problem.demos
    if (
        demos is not None
        and is_concrete(demos.states)
        and not bool(np.allclose(np.asarray(demos.states[:, 0]), np.asarray(system.initial_mean)))
    ):
        raise ValueError(
            f"problem {problem.name!r}: the estimators need one fixed start (initial_std 0); "
            "its demonstrations start at several states."
        )
    from ebm_ppl.energy.quadratic import ControlSpaceEnergy

    energy = ControlSpaceEnergy(
        system=system, x0=system.initial_mean, cost_model=problem.energy_model
    )
    return DensityProblem(name=problem.name, energy_model=energy, dim=energy.dim)


def _controls_density(problem):
    """:func:`_controls_view` with the demonstrations' stacked controls as ``data`` and the
    problem's true parameters (for the MCMC trainers)."""
    view = _controls_view(problem)
    if problem.demos is None:
        raise ValueError(f"problem {problem.name!r} has no demonstrations to train on.")
    controls = jnp.asarray(problem.demos.controls)
    return dataclasses.replace(
        view, data=controls.reshape(controls.shape[0], -1), true_params=problem.true_params
    )


def _on_controls(estimator):
    """An ``"ebm"`` estimator run on an LQR problem's stacked controls (data: the demos')."""
    from ebm_ppl.logz.base import LogZEstimator

    def run(rng_key, problem, params, *, data=None, s0=None):
        if s0 is not None:
            raise ValueError("`s0`: an LQR problem here has one fixed start; pass s0=None.")
        view = _controls_view(problem)
        if data is None:
            data = problem.demos
        if data is not None and hasattr(data, "controls"):  # GaussianTrajectories
            controls = jnp.asarray(data.controls)
            data = controls.reshape(controls.shape[0], -1)
        return estimator.run(rng_key, view, params, data=data)

    return LogZEstimator(
        name=f"controls[{estimator.name}]", models=("trajectory",), run=run, smooth=estimator.smooth
    )


def _exact_estimator(problem):
    from ebm_ppl.logz.base import LogZEstimator, LogZResult

    log_z_fn = exact_log_z_fn(problem)
    if log_z_fn is None:
        raise ValueError(f"problem {problem.name!r} has no exact log Z.")

    def run(rng_key, problem, params, *, data=None, s0=None):
        del rng_key, data, s0
        log_z = log_z_fn(params, problem)
        return LogZResult(
            log_z=log_z, stderr=jnp.zeros_like(log_z), num_energy_evals=jnp.zeros(()), info=None
        )

    return LogZEstimator(name="exact", models=("trajectory",), run=run, smooth=True)


def exact_log_z_fn(problem):
    """``f(params, problem) -> log Z`` exactly where the problem allows (tabular recursion, a
    density's closed-form ``log_z``, LQR's closed form, enumeration of MountainCar's sequences at
    short horizons), else ``None``."""
    kind = problem_kind(problem)
    if kind == "tabular":
        from ebm_ppl.logz import exact

        return lambda params, pr: exact("trajectory_global").run(None, pr, params).log_z
    if kind == "density" and hasattr(problem.energy_model, "log_z"):
        return lambda params, pr: pr.energy_model.log_z(params)
    if kind == "lqr" and problem.system.is_deterministic():
        return lambda params, pr: pr.log_z(params)
    if kind == "discrete_actions" and problem.log_z is not None:
        return _enumerated_log_z
    return None


def _enumerated_log_z(params, problem):
    r""":math:`\log Z_\theta(x_0)` per start by summing over all :math:`A^T` action sequences."""
    from ebm_ppl.logz.control import _view_energy

    num_actions = _num_actions(problem)
    grid = np.indices((num_actions,) * problem.horizon).reshape(problem.horizon, -1).T
    sequences = jnp.asarray(grid, jnp.result_type(float))

    def one(x0):
        energy = _view_energy(problem, x0, num_actions)
        energies = jax.vmap(lambda a: energy.energy(params, a))(sequences)
        return jax.scipy.special.logsumexp(-energies)

    return jax.lax.map(one, problem.start_states)


def _exact_log_z(problem, params, cache, label):
    """The exact log Z at ``params`` (array), or the problem's stored value, or ``None``."""
    key = ("exact", label)
    if key not in cache:
        log_z_fn = exact_log_z_fn(problem)
        if log_z_fn is not None:
            cache[key] = np.asarray(jax.jit(log_z_fn)(params, problem), np.float64)
        elif getattr(problem, "log_z", None) is not None and not callable(problem.log_z):
            cache[key] = np.asarray(problem.log_z, np.float64)
        else:
            cache[key] = None
    return cache[key]


def _serves(name: str, problem, cell_kind: str = "estimator") -> bool:
    kind = problem_kind(problem)
    allowed = METHODS_BY_KIND[kind][cell_kind]
    if name.startswith("plugin:"):
        return "plugin:" in allowed
    if kind == "density" and name == "nuts":  # the exact likelihood needs a closed-form log Z
        return hasattr(problem.energy_model, "log_z")
    return name in allowed


# ----------------------------------------------------------------------------- validation
def _check_names(argument: str, names, allowed, prefix_ok: str | None = None) -> tuple:
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = tuple(names)
    for name in names:
        if prefix_ok and isinstance(name, str) and name.startswith(prefix_ok):
            inner = name[len(prefix_ok) :]
            if inner not in ESTIMATOR_NAMES:
                raise ValueError(
                    f"`{argument}`: {name!r} names no estimator; after {prefix_ok!r} use one of "
                    f"{ESTIMATOR_NAMES}."
                )
            continue
        if name not in allowed:
            raise ValueError(f"`{argument}` must be among {allowed}; got {name!r}.")
    return names


def _check_positive_ints(argument: str, values) -> tuple:
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = (values,)
    values = tuple(values)
    if not values or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values
    ):
        raise ValueError(f"`{argument}` must be one or more ints >= 1; got {values!r}.")
    return tuple(int(v) for v in values)


# ----------------------------------------------------------------------------- measurements
def _flat(tree) -> np.ndarray:
    return np.asarray(ravel_pytree(tree)[0], dtype=np.float64)


def _problem_data(problem):
    return problem.data if problem_kind(problem) == "density" else problem.demos


def _estimator_cell(cell, problem, estimator, key, cache, gradients: bool) -> dict:
    model = problem_model(problem)
    params = problem.true_params
    data = _problem_data(problem)
    compiled = cache.get(("run", cell.problem, cell.method, cell.budget))
    start = time.perf_counter()
    if compiled is None:
        run = jax.jit(lambda k, pr, pa, d: estimator.run(k, pr, pa, data=d))
        compiled = run.lower(key, problem, params, data).compile()
        cache[("run", cell.problem, cell.method, cell.budget)] = compiled
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = jax.block_until_ready(compiled(key, problem, params, data))
    seconds = time.perf_counter() - start
    estimate = np.asarray(result.log_z, np.float64)
    exact = _exact_log_z(problem, params, cache, cell.problem)
    errors = estimate - exact if exact is not None else np.full_like(estimate, math.nan)
    khat = getattr(result.info, "khat", None)
    row = {
        "model": model,
        "log_z_exact": float(np.mean(exact)) if exact is not None else math.nan,
        "log_z": float(np.mean(estimate)),
        "error": float(np.sqrt(np.mean(errors**2))),
        "bias": float(np.mean(errors)),
        "stderr": _nanmean(result.stderr),
        "khat": _nanmean(khat) if khat is not None else math.nan,
        "energy_evals": float(np.mean(np.asarray(result.num_energy_evals))),
        "seconds": seconds,
        "compile_seconds": compile_seconds,
    }
    if gradients:
        row.update(_gradient_error(cell, problem, estimator, key, cache))
    return row


def _gradient_error(cell, problem, estimator, key, cache) -> dict:
    r"""Cosine and relative norm error of :math:`\nabla_\theta\,\overline{\log\hat Z}` (the
    mean over start states) against the exact gradient, where one exists."""
    nan = {"grad_cosine": math.nan, "grad_rel_error": math.nan}
    params = problem.true_params
    data = _problem_data(problem)
    exact = cache.get(("grad_exact", cell.problem))
    if exact is None:
        log_z_fn = exact_log_z_fn(problem)
        if log_z_fn is None:
            return nan
        exact = jax.jit(jax.grad(lambda p, pr: jnp.mean(log_z_fn(p, pr))))(params, problem)
        cache[("grad_exact", cell.problem)] = exact
    grad_fn = cache.get(("grad", cell.problem, cell.method, cell.budget))
    if grad_fn is None:
        grad_fn = jax.jit(
            jax.grad(lambda p, k, pr, d: jnp.mean(estimator.run(k, pr, p, data=d).log_z))
        )
        cache[("grad", cell.problem, cell.method, cell.budget)] = grad_fn
    try:
        estimate = _flat(grad_fn(params, key, problem, data))
    except Exception:  # noqa: BLE001 - some estimators (adaptive tempering) are not differentiable
        return nan
    truth = _flat(exact)
    norm = np.linalg.norm(truth)
    cosine = float(estimate @ truth / (np.linalg.norm(estimate) * norm))
    return {"grad_cosine": cosine, "grad_rel_error": float(np.linalg.norm(estimate - truth) / norm)}


def _nanmean(values) -> float:
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def _per_step_trainer_cell(cell, problem, key, cache) -> dict:
    """AIRL / GAIL: transitions of the demonstrations, exact policy step, no zeta."""
    import optax

    from ebm_ppl.adversarial.airl import (
        airl,
        airl_reward_table,
        gail,
        policy_evd,
        train,
        transitions_from_trajectories,
    )
    from ebm_ppl.metrics import epic_distance, expected_value_difference

    mdp = problem.mdp
    cached = cache.get(("trainer", cell.problem, cell.method))
    if cached is None:
        if cell.method == "airl":
            trainer = airl(
                mdp, discount=AIRL_DISCOUNT, features=mdp.features, optimizer=optax.adam(0.05)
            )
        else:
            trainer = gail(mdp, discount=AIRL_DISCOUNT, optimizer=optax.adam(0.1))
        transitions = transitions_from_trajectories(problem.demos, discount=AIRL_DISCOUNT)
        cached = cache[("trainer", cell.problem, cell.method)] = (trainer, transitions)
    trainer, transitions = cached
    init_key, update_key = jax.random.split(key)
    start = time.perf_counter()
    state = trainer.init(init_key)
    state, _ = train(trainer, state, jax.random.split(update_key, cell.budget), transitions)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    truth = problem.true_reward()
    row = {
        "model": "causal",
        "policy_evd": float(policy_evd(truth, state.log_policy, mdp, discount=problem.discount)),
        "seconds": seconds,
    }
    if cell.method == "airl":
        reward = airl_reward_table(state.params, features=mdp.features)
        row["epic"] = float(epic_distance(reward, truth, mdp, discount=problem.discount))
        row["evd"] = float(expected_value_difference(truth, reward, mdp, discount=problem.discount))
        row["_reward"] = np.asarray(reward, np.float64).tolist()
    return row


def _relative_error(estimate, truth) -> float:
    truth = _flat(truth)
    return float(np.linalg.norm(_flat(estimate) - truth) / np.linalg.norm(truth))


def _lqr_nll_gap(problem, params, cache) -> float:
    r"""Excess negative log-likelihood per demonstration of ``params`` over the exact maximum
    likelihood, :math:`\bar\ell(\hat\theta_{\rm MLE}) - \bar\ell(\theta) \ge 0` (closed-form
    likelihood; well defined when the MLE lies at infinity, as a weight that the data do not
    pin down can)."""
    best = _lqr_best_mean_log_likelihood(problem, cache)
    return float(best - jnp.mean(problem.log_likelihood(params)))


def _lqr_best_mean_log_likelihood(problem, cache):
    """The exact maximum of an LQR problem's mean log-likelihood (200 optax L-BFGS steps in one
    scan from 0), cached per problem."""
    import optax

    from ebm_ppl.inference.mle import minimize

    if ("mle", problem.name) not in cache:

        @jax.jit
        def fit(problem):
            start = jax.tree.map(jnp.zeros_like, problem.true_params)
            objective = lambda params: -jnp.mean(problem.log_likelihood(params))  # noqa: E731
            params, _ = minimize(objective, start, optax.lbfgs(), 200, line_search=True)
            return -objective(params)

        cache[("mle", problem.name)] = fit(problem)
    return cache[("mle", problem.name)]


def _energy_recovery(problem, params, zeta) -> dict:
    r"""Learned against true energy of a 2-D density: Pearson correlation over a 200 x 200 grid
    (the data's bounding box widened by a quarter of its range on each side) where the true
    density exceeds 1e-3; the learned energy's log Z by quadrature on that box (unchecked: the
    learned energy may not decay inside it) and :math:`|\zeta - \log Z|`."""
    from ebm_ppl.exact.quadrature import quadrature_log_z

    row = {"param_error": _relative_error(params, problem.true_params)}
    if problem.dim != 2:
        return row
    data = np.asarray(problem.data, np.float64)
    lo, hi = data.min(0), data.max(0)
    bounds = np.stack([lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo)], -1)
    axes = [jnp.linspace(a, b, 200) for a, b in bounds]
    grid = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    energy = problem.energy_model.energy
    true_energy = np.asarray(jax.vmap(lambda x: energy(problem.true_params, x))(grid))
    learned = np.asarray(jax.vmap(lambda x: energy(params, x))(grid))
    log_z = _exact_log_z(problem, problem.true_params, {}, problem.name)
    if log_z is not None:
        keep = -true_energy - float(log_z) > math.log(1e-3)
        if keep.sum() > 10:
            row["energy_pearson"] = float(np.corrcoef(true_energy[keep], learned[keep])[0, 1])
    if zeta is not None:
        learned_log_z = quadrature_log_z(lambda x: energy(params, x), bounds, 129, check=False)
        row["log_z_exact"] = float(learned_log_z.log_z)
        row["log_z"] = float(zeta)
        row["zeta_error"] = abs(float(zeta) - float(learned_log_z.log_z))
    return row


def _ebm_trainer_cell(cell, problem, key, cache, mala_step: float = 0.05, nll_gap=None) -> dict:
    """NCE / GAN-EBM / FCE (``ebm_ppl.adversarial.ebm``) or CD-1 / PCD (``ebm_ppl.mcmc``, MALA
    with step ``mala_step``) on a density's data, ``budget`` updates with a cosine-decayed Adam
    step; ``nll_gap(params)`` adds that column where given."""
    import numpyro.distributions as dist
    import optax

    from ebm_ppl import mcmc
    from ebm_ppl.adversarial import ebm

    model, data = problem.energy_model, problem.data
    if data is None:
        raise ValueError(f"problem {problem.name!r} has no data to train on.")
    rate = optax.cosine_decay_schedule(3e-2, cell.budget, alpha=0.01)
    init_key, train_key = jax.random.split(key)
    start = time.perf_counter()
    if cell.method in ("cd", "pcd"):
        kernel = mcmc.mcmc_kernel("mala", step_size=mala_step)
        if cell.method == "cd":
            trainer = mcmc.cd(model, kernel, num_steps=1, optimizer=optax.adam(rate))
            state = trainer.init(init_key)
        else:
            trainer = mcmc.pcd(model, kernel, num_steps=5, optimizer=optax.adam(rate))
            state = trainer.init(init_key, data=data)
        state, _ = mcmc.train(train_key, trainer, state, data, cell.budget)
        zeta = None
    else:
        if cell.method == "nce":
            noise = dist.Logistic(jnp.mean(data, 0), jnp.std(data, 0)).to_event(1)
            trainer = ebm.nce(model, noise, nu=4.0, optimizer=optax.adam(rate))
        else:
            factory = ebm.gan_ebm if cell.method == "gan_ebm" else ebm.fce
            generator_rate = optax.cosine_decay_schedule(5e-3, cell.budget, alpha=0.01)
            trainer = factory(
                model,
                nu=4.0,
                energy_optimizer=optax.adam(rate),
                generator_optimizer=optax.adam(generator_rate),
            )
        state = trainer.init(init_key, data=data)
        state, _ = ebm.train(train_key, trainer, state, data, cell.budget)
        zeta = state.zeta
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    row = {"model": "ebm", "seconds": seconds, **_energy_recovery(problem, state.params, zeta)}
    if nll_gap is not None:
        row["nll_gap"] = nll_gap(state.params)
    return row


def _control_trainer_cell(cell, problem, key, cache) -> dict:
    r"""GAN-GCL / GCL / AIRL with a linear-Gaussian (LQR) or linear softmax (discrete actions)
    generator:
    the learned cost parameters against the truth, and :math:`\zeta` (GCL: the mixture
    :math:`\log\hat Z`) against the exact log Z of the learned cost at the demonstrations'
    start states where it is known."""
    from ebm_ppl.adversarial import continuous

    cached = cache.get(("trainer", cell.problem, cell.method))
    if cached is None:
        factory = {
            "gan_gcl": continuous.gan_gcl,
            "gcl": continuous.gcl,
            "airl": continuous.airl,
        }[cell.method]
        trainer = factory(problem, _control_policy(problem), nu=2)
        cached = cache[("trainer", cell.problem, cell.method)] = (
            trainer,
            continuous.demonstrations(problem),
        )
    trainer, demos = cached
    init_key, train_key = jax.random.split(key)
    start = time.perf_counter()
    state = trainer.init(init_key)
    state, infos = continuous.train(train_key, trainer, state, demos, cell.budget)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    # GAN-GCL's zeta; GCL's mixture log Z-hat; AIRL's h_0 at the starts
    zeta = np.asarray(state.zeta if cell.method == "gan_gcl" else infos.log_z[-1], np.float64)
    row = {
        "model": "trajectory",
        "param_error": _relative_error(state.params, problem.true_params),
        "log_z": float(np.mean(zeta)),
        "seconds": seconds,
    }
    if problem_kind(problem) == "lqr":
        row["nll_gap"] = _lqr_nll_gap(problem, state.params, cache)
    log_z_fn = exact_log_z_fn(problem)
    if log_z_fn is not None:
        if problem_kind(problem) == "lqr":
            at_starts = problem.log_z(state.params, demos.start_states)
        else:
            at_starts = log_z_fn(state.params, problem.replace(start_states=demos.start_states))
        exact = np.asarray(at_starts, np.float64)
        row["log_z_exact"] = float(np.mean(exact))
        row["zeta_error"] = float(np.sqrt(np.mean((zeta - exact) ** 2)))
    return row


def _trainer_cell(cell, problem, key, cache) -> dict:
    from ebm_ppl.adversarial import gan_gcl, gcl, reward_epic
    from ebm_ppl.exact.tabular import log_partition
    from ebm_ppl.metrics import expected_value_difference

    kind = problem_kind(problem)
    if kind == "density":
        return _ebm_trainer_cell(cell, problem, key, cache)
    if kind == "lqr" and cell.method in ("cd", "pcd"):  # MCMC over the stacked controls
        # MALA step of tests/mcmc/test_gradients.py's LQR check (acceptance 0.3-1 there)
        view = _controls_density(problem)
        gap = functools.partial(_lqr_nll_gap, problem, cache=cache)
        return _ebm_trainer_cell(cell, view, key, cache, mala_step=0.5, nll_gap=gap)
    if kind != "tabular":
        return _control_trainer_cell(cell, problem, key, cache)
    if cell.method in ("airl", "gail"):
        return _per_step_trainer_cell(cell, problem, key, cache)

    trainer = cache.get(("trainer", cell.problem, cell.method))
    if trainer is None:
        factory = {"gan_gcl": gan_gcl, "gcl": gcl}[cell.method]
        trainer = factory(problem, model="trajectory_global", nu=2, policy_steps=5)
        cache[("trainer", cell.problem, cell.method)] = trainer
    init_key, update_key = jax.random.split(key)
    start = time.perf_counter()
    state = trainer.init(init_key)
    info = None
    for step_key in jax.random.split(update_key, cell.budget):
        state, info = trainer.update(step_key, state, problem.demos)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    reward = problem.energy_model.reward(state.params)
    log_z = float(log_partition(problem.mdp, reward, model="trajectory_global"))
    zeta = state.zeta if cell.method == "gan_gcl" else info.log_z
    return {
        "model": "trajectory_global",
        "epic": float(reward_epic(problem, state.params)),
        "evd": float(
            expected_value_difference(
                problem.true_reward(), reward, problem.mdp, discount=problem.discount
            )
        ),
        "log_z_exact": log_z,
        "log_z": float(zeta),
        "zeta_error": abs(float(zeta) - log_z),
        "seconds": seconds,
        "_reward": np.asarray(reward, np.float64).tolist(),
    }


def _reference_posterior(problem, key, cache, settings):
    """The exact-likelihood NUTS posterior with 4x the draws (``None`` where the likelihood has
    no exact form: the action-sequence problems)."""
    if ("reference", problem.name) not in cache:
        kind = problem_kind(problem)
        draws = settings["reference_draws"]
        if kind == "tabular":
            from ebm_ppl.inference import infer_reward

            reference = infer_reward(
                key,
                problem,
                method="nuts",
                num_chains=2,
                num_warmup=draws,
                num_samples=draws,
                progress_bar=False,
            )
        elif kind == "lqr" or (kind == "density" and hasattr(problem.energy_model, "log_z")):
            reference = _sample_posterior("nuts", problem, key, draws, settings)
        else:
            reference = None
        cache[("reference", problem.name)] = reference
    return cache[("reference", problem.name)]


def _density_likelihood(problem):
    """Exact-likelihood NumPyro model of a density with a closed-form ``log_z``."""
    import numpyro

    params = problem.energy_model.prior()
    energies = jax.vmap(lambda x: problem.energy_model.energy(params, x))(problem.data)
    log_z = problem.energy_model.log_z(params)
    numpyro.factor("log_likelihood", -jnp.sum(energies) - problem.data.shape[0] * log_z)


def _numpyro_nuts(key, model, problem, draws):
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(
        NUTS(model),
        num_warmup=draws,
        num_samples=draws,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(key, problem, extra_fields=("diverging", "accept_prob"))
    positions = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    stats = {"diverging": extra["diverging"], "acceptance_rate": extra["accept_prob"]}
    return positions, stats


def _posterior_tree(positions, stats, problem, method: str, likelihood: str):
    """A DataTree of draws ``(chains, draws, ...)`` of a non-tabular problem."""
    from arviz_base import from_dict

    positions = {name: np.asarray(value) for name, value in positions.items()}
    stats = {name: np.asarray(value) for name, value in stats.items()}
    tree = from_dict({"posterior": positions, "sample_stats": stats})
    tree.attrs.update(
        {
            "problem": str(problem.name),
            "method": method,
            "likelihood_kind": likelihood,
            "parameter_sites": sorted(positions),
        }
    )
    return tree


def _sample_posterior(method: str, problem, key, draws: int, settings):
    """Posterior draws (2 chains, ``draws`` warm-up and kept draws) as a DataTree."""
    kind = problem_kind(problem)
    estimator = None
    if method.startswith("plugin:"):
        inner = method.split(":", 1)[1]
        samples = settings["plugin_samples"]
        if kind == "tabular":
            estimator = make_estimator(inner, samples, "trajectory")
        else:
            estimator = make_estimator(inner, samples, problem_model(problem), problem)
    if kind == "tabular":
        from ebm_ppl.inference import infer_reward

        return infer_reward(
            key,
            problem,
            method="nuts" if estimator else method,
            num_chains=2,
            num_warmup=draws,
            num_samples=draws,
            progress_bar=False,
            **({"estimator": estimator, "likelihood": "trajectory"} if estimator else {}),
        )
    if method in ("sgld", "sghmc"):
        from ebm_ppl.inference import infer_sgmcmc

        # no step-size adaptation: a step of 0.5 / N (the posterior's curvature grows like N)
        # and ten times the warm-up of the NUTS cells
        return infer_sgmcmc(
            key,
            problem,
            method=method,
            num_chains=2,
            num_warmup=10 * draws,
            num_samples=draws,
            step_size=0.5 / problem.data.shape[0],
        )
    if estimator is not None:
        from ebm_ppl.inference.control import sample_posterior

        result = sample_posterior(
            key, problem, estimator=estimator, num_warmup=draws, num_samples=draws
        )
        likelihood = f"plug-in {estimator.name} (biased, THEORY 7.4)"
        return _posterior_tree(result.positions, result.sample_stats, problem, method, likelihood)
    if kind == "lqr" and method == "exchange":
        from ebm_ppl.inference.exchange import sample_exchange

        # a random walk: four times the draws (warm-up and kept), thinned by 4; started at the
        # prior's centre, jittered per chain
        centre = problem.energy_model.init_params()
        keys = jax.random.split(jax.random.fold_in(key, 1), len(centre))
        start = {
            name: value + 0.1 * jax.random.normal(k, (2, *jnp.shape(value)), jnp.result_type(value))
            for k, (name, value) in zip(keys, sorted(centre.items()), strict=True)
        }
        result = sample_exchange(
            key, problem, None, start, num_warmup=4 * draws, num_samples=4 * draws
        )
        thinned = {name: value[:, ::4] for name, value in result.positions.items()}
        stats = {name: value[:, ::4] for name, value in result.sample_stats.items()}
        return _posterior_tree(thinned, stats, problem, method, "exact (exchange)")
    if kind == "lqr":
        from ebm_ppl.continuous import posterior_model

        positions, stats = _numpyro_nuts(key, posterior_model, problem, draws)
    else:
        positions, stats = _numpyro_nuts(key, _density_likelihood, problem, draws)
    return _posterior_tree(positions, stats, problem, method, "exact")


def _draws(idata, name) -> np.ndarray:
    values = np.asarray(idata["posterior"][name].values, np.float64)
    return values.reshape(values.shape[0] * values.shape[1], -1)


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein-1 distance between two samples (quantile coupling on a common grid)."""
    grid = (np.arange(512) + 0.5) / 512
    return float(np.mean(np.abs(np.quantile(a, grid) - np.quantile(b, grid))))


def _posterior_cell(cell, problem, key, cache, settings, out: Path | None) -> dict:
    from ebm_ppl import diagnostics

    reference = _reference_posterior(problem, jax.random.fold_in(key, 10**6), cache, settings)
    start = time.perf_counter()
    idata = _sample_posterior(cell.method, problem, key, cell.budget, settings)
    seconds = time.perf_counter() - start
    names = [n for n in problem.true_params]
    w1, mean_error, covered, total = [], [], 0, 0
    for name in names:
        draws = _draws(idata, name)
        truth = np.asarray(problem.true_params[name], np.float64).ravel()
        for j in range(draws.shape[1]):
            if reference is not None:
                ref = _draws(reference, name)[:, j]
                sd = np.std(ref, ddof=1)
                w1.append(_w1(draws[:, j], ref) / sd)
                mean_error.append(abs(np.mean(draws[:, j]) - np.mean(ref)) / sd)
            lo, hi = np.quantile(draws[:, j], [0.05, 0.95])
            covered += int(lo <= truth[j] <= hi)
            total += 1
    table = diagnostics.summary(idata, var_names=names)
    ess = float(np.min(table["ess_bulk"]))
    plug_in = cell.method.startswith("plugin:")
    row = {
        "model": "trajectory" if plug_in else problem_model(problem),
        "w1": float(np.mean(w1)) if w1 else math.nan,
        "mean_error": float(np.mean(mean_error)) if mean_error else math.nan,
        "coverage": covered / total,
        "rhat_max": float(np.max(table["r_hat"])),
        "ess_min": ess,
        "ess_per_second": ess / seconds,
        "seconds": seconds,
    }
    if out is not None:
        directory = out / "posteriors"
        directory.mkdir(parents=True, exist_ok=True)
        diagnostics.save(idata, directory / f"{cell.id}.nc")
    return row


# ----------------------------------------------------------------------------- the grid
def _build_problems(problems, problem_options, rng_key) -> dict:
    from ebm_ppl.problems import make_problem

    built = {}
    for index, spec in enumerate(problems):
        if isinstance(spec, str):
            options = dict((problem_options or {}).get(spec, {}))
            problem = make_problem(spec, jax.random.fold_in(rng_key, 10_000 + index), **options)
            label = spec
        elif hasattr(spec, "energy_model"):
            problem, label = spec, spec.name
        else:
            raise TypeError(
                "`problems` must hold registered problem names or built problems; got "
                f"{type(spec).__name__}."
            )
        if label in built:
            raise ValueError(f"`problems` names {label!r} twice.")
        built[label] = problem
    if not built:
        raise ValueError("`problems` must name at least one problem.")
    return built


def _cells(problems: dict, estimators, trainers, posteriors, budgets, steps, post_draws, seeds):
    cells, skipped = [], []
    for label, problem in problems.items():
        kind = problem_kind(problem)
        for name in estimators:
            if not _serves(name, problem, "estimator"):
                skipped.append(f"{label}: estimator {name!r} does not serve {kind} problems")
                continue
            cells += [Cell(label, "estimator", name, b, s) for b in budgets for s in range(seeds)]
        for name in trainers:
            if not _serves(name, problem, "trainer"):
                skipped.append(f"{label}: trainer {name!r} does not serve {kind} problems")
                continue
            if kind == "tabular" and float(problem.discount) != 1.0:
                skipped.append(f"{label}: trainer {name!r} needs discount 1")
                continue
            cells += [Cell(label, "trainer", name, steps, s) for s in range(seeds)]
        for name in posteriors:
            if not _serves(name, problem, "posterior"):
                skipped.append(f"{label}: posterior {name!r} does not serve {kind} problems")
                continue
            cells += [Cell(label, "posterior", name, post_draws, s) for s in range(seeds)]
    return cells, skipped


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _row(cell: Cell, values: dict) -> dict:
    row = {column: math.nan for column in _COLUMNS}
    row.update(dataclasses.asdict(cell))
    row["error_message"] = ""
    row.update(values)
    return row


def load_results(out) -> list[dict]:
    """Every finished cell under ``out/cells`` as a list of row dicts (sorted by cell id)."""
    directory = Path(out) / "cells"
    if not directory.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def _write_table(out: Path, rows: list[dict]) -> None:
    import csv

    public = [{c: r.get(c, math.nan) for c in _COLUMNS} for r in rows]
    with open(out / ".results.csv.tmp", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows(public)
    os.replace(out / ".results.csv.tmp", out / "results.csv")
    _atomic_write(out / "results.json", json.dumps(public, indent=1, default=_json_default))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def compare(
    rng_key,
    problems: Sequence[str | Any],
    *,
    estimators: Sequence[str] = ("importance", "psis", "gcl_mixture", "particle_smc"),
    trainers: Sequence[str] = (),
    posteriors: Sequence[str] = (),
    num_seeds: int = 3,
    budgets: Sequence[int] | int = (256, 1024),
    steps: int = 200,
    posterior_draws: int = 500,
    problem_options: dict | None = None,
    out: str | os.PathLike | None = None,
    gradients: bool = True,
    figures: bool = True,
    progress_bar: bool = True,
    on_cell: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run sampling-based and adversarial estimators on the same problems, data and energies.

    Args:
        rng_key: JAX key; cells of seed ``i`` use :func:`cell_key` ``(rng_key, i)`` and problems
            built from names use ``fold_in(rng_key, 10_000 + index)``.
        problems: registered problem names (:func:`ebm_ppl.problems.list_problems`) or built
            problems (labelled by their ``name``).
        estimators: names from :data:`ESTIMATOR_NAMES`; each runs on every problem whose model it
            serves (others are skipped with a note).
        trainers: names from :data:`TRAINER_NAMES` (tabular problems with ``discount == 1``).
        posteriors: names from :data:`POSTERIOR_NAMES` or ``"plugin:<estimator>"`` (tabular).
        num_seeds: replicates per cell (int >= 1).
        budgets: samples/particles of each estimator (one int or several).
        steps: updates per trainer cell.
        posterior_draws: warm-up and kept draws per chain (2 chains) of posterior cells; the
            reference posterior uses ``4 * posterior_draws``.
        problem_options: problem name -> keyword arguments of its ``make_problem``.
        out: directory for cells, tables, figures and DataTrees (resumable); ``None`` keeps
            everything in memory.
        gradients: measure the gradient error of each estimator (one more compilation per
            estimator and budget).
        figures: write figures to ``out/figures`` at the end.
        progress_bar: a tqdm bar over the cells.
        on_cell: called with each finished row (e.g. to log or to stop a run).

    Returns:
        The tidy table: one dict per cell (finished earlier or now), columns as in
        ``results.csv``.
    """
    estimators = _check_names("estimators", estimators, ESTIMATOR_NAMES)
    trainers = _check_names("trainers", trainers, TRAINER_NAMES)
    posteriors = _check_names("posteriors", posteriors, POSTERIOR_NAMES, prefix_ok="plugin:")
    (num_seeds,) = _check_positive_ints("num_seeds", num_seeds)
    budgets = _check_positive_ints("budgets", budgets)
    (steps,) = _check_positive_ints("steps", steps)
    (posterior_draws,) = _check_positive_ints("posterior_draws", posterior_draws)
    if isinstance(problems, str):
        problems = [problems]
    built = _build_problems(problems, problem_options, rng_key)
    cells, skipped = _cells(
        built, estimators, trainers, posteriors, budgets, steps, posterior_draws, num_seeds
    )
    for note in skipped:
        print(f"compare: skipped {note}")
    out = None if out is None else Path(out)
    done: dict[str, dict] = {}
    if out is not None:
        (out / "cells").mkdir(parents=True, exist_ok=True)
        _check_study(out, rng_key, built, problem_options, cells)
        done = {
            row_id: row
            for row_id, row in ((_cell_id(r), r) for r in load_results(out))
            if row.get("status") == "ok"
        }
    todo = [cell for cell in cells if cell.id not in done]
    settings = {"reference_draws": 4 * posterior_draws, "plugin_samples": 256}
    cache: dict = {}
    rows = {cell.id: done[cell.id] for cell in cells if cell.id in done}
    bar = _progress(len(cells), len(cells) - len(todo), progress_bar)
    for cell in todo:
        bar.set_postfix_str(cell.id, refresh=False)
        key = cell_key(rng_key, cell.seed)
        problem = built[cell.problem]
        try:
            if cell.kind == "estimator":
                estimator = make_estimator(
                    cell.method, cell.budget, problem_model(problem), problem
                )
                values = _estimator_cell(cell, problem, estimator, key, cache, gradients)
            elif cell.kind == "trainer":
                values = _trainer_cell(cell, problem, key, cache)
            else:
                values = _posterior_cell(cell, problem, key, cache, settings, out)
            values["status"] = "ok"
        except Exception as error:  # noqa: BLE001 - a failed cell is recorded, the grid goes on
            values = {
                "status": "error",
                "error_message": f"{type(error).__name__}: {error}",
                "_traceback": traceback.format_exc(),
            }
        row = _row(cell, values)
        rows[cell.id] = row
        if out is not None:
            _atomic_write(out / "cells" / f"{cell.id}.json", json.dumps(row, default=_json_default))
            _write_table(out, [rows[c.id] for c in cells if c.id in rows])
        if on_cell is not None:
            on_cell(row)
        bar.update(1)
    bar.close()
    table = [rows[c.id] for c in cells]
    if out is not None:
        _write_table(out, table)
        if figures:
            from ebm_ppl.plots import save_comparison_figures

            save_comparison_figures(table, built, out / "figures")
    return [{c: r.get(c, math.nan) for c in _COLUMNS} for r in table]


def _cell_id(row: dict) -> str:
    return Cell(row["problem"], row["kind"], row["method"], row["budget"], row["seed"]).id


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="compare", unit="cell")


def _check_study(out: Path, rng_key, built, problem_options, cells) -> None:
    """Refuse to mix two different grids in one directory; record the grid otherwise."""
    key_data = np.asarray(jax.random.key_data(rng_key)).tolist()
    study = {
        "rng_key": key_data,
        "problems": {
            label: {"name": problem.name, "options": (problem_options or {}).get(label, {})}
            for label, problem in built.items()
        },
    }
    path = out / "study.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if {k: previous.get(k) for k in study} != json.loads(json.dumps(study)):
            raise ValueError(
                f"`out` ({out}) holds a study with a different key or problems; use another "
                "directory or remove it (its cells would not be comparable)."
            )
    _atomic_write(path, json.dumps({**study, "cells": len(cells)}, indent=1))


def summarize(rows: list[dict]) -> list[dict]:
    """Medians over seeds per (problem, kind, method, budget) of the numeric columns that apply."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("status") != "ok":
            continue
        groups.setdefault((row["problem"], row["kind"], row["method"], row["budget"]), []).append(
            row
        )
    summary = []
    for (problem, kind, method, budget), members in sorted(groups.items()):
        entry = {"problem": problem, "kind": kind, "method": method, "budget": budget}
        entry["seeds"] = len(members)
        for column in _COLUMNS[7:-1]:
            values = np.asarray([m.get(column, math.nan) for m in members], np.float64)
            if np.isfinite(values).any():
                entry[column] = float(np.nanmedian(values))
        summary.append(entry)
    return summary


_KIND_COLUMNS = {
    "estimator": (
        "log_z_exact",
        "log_z",
        "error",
        "bias",
        "stderr",
        "khat",
        "grad_cosine",
        "grad_rel_error",
        "energy_evals",
        "seconds",
        "compile_seconds",
    ),
    "trainer": (
        "epic",
        "evd",
        "policy_evd",
        "param_error",
        "nll_gap",
        "energy_pearson",
        "log_z_exact",
        "log_z",
        "zeta_error",
        "seconds",
    ),
    "posterior": (
        "w1",
        "mean_error",
        "coverage",
        "rhat_max",
        "ess_min",
        "ess_per_second",
        "seconds",
    ),
}


def print_summary(rows: list[dict], file=None) -> None:
    """Terminal tables of :func:`summarize`, one per kind of cell, with the columns that apply
    (rich tables), then one line per failed cell."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=200)
    summary = summarize(rows)
    titles = {
        "estimator": "log Z estimators (error: RMS over start states; medians over seeds)",
        "trainer": "trainers (budget = updates; medians over seeds)",
        "posterior": "posteriors against the exact-likelihood reference (medians over seeds)",
    }
    for kind, columns in _KIND_COLUMNS.items():
        entries = [e for e in summary if e["kind"] == kind]
        if not entries:
            continue
        table = Table(title=titles[kind])
        for column in ("problem", "method", "budget", "seeds") + columns:
            table.add_column(column, justify="left" if column in ("problem", "method") else "right")
        for entry in entries:
            cells = [entry["problem"], entry["method"], str(entry["budget"]), str(entry["seeds"])]
            table.add_row(*cells, *[_format(entry.get(c)) for c in columns])
        console.print(table)
    for row in rows:
        if row.get("status") == "error":
            console.print(f"failed: {_cell_id(row)}: {row['error_message']}", markup=False)


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
