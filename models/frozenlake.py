r"""FrozenLake (``FrozenLake-v1``): demonstrations of a stated reward through the real environment.

**MDP.** The Gymnasium table read by :func:`ebm_ppl.envs.toy_text.tabular_mdp_from_env`: a 4x4
(16 states) or 8x8 (64 states) grid, row-major, 4 actions (0 left, 1 down, 2 right, 3 up), one
start state (the top-left ``S``), holes ``H`` and the goal ``G`` masked terminal states. Slippery
by default (Gymnasium's default): the intended move and each perpendicular one with probability
1/3, so the three MaxEnt models differ (THEORY §1.2) and the causal one is the model a policy in the
real dynamics realises. Horizon: Gymnasium's own episode limit (100 steps on 4x4, 200 on 8x8); the
slippery expert needs about 40 (4x4) and 90 (8x8) steps on average.

**Energy model.** :class:`~ebm_ppl.energy.LinearReward` on three state-action features that say
what kind of cell a step enters, :data:`FEATURE_NAMES` ``= ("frozen", "hole", "goal")``:
:math:`\phi_k(s, a) = P(\text{next cell is of kind } k \mid s, a)` for non-terminal ``s`` (zero on
the masked terminal rows), derived from the environment's table (the MDP's transitions, its
terminal states and :func:`~ebm_ppl.envs.toy_text.reward_table_from_env`: a terminal state
entered with a positive reward is the goal, with reward 0 a hole). They sum to 1 on every live
row. A *state* reward would not do: rewards are collected at :math:`s_t` for non-terminal states
only (masked termination), so the goal and the holes must be rewarded on the transition into them.
Three interpretable weights: the price of a step, of falling into a hole, of reaching the goal.

**True reward** (:data:`TRUE_THETA`): :math:`\theta^* = (-2, -100, +100)`. Not Gymnasium's own
reward ``(0, 0, 1)``, at any temperature: with no step cost the maximum-causal-entropy
demonstrator gains entropy (up to ``log 4`` nats) for every step it stays alive and loses nothing
by waiting, so it dawdles until the end of the horizon before entering the goal (non-slippery) or
wanders until it slips into a hole (slippery). A step cost of 2 nats (above the entropy of
dawdling) and a hole/goal stake of 100 (far above the cost of the slippery detour) give a good,
still stochastic demonstrator in all four settings: slippery, it reaches the goal in about 70 % of
episodes on 4x4 (the best policy: 74 % within 100 steps) and 77 % on 8x8 (best: 91 % within 200);
non-slippery, always, in 7.4 steps on 4x4 (shortest path 6) and 17 on 8x8 (14). The prior's
scale defaults to 100 = the largest :math:`|\theta^*_k|`, so the truth lies within one prior
standard deviation.

**Demonstrations** are :func:`~ebm_ppl.envs.toy_text.collect_demonstrations` of the causal
soft-optimal policy of :math:`\theta^*` (``soft_bellman(..., model="causal")``) through
``env.step`` of the real environment, whatever ``model`` says: ``model`` selects only the inference
likelihood. The trajectory-level models coincide with the causal one only under deterministic
dynamics (``is_slippery=False``; one start state), so with ``is_slippery=True`` and
``model="trajectory"`` or ``"trajectory_global"`` the likelihood is misspecified on purpose.
"""

from __future__ import annotations

import numpy as np

from ebm_ppl._validation import check_choice
from ebm_ppl.envs.toy_text import (
    FROZENLAKE_ID,
)
from ebm_ppl.problems import Problem, toy_text_problem

__all__ = [
    "make_problem",
    "grid_shape",
    "GRID_SHAPE",
    "GRID_SHAPES",
    "HORIZONS",
    "FEATURE_NAMES",
    "TRUE_THETA",
]

GRID_SHAPES = {"4x4": (4, 4), "8x8": (8, 8)}
"""``(rows, cols)`` of each map; state ``s`` is the cell ``divmod(s, cols)``."""

