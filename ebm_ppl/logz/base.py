r"""The log-partition estimator interface (DESIGN §3) and its exact member.

A factory closes over its settings (including ``model=``) and returns
``LogZEstimator(name, models, run)`` with

``run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult``.

``log_z`` has shape ``(n,)`` for the start states ``s0`` of the ``"trajectory"`` model
(``s0=None``: every state with :math:`\rho_0 > 0`, in index order) and ``()`` for a global
:math:`Z`. To vmap over keys, wrap ``run`` positionally (``jax.vmap`` maps keyword arguments over
axis 0)::

    jax.vmap(lambda k, pr, pa, d, s: est.run(k, pr, pa, data=d, s0=s),
             in_axes=(0, None, None, None, None))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp

from ebm_ppl._validation import check_choice
from ebm_ppl.exact.tabular import log_partition

__all__ = ["LogZResult", "LogZEstimator", "ExactInfo", "exact"]


class LogZResult(NamedTuple):
    """Output of :attr:`LogZEstimator.run`.

    Attributes:
        log_z: ``(n,)`` per start state or ``()`` global.
        stderr: standard error of ``log_z`` (0 for exact; NaN where one run has none).
        num_energy_evals: how many energy evaluations the estimate used: per-step rewards
            :math:`r(s_t, a_t[, s_{t+1}])` for trajectories (a whole trajectory costs ``T``),
            one per point on R^d.
        info: a per-method NamedTuple.
    """

    log_z: Any
    stderr: Any
    num_energy_evals: Any
    info: Any


class LogZEstimator(NamedTuple):
    """A log-partition estimator: ``name``, the ``models`` it serves, and its ``run`` function.

    ``smooth`` says that, with the key fixed, ``run(...).log_z`` is a deterministic, smooth
    function of ``params`` (importance sampling and IWAE under a proposal that does not depend on
    ``params``; the exact recursion). Only such estimators may feed a plug-in likelihood sampled by
    NUTS; SMC with resampling and adaptive tempering are piecewise constant in ``params``
    (THEORY §7.4).
    """

    name: str
    models: tuple
    run: Callable[..., LogZResult]
    smooth: bool = False


class ExactInfo(NamedTuple):
    """Info of :func:`exact`: empty (the backward recursion has no diagnostics to report)."""


def exact(model: str = "trajectory") -> LogZEstimator:
    """Exact :math:`\\log Z` by the tabular backward recursion (THEORY §1.4).

    Bias: none (exact to floating point). Serves ``"trajectory"`` (one :math:`\\log Z(s_0)` per
    start state) and ``"trajectory_global"``. The causal model is normalised and has no :math:`Z`.

    Args:
        model: ``"trajectory"`` or ``"trajectory_global"``.
    """
    models = ("trajectory", "trajectory_global")
    check_choice("model", model, models)

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        del rng_key, data
        mdp = problem.mdp
        if model == "trajectory_global" and s0 is not None:
            raise ValueError("`s0` must be None for model='trajectory_global' (one global Z).")
        reward = problem.energy_model.reward(params)
        log_z = log_partition(mdp, reward, model=model, s0=s0)
        evals = mdp.num_states * mdp.num_actions
        return LogZResult(
            log_z=log_z,
            stderr=jnp.zeros_like(log_z),
            num_energy_evals=jnp.asarray(evals),
            info=ExactInfo(),
        )

    return LogZEstimator(name=f"exact[{model}]", models=(model,), run=run, smooth=True)
