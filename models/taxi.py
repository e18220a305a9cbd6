r"""Taxi (``Taxi-v4``): demonstrations of a stated reward through the real environment.

**MDP.** The Gymnasium table read by :func:`ebm_ppl.envs.toy_text.tabular_mdp_from_env`: 500 states
``((row * 5 + col) * 5 + passenger) * 4 + destination``, 6 actions (0 south, 1 north, 2 east,
3 west, 4 pickup, 5 dropoff), 300 equally likely start states, and the 4 states reached by a
successful dropoff masked terminal. Deterministic by default (Gymnasium's default);
``is_rainy=True`` makes moves stochastic. Horizon 50 (Gymnasium's limit is 200): the expert below
finishes in about 18 steps (at most about 35) and every episode ends within the horizon; a
recursion over 500 states then costs about 10-20 ms dense and 1-3 ms sparse on one CPU core.

**Energy model.** :class:`~ebm_ppl.energy.LinearReward` on three state-action features,
:data:`FEATURE_NAMES` ``= ("step", "illegal", "dropoff")``: the indicator that ``(s, a)`` is an
ordinary step (a move or a legal pickup, Gymnasium's reward -1), an illegal pickup or dropoff
(-10), or a successful dropoff (+20), zero on the masked terminal rows; they sum to 1 on every
live row. They are read off the environment's expected reward
(:func:`~ebm_ppl.envs.toy_text.reward_table_from_env` and the MDP's transitions), which takes one
of these three values at every live ``(s, a)`` (checked), so Gymnasium's own reward is exactly
:math:`\phi(s,a)^\top\theta_{env}` with :data:`ENV_THETA` ``= (-1, -10, 20)``. A state or
tabular reward would need 500 (or 3000) parameters to say what three do here.

**True reward** (:data:`TRUE_THETA`): the environment's reward at inverse temperature
:data:`INVERSE_TEMPERATURE` ``= 2``, :math:`\theta^* = 2\,\theta_{env} = (-2, -20, 40)`. At
temperature 1 a step costs 1 nat, less than the entropy the maximum-causal-entropy demonstrator
earns by wandering (up to ``log 6`` per step), so it drifts until the horizon; at 2 it delivers
in about 18 steps on average (an optimal driver needs about 13) and almost never makes an illegal
move, so the data say little about ``illegal``. The prior's scale defaults to 40 = the largest
:math:`|\theta^*_k|`, so the truth lies within one prior standard deviation.

**Demonstrations** are :func:`~ebm_ppl.envs.toy_text.collect_demonstrations` of the causal
soft-optimal policy of :math:`\theta^*` (``soft_bellman(..., model="causal")``) through
``env.step`` of the real environment, whatever ``model`` says: ``model`` selects only the inference
likelihood. With deterministic dynamics ``"trajectory"`` coincides with ``"causal"`` given the
start state, but ``"trajectory_global"`` re-weights the 300 start states (THEORY §1.1), which the
demonstrations (start states from :math:`\rho_0`) do not: that likelihood, and both
trajectory-level ones with ``is_rainy=True``, are misspecified on purpose.
"""

from __future__ import annotations

import numpy as np

from ebm_ppl.envs.toy_text import (
    TAXI_ID,
)
from ebm_ppl.problems import Problem, toy_text_problem

__all__ = [
    "make_problem",
    "FEATURE_NAMES",
    "ENV_THETA",
    "INVERSE_TEMPERATURE",
    "TRUE_THETA",
]

FEATURE_NAMES = ("step", "illegal", "dropoff")
"""Names of the features, in the order of ``theta``."""

ENV_THETA = (-1.0, -10.0, 20.0)
"""Gymnasium's reward in the features: -1 per step, -10 per illegal pickup/dropoff, +20 per
successful dropoff."""

INVERSE_TEMPERATURE = 2.0
""":math:`\\beta` in :math:`\\theta^* = \\beta\\,\\theta_{env}`."""

TRUE_THETA = tuple(INVERSE_TEMPERATURE * w for w in ENV_THETA)
"""The stated true weights of :data:`FEATURE_NAMES`: ``(-2, -20, 40)``."""

_ATOL = 1e-9


def _features(mdp, rewards: np.ndarray) -> np.ndarray:
    """``(S, A, 3)`` indicators of an ordinary step, an illegal action, a successful dropoff."""
    transitions = np.asarray(mdp.to_dense().transitions, dtype=np.float64)
    live = ~np.asarray(mdp.terminal)[:, None]
    expected = np.sum(transitions * rewards, axis=-1)
    kinds = np.stack([np.abs(expected - value) <= _ATOL for value in ENV_THETA], axis=-1)
    unmatched = live & ~kinds.any(axis=-1)
    if unmatched.any():
        s, a = (int(i) for i in np.argwhere(unmatched)[0])
        raise ValueError(
            f"the environment's expected reward at (s, a) = ({s}, {a}) is {expected[s, a]!r}, "
            f"not one of Taxi's rewards {ENV_THETA}."
        )
    return (kinds & live[..., None]).astype(np.float64)


def make_problem(
    rng_key=None,
    *,
    is_rainy: bool = False,
    horizon: int = 50,
    num_demos: int = 50,
    model: str = "causal",
    prior_scale: float = 40.0,
    true_params=None,
    sparse: bool = False,
) -> Problem:
    """Build the Taxi problem (see the module docstring).

    Args:
        rng_key: key of the demonstrations (default ``key(0)``); :math:`\\theta^*` is stated, not
            drawn.
        is_rainy: Gymnasium's stochastic moves.
        horizon: decisions per trajectory ``T``; also the environment's ``TimeLimit``.
        num_demos: demonstrations collected through ``env.step`` (0: none). Each is a Python loop
            over ``env.step`` (about 18 steps).
        model: the inference likelihood (``"causal"``, ``"trajectory"``, ``"trajectory_global"``);
            the demonstrations come from the causal policy whatever it is.
        prior_scale: prior standard deviation of :math:`\\theta` (default 40 = the largest
            :math:`|\\theta^*_k|`).
        true_params: override of :math:`\\theta^*`, ``{"theta": (3,)}`` or a ``(3,)`` array in
            the order of :data:`FEATURE_NAMES` (default :data:`TRUE_THETA`).
        sparse: build the MDP in sparse successor form (``K = 1`` successor when not rainy).

    Returns:
        A :class:`~ebm_ppl.problems.Problem` named ``"taxi"`` with ``discount = 1``;
        ``mdp.features`` and ``energy_model.features`` are the ``(500, 6, 3)`` features.

    Raises:
        ValueError: an option out of its range (naming it, what is expected and what came).
    """
    if not isinstance(is_rainy, (bool, np.bool_)):
        raise ValueError(f"`is_rainy` must be True or False; got {is_rainy!r}.")
    return toy_text_problem(
        "taxi",
        TAXI_ID,
        rng_key,
        features_fn=_features,
        horizon=horizon,
        num_demos=num_demos,
        model=model,
        prior_scale=prior_scale,
        true_params=true_params,
        default_params=TRUE_THETA,
        sparse=sparse,
        is_rainy=bool(is_rainy),
    )
