r"""Exact soft backward recursions for finite-horizon tabular MDPs (THEORY §1.3–§1.5).

Two columns of THEORY §1.4, run for :math:`t = T-1, \dots, 0` from :math:`V_T = W_T = 0`:

.. math::

    \text{causal (MCE):}\quad Q_t(s,a) = \bar r(s,a) + \gamma \sum_{s'} P(s'\mid s,a) V_{t+1}(s'),
    \qquad V_t(s) = \log\sum_a e^{Q_t(s,a)},

    \text{trajectory-level:}\quad Q_t(s,a) = r(s,a) + \log\sum_{s'} P(s'\mid s,a)
    e^{r(s,a,s') + W_{t+1}(s')}, \qquad W_t(s) = \log\sum_a e^{Q_t(s,a)},

with :math:`\bar r(s,a) = r(s,a) + \sum_{s'} P(s'|s,a) r(s,a,s')`. Terminal (absorbing) states are
masked: their value is 0 at every step, they carry no action and no entropy term.

Models (DESIGN §3): ``"causal"`` (normalised, :math:`\gamma \le 1`), ``"trajectory"`` (one
:math:`\log Z(s_0) = W_0(s_0)` per start state) and ``"trajectory_global"`` (one
:math:`\log Z = \log\sum_{s_0}\rho_0(s_0) e^{W_0(s_0)}`). The trajectory-level models refuse
:math:`\gamma < 1` (THEORY §0.4).

Two entry points share the same step functions:

* :func:`soft_bellman` returns the full ``V``, ``Q`` and log-policy arrays and is differentiated by
  ordinary reverse mode (memory :math:`O(TSA)`);
* :func:`initial_values` returns only :math:`V_0` / :math:`W_0` and carries a custom VJP whose
  backward pass is the forward occupancy recursion (memory :math:`O(TS)` in sparse form): the
  gradient of :math:`\sum_s g(s) V_0(s)` in the reward is the occupancy measure started from
  :math:`g` (THEORY §1.5). The dynamics are treated as constants by this path (no gradient flows to
  ``P``; use :func:`soft_bellman` for that).
"""

from __future__ import annotations

import functools
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ebm_ppl._validation import check_choice, check_finite
from ebm_ppl.spaces.tabular import TabularMDP

__all__ = [
    "MODELS",
    "SoftBellman",
    "Occupancy",
    "check_model",
    "reward_table",
    "soft_bellman",
    "initial_values",
    "log_partition",
    "occupancy_measures",
    "feature_expectations",
]

MODELS = ("causal", "trajectory", "trajectory_global")
"""The tabular MaxEnt models of the recursions (see the module docstring)."""


class SoftBellman(NamedTuple):
    """Full output of the soft backward recursion.

    Attributes:
        values: ``(T + 1, S)``: :math:`V_t` (causal) or :math:`W_t` (trajectory-level); row ``T``
            is 0. Terminal states are 0 on every row.
        q_values: ``(T, S, A)`` soft Q-values.
        log_policy: ``(T, S, A)`` :math:`\\log\\pi_t(a\\mid s) = Q_t - V_t` (uniform at terminal
            states, where no action is taken).
    """

    values: jax.Array
    q_values: jax.Array
    log_policy: jax.Array


class Occupancy(NamedTuple):
    """Occupancy measures in the ``imitation`` convention.

    Attributes:
        state: ``(T + 1, S)`` state distribution :math:`D_t(s)` at each time (undiscounted); a
            terminated trajectory keeps its mass on its terminal state.
        state_action: ``(S, A)`` :math:`\\sum_{t<T}\\gamma^t D_t(s)\\pi_t(a\\mid s)` over steps that
            take an action (terminal states excluded): the gradient of the log-normaliser (or of
            :math:`E_{\\rho_0}V_0`) in :math:`r(s,a)`.
        discounted_state: ``(S,)`` :math:`\\sum_{t\\le T}\\gamma^t D_t(s)` (``imitation``'s
            ``Dcum``).
    """

    state: jax.Array
    state_action: jax.Array
    discounted_state: jax.Array


