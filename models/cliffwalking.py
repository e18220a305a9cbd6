r"""CliffWalking (``CliffWalking-v1``): demonstrations of a stated reward through the real env.

**MDP.** The Gymnasium table read by :func:`ebm_ppl.envs.toy_text.tabular_mdp_from_env`: a 4x12 grid
(48 states, row-major, :data:`GRID_SHAPE`), 4 actions (0 up, 1 right, 2 down, 3 left), start 36
(bottom-left), goal 47 (bottom-right) the only terminal state. Stepping onto the cliff (row 3,
columns 1..10) teleports back to the start with reward -100 and does not terminate.
Deterministic by default (Gymnasium's default); ``is_slippery=True`` moves in the intended and the
two perpendicular directions with probability 1/3 each. Horizon 50: the expert below takes about
18 steps (the shortest path is 13); the slippery variant needs much longer (set ``horizon``).

**Energy model.** :class:`~ebm_ppl.energy.LinearReward` on two state-action features,
:data:`FEATURE_NAMES` ``= ("step", "cliff")``: the probability that the step from ``(s, a)`` is an
ordinary step (Gymnasium's reward -1, the step into the goal included) or a fall off the cliff
(reward -100), zero on the masked goal row; they sum to 1 on every live row. They are derived
from the environment's expected reward :math:`E[r\mid s,a] = -1 - 99\,P(\text{fall}\mid s,a)` (the
MDP's transitions and :func:`~ebm_ppl.envs.toy_text.reward_table_from_env`), so Gymnasium's own
reward is exactly :math:`\phi(s,a)^\top\theta_{env}` with :data:`ENV_THETA` ``= (-1, -100)``. The
features are state-action ones because the cliff is a transition, not a state the agent occupies.

**True reward** (:data:`TRUE_THETA`): the environment's reward at inverse temperature
:data:`INVERSE_TEMPERATURE` ``= 2``, :math:`\theta^* = 2\,\theta_{env} = (-2, -200)`. At
temperature 1 a step costs 1 nat, less than the entropy the maximum-causal-entropy demonstrator
earns by wandering (up to ``log 4`` per step), so it rarely reaches the goal within the horizon; at
2 it reaches it in every episode, in about 18 steps (at most about 35); about one episode in six
walks along the cliff edge, the others one or more rows higher, and about 3 % fall off once. The
prior's scale defaults to 200 = the largest
:math:`|\theta^*_k|`, so the truth lies within one prior standard deviation.

**Demonstrations** are :func:`~ebm_ppl.envs.toy_text.collect_demonstrations` of the causal
soft-optimal policy of :math:`\theta^*` (``soft_bellman(..., model="causal")``) through
``env.step`` of the real environment, whatever ``model`` says: ``model`` selects only the inference
likelihood. With the default deterministic dynamics and one start state the three MaxEnt models
coincide; with ``is_slippery=True`` the trajectory-level likelihoods are misspecified on purpose.
"""

from __future__ import annotations

import numpy as np

from ebm_ppl.envs.toy_text import (
    CLIFFWALKING_ID,
)
from ebm_ppl.problems import Problem, toy_text_problem

__all__ = [
    "make_problem",
    "GRID_SHAPE",
    "FEATURE_NAMES",
    "ENV_THETA",
    "INVERSE_TEMPERATURE",
    "TRUE_THETA",
]

GRID_SHAPE = (4, 12)
"""``(rows, cols)``; state ``s`` is the cell ``divmod(s, 12)``."""

FEATURE_NAMES = ("step", "cliff")
"""Names of the features, in the order of ``theta``."""

ENV_THETA = (-1.0, -100.0)
"""Gymnasium's reward in the features: -1 per ordinary step, -100 for a fall off the cliff."""

INVERSE_TEMPERATURE = 2.0
""":math:`\\beta` in :math:`\\theta^* = \\beta\\,\\theta_{env}`."""

TRUE_THETA = tuple(INVERSE_TEMPERATURE * w for w in ENV_THETA)
"""The stated true weights of :data:`FEATURE_NAMES`: ``(-2, -200)``."""

_ATOL = 1e-9


def _features(mdp, rewards: np.ndarray) -> np.ndarray:
    """``(S, A, 2)`` probabilities of an ordinary step and of a fall (see the module docstring)."""
    transitions = np.asarray(mdp.to_dense().transitions, dtype=np.float64)
    live = ~np.asarray(mdp.terminal)[:, None]
    expected = np.sum(transitions * rewards, axis=-1)
    fall = np.where(live, (-expected + ENV_THETA[0]) / (ENV_THETA[0] - ENV_THETA[1]), 0.0)
    if np.any(fall < -_ATOL) or np.any(fall > 1 + _ATOL):
        raise ValueError(
            "the environment's rewards are not -1 per step and -100 per fall off the cliff: "
            f"the implied fall probabilities span [{fall.min()!r}, {fall.max()!r}]."
        )
    fall = np.clip(fall, 0.0, 1.0)
    return np.stack([np.where(live, 1.0 - fall, 0.0), fall], axis=-1)


def make_problem(
    rng_key=None,
    *,
    is_slippery: bool = False,
    horizon: int = 50,
    num_demos: int = 50,
    model: str = "causal",
    prior_scale: float = 200.0,
    true_params=None,
    sparse: bool = False,
) -> Problem:
    """Build the CliffWalking problem (see the module docstring).

    Args:
        rng_key: key of the demonstrations (default ``key(0)``); :math:`\\theta^*` is stated, not
            drawn.
        is_slippery: intended and perpendicular moves with probability 1/3 each.
        horizon: decisions per trajectory ``T``; also the environment's ``TimeLimit``.
        num_demos: demonstrations collected through ``env.step`` (0: none).
        model: the inference likelihood (``"causal"``, ``"trajectory"``, ``"trajectory_global"``);
            the demonstrations come from the causal policy whatever it is.
        prior_scale: prior standard deviation of :math:`\\theta` (default 200 = the largest
            :math:`|\\theta^*_k|`).
        true_params: override of :math:`\\theta^*`, ``{"theta": (2,)}`` or a ``(2,)`` array in
            the order of :data:`FEATURE_NAMES` (default :data:`TRUE_THETA`).
        sparse: build the MDP in sparse successor form.

    Returns:
        A :class:`~ebm_ppl.problems.Problem` named ``"cliffwalking"`` with ``discount = 1``;
        ``mdp.features`` and ``energy_model.features`` are the ``(48, 4, 2)`` features.

    Raises:
        ValueError: an option out of its range (naming it, what is expected and what came).
    """
    if not isinstance(is_slippery, (bool, np.bool_)):
        raise ValueError(f"`is_slippery` must be True or False; got {is_slippery!r}.")
    return toy_text_problem(
        "cliffwalking",
        CLIFFWALKING_ID,
        rng_key,
        features_fn=_features,
        horizon=horizon,
        num_demos=num_demos,
        model=model,
        prior_scale=prior_scale,
        true_params=true_params,
        default_params=TRUE_THETA,
        sparse=sparse,
        grid_shape=GRID_SHAPE,
        is_slippery=bool(is_slippery),
    )
