r"""Reward-recovery metrics for tabular MDPs: EPIC and expected value difference (THEORY §9).

* :func:`epic_distance` — the EPIC pseudometric of [EPIC]: the Pearson distance between
  canonically shaped rewards (:func:`canonicalize_reward`) over a coverage distribution of
  transitions. Invariant to potential shaping and to positive affine maps of either reward.
* :func:`expected_value_difference` — EVD ([GPIRL], [W15]): how much expected *true* return is lost
  by acting optimally for the learned reward instead of the true one.
* helpers: :func:`pearson_distance` (weighted, with the :math:`\tfrac12` of [EPIC]),
  :func:`hard_optimal_policy` (finite-horizon value iteration) and :func:`policy_value`
  (finite-horizon policy evaluation).

Conventions (THEORY §0.4, :mod:`ebm_ppl.spaces.tabular`): ``T = mdp.horizon`` decisions; value
arrays have ``T + 1`` rows with row ``T`` equal to 0; :math:`\gamma` multiplies the continuation
value; terminal (absorbing) states are masked — no reward is collected there and their value is 0
at every step. Rewards may have shape ``(S,)``, ``(S, A)`` or ``(S, A, S)``; in the value
recursions an ``(S, A, S)`` reward enters through its expectation
:math:`\bar r(s,a) = \sum_{s'} P(s'\mid s,a)\, r(s,a,s')`, as in the causal soft recursion.

Everything is JAX (``lax.scan`` over time, no Python loops over states or time) and works for dense
and sparse MDPs. Inputs are validated eagerly at the public boundary (shape checks also run under
``jit``; value checks only on concrete arrays). Pass ``discount`` and ``policy`` as static arguments
when jitting (``functools.partial`` or ``static_argnames``).

References:
    THEORY.md §9.1 (EPIC), §9.2 (EVD), §0.4 (conventions).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl._validation import check_choice, check_finite, is_concrete
from ebm_ppl.exact.tabular import _expect, _probs, reward_table, soft_bellman
from ebm_ppl.spaces.tabular import TabularMDP

__all__ = [
    "EVD_POLICIES",
    "canonicalize_reward",
    "epic_distance",
    "epic_distances",
    "expected_value_difference",
    "hard_optimal_policy",
    "pearson_distance",
    "policy_value",
]

EVD_POLICIES = ("hard", "soft")
"""Variants of :func:`expected_value_difference`."""

_FLAT_ULPS = 128.0
"""A vector counts as constant when its weighted standard deviation is at most
``_FLAT_ULPS * eps * scale`` (``scale`` the largest magnitude that entered its computation). The
canonicalisation sums four terms, each a mean over at most ``S * A`` entries, so rounding leaves a
few ulps of ``scale``; 128 ulps separates that from any variation the dtype can represent
(float64: ~3e-14 relative; float32: ~2e-5 relative)."""


# ---------------------------------------------------------------------- validation
def _check_mdp(mdp) -> None:
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"`mdp` must be a TabularMDP; got {type(mdp).__name__}.")


def _check_discount(discount) -> None:
    """``discount`` in (0, 1]; a traced value is accepted unchecked (it is only a multiplier)."""
    if isinstance(discount, jax.core.Tracer):
        return
    if isinstance(discount, bool) or np.ndim(discount) != 0:
        raise ValueError(f"`discount` must be a scalar in (0, 1]; got {discount!r}.")
    if not 0.0 < float(discount) <= 1.0:
        raise ValueError(f"`discount` must lie in (0, 1] in finite horizon; got {discount!r}.")


def _as_float(name: str, value, dtype) -> jax.Array:
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        if not (jnp.issubdtype(value.dtype, jnp.integer) or value.dtype == jnp.bool_):
            raise ValueError(f"`{name}` must be a real array; got dtype {value.dtype}.")
        value = value.astype(dtype)
    return value


def _check_reward(name: str, reward, mdp: TabularMDP) -> jax.Array:
    """Validate a reward of shape ``(S,)``, ``(S, A)`` or ``(S, A, S)`` and make it floating."""
    reward = _as_float(name, reward, mdp.dtype)
    num_states, num_actions = mdp.num_states, mdp.num_actions
    allowed = ((num_states,), (num_states, num_actions), (num_states, num_actions, num_states))
    if reward.shape not in allowed:
        raise ValueError(
            f"`{name}` must have shape (S,) = ({num_states},), (S, A) = ({num_states}, "
            f"{num_actions}) or (S, A, S) = ({num_states}, {num_actions}, {num_states}); got "
            f"shape {reward.shape}."
        )
    check_finite(name, reward)
    return reward


def _check_weights(name: str, weights, shape: tuple, description: str, dtype) -> jax.Array:
    weights = _as_float(name, weights, dtype)
    if weights.shape != shape:
        raise ValueError(f"`{name}` must have shape {description}; got shape {weights.shape}.")
    if is_concrete(weights):
        array = np.asarray(weights)
        check_finite(name, array)
        if (array < 0).any():
            index = tuple(int(i) for i in np.argwhere(array < 0)[0])
            raise ValueError(f"`{name}` must be >= 0; got {array[index]} at index {index}.")
        if not array.sum() > 0:
            raise ValueError(f"`{name}` must have positive total mass; got all zeros.")
    return weights


# ---------------------------------------------------------------------- Pearson distance
@jax.jit
def _pearson_core(x, y, weights, scale_x, scale_y) -> jax.Array:
    """Weighted Pearson distance with the degenerate-case convention of :func:`pearson_distance`.

    ``x`` and ``y`` are divided by their scales first (scale-free, no overflow); ``weights`` are
    normalised here.
    """
    dtype = jnp.result_type(x, y)
    weights = weights / jnp.sum(weights)
    x = x / jnp.where(scale_x > 0, scale_x, 1)
    y = y / jnp.where(scale_y > 0, scale_y, 1)
    dx = x - jnp.sum(weights * x)
    dy = y - jnp.sum(weights * y)
    std_x = jnp.sqrt(jnp.sum(weights * dx * dx))
    std_y = jnp.sqrt(jnp.sum(weights * dy * dy))
    tol = _FLAT_ULPS * jnp.finfo(dtype).eps
    flat_x, flat_y = std_x <= tol, std_y <= tol
    either = flat_x | flat_y
    # D = |u - v|_w / 2 for the standardised u, v: equal to sqrt((1 - rho) / 2), but without the
    # cancellation in 1 - rho that would turn rounding of order eps into a distance of order
    # sqrt(eps) for (shaping-)equivalent inputs.
    u = dx / jnp.where(either, 1, std_x)
    v = dy / jnp.where(either, 1, std_y)
    distance = jnp.clip(0.5 * jnp.sqrt(jnp.sum(weights * (u - v) ** 2)), 0, 1)
    distance = jnp.where(either, jnp.sqrt(0.5), distance)
    return jnp.where(flat_x & flat_y, 0, distance).astype(dtype)


def pearson_distance(x, y, weights=None) -> jax.Array:
    r"""Weighted Pearson distance :math:`D_\rho(X, Y) = \sqrt{(1 - \rho(X, Y))/2} \in [0, 1]`.

    With normalised weights :math:`w` (default uniform),

    .. math::

        \rho(X,Y) = \frac{\sum_i w_i (x_i-\bar x)(y_i-\bar y)}
        {\sqrt{\sum_i w_i (x_i-\bar x)^2}\sqrt{\sum_i w_i (y_i-\bar y)^2}},
        \qquad \bar x = \sum_i w_i x_i .

    The :math:`\tfrac12` is that of [EPIC] (the authors' code returns ``sqrt(0.5 * (1 - corr))``);
    some third-party ports omit it. :math:`D_\rho = \tfrac12\lVert u - v\rVert_w` for the
    standardised vectors :math:`u, v`, hence a pseudometric: 0 for perfectly correlated inputs,
    :math:`\sqrt{1/2}` for uncorrelated ones, 1 for anti-correlated ones.

    **Degenerate inputs.** A (weighted) constant vector has no correlation. Convention: if both are
    constant the distance is 0 (two constant vectors are equivalent); if exactly one is, we set
    :math:`\rho = 0` and return :math:`\sqrt{1/2}`. The result is never NaN and the triangle
    inequality still holds (constants are at distance 0 from each other and :math:`\sqrt{1/2}` from
    everything else, and :math:`D_\rho \le 1 \le 2\sqrt{1/2}`). "Constant" means a weighted standard
    deviation at most ``128 * eps * max|x|`` (over entries of positive weight), i.e. zero up to
    rounding. The result is clipped to ``[0, 1]`` against rounding.

    Args:
        x: array of any shape.
        y: array of the same shape.
        weights: optional non-negative array of the same shape with positive total (normalised
            here); default uniform.

    Returns:
        Scalar distance in ``[0, 1]``, in the floating dtype of the inputs. Jit-able.

    References:
        THEORY.md §9.1; [EPIC] §4.1.
    """
    dtype = jnp.result_type(float)
    x = _as_float("x", x, dtype)
    y = _as_float("y", y, dtype)
    if x.shape != y.shape:
        raise ValueError(f"`y` must have the shape of `x`, {x.shape}; got shape {y.shape}.")
    if x.size == 0:
        raise ValueError("`x` and `y` must not be empty.")
    check_finite("x", x)
    check_finite("y", y)
    if weights is None:
        weights = jnp.ones(x.shape, jnp.result_type(x, y))
    else:
        weights = _check_weights("weights", weights, x.shape, f"{x.shape} like `x`", x.dtype)
    return _pearson_kernel(x, y, weights)


@jax.jit
def _pearson_kernel(x, y, weights):
    support = weights > 0
    scale_x = jnp.max(jnp.where(support, jnp.abs(x), 0))
    scale_y = jnp.max(jnp.where(support, jnp.abs(y), 0))
    return _pearson_core(x, y, weights, scale_x, scale_y)


# ---------------------------------------------------------------------- EPIC
def _lift(reward: jax.Array, num_states: int, num_actions: int) -> jax.Array:
    """``r(s)`` or ``r(s, a)`` as ``R(s, a, s')`` of shape ``(S, A, S)``."""
    shape = (num_states, num_actions, num_states)
    if reward.ndim == 1:
        return jnp.broadcast_to(reward[:, None, None], shape)
    if reward.ndim == 2:
        return jnp.broadcast_to(reward[:, :, None], shape)
    return reward


def _canonicalize(lifted: jax.Array, discount) -> jax.Array:
    """``C(R)`` of a lifted reward, after removing the reference entry ``R[0, 0, 0]``.

    ``C`` kills constants exactly in exact arithmetic; subtracting one entry first makes it do so in
    floating point too (a constant reward canonicalises to exact zeros).
    """
    lifted = lifted - lifted[0, 0, 0]
    row_mean = jnp.mean(lifted, axis=(1, 2))  # E[R(s, A, S')], shape (S,)
    grand_mean = jnp.mean(row_mean)  # E[R(S, A, S')]
    return (
        lifted
        + discount * row_mean[None, None, :]
        - row_mean[:, None, None]
        - discount * grand_mean
    )


def _masked_lift(name, reward, mdp, mask_terminal):
    lifted = _lift(_check_reward(name, reward, mdp), mdp.num_states, mdp.num_actions)
    if mask_terminal:
        lifted = jnp.where(mdp.terminal[:, None, None], 0, lifted)
    return lifted


def canonicalize_reward(
    reward, mdp: TabularMDP, discount: float = 1.0, *, mask_terminal: bool = False
) -> jax.Array:
    r"""EPIC canonically shaped reward :math:`C(R)`, shape ``(S, A, S)`` (THEORY §9.1).

    .. math::

        C(R)(s,a,s') = R(s,a,s') + \mathbb E\big[\gamma R(s',A,S') - R(s,A,S')
        - \gamma R(S,A,S')\big],

    with :math:`S, S' \sim D_S` uniform over all states and :math:`A \sim D_A` uniform over all
    actions, independent. Expectations are exact sums over the table (no sampling). With
    :math:`m(s) = \mathbb E[R(s,A,S')]` this is :math:`R(s,a,s') + \gamma m(s') - m(s) -
    \gamma\,\mathbb E[m(S)]`. State rewards :math:`r(s)` and state-action rewards
    :math:`r(s,a)` are first lifted to :math:`R(s,a,s') = r(s)` or :math:`r(s,a)`; note that
    :math:`C(r(s))(s,a,s') = \gamma(r(s') - \mathbb E\,r(S))`.

    :math:`C` depends only on the state and action spaces, not on the dynamics, and satisfies
    :math:`C(R + \gamma\Phi(s') - \Phi(s) + c) = C(R)` for every potential :math:`\Phi` and
    constant :math:`c` (exactly, including at terminal states when ``mask_terminal=False``).

    Use :math:`\gamma = 1` in finite horizon (the default) and the problem's :math:`\gamma`
    otherwise. In finite horizon, potential shaping changes returns by
    :math:`\gamma^T\Phi(s_T) - \Phi(s_0)`, so two rewards with EPIC distance 0 need not have the
    same finite-horizon optimal policies; EPIC's equivalence is the shaping equivalence of [Ng99].

    Args:
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        mdp: the MDP (only its sizes and, with ``mask_terminal``, its terminal mask are used).
        discount: :math:`\gamma \in (0, 1]`.
        mask_terminal: if True, zero the reward on rows ``s`` that are terminal before
            canonicalising (rewards there are never collected, so rewards that differ only there
            become identical). Shaping invariance then holds only for shaping terms that vanish on
            terminal rows. Default False: the [EPIC] definition, a function of the reward alone.

    Returns:
        ``(S, A, S)`` array :math:`C(R)` in the reward's floating dtype.

    References:
        THEORY.md §9.1; [EPIC] Definition 4.1 and the authors' ``canonical_sample`` code.
    """
    _check_mdp(mdp)
    _check_discount(discount)
    return _canonicalize(_masked_lift("reward", reward, mdp, mask_terminal), discount)


def epic_distance(
    reward_a,
    reward_b,
    mdp: TabularMDP,
    discount: float = 1.0,
    *,
    coverage=None,
    mask_terminal: bool = False,
) -> jax.Array:
    r"""EPIC distance between two rewards on a tabular MDP (THEORY §9.1).

    .. math::

        D_{\mathrm{EPIC}}(R_A, R_B) = D_\rho\big(C(R_A)(S,A,S'),\ C(R_B)(S,A,S')\big),
        \qquad (S,A,S') \sim \mathcal D,

    with :math:`C` from :func:`canonicalize_reward` and :math:`D_\rho = \sqrt{(1-\rho)/2}` the
    weighted Pearson distance of :func:`pearson_distance` (with the :math:`\tfrac12`). A
    pseudometric on rewards, in ``[0, 1]``, invariant to potential shaping and positive affine maps
    of either argument; :math:`D(R, -R) = 1`. The Pearson correlation up to shaping is
    :math:`1 - 2D^2`.

    **Coverage** :math:`\mathcal D` (default): uniform over the possible transitions
    :math:`(s, a, s')` with :math:`P(s'\mid s,a) > 0` and :math:`s` not terminal. Transitions from
    terminal (masked, absorbing) states are excluded because no reward is ever collected there.
    Sparse MDPs are densified (the canonical reward is an ``(S, A, S)`` table anyway).

    **Degenerate rewards.** A reward that is shaping-equivalent to a constant (e.g. a constant
    reward: :math:`C(c) = 0`) has a constant canonical reward on the coverage, as may other rewards
    on a small coverage. Such a reward is at distance 0 from another such reward and
    :math:`\sqrt{1/2}` (:math:`\rho := 0`) from any other reward; never NaN (see
    :func:`pearson_distance`; the triangle inequality still holds). Jit-safe: no data-dependent
    error is raised. Constancy is judged relative to :math:`\max|R - R_{000}|`, the
    scale of the reward that entered the canonicalisation, so rounding noise in :math:`C(R)` does
    not count as signal.

    Args:
        reward_a: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        reward_b: ``(S,)``, ``(S, A)`` or ``(S, A, S)`` (shapes may differ from ``reward_a``).
        mdp: the MDP, dense or sparse.
        discount: :math:`\gamma \in (0, 1]` of the canonicalisation; 1 in finite horizon, the
            problem's :math:`\gamma` otherwise.
        coverage: optional ``(S, A, S)`` non-negative weights with positive total, replacing the
            default coverage distribution (used as given, normalised here).
        mask_terminal: passed to :func:`canonicalize_reward` for both rewards.

    Returns:
        Scalar in ``[0, 1]``. Jit-able with ``discount`` and ``mask_terminal`` static; not meant to
        be differentiated.

    Raises:
        ValueError: on bad shapes, non-finite rewards, a ``discount`` outside (0, 1], or an empty
            coverage (every state terminal).

    References:
        THEORY.md §9.1; [EPIC] §4.1.
    """
    _check_mdp(mdp)
    _check_discount(discount)
    lifted_a = _masked_lift("reward_a", reward_a, mdp, mask_terminal)
    lifted_b = _masked_lift("reward_b", reward_b, mdp, mask_terminal)
    dtype = jnp.result_type(lifted_a, lifted_b)
    coverage = _epic_coverage(mdp, coverage, dtype)
    return _epic_kernel(lifted_a, lifted_b, coverage, discount)


def epic_distances(
    reference, rewards, mdp: TabularMDP, discount: float = 1.0, *, coverage=None
) -> jax.Array:
    """:func:`epic_distance` from ``reference`` to each of a batch of ``rewards`` (e.g. draws).

    Args:
        reference: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        rewards: ``(B, *reward_shape)`` with one of those reward shapes.
        mdp, discount, coverage: as in :func:`epic_distance`.

    Returns:
        ``(B,)`` distances.
    """
    _check_mdp(mdp)
    _check_discount(discount)
    rewards = jnp.asarray(rewards)
    if rewards.ndim < 2:
        raise ValueError(
            f"`rewards` must have a leading batch axis, shape (B, *reward_shape); got "
            f"{rewards.shape}."
        )
    lifted_ref = _masked_lift("reference", reference, mdp, False)
    _check_reward("rewards[0]", rewards[0], mdp)
    check_finite("rewards", rewards)
    dtype = jnp.result_type(lifted_ref, rewards)
    coverage = _epic_coverage(mdp, coverage, dtype)
    lift = lambda r: _lift(r.astype(dtype), mdp.num_states, mdp.num_actions)
    kernel = lambda r: _epic_kernel(lifted_ref, lift(r), coverage, discount)
    return jax.lax.map(kernel, rewards, batch_size=256)


def _epic_coverage(mdp: TabularMDP, coverage, dtype) -> jax.Array:
    """The default coverage (possible transitions from live states) or the validated one."""
    num_states, num_actions = mdp.num_states, mdp.num_actions
    if coverage is None:
        transitions = mdp.to_dense().transitions
        coverage = ((transitions > 0) & ~mdp.terminal[:, None, None]).astype(dtype)
        if is_concrete(coverage) and not bool(np.asarray(coverage).any()):
            raise ValueError(
                "the default EPIC coverage is empty: every state of `mdp` is terminal. Pass "
                "`coverage` explicitly."
            )
        return coverage
    shape = (num_states, num_actions, num_states)
    return _check_weights("coverage", coverage, shape, f"(S, A, S) = {shape}", dtype).astype(dtype)


@jax.jit
def _epic_kernel(lifted_a, lifted_b, coverage, discount):
    scale_a = jnp.max(jnp.abs(lifted_a - lifted_a[0, 0, 0]))
    scale_b = jnp.max(jnp.abs(lifted_b - lifted_b[0, 0, 0]))
    canon_a = _canonicalize(lifted_a, discount)
    canon_b = _canonicalize(lifted_b, discount)
    return _pearson_core(canon_a, canon_b, coverage, scale_a, scale_b)


# ---------------------------------------------------------------------- values and policies
def _expected_reward(name: str, reward, mdp: TabularMDP) -> jax.Array:
    r"""``(S, A)`` :math:`\bar r(s,a) = r(s,a) + \sum_{s'} P(s'|s,a) r(s,a,s')`, terminal rows 0."""
    reward = _check_reward(name, reward, mdp)
    r_sa, r_next = reward_table(mdp, reward)
    if r_next is not None:
        r_sa = r_sa + jnp.sum(_probs(mdp) * r_next, axis=0 if mdp.is_sparse else -1)
    return r_sa


@jax.jit
def _hard_policy(mdp: TabularMDP, r_sa: jax.Array, discount) -> jax.Array:
    probs = _probs(mdp)

    def step(next_values, _):
        q_values = r_sa + discount * _expect(mdp, probs, next_values)
        best = jnp.argmax(q_values, axis=-1)  # first maximum: ties go to the lowest action
        values = jnp.where(mdp.terminal, 0, jnp.max(q_values, axis=-1))
        return values, best

    final = jnp.zeros((mdp.num_states,), r_sa.dtype)
    _, actions = jax.lax.scan(step, final, None, length=mdp.horizon, reverse=True)
    return jax.nn.one_hot(actions, mdp.num_actions, dtype=r_sa.dtype)


@jax.jit
def _policy_values(mdp: TabularMDP, r_sa: jax.Array, policy: jax.Array, discount) -> jax.Array:
    probs = _probs(mdp)

    def step(next_values, policy_t):
        q_values = r_sa + discount * _expect(mdp, probs, next_values)
        values = jnp.where(mdp.terminal, 0, jnp.sum(policy_t * q_values, axis=-1))
        return values, values

    final = jnp.zeros((mdp.num_states,), r_sa.dtype)
    _, values = jax.lax.scan(step, final, policy, reverse=True)
    return jnp.concatenate([values, final[None]], axis=0)


def hard_optimal_policy(mdp: TabularMDP, reward, discount: float = 1.0) -> jax.Array:
    r"""Time-indexed deterministic optimal policy of the finite-horizon MDP, one-hot ``(T, S, A)``.

    Backward value iteration for :math:`t = T-1, \dots, 0` from :math:`V^*_T = 0`:

    .. math::

        Q^*_t(s,a) = \bar r(s,a) + \gamma\sum_{s'}P(s'\mid s,a)V^*_{t+1}(s'),\qquad
        V^*_t(s) = \max_a Q^*_t(s,a),\qquad \pi^*_t(s) = \arg\max_a Q^*_t(s,a),

    with :math:`V^*_t = 0` on terminal states. Ties (exact floating-point equality) go to the lowest
    action index. At terminal states, where no action is taken, the policy is action 0.

    Args:
        mdp: the MDP, dense or sparse.
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)`` (the last through its expectation
            :math:`\bar r`).
        discount: :math:`\gamma \in (0, 1]`.

    Returns:
        ``(T, S, A)`` one-hot array in the reward's floating dtype; row ``t`` is the decision
        rule at step ``t``.

    References:
        THEORY.md §9.2.
    """
    _check_mdp(mdp)
    _check_discount(discount)
    return _hard_policy(mdp, _expected_reward("reward", reward, mdp), discount)


def policy_value(mdp: TabularMDP, reward, policy, discount: float = 1.0) -> jax.Array:
    r"""Expected finite-horizon return of a Markov policy, ``(T + 1, S)`` (policy evaluation).

    For :math:`t = T-1, \dots, 0` from :math:`V^\pi_T = 0`:

    .. math::

        V^\pi_t(s) = \sum_a \pi_t(a\mid s)\Big[\bar r(s,a)
        + \gamma\sum_{s'}P(s'\mid s,a)V^\pi_{t+1}(s')\Big]
        = \mathbb E_\pi\Big[\sum_{k=t}^{T-1}\gamma^{k-t} r(s_k,a_k,s_{k+1})\,\Big|\, s_t = s\Big],

    with :math:`V^\pi_t = 0` on terminal states (the trajectory stops there: no reward afterwards).
    This is the plain expected return: no entropy term, even for soft policies.

    Args:
        mdp: the MDP, dense or sparse.
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        policy: ``(T, S, A)`` time-indexed :math:`\pi_t(a\mid s)`, or ``(S, A)`` stationary; rows of
            non-terminal states must be probability vectors (terminal rows are ignored).
        discount: :math:`\gamma \in (0, 1]`.

    Returns:
        ``(T + 1, S)`` values :math:`V^\pi_t(s)`; row ``T`` and terminal columns are 0.

    References:
        THEORY.md §9.2, §0.4.
    """
    _check_mdp(mdp)
    _check_discount(discount)
    r_sa = _expected_reward("reward", reward, mdp)
    policy = _check_policy(policy, mdp, r_sa.dtype)
    return _policy_values(mdp, r_sa, policy, discount)


def _check_policy(policy, mdp: TabularMDP, dtype) -> jax.Array:
    policy = _as_float("policy", policy, dtype)
    horizon, num_states, num_actions = mdp.horizon, mdp.num_states, mdp.num_actions
    if policy.shape == (num_states, num_actions):
        policy = jnp.broadcast_to(policy, (horizon, num_states, num_actions))
    if policy.shape != (horizon, num_states, num_actions):
        raise ValueError(
            f"`policy` must have shape (T, S, A) = ({horizon}, {num_states}, {num_actions}) or "
            f"(S, A) = ({num_states}, {num_actions}); got shape {policy.shape}."
        )
    if is_concrete(policy, mdp.terminal):
        array = np.asarray(policy)
        live = ~np.asarray(mdp.terminal)
        check_finite("policy", array[:, live])
        negative = (array < 0) & live[None, :, None]
        if negative.any():
            t, s, a = (int(i) for i in np.argwhere(negative)[0])
            raise ValueError(
                f"`policy` must hold probabilities >= 0; got {array[t, s, a]} at (t, s, a) = "
                f"({t}, {s}, {a})."
            )
        atol = 1e-5 if array.dtype == np.float32 else 1e-9
        bad = (np.abs(array.sum(-1) - 1) > atol) & live[None, :]
        if bad.any():
            t, s = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"`policy`[{t}, {s}] (a non-terminal state) must sum to 1 over actions "
                f"(tolerance {atol:g}); it sums to {array[t, s].sum()!r}."
            )
    return policy


# ---------------------------------------------------------------------- EVD
def expected_value_difference(
    true_reward,
    learned_reward,
    mdp: TabularMDP,
    *,
    policy: str = "hard",
    discount: float = 1.0,
) -> jax.Array:
    r"""Expected value difference of a learned reward under the true reward (THEORY §9.2).

    .. math::

        \mathrm{EVD}(\hat r) = \mathbb E_{s_0\sim\rho_0}\big[V^{\pi^\star}_{r}(s_0)
        - V^{\hat\pi}_{r}(s_0)\big],

    where both values are **expected true returns** (:func:`policy_value` with the true reward
    :math:`r`: no entropy bonus) over the finite horizon ``T`` with discount :math:`\gamma`,
    terminal states masked (value 0, no reward), and :math:`\hat\pi` / :math:`\pi^\star` are
    optimal for the learned / true reward in the sense chosen by ``policy``:

    * ``"hard"`` (*hard EVD*, the [GPIRL]/[W15] metric): :math:`\hat\pi` and :math:`\pi^\star` are
      the time-indexed deterministic optimal policies of :func:`hard_optimal_policy` (ties to the
      lowest action). Since :math:`\pi^\star` is optimal for :math:`r`, :math:`\mathrm{EVD} \ge 0`
      (up to rounding, of order ``eps * |V|``, when :math:`\hat\pi` is a different but tied
      optimal policy); it is 0 when :math:`\hat r` is :math:`r` or a positive affine map of it
      (without terminal states: with them a constant shift changes which lengths are preferred).
    * ``"soft"`` (*soft EVD*): :math:`\hat\pi` and :math:`\pi^\star` are the maximum causal entropy
      (soft-optimal) policies of :func:`ebm_ppl.exact.tabular.soft_bellman` with
      ``model="causal"``, i.e. :math:`\pi^\star` is the MCE expert of the true reward. It is 0 for
      :math:`\hat r = r`, but it is **not** invariant to scaling :math:`\hat r` (the scale is an
      inverse temperature) and it can be negative (a sharper :math:`\hat\pi` may beat the soft
      expert on expected return).

    "Training" vs "transfer" EVD is the choice of ``mdp``: pass the MDP the reward was learned on,
    or a different one with the same state and action spaces.

    Args:
        true_reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)`` true reward :math:`r`.
        learned_reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)`` learned reward :math:`\hat r`.
        mdp: the evaluation MDP, dense or sparse (its ``initial_dist`` is :math:`\rho_0`).
        policy: ``"hard"`` or ``"soft"`` (keyword only; static under ``jit``).
        discount: :math:`\gamma \in (0, 1]` (static under ``jit`` for ``"soft"``).

    Returns:
        Scalar EVD in the rewards' floating dtype.

    References:
        THEORY.md §9.2; [GPIRL]; [W15]; [Z10] for the soft policy.
    """
    _check_mdp(mdp)
    check_choice("policy", policy, EVD_POLICIES)
    _check_discount(discount)
    r_true = _expected_reward("true_reward", true_reward, mdp)
    if policy == "hard":
        r_learned = _expected_reward("learned_reward", learned_reward, mdp)
        return _hard_evd(mdp, r_true, r_learned, discount)
    true_reward = _check_reward("true_reward", true_reward, mdp)
    learned_reward = _check_reward("learned_reward", learned_reward, mdp)
    if isinstance(discount, jax.core.Tracer):
        raise TypeError("`discount` must be a static Python float for policy='soft'.")
    return _soft_evd(mdp, r_true, true_reward, learned_reward, float(discount))


def _evd_from_policies(mdp, r_true, expert, learner, discount):
    dtype = jnp.result_type(r_true, expert, learner)
    r_true = r_true.astype(dtype)
    v_expert = _policy_values(mdp, r_true, expert.astype(dtype), discount)[0]
    v_learner = _policy_values(mdp, r_true, learner.astype(dtype), discount)[0]
    return jnp.dot(mdp.initial_dist.astype(dtype), v_expert - v_learner)


@jax.jit
def _hard_evd(mdp, r_true, r_learned, discount):
    expert = _hard_policy(mdp, r_true, discount)
    learner = _hard_policy(mdp, r_learned, discount)
    return _evd_from_policies(mdp, r_true, expert, learner, discount)


@partial(jax.jit, static_argnames=("discount",))
def _soft_evd(mdp, r_true, true_reward, learned_reward, discount):
    soft = lambda r: soft_bellman(mdp, r, model="causal", discount=discount).log_policy
    expert = jnp.exp(soft(true_reward))
    learner = jnp.exp(soft(learned_reward))
    return _evd_from_policies(mdp, r_true, expert, learner, discount)
