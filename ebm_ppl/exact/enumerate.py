"""Brute-force enumeration of every trajectory of a tiny MDP (the test oracle of THEORY §8.2).

NumPy on purpose: this is the independent reference the JAX recursions are checked against.
Only feasible trajectories (probability > 0 under the dynamics) are listed; terminated ones carry
``-1`` rows as in the observed-array encoding. Keep ``|S|^(T+1) |A|^T`` below about ``10^6``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ebm_ppl.spaces.tabular import PAD, TabularMDP

__all__ = ["Enumeration", "enumerate_trajectories", "enumerated_log_probs", "returns"]


class Enumeration(NamedTuple):
    """All feasible trajectories.

    Attributes:
        observed: ``(M, T + 1, 2)`` int arrays.
        log_base: ``(M,)`` :math:`\\log\\rho_0(s_0) + \\sum_t \\log P(s_{t+1}|s_t,a_t)`; the
            returns under a reward come from :func:`returns`.
    """

    observed: np.ndarray
    log_base: np.ndarray


def enumerate_trajectories(mdp: TabularMDP, *, max_trajectories: int = 2_000_000) -> Enumeration:
    """List every trajectory with positive probability under ``mdp``'s dynamics and ``rho_0``."""
    transitions = np.asarray(mdp.to_dense().transitions, dtype=np.float64)
    rho = np.asarray(mdp.initial_dist, dtype=np.float64)
    terminal = np.asarray(mdp.terminal)
    num_states, num_actions, _ = transitions.shape
    horizon = mdp.horizon
    starts = np.flatnonzero(rho > 0)
    states = starts[:, None]
    actions = np.zeros((starts.size, 0), dtype=np.int64)
    log_base = np.log(rho[starts])
    for t in range(horizon):
        current = states[:, -1]
        done = (current == PAD) | terminal[np.maximum(current, 0)]
        # finished rows: pad
        fin_states = np.concatenate([states[done], np.full((done.sum(), 1), PAD)], axis=1)
        fin_actions = np.concatenate([actions[done], np.full((done.sum(), 1), PAD)], axis=1)
        fin_base = log_base[done]
        live = ~done
        rows, acts, nexts = np.nonzero(transitions[current[live]] > 0)
        live_idx = np.flatnonzero(live)[rows]
        new_states = np.concatenate([states[live_idx], nexts[:, None]], axis=1)
        new_actions = np.concatenate([actions[live_idx], acts[:, None]], axis=1)
        new_base = log_base[live_idx] + np.log(transitions[states[live_idx, -1], acts, nexts])
        states = np.concatenate([fin_states, new_states])
        actions = np.concatenate([fin_actions, new_actions])
        log_base = np.concatenate([fin_base, new_base])
        if states.shape[0] > max_trajectories:
            raise ValueError(
                f"enumeration exceeds `max_trajectories` = {max_trajectories} at step {t}; "
                "use a smaller MDP or horizon."
            )
    observed = np.stack(
        [states, np.concatenate([actions, np.full((states.shape[0], 1), PAD)], axis=1)], axis=-1
    )
    # a trajectory that reached a terminal state at step k has states[k] = s_k and actions[k] = -1;
    # the expansion above padded the *next* state, so states after k are already -1.
    return Enumeration(observed=observed.astype(np.int64), log_base=log_base)


def returns(observed: np.ndarray, reward: np.ndarray, terminal: np.ndarray) -> np.ndarray:
    """:math:`R(\\tau)` by explicit loops over steps (independent of the JAX code)."""
    reward = np.asarray(reward, dtype=np.float64)
    total = np.zeros(observed.shape[0])
    for t in range(observed.shape[1] - 1):
        s, a, s_next = observed[:, t, 0], observed[:, t, 1], observed[:, t + 1, 0]
        take = (a >= 0) & ~terminal[np.maximum(s, 0)]
        s, a, s_next = np.maximum(s, 0), np.maximum(a, 0), np.maximum(s_next, 0)
        if reward.ndim == 1:
            step = reward[s]
        elif reward.ndim == 2:
            step = reward[s, a]
        else:
            step = reward[s, a, s_next]
        total += np.where(take, step, 0.0)
    return total


def enumerated_log_probs(
    mdp: TabularMDP, reward, model: str, enumeration: Enumeration | None = None
):
    """Trajectory-level log-probabilities and log Z by enumeration (NumPy).

    Returns:
        ``(enumeration, log_probs (M,), log_z)`` where ``log_z`` is ``(S,)`` per start state
        (``-inf`` where ``rho_0 = 0``) for ``"trajectory"`` and a scalar for
        ``"trajectory_global"``.
    """
    if enumeration is None:
        enumeration = enumerate_trajectories(mdp)
    terminal = np.asarray(mdp.terminal)
    rho = np.asarray(mdp.initial_dist, dtype=np.float64)
    total = returns(enumeration.observed, np.asarray(reward), terminal)
    log_weight = enumeration.log_base + total
    starts = enumeration.observed[:, 0, 0]
    if model == "trajectory":
        log_z = np.full(rho.shape, -np.inf)
        for s in np.unique(starts):
            sel = starts == s
            log_z[s] = _logsumexp(log_weight[sel] - np.log(rho[s]))
        return enumeration, log_weight - log_z[starts], log_z
    if model == "trajectory_global":
        log_z = _logsumexp(log_weight)
        return enumeration, log_weight - log_z, log_z
    raise ValueError(f"`model` must be 'trajectory' or 'trajectory_global'; got {model!r}.")


def _logsumexp(x: np.ndarray) -> float:
    top = np.max(x)
    return float(top + np.log(np.sum(np.exp(x - top))))