GRID_SHAPE = GRID_SHAPES["4x4"]
"""``(rows, cols)`` of the default map."""

HORIZONS = {"4x4": 100, "8x8": 200}
"""Default horizon of each map (Gymnasium's ``max_episode_steps`` for ``FrozenLake-v1``)."""

FEATURE_NAMES = ("frozen", "hole", "goal")
"""Names of the features, in the order of ``theta``."""

TRUE_THETA = (-2.0, -100.0, 100.0)
"""The stated true weights of :data:`FEATURE_NAMES` (see the module docstring)."""


def grid_shape(map_name: str = "4x4") -> tuple[int, int]:
    """``(rows, cols)`` of ``map_name`` (``"4x4"`` or ``"8x8"``)."""
    check_choice("map_name", map_name, tuple(GRID_SHAPES))
    return GRID_SHAPES[map_name]


def _features(mdp, rewards: np.ndarray) -> np.ndarray:
    """``(S, A, 3)`` probabilities of entering a frozen cell, a hole, the goal (see docstring)."""
    transitions = np.asarray(mdp.to_dense().transitions, dtype=np.float64)
    terminal = np.asarray(mdp.terminal)
    live = ~terminal[:, None, None]
    goal = terminal[None, None, :] & (rewards > 0)
    hole = terminal[None, None, :] & ~(rewards > 0)
    kinds = (~terminal[None, None, :], hole, goal)
    return np.stack([np.sum(transitions * (kind & live), axis=-1) for kind in kinds], axis=-1)


def make_problem(
    rng_key=None,
    *,
    map_name: str = "4x4",
    is_slippery: bool = True,
    horizon: int | None = None,
    num_demos: int = 50,
    model: str = "causal",
    prior_scale: float = 100.0,
    true_params=None,
    sparse: bool = False,
) -> Problem:
    """Build the FrozenLake problem (see the module docstring).

    Args:
        rng_key: key of the demonstrations (default ``key(0)``); :math:`\\theta^*` is stated, not
            drawn.
        map_name: ``"4x4"`` (16 states) or ``"8x8"`` (64 states).
        is_slippery: Gymnasium's slippery dynamics (intended and perpendicular moves, 1/3 each).
        horizon: decisions per trajectory ``T`` (default :data:`HORIZONS` of the map); also the
            environment's ``TimeLimit``.
        num_demos: demonstrations collected through ``env.step`` (0: none).
        model: the inference likelihood (``"causal"``, ``"trajectory"``, ``"trajectory_global"``);
            the demonstrations come from the causal policy whatever it is.
        prior_scale: prior standard deviation of :math:`\\theta` (default 100 = the largest
            :math:`|\\theta^*_k|`).
        true_params: override of :math:`\\theta^*`, ``{"theta": (3,)}`` or a ``(3,)`` array in
            the order of :data:`FEATURE_NAMES` (default :data:`TRUE_THETA`).
        sparse: build the MDP in sparse successor form.

    Returns:
        A :class:`~ebm_ppl.problems.Problem` named ``"frozenlake"`` with ``discount = 1``;
        ``mdp.features`` and ``energy_model.features`` are the ``(S, 4, 3)`` features.

    Raises:
        ValueError: an option out of its range (naming it, what is expected and what came).
    """
    check_choice("map_name", map_name, tuple(GRID_SHAPES))
    if not isinstance(is_slippery, (bool, np.bool_)):
        raise ValueError(f"`is_slippery` must be True or False; got {is_slippery!r}.")
    horizon = HORIZONS[map_name] if horizon is None else horizon
    return toy_text_problem(
        "frozenlake",
        FROZENLAKE_ID,
        rng_key,
        features_fn=_features,
        horizon=horizon,
        num_demos=num_demos,
        model=model,
        prior_scale=prior_scale,
        true_params=true_params,
        default_params=TRUE_THETA,
        sparse=sparse,
        grid_shape=GRID_SHAPES[map_name],
        map_name=map_name,
        is_slippery=bool(is_slippery),
    )