def check_model(model: str, discount: float, *, allowed: tuple = MODELS) -> None:
    """Validate a model name and its discount (trajectory-level models need ``discount == 1``)."""
    check_choice("model", model, allowed)
    if isinstance(discount, jax.core.Tracer):
        raise TypeError("`discount` must be a static Python float, not a traced value.")
    if not 0.0 < float(discount) <= 1.0:
        raise ValueError(f"`discount` must lie in (0, 1] in finite horizon; got {discount!r}.")
    if model != "causal" and float(discount) != 1.0:
        raise ValueError(
            f"`discount` must be 1 for model={model!r}: discounting a trajectory-level model "
            "makes it "
            f"differ from the causal one even under deterministic dynamics (THEORY §0.4); got "
            f"{discount!r}. Use model='causal' for discounted problems."
        )


# ---------------------------------------------------------------------- rewards
def reward_table(mdp: TabularMDP, reward) -> tuple[jax.Array, jax.Array | None]:
    """Split a reward of shape ``(S,)``, ``(S, A)`` or ``(S, A, S)`` into per-step parts.

    Returns:
        ``(r_sa, r_next)``: ``r_sa`` of shape ``(S, A)`` and, for ``(S, A, S)`` rewards, the
        next-state part in the MDP's form (``(S, A, S)`` dense, ``(U, S, A)`` gathered at the
        merged successors when sparse); otherwise ``None``. Terminal rows are zeroed (masked).
    """
    reward = jnp.asarray(reward)
    num_states, num_actions = mdp.num_states, mdp.num_actions
    if not jnp.issubdtype(reward.dtype, jnp.floating):
        reward = reward.astype(mdp.dtype)
    check_finite("reward", reward)
    live = ~mdp.terminal
    if reward.shape == (num_states,):
        r_sa = jnp.broadcast_to(reward[:, None], (num_states, num_actions))
        return jnp.where(live[:, None], r_sa, 0), None
    if reward.shape == (num_states, num_actions):
        return jnp.where(live[:, None], reward, 0), None
    if reward.shape == (num_states, num_actions, num_states):
        reward = jnp.where(live[:, None, None], reward, 0)
        if mdp.is_sparse:
            s_idx = jnp.arange(num_states)[None, :, None]
            a_idx = jnp.arange(num_actions)[None, None, :]
            reward = reward[s_idx, a_idx, mdp.next_states[:, :, None]]
        return jnp.zeros((num_states, num_actions), reward.dtype), reward
    raise ValueError(
        f"`reward` must have shape (S,) = ({num_states},), (S, A) = ({num_states}, {num_actions}) "
        f"or (S, A, S) = ({num_states}, {num_actions}, {num_states}); got shape {reward.shape}."
    )


# ---------------------------------------------------------------------- dynamics primitives
def _probs(mdp: TabularMDP) -> jax.Array:
    """Transition weights in the MDP's form: ``(S, A, S)`` dense, ``(U, S, A)`` sparse."""
    return mdp.next_probs if mdp.is_sparse else mdp.transitions


def _at_next(mdp: TabularMDP, values: jax.Array) -> jax.Array:
    """``values`` at the successors, broadcastable against :func:`_probs`."""
    if mdp.is_sparse:
        return values[mdp.next_states][:, :, None]
    return values[None, None, :]


def _expect(mdp: TabularMDP, weights: jax.Array, values: jax.Array) -> jax.Array:
    """``sum_{s'} weights(s, a, s') values(s')`` for weights in the MDP's form -> ``(S, A)``."""
    if mdp.is_sparse:
        return _sum_over_successors(mdp, lambda u: weights[u] * values[mdp.next_states[u]][:, None])
    return jnp.einsum("san,n->sa", weights, values)


