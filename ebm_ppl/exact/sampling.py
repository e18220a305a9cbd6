r"""Exact trajectory sampling for every tabular model (THEORY §1.4).

After one backward pass, sample :math:`s_0`, then alternately :math:`a_t\sim\pi_t(\cdot\mid s_t)`
and :math:`s_{t+1}` from the model's next-state conditional: the true :math:`P` for the causal model
and for policy rollouts, the tilted
:math:`\tilde P_t \propto P\,e^{r(s,a,s') + W_{t+1}(s')}` for the
trajectory-level models. :math:`s_0\sim\rho_0` except for ``trajectory_global``
(:math:`\propto\rho_0 e^{W_0}`). Vectorised over samples with ``vmap``; time runs in ``lax.scan``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ebm_ppl._validation import check_finite
from ebm_ppl.exact.tabular import (
    check_model,
    reward_table,
    safe_log,
    soft_bellman,
    start_distribution,
    start_states,
)
from ebm_ppl.spaces.tabular import PAD, TabularMDP

__all__ = ["sample_trajectories", "rollout", "policy_rollout"]


def rollout(
    rng_key, mdp: TabularMDP, log_policy, start_dist, next_logits_fn, num_samples: int, starts=None
):
    """Roll a time-indexed policy through ``mdp`` and return observed arrays ``(N, T + 1, 2)``.

    Args:
        rng_key: JAX key.
        mdp: the MDP (dense or sparse).
        log_policy: ``(T, S, A)`` log-probabilities of actions.
        start_dist: ``(S,)`` start-state law.
        next_logits_fn: ``(t, s, a) -> (logits over candidates, candidate states)``; the next state
            is drawn among the candidates with those logits.
        num_samples: number of trajectories.
        starts: optional ``(num_samples,)`` start states, replacing the draws from ``start_dist``.
    """
    horizon = mdp.horizon
    key_start, key_steps = jax.random.split(rng_key)
    if starts is None:
        starts = jax.random.categorical(key_start, safe_log(start_dist), shape=(num_samples,))
    else:  # the default integer type, as categorical draws have (the scan carry must match)
        starts = jnp.asarray(starts).astype(jax.dtypes.canonicalize_dtype(jnp.int64))

    def one(state, key):
        def step(carry, inputs):
            state, done = carry
            t, step_key = inputs
            key_action, key_next = jax.random.split(step_key)
            stops = done | mdp.terminal[state]
            action = jax.random.categorical(key_action, log_policy[t, state])
            logits, candidates = next_logits_fn(t, state, action)
            next_state = candidates[jax.random.categorical(key_next, logits)]
            row = jnp.stack([jnp.where(done, PAD, state), jnp.where(stops, PAD, action)]).astype(
                jnp.int32
            )
            return (jnp.where(stops, state, next_state), stops), row

        keys = jax.random.split(key, horizon)
        (last, done), rows = jax.lax.scan(
            step, (state, jnp.zeros((), bool)), (jnp.arange(horizon), keys)
        )
        final = jnp.stack([jnp.where(done, PAD, last), PAD]).astype(jnp.int32)
        return jnp.concatenate([rows, final[None]], axis=0)

    return jax.vmap(one)(starts, jax.random.split(key_steps, num_samples))


def _next_state_logits(mdp: TabularMDP, r_next, values):
    """Next-state conditional ``(t, s, a) -> (logits, candidates)``, tilted by ``values``."""

    def fn(t, state, action):
        if mdp.is_sparse:
            candidates = mdp.next_states[:, state]
            logits = safe_log(mdp.next_probs[:, state, action])
            extra_r = None if r_next is None else r_next[:, state, action]
        else:
            candidates = jnp.arange(mdp.num_states)
            logits = safe_log(mdp.transitions[state, action])
            extra_r = None if r_next is None else r_next[state, action]
        if values is not None:
            logits = logits + values[t + 1][candidates]
            if extra_r is not None:
                logits = logits + extra_r
        return logits, candidates

    return fn


def sample_trajectories(
    rng_key,
    mdp: TabularMDP,
    reward,
    *,
    model: str = "causal",
    num_samples: int = 1,
    discount: float = 1.0,
    s0=None,
) -> jax.Array:
    """Draw exact samples from a MaxEnt trajectory model.

    Args:
        rng_key: JAX key.
        mdp: the MDP.
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        model: ``"causal"``, ``"trajectory"`` or ``"trajectory_global"``.
        num_samples: number of trajectories (ignored when ``s0`` is given).
        discount: causal only.
        s0: optional ``(n,)`` start states: one trajectory from each, drawn from the model's
            conditional law given :math:`s_0` (the same for both trajectory-level models).

    Returns:
        Observed arrays of shape ``(num_samples, T + 1, 2)`` (``(n, T + 1, 2)`` with ``s0``),
        int32.
    """
    check_model(model, discount)
    if int(num_samples) < 1:
        raise ValueError(f"`num_samples` must be an int >= 1; got {num_samples!r}.")
    reward = jnp.asarray(reward)
    check_finite("reward", reward)  # eagerly: inside the jitted core the reward is traced
    if s0 is not None:
        s0 = start_states(mdp, s0)
        num_samples = s0.shape[0]
    return _sample_jit(rng_key, mdp, reward, s0, model, int(num_samples), float(discount))


@partial(jax.jit, static_argnums=(4, 5, 6))
def _sample_jit(rng_key, mdp, reward, s0, model, num_samples, discount):
    """The sampler of :func:`sample_trajectories`, compiled once per shape and setting."""
    column = "causal" if model == "causal" else "trajectory"
    solution = soft_bellman(mdp, reward, model=column, discount=discount)
    if model == "causal":
        next_fn = _next_state_logits(mdp, None, None)
    else:
        _, r_next = reward_table(mdp, reward)
        next_fn = _next_state_logits(mdp, r_next, solution.values)
    start = start_distribution(mdp, reward, model=model)
    return rollout(rng_key, mdp, solution.log_policy, start, next_fn, num_samples, starts=s0)


def policy_rollout(
    rng_key, mdp: TabularMDP, log_policy, num_samples: int, starts=None
) -> jax.Array:
    r"""Roll a ``(T, S, A)`` (or stationary ``(S, A)``) log-policy through the true dynamics.

    ``starts`` (optional ``(num_samples,)``) fixes each trajectory's start state; otherwise
    :math:`s_0\sim\rho_0`.
    """
    log_policy = jnp.asarray(log_policy)
    if log_policy.ndim == 2:
        log_policy = jnp.broadcast_to(log_policy, (mdp.horizon,) + log_policy.shape)
    next_fn = _next_state_logits(mdp, None, None)
    return rollout(rng_key, mdp, log_policy, mdp.initial_dist, next_fn, num_samples, starts=starts)
