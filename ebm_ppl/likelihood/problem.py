"""The trajectory distribution a :class:`~ebm_ppl.problems.Problem` names, from its parameters."""

from __future__ import annotations

from ebm_ppl.exact.tabular import check_model
from ebm_ppl.likelihood.tabular import CausalTrajectories, MaxEntTrajectories

__all__ = ["trajectory_distribution"]


def trajectory_distribution(problem, params, *, model: str | None = None):
    """``CausalTrajectories`` or ``MaxEntTrajectories`` (exact log Z) for ``model``.

    Args:
        problem: the problem.
        params: energy-model parameters.
        model: overrides ``problem.model``.
    """
    model = problem.model if model is None else model
    check_model(model, problem.discount)
    reward = problem.energy_model.reward(params)
    if model == "causal":
        return CausalTrajectories(problem.mdp, reward, discount=problem.discount)
    return MaxEntTrajectories(problem.mdp, reward, model=model)