def _sum_over_successors(mdp: TabularMDP, term):
    """``sum_u term(u)`` over the merged successor slots; unrolled when few (fuses best on CPU)."""
    width = mdp.next_states.shape[0]
    if width <= 16:
        total = term(0)
        for u in range(1, width):
            total = total + term(u)
        return total
    return jax.lax.fori_loop(1, width, lambda u, acc: acc + term(u), term(0))


def _push(mdp: TabularMDP, sa_mass: jax.Array, weights: jax.Array) -> jax.Array:
    """``sum_{s,a} sa_mass(s, a) weights(s, a, s')`` -> ``(S,)`` (sparse: gathers predecessors)."""
    if mdp.is_sparse:
        flat = jnp.sum(weights * sa_mass[None], axis=-1).reshape(-1)
        if mdp.predecessors is None:  # some state has many predecessors: scatter-add instead
            return jax.ops.segment_sum(flat, mdp.next_states.reshape(-1), mdp.num_states)
        incoming = [
            flat.at[mdp.predecessors[m]].get(mode="fill", fill_value=0)
            for m in range(mdp.predecessors.shape[0])
        ]
        return sum(incoming[1:], incoming[0])
    # a flat vector-matrix product: einsum("sa,san->n") lowers to a far slower contraction on CPU
    return sa_mass.reshape(-1) @ weights.reshape(-1, weights.shape[-1])


def _underflows(mdp: TabularMDP, sums: jax.Array) -> jax.Array:
    """Whether any live row's shifted sum is too small for the fast path (terminal rows, whose
    value is pinned to 0, never need the exact branch)."""
    live_sums = jnp.where(mdp.terminal[:, None], jnp.inf, sums)
    return jnp.min(live_sums) < _underflow_floor(sums.dtype)


def _underflow_floor(dtype) -> float:
    info = jnp.finfo(dtype)
    return float(info.tiny) / float(info.eps)


def _tilt_base(mdp: TabularMDP, r_next: jax.Array | None):
    """``B = P exp(r_next - c)`` with a per-row shift ``c(s, a) = max_{s': P > 0} r_next``.

    Returns ``(B, c)``: ``B`` in the MDP's form, ``c`` of shape ``(S, A)`` (``B = P`` and
    ``c = 0`` without ``r_next``). Shifting each row by its own maximum over the support keeps one
    entry of every row at ``P > 0``, so no row underflows however widely rewards spread, and
    impossible transitions never set the scale.
    """
    probs = _probs(mdp)
    if r_next is None:
        return probs, jnp.zeros(probs.shape[1:] if mdp.is_sparse else probs.shape[:2], probs.dtype)
    support = probs > 0
    axis = 0 if mdp.is_sparse else -1
    shift = jnp.max(jnp.where(support, r_next, -jnp.inf), axis=axis)
    centred = jnp.where(support, r_next - _expand_sa(mdp, shift), 0)  # double where: safe gradient
    return jnp.where(support, probs * jnp.exp(centred), 0), shift


def safe_log(x):
    """``log x`` with ``-inf`` where ``x = 0``, and finite gradients there (double ``where``)."""
    return jnp.where(x > 0, jnp.log(jnp.where(x > 0, x, 1)), -jnp.inf)


def _expand_sa(mdp: TabularMDP, sa: jax.Array) -> jax.Array:
    """An ``(S, A)`` array broadcastable against the transition weights of the MDP's form."""
    return sa[None] if mdp.is_sparse else sa[:, :, None]


def _log_tilt(mdp: TabularMDP, base, shift, next_values):
    """Trajectory-level continuation ``L(s,a) = log sum_{s'} B(s,a,s') e^{c + W(s')}``.

    A single global shift turns the log-sum-exp into a matrix-vector product (one read of the
    dynamics). Where the shifted sums underflow (value spreads beyond ~700 nats in float64) the
    step is recomputed exactly in log space.
    """
    top = jnp.max(next_values)
    sums = _expect(mdp, base, jnp.exp(next_values - top))

    def fast(_):
        return jnp.log(sums) + top + shift

    def exact(_):
        logits = safe_log(base) + _at_next(mdp, next_values)
        return logsumexp(logits, axis=0 if mdp.is_sparse else -1) + shift

    return jax.lax.cond(_underflows(mdp, sums), exact, fast, None)


