"""The trajectory distribution a :class:`~ebm_ppl.problems.Problem` names, from its parameters."""

from __future__ import annotations

from ebm_ppl._validation import check_choice
from ebm_ppl.exact.tabular import MODELS, check_model
from ebm_ppl.likelihood.tabular import CausalTrajectories, MaxEntTrajectories

__all__ = ["LIKELIHOODS", "trajectory_distribution"]

LIKELIHOODS = (*MODELS, "birl")
"""Inference likelihoods: the three MaxEnt models (DESIGN §3) and Bayesian IRL (THEORY §7.5)."""


def trajectory_distribution(
    problem, params, *, model: str | None = None, rationality=1.0, q: str = "soft"
):
    """The exact-likelihood trajectory distribution of ``model`` at ``params``.

    * ``"causal"``: :class:`CausalTrajectories` with the problem's discount;
    * ``"trajectory"`` / ``"trajectory_global"``: :class:`MaxEntTrajectories` with exact
      :math:`\\log Z` (the trajectory-level :math:`W_0` of THEORY §1.4, not the causal
      :math:`V_0`);
    * ``"birl"``: :class:`~ebm_ppl.likelihood.birl.BoltzmannTrajectories`, the stationary
      discounted Boltzmann model with reward :math:`\\alpha R` and
      :math:`\\gamma` = ``problem.birl_discount`` (THEORY §7.5).

    Args:
        problem: the problem.
        params: energy-model parameters.
        model: one of :data:`LIKELIHOODS`; overrides ``problem.model``.
        rationality: :math:`\\alpha > 0` (``birl`` only; may be traced).
        q: ``"soft"`` (the smooth MCE Q, the default) or ``"hard"`` (the paper's hard-optimal
            Q*, for PolicyWalk); ``birl`` only.
    """
    model = problem.model if model is None else model
    check_choice("model", model, LIKELIHOODS)
    reward = problem.energy_model.reward(params)
    if model == "birl":
        from ebm_ppl.likelihood.birl import BoltzmannTrajectories

        return BoltzmannTrajectories(
            problem.mdp, reward, rationality=rationality, discount=problem.birl_discount, q=q
        )
    check_model(model, problem.discount)
    if model == "causal":
        return CausalTrajectories(problem.mdp, reward, discount=problem.discount)
    return MaxEntTrajectories(problem.mdp, reward, model=model)
