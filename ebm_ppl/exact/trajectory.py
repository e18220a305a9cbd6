r"""Per-trajectory quantities on the observed-array encoding, and exact log-probabilities.

A trajectory is the plain int array of shape ``(T + 1, 2)`` of :mod:`ebm_ppl.spaces.tabular`
(``-1`` after termination). Everything here is JAX (jit/vmap-safe) and masks the steps after
termination: they add no reward, no entropy term and no dynamics factor (THEORY §0.4).

Log-probabilities are under counting measure and include :math:`\log\rho_0(s_0)` and
:math:`\sum_t\log P(s_{t+1}\mid s_t,a_t)` (DESIGN §3):

.. math::

    \log p^{\mathrm{causal}}(\tau) = \log b(\tau) + \sum_{t<L}\log\pi_t(a_t\mid s_t),\qquad
    \log p^{\mathrm{traj}}(\tau) = \log b(\tau) + R(\tau) - \log Z(s_0),\qquad
    \log p^{\mathrm{global}}(\tau) = \log b(\tau) + R(\tau) - \log Z,

with :math:`b(\tau) = \rho_0(s_0)\prod_{t<L}P(s_{t+1}\mid s_t,a_t)` and ``L`` the length.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ebm_ppl.exact.tabular import reward_table, safe_log, soft_bellman
from ebm_ppl.spaces.tabular import TabularMDP

__all__ = [
    "encoding_is_valid",
    "steps",
    "log_base_measure",
    "trajectory_return",
    "sum_log_policy",
    "causal_log_prob",
]


def steps(observed):
    """Decode one observed array ``(T + 1, 2)`` into per-step indices.

    Returns:
        ``(states, actions, next_states, mask)``, each ``(T,)``; padding indices are clipped to 0
        and ``mask`` is ``True`` on the steps that were taken.
    """
    observed = jnp.asarray(observed, dtype=jnp.int32)
    states = observed[:-1, 0]
    actions = observed[:-1, 1]
    next_states = observed[1:, 0]
    mask = actions >= 0
    clip = lambda x: jnp.maximum(x, 0)  # noqa: E731
    return clip(states), clip(actions), clip(next_states), mask


def encoding_is_valid(mdp: TabularMDP, observed) -> jax.Array:
    """Whether one observed array is a well-formed trajectory of ``mdp`` (jit-safe, no raising).

    Checks what indexing would otherwise silently clamp: states and actions in range, an action
    of ``-1`` only at a terminal state or at row ``T``, and ``-1`` rows only after termination.
    Transition probabilities are not checked here (an impossible step already has log P = -inf).
    """
    observed = jnp.asarray(observed, dtype=jnp.int32)
    states, actions = observed[:, 0], observed[:-1, 1]
    alive = jnp.concatenate([jnp.ones((1,), bool), actions >= 0])  # rows that carry a state
    state_ok = jnp.where(alive, (states >= 0) & (states < mdp.num_states), states == -1)
    current = jnp.clip(states[:-1], 0, mdp.num_states - 1)
    stops = alive[:-1] & (actions < 0)  # a live row without an action must be terminal
    action_ok = jnp.where(stops, mdp.terminal[current], ~alive[:-1] | (actions < mdp.num_actions))
    after_ok = jnp.where(alive[:-1], True, actions == -1)
    return jnp.all(state_ok) & jnp.all(action_ok) & jnp.all(after_ok) & (observed[-1, 1] == -1)


def log_base_measure(mdp: TabularMDP, observed) -> jax.Array:
    """:math:`\\log\\rho_0(s_0) + \\sum_{t<L}\\log P(s_{t+1}\\mid s_t, a_t)` for one trajectory.

    ``-inf`` for an array that is not a well-formed trajectory (see :func:`encoding_is_valid`).
    """
    states, actions, next_states, mask = steps(observed)
    start = jnp.maximum(jnp.asarray(observed)[0, 0], 0)
    log_p = safe_log(mdp.transition_prob(states, actions, next_states))
    total = safe_log(mdp.initial_dist[start]) + jnp.sum(jnp.where(mask, log_p, 0))
    return jnp.where(encoding_is_valid(mdp, observed), total, -jnp.inf)


def trajectory_return(mdp: TabularMDP, reward, observed, discount: float = 1.0) -> jax.Array:
    """:math:`R(\\tau) = \\sum_{t<L}\\gamma^t r(s_t, a_t, s_{t+1})` for one trajectory.

    ``reward`` may be ``(S,)``, ``(S, A)`` or ``(S, A, S)`` (terminal rows are masked).
    """
    states, actions, next_states, mask = steps(observed)
    reward = jnp.asarray(reward)
    r_sa, _ = reward_table(mdp, reward)
    per_step = r_sa[states, actions]
    if reward.ndim == 3:
        per_step = per_step + jnp.where(
            mdp.terminal[states], 0, reward[states, actions, next_states]
        )
    weights = discount ** jnp.arange(states.shape[0], dtype=per_step.dtype)
    return jnp.sum(jnp.where(mask, weights * per_step, 0))


def sum_log_policy(log_policy, observed) -> jax.Array:
    """:math:`\\sum_{t<L}\\log\\pi_t(a_t\\mid s_t)` for a ``(T, S, A)`` time-indexed log-policy."""
    states, actions, _, mask = steps(observed)
    terms = log_policy[jnp.arange(states.shape[0]), states, actions]
    return jnp.sum(jnp.where(mask, terms, 0))


def causal_log_prob(mdp: TabularMDP, reward, observed, discount: float = 1.0) -> jax.Array:
    """Exact log-probability of observed arrays ``(..., T + 1, 2)`` under the causal model."""
    log_policy = soft_bellman(mdp, reward, model="causal", discount=discount).log_policy
    return _map_batch(
        lambda obs: log_base_measure(mdp, obs) + sum_log_policy(log_policy, obs), observed
    )


def _map_batch(fn, observed):
    observed = jnp.asarray(observed, dtype=jnp.int32)
    flat = observed.reshape((-1,) + observed.shape[-2:])
    return jax.vmap(fn)(flat).reshape(observed.shape[:-2])