def _tilted_weights(mdp: TabularMDP, base, shift, next_values, log_norm):
    r"""Next-state conditionals :math:`\tilde P(s'|s,a) = B e^{c + W(s') - L(s,a)}`, in full."""
    logits = safe_log(base) + _at_next(mdp, next_values)
    return jnp.exp(logits - _expand_sa(mdp, log_norm - shift))


def _logsumexp_actions(q_values: jax.Array) -> jax.Array:
    """``log sum_a exp Q(s, a)`` over the last axis; written column by column for few actions
    (one fused pass on CPU instead of a max pass and a sum pass)."""
    num_actions = q_values.shape[-1]
    if num_actions > 16:
        return logsumexp(q_values, axis=-1)
    columns = [q_values[..., a] for a in range(num_actions)]
    top = functools.reduce(jnp.maximum, columns)
    top = jnp.where(jnp.isfinite(top), top, 0)
    return top + jnp.log(sum(jnp.exp(column - top) for column in columns))


def _soft_max(mdp: TabularMDP, q_values: jax.Array):
    """``V = logsumexp_a Q`` with terminal states masked to 0, and the log-policy."""
    num_actions = q_values.shape[-1]
    values = jnp.where(mdp.terminal, 0, _logsumexp_actions(q_values))
    log_policy = jnp.where(
        mdp.terminal[:, None],
        -jnp.log(num_actions).astype(q_values.dtype),
        q_values - values[:, None],
    )
    return values, log_policy


def _q_values(mdp, model, discount, r_sa, tilt, next_values):
    """One backup: ``(Q_t, L_t)`` from ``V_{t+1}``; ``L_t`` (trajectory-level only) is the
    log-normaliser of the tilted transitions, ``None`` for the causal model."""
    if model == "causal":
        return r_sa + discount * _expect(mdp, _probs(mdp), next_values), None
    log_norm = _log_tilt(mdp, *tilt, next_values)
    return r_sa + log_norm, log_norm


def _backup(mdp, model, discount, r_sa, tilt, next_values):
    """One backward step: ``(V_t, log_pi_t, Q_t, L_t)`` from ``V_{t+1}``."""
    q_values, log_norm = _q_values(mdp, model, discount, r_sa, tilt, next_values)
    values, log_policy = _soft_max(mdp, q_values)
    return values, log_policy, q_values, log_norm


def _prepare(mdp, reward, model):
    """Per-step reward parts; the causal model folds ``E[r(s,a,s')]`` into ``r_sa``."""
    r_sa, r_next = reward_table(mdp, reward)
    if model == "causal" and r_next is not None:
        r_sa = r_sa + jnp.sum(_probs(mdp) * r_next, axis=0 if mdp.is_sparse else -1)
        r_next = None
    return r_sa, r_next


# ---------------------------------------------------------------------- full recursion
def soft_bellman(
    mdp: TabularMDP, reward, *, model: str = "causal", discount: float = 1.0
) -> SoftBellman:
    """Run the soft backward recursion and return every ``V_t``, ``Q_t`` and ``log pi_t``.

    Args:
        mdp: the MDP (dense or sparse form).
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        model: ``"causal"`` (MCE, THEORY §1.3), ``"trajectory"`` or ``"trajectory_global"``
            (both run the trajectory-level column; they differ only in how ``W_0`` normalises).
        discount: :math:`\\gamma \\in (0, 1]` multiplying the continuation value (causal only).

    Returns:
        :class:`SoftBellman`. Differentiable by ordinary reverse mode (stores ``O(TSA)``).
    """
    check_model(model, discount)
    reward = jnp.asarray(reward)
    check_finite("reward", reward)  # eagerly: inside the jitted core the reward is traced
    return _soft_bellman_jit(mdp, reward, model, float(discount))


