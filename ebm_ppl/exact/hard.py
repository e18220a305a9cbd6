r"""Hard (non-entropy) discounted infinite-horizon control: policy evaluation and iteration.

The Bayesian-IRL likelihood of [BIRL] (THEORY §7.5) needs the **hard** optimal Q-function of the
stationary discounted MDP with reward :math:`R` (``mdp.horizon`` is ignored here):

.. math::

    Q^\pi(s,a) = \bar r(s,a) + \gamma\sum_{s'}P(s'\mid s,a)V^\pi(s'),\qquad
    V^\pi(s) = \sum_a\pi(a\mid s)Q^\pi(s,a),\qquad
    Q^*(s,a) = \bar r(s,a) + \gamma\sum_{s'}P(s'\mid s,a)\max_b Q^*(s',b),

with :math:`\bar r(s,a) = r(s,a) + \sum_{s'}P(s'\mid s,a)r(s,a,s')`. Terminal states are absorbing
and masked (THEORY §0.4): no reward is collected there and their value is 0, so
:math:`Q(s,\cdot) = 0` at a terminal state.

* :func:`policy_evaluation` solves the linear system :math:`(I-\gamma P_\pi)V^\pi = r_\pi` exactly
  (a dense ``(S, S)`` solve; :math:`P_\pi` is built from the successor lists, so sparse MDPs work
  too). It is differentiable in the reward by ordinary autodiff.
* :func:`policy_iteration` alternates evaluation and greedy improvement in a ``lax.while_loop``
  until the policy is stable; it can be warm-started from any policy (PolicyWalk keeps the current
  policy and re-runs policy iteration from it). Its Q-values carry a custom JVP: :math:`Q^*` is
  piecewise linear in the reward, and away from ties its derivative is that of :math:`Q^{\pi^*}`
  at the optimal policy held fixed, which is what the JVP returns (reverse mode works too). No
  gradient flows to the dynamics or to :math:`\gamma`.

These are the infinite-horizon, hard counterparts of :func:`~ebm_ppl.exact.infinite.
soft_value_iteration`; the finite-horizon hard policy of the EVD metric stays in
:func:`ebm_ppl.metrics.hard_optimal_policy`.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl._validation import check_probabilities, is_concrete
from ebm_ppl.exact.tabular import _expect, _prepare, _probs, _zero_cotangent
from ebm_ppl.spaces.tabular import TabularMDP

__all__ = ["PolicyIteration", "policy_evaluation", "policy_iteration", "hard_q_values"]


class PolicyIteration(NamedTuple):
    """Output of :func:`policy_iteration`.

    Attributes:
        policy: ``(S,)`` int32 greedy optimal policy, ties (within the tolerance) to the lowest
            action; action 0 at terminal states, where every action has value 0.
        q_values: ``(S, A)`` :math:`Q^*` (exactly :math:`Q^\\pi` of the last evaluated policy,
            which is optimal unless ``num_iterations`` reached ``max_iterations``).
        num_iterations: int32 number of policy evaluations (1 when the start policy was already
            optimal).
    """

    policy: jax.Array
    q_values: jax.Array
    num_iterations: jax.Array


def _check_discount(discount) -> float:
    if isinstance(discount, jax.core.Tracer):
        raise TypeError("`discount` must be a static Python float, not a traced value.")
    if isinstance(discount, bool) or not 0.0 < float(discount) < 1.0:
        raise ValueError(
            f"`discount` must be a float in (0, 1) for the infinite horizon; got {discount!r}."
        )
    return float(discount)


def _check_mdp(mdp) -> None:
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"`mdp` must be a TabularMDP; got {type(mdp).__name__}.")


def _policy_matrix(mdp: TabularMDP, policy: jax.Array) -> jax.Array:
    """Dense ``(S, S)`` :math:`P_\\pi(s, s') = \\sum_a\\pi(a|s)P(s'|s,a)` in either MDP form."""
    if not mdp.is_sparse:
        return jnp.einsum("sa,san->sn", policy, mdp.transitions)
    weights = jnp.sum(mdp.next_probs * policy[None], axis=-1)  # (U, S)
    num_states = mdp.num_states
    rows = jnp.broadcast_to(jnp.arange(num_states)[None, :], weights.shape)
    return jnp.zeros((num_states, num_states), weights.dtype).at[rows, mdp.next_states].add(weights)


def _evaluate(mdp: TabularMDP, r_sa: jax.Array, policy: jax.Array, discount) -> jax.Array:
    """``Q^pi`` ``(S, A)`` for a stochastic ``(S, A)`` policy; linear in ``r_sa``."""
    live = ~mdp.terminal
    policy = policy.astype(r_sa.dtype)
    transition = jnp.where(live[:, None], _policy_matrix(mdp, policy), 0)
    system = jnp.eye(mdp.num_states, dtype=r_sa.dtype) - discount * transition
    r_pi = jnp.where(live, jnp.sum(policy * r_sa, axis=-1), 0)
    values = jnp.linalg.solve(system, r_pi)
    return r_sa + discount * _expect(mdp, _probs(mdp), values)


def _tolerance(q_values: jax.Array, discount: float, tol) -> jax.Array:
    """Tie tolerance: a few ulps of the Q scale, times the conditioning ``~1/(1 - gamma)``."""
    if tol is not None:
        return jnp.asarray(tol, q_values.dtype)
    eps = jnp.finfo(q_values.dtype).eps
    return 32 * eps * (1 + jnp.max(jnp.abs(q_values))) / (1 - discount)


def _greedy(q_values: jax.Array, current: jax.Array | None, tol: jax.Array) -> jax.Array:
    """Greedy policy: keep ``current`` where it is within ``tol`` of the best, else the lowest
    action within ``tol`` of the best (so ties go to the lowest action and round-off cannot make
    the improvement step cycle)."""
    near = q_values >= jnp.max(q_values, axis=-1, keepdims=True) - tol
    lowest = jnp.argmax(near, axis=-1).astype(jnp.int32)
    if current is None:
        return lowest
    keep = jnp.take_along_axis(near, current[:, None], axis=-1)[:, 0]
    return jnp.where(keep, current, lowest)


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _optimal(config, mdp, r_sa, init_policy):
    discount, tol, max_iterations = config

    def cond(carry):
        _, _, count, stable = carry
        return ~stable & (count < max_iterations)

    def body(carry):
        policy, _, count, _ = carry
        q_values = _evaluate(mdp, r_sa, jax.nn.one_hot(policy, mdp.num_actions), discount)
        improved = _greedy(q_values, policy, _tolerance(q_values, discount, tol))
        return improved, q_values, count + 1, jnp.all(improved == policy)

    start = (
        init_policy,
        jnp.zeros_like(r_sa),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), bool),
    )
    _, q_values, count, _ = jax.lax.while_loop(cond, body, start)
    policy = _greedy(q_values, None, _tolerance(q_values, discount, tol))
    return policy, q_values, count


@_optimal.defjvp
def _optimal_jvp(config, primals, tangents):
    mdp, r_sa, init_policy = primals
    _, r_dot, _ = tangents
    policy, q_values, count = _optimal(config, mdp, r_sa, init_policy)
    # Q* = Q^{pi*} locally (pi* fixed away from ties), and Q^pi is linear in the reward.
    q_dot = _evaluate(mdp, r_dot, jax.nn.one_hot(policy, mdp.num_actions), config[0])
    return (policy, q_values, count), (
        _zero_cotangent(policy),
        q_dot,
        _zero_cotangent(count),
    )


# compiled once per shape and setting, so eager calls do not re-trace the loop every time
_optimal_jit = jax.jit(_optimal, static_argnums=(0,))


def policy_evaluation(mdp: TabularMDP, reward, policy, *, discount: float) -> jax.Array:
    r"""Exact :math:`Q^\pi` of a stationary policy by one linear solve.

    Solves :math:`(I - \gamma P_\pi)V^\pi = r_\pi` with :math:`P_\pi(s,s') =
    \sum_a\pi(a|s)P(s'|s,a)` and :math:`r_\pi(s) = \sum_a\pi(a|s)\bar r(s,a)`, the rows of
    terminal states replaced by :math:`V(s) = 0` (absorbing, no reward), and returns
    :math:`Q^\pi = \bar r + \gamma P V^\pi`. Cost :math:`O(S^3)`; memory :math:`O(S^2)` even for a
    sparse MDP.

    Args:
        mdp: the MDP, dense or sparse (``mdp.horizon`` is ignored).
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)`` (the last through its expectation
            :math:`\bar r`).
        policy: ``(S,)`` int deterministic policy, or ``(S, A)`` action probabilities (rows of
            terminal states are ignored).
        discount: :math:`\gamma \in (0, 1)`, a static float.

    Returns:
        ``(S, A)`` :math:`Q^\pi` in the reward's floating dtype (0 at terminal states);
        differentiable in ``reward`` (and in a stochastic ``policy``) by ordinary autodiff.

    Raises:
        ValueError: bad ``discount`` or ``policy`` shape, values or range.
        TypeError: ``mdp`` is not a :class:`TabularMDP`, or ``discount`` is traced.

    References:
        THEORY.md §7.5, §0.4.
    """
    _check_mdp(mdp)
    discount = _check_discount(discount)
    r_sa, _ = _prepare(mdp, reward, "causal")
    policy = _policy_probabilities(mdp, policy, r_sa.dtype)
    return _evaluate(mdp, r_sa, policy, discount)


def _policy_probabilities(mdp: TabularMDP, policy, dtype) -> jax.Array:
    policy = jnp.asarray(policy)
    num_states, num_actions = mdp.num_states, mdp.num_actions
    if policy.shape == (num_states,) and jnp.issubdtype(policy.dtype, jnp.integer):
        if is_concrete(policy):
            bad = (np.asarray(policy) < 0) | (np.asarray(policy) >= num_actions)
            if bad.any():
                index = int(np.argmax(bad))
                raise ValueError(
                    f"`policy` must hold actions in [0, {num_actions}); got "
                    f"{int(np.asarray(policy)[index])} at state {index}."
                )
        return jax.nn.one_hot(policy, num_actions, dtype=dtype)
    if policy.shape == (num_states, num_actions) and jnp.issubdtype(policy.dtype, jnp.floating):
        if is_concrete(policy, mdp.terminal):
            live = ~np.asarray(mdp.terminal)
            check_probabilities("policy", np.asarray(policy)[live], axis=-1)
        return policy.astype(dtype)
    raise ValueError(
        f"`policy` must be an int array of shape (S,) = ({num_states},) or a float array of shape "
        f"(S, A) = ({num_states}, {num_actions}); got shape {policy.shape} and dtype "
        f"{policy.dtype}."
    )


def policy_iteration(
    mdp: TabularMDP,
    reward,
    *,
    discount: float,
    init_policy=None,
    max_iterations: int = 1000,
    tol: float | None = None,
) -> PolicyIteration:
    r"""Hard optimal policy and :math:`Q^*` of the discounted MDP by policy iteration.

    From :math:`\pi_0` (``init_policy``; default greedy in :math:`\bar r`), repeat: evaluate
    :math:`Q^{\pi_k}` exactly (:func:`policy_evaluation`), then improve greedily,
    :math:`\pi_{k+1}(s)\in\arg\max_a Q^{\pi_k}(s,a)`, keeping :math:`\pi_k(s)` whenever it is
    still within ``tol`` of the maximum; stop when the policy is stable. A stable policy is
    optimal (Howard's policy-improvement theorem), and the loop ends after finitely many steps
    because each change improves the value. Warm-starting from a policy that is already optimal
    costs one evaluation. The returned policy breaks ties (within ``tol``) toward the lowest
    action, whatever the start.

    Runs in a ``lax.while_loop`` (jit- and vmap-safe). ``q_values`` is differentiable in the
    reward through a custom JVP (the derivative of :math:`Q^{\pi^*}` with :math:`\pi^*` fixed:
    exact away from ties, where :math:`Q^*` has a kink); no gradient flows to the dynamics.

    Args:
        mdp: the MDP, dense or sparse (``mdp.horizon`` is ignored).
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        discount: :math:`\gamma \in (0, 1)`, a static float.
        init_policy: optional ``(S,)`` int start policy (may be traced).
        max_iterations: cap on evaluations; compare ``num_iterations`` with it.
        tol: tie tolerance on Q-values (default: :math:`32\,\epsilon\,(1 + \max|Q|)/(1-\gamma)`,
            a few round-off units of the solve).

    Returns:
        :class:`PolicyIteration` ``(policy, q_values, num_iterations)``.

    References:
        THEORY.md §7.5 ([BIRL]'s PolicyWalk re-runs policy iteration from the current policy).
    """
    _check_mdp(mdp)
    discount = _check_discount(discount)
    if isinstance(max_iterations, bool) or int(max_iterations) < 1:
        raise ValueError(f"`max_iterations` must be an int >= 1; got {max_iterations!r}.")
    if tol is not None and not float(tol) >= 0:
        raise ValueError(f"`tol` must be a float >= 0 or None; got {tol!r}.")
    r_sa, _ = _prepare(mdp, reward, "causal")
    if init_policy is None:
        init_policy = _greedy(r_sa, None, _tolerance(r_sa, discount, tol))
    else:
        init_policy = jnp.asarray(init_policy)
        if init_policy.shape != (mdp.num_states,) or not jnp.issubdtype(
            init_policy.dtype, jnp.integer
        ):
            raise ValueError(
                f"`init_policy` must be an int array of shape (S,) = ({mdp.num_states},); got "
                f"shape {init_policy.shape} and dtype {init_policy.dtype}."
            )
        if is_concrete(init_policy):
            bad = (np.asarray(init_policy) < 0) | (np.asarray(init_policy) >= mdp.num_actions)
            if bad.any():
                raise ValueError(
                    f"`init_policy` must hold actions in [0, {mdp.num_actions}); got "
                    f"{np.asarray(init_policy)[bad][0]}."
                )
        init_policy = init_policy.astype(jnp.int32)
    config = (discount, None if tol is None else float(tol), int(max_iterations))
    policy, q_values, count = _optimal_jit(config, mdp, r_sa, init_policy)
    return PolicyIteration(policy=policy, q_values=q_values, num_iterations=count)


def hard_q_values(mdp: TabularMDP, reward, *, discount: float) -> jax.Array:
    """:math:`Q^*` ``(S, A)`` of the discounted MDP (``policy_iteration(...).q_values``)."""
    return policy_iteration(mdp, reward, discount=discount).q_values
