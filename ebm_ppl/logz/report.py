"""Run log Z estimators side by side against the exact value (``ebm-ppl logz``).

:func:`make_estimator` builds an estimator from its name and a budget; :func:`evaluate` runs each
over ``num_seeds`` keys (one compiled, vmapped program per estimator) and returns one row per
estimator: the mean estimate, its error and bias against the exact :math:`\\log Z`, the spread
over seeds, the estimator's own standard error, k-hat where the estimator has one, energy
evaluations and wall time per seed.
"""

from __future__ import annotations

import importlib
import time

import jax
import jax.numpy as jnp
import numpy as np

# the package re-exports the factories under their modules' names: fetch the modules themselves
ais_module = importlib.import_module("ebm_ppl.logz.ais")
base = importlib.import_module("ebm_ppl.logz.base")
importance = importlib.import_module("ebm_ppl.logz.importance")
smc = importlib.import_module("ebm_ppl.logz.smc")
ti = importlib.import_module("ebm_ppl.logz.ti")

__all__ = ["ESTIMATORS", "evaluate", "exact_log_z", "make_estimator"]

ESTIMATORS = (
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
)
"""Names accepted by :func:`make_estimator`."""

IWAE_PARTICLES = 8
"""Particles per IWAE group in :func:`make_estimator`."""

AIS_TEMPERATURES = 32
"""Temperatures of AIS in :func:`make_estimator`."""

TI_RUNGS = 17
"""Rungs of thermodynamic integration's ladder in :func:`make_estimator` (Simpson's rule)."""

TI_CHAINS = 8
"""Chains of thermodynamic integration in :func:`make_estimator` (``budget`` draws per rung are
shared among them)."""

_SAMPLERS = ("ais", "tempered_smc", "thermodynamic_integration")


def _is_tabular(problem) -> bool:
    return hasattr(problem, "mdp")


def make_estimator(name: str, budget: int, model: str, *, proposal=None):
    """The estimator ``name`` with ``budget`` samples or particles for ``model``.

    ``iwae`` uses groups of :data:`IWAE_PARTICLES`; ``ais`` spreads ``budget`` particles over
    :data:`AIS_TEMPERATURES` temperatures; ``thermodynamic_integration`` runs :data:`TI_CHAINS`
    chains up a ladder of :data:`TI_RUNGS` rungs keeping ``budget`` draws per rung in all
    (``budget // TI_CHAINS`` per chain, at least 2, after as many warm-up steps).

    Args:
        name: one of :data:`ESTIMATORS`.
        budget: samples, particles or draws per rung (int >= 1).
        model: the model whose log Z is estimated.
        proposal: a NumPyro distribution: the proposal of the importance family, the reference
            of ``ais``, ``tempered_smc`` and ``thermodynamic_integration`` (default: each
            estimator's own).
    """
    if name not in ESTIMATORS:
        raise ValueError(f"estimator names must be among {ESTIMATORS}; got {name!r}.")
    if isinstance(budget, bool) or int(budget) < 1:
        raise ValueError(f"`budget` must be an int >= 1; got {budget!r}.")
    if name == "exact":
        return base.exact(model)
    if name in _SAMPLERS:
        if model != "ebm":
            raise ValueError(f"{name!r} serves densities on R^d (model 'ebm'); got {model!r}.")
        if name == "ais":
            return ais_module.ais(budget, AIS_TEMPERATURES, reference=proposal)
        if name == "tempered_smc":
            return ais_module.tempered_smc(budget, reference=proposal)
        per_chain = max(2, int(budget) // TI_CHAINS)
        return ti.thermodynamic_integration(
            TI_RUNGS,
            num_chains=TI_CHAINS,
            num_samples=per_chain,
            num_warmup=per_chain,
            reference=proposal,
        )
    if name == "particle_smc":
        return smc.particle_smc(budget, model=model)
    if name == "iwae":
        return importance.iwae(budget, IWAE_PARTICLES, model=model, proposal=proposal)
    factory = getattr(importance, name)
    return factory(budget, model=model, proposal=proposal)


def exact_log_z(problem, params, model: str):
    """The exact :math:`\\log Z` of ``model`` at ``params``: recursion (tabular) or stored."""
    if _is_tabular(problem):
        return base.exact(model).run(jax.random.key(0), problem, params).log_z
    if problem.log_z is None:
        raise ValueError(f"problem {problem.name!r} has no exact log Z to compare against.")
    return jnp.asarray(problem.log_z)


def evaluate(rng_key, problem, estimators: dict, *, num_seeds: int, params=None, model: str):
    """Run each estimator over ``num_seeds`` keys and summarise it against the exact log Z.

    Args:
        rng_key: JAX key (the same seed keys for every estimator).
        problem: a tabular ``Problem`` or a ``DensityProblem``.
        estimators: label -> :class:`~ebm_ppl.logz.LogZEstimator`.
        num_seeds: replicates.
        params: parameters (default ``problem.true_params``).
        model: the model whose log Z is estimated.

    Returns:
        One dict per estimator. For the ``trajectory`` model the error columns are averaged over
        start states (``error`` is the root mean square over start states and seeds).
    """
    params = problem.true_params if params is None else params
    exact = np.asarray(exact_log_z(problem, params, model))
    keys = jax.random.split(rng_key, num_seeds)
    data = problem.demos if _is_tabular(problem) else problem.data
    rows = []
    for label, estimator in estimators.items():
        if model not in estimator.models:
            raise ValueError(
                f"estimator {estimator.name!r} serves {estimator.models}; not model={model!r}."
            )
        run = jax.jit(
            jax.vmap(
                lambda k, pr, pa, d, est=estimator: est.run(k, pr, pa, data=d),
                in_axes=(0, None, None, None),
            )
        )
        jax.block_until_ready(run(keys, problem, params, data))  # compile
        start = time.perf_counter()
        result = jax.block_until_ready(run(keys, problem, params, data))
        seconds = (time.perf_counter() - start) / num_seeds
        estimates = np.asarray(result.log_z, dtype=np.float64)
        errors = estimates - exact
        khat = getattr(result.info, "khat", None)
        rows.append(
            {
                "estimator": label,
                "name": estimator.name,
                "log_z_exact": float(np.mean(exact)),
                "estimate": float(np.mean(estimates)),
                "error": float(np.sqrt(np.mean(errors**2))),
                "bias": float(np.mean(errors)),
                "spread": float(np.mean(np.std(estimates, axis=0, ddof=1)))
                if num_seeds > 1
                else float("nan"),
                "stderr": float(np.nanmean(np.asarray(result.stderr)))
                if np.isfinite(np.asarray(result.stderr)).any()
                else float("nan"),
                "khat": float(np.nanmean(np.asarray(khat)))
                if khat is not None and np.isfinite(np.asarray(khat)).any()
                else float("nan"),
                "energy_evals": float(np.mean(np.asarray(result.num_energy_evals))),
                "seconds_per_seed": seconds,
            }
        )
    return rows