@partial(jax.jit, static_argnums=(2, 3))
def _soft_bellman_jit(mdp, reward, model, discount):
    """The recursion of :func:`soft_bellman`, compiled once per shape, model and discount."""
    r_sa, r_next = _prepare(mdp, reward, model)
    tilt = _tilt_base(mdp, r_next) if model != "causal" else None

    def step(next_values, _):
        values, log_policy, q_values, _ = _backup(mdp, model, discount, r_sa, tilt, next_values)
        return values, (values, q_values, log_policy)

    final = jnp.zeros((mdp.num_states,), r_sa.dtype)
    _, (values, q_values, log_policy) = jax.lax.scan(
        step, final, None, length=mdp.horizon, reverse=True
    )
    values = jnp.concatenate([values, final[None]], axis=0)
    return SoftBellman(values=values, q_values=q_values, log_policy=log_policy)


# ---------------------------------------------------------------------- lean values + occupancy VJP
class _Lean(NamedTuple):
    """Per-call constants of the memory-lean path."""

    r_sa: jax.Array  # (S, A) per-step reward (causal: with E[r(s,a,s')] folded in)
    base: jax.Array | None  # trajectory-level: B = P exp(r_next - c) in the MDP's form
    shift: jax.Array | None  # trajectory-level: c
    row_max: jax.Array | None  # trajectory-level: m(s) = max_a r(s, a)
    row_weights: jax.Array | None  # trajectory-level: exp(r(s, a) - m(s))


def _lean_constants(mdp, model, r_sa, r_next) -> _Lean:
    if model == "causal":
        return _Lean(r_sa, None, None, None, None)
    base, shift = _tilt_base(mdp, r_next)
    r_sa = r_sa + shift  # the per-row shift of B folded into the per-step reward
    row_max = jnp.max(r_sa, axis=-1)
    zero = jnp.zeros((), r_sa.dtype)
    return _Lean(r_sa, base, zero, row_max, jnp.exp(r_sa - row_max[:, None]))


def _tilt_sums(mdp, base, next_values):
    """``(top, scaled, sums)``: ``scaled = e^{W - top}``, ``sums = sum_{s'} B scaled``."""
    top = jnp.max(next_values)
    scaled = jnp.exp(next_values - top)
    return top, scaled, _expect(mdp, base, scaled)


def _step_inputs(mdp, model, discount, lean, next_values):
    """What one step needs from ``V_{t+1}``: causal ``Q_t``; trajectory-level ``(top, sums)``.

    Each costs one read of the dynamics.
    """
    if model == "causal":
        return lean.r_sa + discount * _expect(mdp, _probs(mdp), next_values)
    top, _, sums = _tilt_sums(mdp, lean.base, next_values)
    return top, sums


def _lean_value(mdp, model, lean, inputs, next_values):
    """``V_t`` from the step inputs (terminal states masked to 0).

    Trajectory-level: :math:`W_t = \\mathrm{top} + c + m(s) + \\log\\sum_a e^{r(s,a) - m(s)}
    \\mathrm{sums}(s,a)`, a log over states only; the exact log-space backup replaces it where
    the shifted sums underflow.
    """
    if model == "causal":
        return jnp.where(mdp.terminal, 0, _logsumexp_actions(inputs))
    top, sums = inputs

    def fast(_):
        total = jnp.sum(lean.row_weights * sums, axis=-1)
        return top + lean.shift + lean.row_max + jnp.log(total)

    def exact(_):
        return _logsumexp_actions(lean.r_sa + _log_tilt(mdp, lean.base, lean.shift, next_values))

    values = jax.lax.cond(_underflows(mdp, sums), exact, fast, None)
    return jnp.where(mdp.terminal, 0, values)


def _forward(mdp, model, discount, lean):
    """Backward-in-time value pass keeping only ``V_t``, shape ``(T + 1, S)``.

    In dense form it also keeps each step's inputs (``O(TSA)``, small next to the ``(S, A, S)``
    dynamics) so that the occupancy pass reads the dynamics once per step; in sparse form they are
    recomputed, which keeps memory at ``O(TS)``.
    """
    keep = not mdp.is_sparse

    def step(next_values, _):
        inputs = _step_inputs(mdp, model, discount, lean, next_values)
        values = _lean_value(mdp, model, lean, inputs, next_values)
        return values, (values, inputs if keep else None)

    final = jnp.zeros((mdp.num_states,), lean.r_sa.dtype)
    _, (values, kept) = jax.lax.scan(step, final, None, length=mdp.horizon, reverse=True)
    return jnp.concatenate([values, final[None]], axis=0), kept


def _occupancy_step(mdp, model, lean, inputs, values, next_values, mass, want_tilt):
    """One forward step of the occupancy recursion.

    Returns:
        ``(sa_mass (S, A), next_mass (S,), tilted or None)`` with ``sa_mass = D_t(s) pi_t(a|s)``
        on live states, ``next_mass`` its push through the model's transitions (true ``P`` for
        the causal model, :math:`\\tilde P` for the trajectory level) and ``tilted`` the
        materialised :math:`\\tilde P` when ``want_tilt``.
    """
    live = ~mdp.terminal
    if model == "causal":
        policy = jnp.exp(inputs - values[:, None])
        sa_mass = jnp.where(live, mass, 0)[:, None] * policy
        return sa_mass, _push(mdp, sa_mass, _probs(mdp)), None
    top, sums = inputs
    scaled = jnp.exp(next_values - top)

    def fast(_):
        # pi * D = coef * sums with coef = D e^{top + c + m - W_t} e^{r - m}; P~ = B scaled / sums
        inverse_total = jnp.exp(top + lean.shift + lean.row_max - values)
        coef = jnp.where(live, mass * inverse_total, 0)[:, None] * lean.row_weights
        tilted = None
        if want_tilt:
            tilted = lean.base * _at_next(mdp, scaled) / _expand_sa(mdp, sums)
        return coef * sums, scaled * _push(mdp, coef, lean.base), tilted

    def exact(_):
        log_norm = _log_tilt(mdp, lean.base, lean.shift, next_values)
        policy = jnp.exp(lean.r_sa + log_norm - values[:, None])
        sa_mass = jnp.where(live, mass, 0)[:, None] * policy
        tilted = _tilted_weights(mdp, lean.base, lean.shift, next_values, log_norm)
        return sa_mass, _push(mdp, sa_mass, tilted), tilted if want_tilt else None

    return jax.lax.cond(_underflows(mdp, sums), exact, fast, None)


def _occupancy_pass(mdp, model, discount, lean, values, kept, start_mass, want_tilt=False):
    """Forward-in-time occupancy recursion started from ``start_mass`` (any signed ``(S,)``).

    Args:
        kept: the per-step inputs stored by :func:`_forward` (dense form), or ``None`` to
            recompute them from ``values`` (sparse form).
        want_tilt: also accumulate :math:`\\sum_t\\gamma^t D^{sa}_t\\tilde P_t` (the gradient in
            ``r(s,a,s')`` of the trajectory-level models).

    Returns:
        ``(state (T+1, S), state_action_total (S, A), tilt_total or None)``, totals discounted by
        :math:`\\gamma^t`.
    """
    stay = mdp.terminal

    def step(carry, t):
        mass, sa_total, tilt_total, weight = carry
        next_values = values[t + 1]
        if kept is None:
            inputs = _step_inputs(mdp, model, discount, lean, next_values)
        else:
            inputs = jax.tree.map(lambda x: x[t], kept)
        sa_mass, next_mass, tilted = _occupancy_step(
            mdp, model, lean, inputs, values[t], next_values, mass, want_tilt
        )
        sa_total = sa_total + weight * sa_mass
        if want_tilt:
            tilt_total = tilt_total + weight * _expand_sa(mdp, sa_mass) * tilted
        next_mass = next_mass + jnp.where(stay, mass, 0)
        return (next_mass, sa_total, tilt_total, weight * discount), mass

    tilt_total = jnp.zeros_like(lean.base) if want_tilt else None
    init = (start_mass, jnp.zeros_like(lean.r_sa), tilt_total, jnp.ones((), lean.r_sa.dtype))
    (last, sa_total, tilt_total, _), masses = jax.lax.scan(step, init, jnp.arange(mdp.horizon))
    return jnp.concatenate([masses, last[None]], axis=0), sa_total, tilt_total


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _initial_values_core(static, mdp, r_sa, r_next):
    model, discount = static
    values, _ = _forward(mdp, model, discount, _lean_constants(mdp, model, r_sa, r_next))
    return values[0]


def _initial_values_fwd(static, mdp, r_sa, r_next):
    model, discount = static
    lean = _lean_constants(mdp, model, r_sa, r_next)
    values, kept = _forward(mdp, model, discount, lean)
    return values[0], (mdp, r_sa, r_next, values, kept)


def _zero_cotangent(leaf):
    if leaf is None:
        return None
    if jnp.issubdtype(leaf.dtype, jnp.inexact):
        return jnp.zeros_like(leaf)
    return np.zeros(leaf.shape, dtype=jax.dtypes.float0)


def _initial_values_bwd(static, residuals, cotangent):
    mdp, r_sa, r_next, values, kept = residuals
    model, discount = static
    lean = _lean_constants(mdp, model, r_sa, r_next)
    _, sa_total, tilt_total = _occupancy_pass(
        mdp, model, discount, lean, values, kept, cotangent, want_tilt=r_next is not None
    )
    # d/d r_next of B = P e^{r_next - c}: the tilt total (the shift c cancels in every value)
    return jax.tree.map(_zero_cotangent, mdp), sa_total, tilt_total


_initial_values_core.defvjp(_initial_values_fwd, _initial_values_bwd)


def initial_values(
    mdp: TabularMDP, reward, *, model: str = "causal", discount: float = 1.0
) -> jax.Array:
    """:math:`V_0` (causal) or :math:`W_0` (trajectory-level) for every start state, shape ``(S,)``.

    Memory-lean: keeps only ``(T + 1, S)`` values. Its reverse-mode derivative in ``reward`` is the
    occupancy recursion of THEORY §1.5 (:math:`\\partial\\sum_s g(s)V_0(s)/\\partial r(s,a) =
    \\sum_t\\gamma^t D^g_t(s)\\pi_t(a|s)` with :math:`D^g_0 = g`), computed without storing
    policies (sparse form) and with no gradient to the dynamics.

    Args:
        mdp: the MDP.
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        model: ``"causal"``, ``"trajectory"`` or ``"trajectory_global"`` (the last two share
            ``W_0``).
        discount: causal only; the trajectory-level models require 1.
    """
    check_model(model, discount)
    r_sa, r_next = _prepare(mdp, reward, model)
    column = "causal" if model == "causal" else "trajectory"
    return _initial_values_core((column, float(discount)), mdp, r_sa, r_next)


def log_partition(mdp: TabularMDP, reward, *, model: str = "trajectory", s0=None) -> jax.Array:
    """Exact :math:`\\log Z` of a trajectory-level model (THEORY §1.4).

    * ``model="trajectory"``: :math:`\\log Z(s_0) = W_0(s_0)` for the start states ``s0`` (default:
      every state with :math:`\\rho_0 > 0`, in index order), shape ``(n,)``;
    * ``model="trajectory_global"``: :math:`\\log\\sum_{s_0}\\rho_0(s_0)e^{W_0(s_0)}`, shape ``()``.

    The causal model is normalised and has no :math:`Z`; asking for it is an error.
    Differentiable in ``reward`` (and :math:`\\rho_0` for the global model) through the occupancy
    VJP of :func:`initial_values`; no gradient flows to the transition probabilities.
    """
    check_model(model, 1.0, allowed=("trajectory", "trajectory_global"))
    w0 = initial_values(mdp, reward, model="trajectory")
    if model == "trajectory_global":
        return logsumexp(safe_log(mdp.initial_dist) + w0)
    return w0[start_states(mdp, s0)]


def start_states(mdp: TabularMDP, s0=None) -> jax.Array:
    """The start states ``s0`` as int32 indices (default: every state with ``rho_0 > 0``)."""
    if s0 is None:
        if isinstance(mdp.initial_dist, jax.core.Tracer):
            raise TypeError(
                "`s0=None` needs a concrete `initial_dist` (its support fixes the output shape); "
                "under jit pass `s0` explicitly, e.g. `start_states(mdp)` computed outside."
            )
        return jnp.asarray(np.flatnonzero(np.asarray(mdp.initial_dist) > 0), dtype=jnp.int32)
    s0 = jnp.atleast_1d(jnp.asarray(s0, dtype=jnp.int32))
    if not isinstance(s0, jax.core.Tracer):
        bad = (np.asarray(s0) < 0) | (np.asarray(s0) >= mdp.num_states)
        if bad.any():
            raise ValueError(
                f"`s0` must hold state indices in [0, {mdp.num_states}); "
                f"got {np.asarray(s0)[bad][0]}."
            )
    return s0


def start_distribution(mdp: TabularMDP, reward, *, model: str) -> jax.Array:
    """Start-state law: :math:`\\rho_0`, or :math:`\\propto\\rho_0 e^{W_0}` (global model)."""
    if model != "trajectory_global":
        return mdp.initial_dist
    w0 = initial_values(mdp, reward, model="trajectory")
    logits = safe_log(mdp.initial_dist) + w0
    return jnp.exp(logits - logsumexp(logits))


def occupancy_measures(
    mdp: TabularMDP, reward, *, model: str = "causal", discount: float = 1.0, start=None
) -> Occupancy:
    """State and state-action occupancy measures of ``model`` (THEORY §1.5).

    The causal model propagates mass with the true :math:`P`; the trajectory-level models with the
    tilted :math:`\\tilde P \\propto P e^{r(s,a,s') + W_{t+1}(s')}`; ``trajectory_global``
    starts from
    :math:`\\propto\\rho_0 e^{W_0}`. ``state_action`` is the exact gradient of
    :math:`E_{start}[V_0]` (causal) or of :math:`\\log Z` (trajectory-level) in :math:`r(s,a)`.

    Args:
        mdp: the MDP.
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        model: ``"causal"``, ``"trajectory"`` or ``"trajectory_global"``.
        discount: causal only.
        start: optional ``(S,)`` start mass (default: the model's start distribution).
    """
    check_model(model, discount)
    r_sa, r_next = _prepare(mdp, reward, model)
    column = "causal" if model == "causal" else "trajectory"
    lean = _lean_constants(mdp, column, r_sa, r_next)
    values, kept = _forward(mdp, column, discount, lean)
    if start is None:
        start = start_distribution(mdp, reward, model=model)
    start = jnp.asarray(start, r_sa.dtype)
    if start.shape != (mdp.num_states,):
        raise ValueError(f"`start` must have shape (S,) = ({mdp.num_states},); got {start.shape}.")
    state, sa_total, _ = _occupancy_pass(mdp, column, discount, lean, values, kept, start)
    weights = discount ** jnp.arange(mdp.horizon + 1, dtype=r_sa.dtype)
    return Occupancy(state=state, state_action=sa_total, discounted_state=weights @ state)


def feature_expectations(mdp: TabularMDP, reward, *, model: str = "causal", discount: float = 1.0):
    """:math:`E_{p}[\\sum_t \\gamma^t\\phi(s_t,a_t)]` under ``model``, from ``mdp.features``."""
    if mdp.features is None:
        raise ValueError("`mdp.features` is None: feature expectations need an MDP with features.")
    occupancy = occupancy_measures(mdp, reward, model=model, discount=discount)
    features = mdp.features
    if features.ndim == 2:
        return occupancy.state_action.sum(axis=1) @ features
    return jnp.einsum("sa,saf->f", occupancy.state_action, features)
