r"""Finite MDPs and trajectories over them.

A :class:`TabularMDP` holds the dynamics of a finite-horizon MDP in one of two forms that every
recursion in :mod:`ebm_ppl.exact` accepts:

* **dense**: ``transitions[s, a, s'] = P(s' | s, a)``, shape ``(S, A, S)``;
* **sparse successor form**: ``successors[s, a, k]`` (int32 state indices) with
  ``successor_probs[s, a, k]``, shape ``(S, A, K)``; padding entries carry probability 0.
  Internally the successor lists of all actions of a state are merged into one list of ``U``
  states (``next_states``, shape ``(U, S)``, with ``next_probs`` of shape ``(U, S, A)``), so a
  backup gathers ``S * U`` values instead of ``S * A * K``, and the occupancy recursion gathers over
  predecessor lists instead of scattering.

Conventions (THEORY §0.4), fixed here once for the whole library:

* **Length.** A trajectory has ``T = horizon`` decisions: states :math:`s_0..s_T` and actions
  :math:`a_0..a_{T-1}`. The state after the last action is kept, so rewards of shape ``(S, A, S)``
  and the dynamics factor :math:`\prod_{t<T} P(s_{t+1}\mid s_t,a_t)` are defined on every step.
  Occupancy arrays have ``T + 1`` rows, as in the ``imitation`` library.
* **Termination.** States flagged ``terminal`` are absorbing and *masked*: once reached, the
  trajectory stops. No reward, no entropy term and no dynamics factor is collected there, and the
  remaining rows of the observed array are ``-1``. A trajectory's ``length`` is its number of
  decisions (``T`` unless it terminated earlier).
* **Discounting.** In the causal recursion :math:`\gamma` multiplies the continuation value
  (``imitation``'s ``mce_partition_fh``); the trajectory-level models refuse :math:`\gamma<1`.
* **Observed array.** A plain int array of shape ``(T + 1, 2)``: row ``t`` is ``(s_t, a_t)`` for
  ``t < T``, row ``T`` is ``(s_T, -1)``; after termination at step ``k`` row ``k`` is ``(s_k, -1)``
  and later rows are ``(-1, -1)``. This is what ``numpyro.sample(..., obs=...)`` receives.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl._validation import (
    check_finite,
    check_probabilities,
    check_shape,
    is_concrete,
)

__all__ = ["TabularMDP", "Trajectories", "PAD", "validate_trajectories"]

PAD = -1
"""Value used for actions and states after termination (and for the last row's action)."""

MAX_GATHER_IN_DEGREE = 32
"""Largest in-degree for which the occupancy recursion gathers over predecessor lists."""


def _as_int32(x) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.int32)


@dataclasses.dataclass(frozen=True)
class TabularMDP:
    """Finite MDP with horizon ``T``, in dense or sparse successor form.

    Build it with :meth:`from_dense` or :meth:`from_sparse`, which validate their inputs; the raw
    constructor is what JAX uses to rebuild the pytree and checks nothing. Array fields are pytree
    leaves (so an MDP is a ``jit`` argument, never a closure constant); ``horizon`` is static.

    Attributes:
        transitions: ``(S, A, S)`` dense ``P(s'|s,a)``, or ``None`` in sparse form.
        next_states: ``(U, S)`` int32: the states reachable from ``s`` under any action
            (``None`` in dense form).
        next_probs: ``(U, S, A)``: ``P(next_states[u, s] | s, a)`` (0 on padding).
        predecessors: ``(M, S)`` int32 flat indices into the ``U*S`` entries of ``next_states``
            that lead to each state (``M`` the largest in-degree); padding is ``U*S``, out of
            range, read as 0. ``None`` in dense form, and when ``M`` exceeds
            ``MAX_GATHER_IN_DEGREE`` (a hub state would make the table ``O(S^2)``): the occupancy
            recursion then scatter-adds instead of gathering.
        initial_dist: ``(S,)`` initial state distribution :math:`\\rho_0`.
        terminal: ``(S,)`` bool, absorbing masked states.
        features: optional ``(S, F)`` or ``(S, A, F)`` features.
        horizon: number of decisions ``T >= 1`` (static).
    """

    transitions: jax.Array | None
    next_states: jax.Array | None
    next_probs: jax.Array | None
    predecessors: jax.Array | None
    initial_dist: jax.Array
    terminal: jax.Array
    features: jax.Array | None
    horizon: int

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dense(
        cls,
        transitions,
        initial_dist,
        horizon: int,
        *,
        features=None,
        terminal=None,
    ) -> TabularMDP:
        """Build and validate a dense MDP.

        Args:
            transitions: ``(S, A, S)``; each ``transitions[s, a]`` sums to 1.
            initial_dist: ``(S,)``; sums to 1.
            horizon: number of decisions, an int ``>= 1``.
            features: optional ``(S, F)`` or ``(S, A, F)`` finite features.
            terminal: optional ``(S,)`` bool mask of absorbing states (rows must be self-loops).

        Raises:
            ValueError: naming the argument, the expectation and what came.
        """
        transitions = jnp.asarray(transitions)
        if not jnp.issubdtype(transitions.dtype, jnp.floating):
            transitions = transitions.astype(jnp.result_type(float))
        check_shape("transitions", transitions, (None, None, None), "(S, A, S)")
        num_states, num_actions, _ = transitions.shape
        check_shape("transitions", transitions, (num_states, num_actions, num_states), "(S, A, S)")
        check_probabilities("transitions", transitions, axis=-1)
        initial_dist, terminal, features = _check_common(
            num_states, num_actions, initial_dist, horizon, features, terminal, transitions.dtype
        )
        mdp = cls(transitions, None, None, None, initial_dist, terminal, features, int(horizon))
        _check_terminal_self_loops(mdp)
        return mdp

    @classmethod
    def from_sparse(
        cls,
        successors,
        successor_probs,
        initial_dist,
        horizon: int,
        *,
        features=None,
        terminal=None,
    ) -> TabularMDP:
        """Build and validate a sparse MDP from successor lists.

        Args:
            successors: ``(S, A, K)`` ints in ``[0, S)``; entries with probability 0 are padding.
            successor_probs: ``(S, A, K)``; each ``successor_probs[s, a]`` sums to 1.
            initial_dist: ``(S,)``; sums to 1.
            horizon: number of decisions, an int ``>= 1``.
            features: optional ``(S, F)`` or ``(S, A, F)``.
            terminal: optional ``(S,)`` bool mask of absorbing states.
        """
        successor_probs = jnp.asarray(successor_probs)
        if not jnp.issubdtype(successor_probs.dtype, jnp.floating):
            successor_probs = successor_probs.astype(jnp.result_type(float))
        check_shape("successor_probs", successor_probs, (None, None, None), "(S, A, K)")
        num_states, num_actions, width = successor_probs.shape
        successors_np = np.asarray(successors)
        check_shape(
            "successors",
            successors_np,
            (num_states, num_actions, width),
            "(S, A, K) like successor_probs",
        )
        if not np.issubdtype(successors_np.dtype, np.integer):
            raise ValueError(f"`successors` must hold integers; got dtype {successors_np.dtype}.")
        if successors_np.size and (successors_np.min() < 0 or successors_np.max() >= num_states):
            bad = np.argwhere((successors_np < 0) | (successors_np >= num_states))[0]
            raise ValueError(
                f"`successors` must be state indices in [0, {num_states}); got "
                f"{successors_np[tuple(bad)]} at index {tuple(int(i) for i in bad)}."
            )
        check_probabilities("successor_probs", successor_probs, axis=-1)
        initial_dist, terminal, features = _check_common(
            num_states,
            num_actions,
            initial_dist,
            horizon,
            features,
            terminal,
            successor_probs.dtype,
        )
        next_states, next_probs = _merge_successors(successors_np, np.asarray(successor_probs))
        predecessors = _predecessor_lists(next_states, next_probs.sum(-1) > 0, num_states)
        mdp = cls(
            None,
            _as_int32(next_states),
            jnp.asarray(next_probs, dtype=successor_probs.dtype),
            predecessors,
            initial_dist,
            terminal,
            features,
            int(horizon),
        )
        _check_terminal_self_loops(mdp)
        return mdp

    # ------------------------------------------------------------------ properties
    @property
    def is_sparse(self) -> bool:
        """Whether the dynamics are held in successor form."""
        return self.transitions is None

    @property
    def num_states(self) -> int:
        return self.initial_dist.shape[0]

    @property
    def num_actions(self) -> int:
        return self.next_probs.shape[2] if self.is_sparse else self.transitions.shape[1]

    @property
    def dtype(self):
        """Floating dtype of the dynamics (the dtype every recursion computes in)."""
        return (self.next_probs if self.is_sparse else self.transitions).dtype

    @property
    def successors(self) -> jax.Array:
        """``(S, A, U)`` successor indices (the merged lists, repeated for every action)."""
        if not self.is_sparse:
            raise ValueError("`successors` exists only in sparse form; call `to_sparse()` first.")
        shape = (self.num_states, self.num_actions, self.next_states.shape[0])
        return jnp.broadcast_to(self.next_states.T[:, None, :], shape)

    @property
    def successor_probs(self) -> jax.Array:
        """``(S, A, U)`` probabilities of :attr:`successors`."""
        if not self.is_sparse:
            raise ValueError(
                "`successor_probs` exists only in sparse form; call `to_sparse()` first."
            )
        return jnp.transpose(self.next_probs, (1, 2, 0))

    # ------------------------------------------------------------------ conversions
    def to_sparse(self, width: int | None = None) -> TabularMDP:
        """The same MDP in successor form (host-side; ``width`` defaults to the max out-degree)."""
        if self.is_sparse:
            return self
        dense = np.asarray(self.transitions)
        nonzero = dense > 0
        max_degree = max(int(nonzero.sum(-1).max()), 1)
        width = max_degree if width is None else int(width)
        if width < max_degree:
            raise ValueError(f"`width` must be >= the max out-degree {max_degree}; got {width}.")
        order = np.argsort(~nonzero, axis=-1, kind="stable")[..., :width]
        probs = np.take_along_axis(dense, order, axis=-1)
        self_index = np.broadcast_to(np.arange(dense.shape[0])[:, None, None], order.shape)
        successors = np.where(probs > 0, order, self_index)
        return TabularMDP.from_sparse(
            successors,
            probs,
            self.initial_dist,
            self.horizon,
            features=self.features,
            terminal=self.terminal,
        )

    def to_dense(self) -> TabularMDP:
        """The same MDP with a dense ``(S, A, S)`` transition tensor."""
        if not self.is_sparse:
            return self
        num_states, num_actions = self.num_states, self.num_actions
        dense = jnp.zeros((num_states, num_actions, num_states), self.dtype)
        s_idx = jnp.arange(num_states)[:, None, None]
        a_idx = jnp.arange(num_actions)[None, :, None]
        dense = dense.at[s_idx, a_idx, self.successors].add(self.successor_probs)
        return TabularMDP(
            dense, None, None, None, self.initial_dist, self.terminal, self.features, self.horizon
        )

    def transition_prob(self, states, actions, next_states) -> jax.Array:
        """``P(next_state | state, action)`` for broadcastable index arrays (JAX, jit-safe)."""
        states, actions, next_states = (_as_int32(x) for x in (states, actions, next_states))
        if not self.is_sparse:
            return self.transitions[states, actions, next_states]
        succ = self.next_states[:, states]
        probs = self.next_probs[:, states, actions]
        return jnp.sum(jnp.where(succ == next_states[None], probs, 0), axis=0)

    def with_horizon(self, horizon: int) -> TabularMDP:
        """A copy with another horizon."""
        if int(horizon) < 1:
            raise ValueError(f"`horizon` must be an int >= 1; got {horizon!r}.")
        return dataclasses.replace(self, horizon=int(horizon))


jax.tree_util.register_dataclass(
    TabularMDP,
    data_fields=[
        "transitions",
        "next_states",
        "next_probs",
        "predecessors",
        "initial_dist",
        "terminal",
        "features",
    ],
    meta_fields=["horizon"],
)


def _check_common(num_states, num_actions, initial_dist, horizon, features, terminal, dtype):
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"`horizon` must be an int >= 1; got {horizon!r}.")
    initial_dist = jnp.asarray(initial_dist, dtype=dtype)
    check_shape("initial_dist", initial_dist, (num_states,), f"(S,) = ({num_states},)")
    check_probabilities("initial_dist", initial_dist, axis=-1)
    if terminal is None:
        terminal = jnp.zeros((num_states,), dtype=bool)
    else:
        terminal = jnp.asarray(terminal)
        check_shape("terminal", terminal, (num_states,), f"(S,) = ({num_states},)")
        if terminal.dtype != jnp.bool_:
            raise ValueError(f"`terminal` must be a bool mask; got dtype {terminal.dtype}.")
    if features is not None:
        features = jnp.asarray(features, dtype=dtype)
        if features.ndim == 2:
            check_shape("features", features, (num_states, None), f"(S, F) with S = {num_states}")
        else:
            check_shape(
                "features",
                features,
                (num_states, num_actions, None),
                f"(S, F) or (S, A, F) with S = {num_states}, A = {num_actions}",
            )
        check_finite("features", features)
    return initial_dist, terminal, features


def _check_terminal_self_loops(mdp: TabularMDP) -> None:
    if not is_concrete(mdp.terminal) or not bool(np.asarray(mdp.terminal).any()):
        return
    terminal_states = np.flatnonzero(np.asarray(mdp.terminal))
    actions = np.arange(mdp.num_actions)
    stay = np.asarray(
        mdp.transition_prob(terminal_states[:, None], actions[None, :], terminal_states[:, None])
    )
    if not np.allclose(stay, 1.0):
        s, a = np.argwhere(~np.isclose(stay, 1.0))[0]
        raise ValueError(
            f"`terminal` state {terminal_states[s]} must be absorbing (P(s|s,a) = 1 for every "
            f"action); action {a} stays with probability {stay[s, a]}."
        )


def _merge_successors(successors: np.ndarray, probs: np.ndarray):
    """Merge the ``(S, A, K)`` successor lists of each state into ``(U, S)`` / ``(U, S, A)``."""
    num_states, num_actions, width = successors.shape
    keys = np.where(probs > 0, successors, num_states).reshape(num_states, num_actions * width)
    keys = np.sort(keys, axis=1)
    fresh = np.ones_like(keys, dtype=bool)
    fresh[:, 1:] = keys[:, 1:] != keys[:, :-1]
    fresh &= keys < num_states
    counts = fresh.sum(axis=1)
    union = max(int(counts.max()) if counts.size else 0, 1)
    rank = np.cumsum(fresh, axis=1) - 1
    next_states = np.tile(np.arange(num_states), (union, 1))  # padding: self, probability 0
    rows, cols = np.nonzero(fresh)
    next_states[rank[rows, cols], rows] = keys[rows, cols]
    # probability of each merged successor for each action
    next_probs = np.zeros((union, num_states, num_actions), dtype=probs.dtype)
    slot = np.zeros((num_states, num_actions * width), dtype=np.int64)
    flat_keys = np.where(probs > 0, successors, num_states).reshape(num_states, -1)
    for u in range(union):  # small loop over merged slots (U <= A * K), vectorised over states
        match = flat_keys == next_states[u][:, None]
        slot[match] = u
    s_idx = np.repeat(np.arange(num_states), num_actions * width)
    a_idx = np.tile(np.repeat(np.arange(num_actions), width), num_states)
    np.add.at(next_probs, (slot.reshape(-1), s_idx, a_idx), probs.reshape(-1))
    return next_states, next_probs


def _predecessor_lists(next_states: np.ndarray, valid: np.ndarray, num_states: int):
    """Flat ``(u, s)`` indices of the entries leading into each state, padded with ``U*S``."""
    flat_next = next_states.reshape(-1)
    entries = np.flatnonzero(valid.reshape(-1))
    targets = flat_next[entries]
    order = np.argsort(targets, kind="stable")
    entries, targets = entries[order], targets[order]
    counts = np.bincount(targets, minlength=num_states)
    width = max(int(counts.max()) if counts.size else 0, 1)
    if width > MAX_GATHER_IN_DEGREE:
        return None
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(entries.size) - starts[targets]
    table = np.full((num_states, width), flat_next.size, dtype=np.int64)
    table[targets, slot] = entries
    if flat_next.size >= np.iinfo(np.int32).max:
        raise ValueError("the MDP has more than 2**31 successor entries; split it.")
    return jnp.asarray(table.T, dtype=jnp.int32)


# ---------------------------------------------------------------------- trajectories
@dataclasses.dataclass(frozen=True)
class Trajectories:
    """A batch of tabular trajectories (a pytree).

    Attributes:
        states: ``(..., T + 1)`` int32; ``-1`` after termination.
        actions: ``(..., T)`` int32; ``-1`` from the terminating step on.
        lengths: ``(...,)`` int32 number of decisions taken (``T`` unless terminated earlier).
    """

    states: jax.Array
    actions: jax.Array
    lengths: jax.Array

    @property
    def horizon(self) -> int:
        return self.actions.shape[-1]

    def to_array(self) -> jax.Array:
        """The observed-array encoding ``(..., T + 1, 2)`` described in the module docstring."""
        pad = jnp.full(self.actions.shape[:-1] + (1,), PAD, dtype=jnp.int32)
        actions = jnp.concatenate([_as_int32(self.actions), pad], axis=-1)
        return jnp.stack([_as_int32(self.states), actions], axis=-1)

    @classmethod
    def from_array(cls, observed) -> Trajectories:
        """Decode ``(..., T + 1, 2)`` observed arrays (jit-safe; no validation)."""
        observed = _as_int32(observed)
        states = observed[..., 0]
        actions = observed[..., :-1, 1]
        lengths = jnp.sum(actions != PAD, axis=-1).astype(jnp.int32)
        return cls(states, actions, lengths)

    def validate(self, mdp: TabularMDP, name: str = "demos") -> Trajectories:
        """Check on the host that every trajectory is possible under ``mdp``.

        Raises ``ValueError`` naming the demonstration and the step for: wrong shapes, states or
        actions out of range, padding in the wrong place, a start state with ``rho_0 = 0``, a
        transition of probability 0, or continuing after a terminal state.
        """
        return validate_trajectories(mdp, self.to_array(), name=name)[1]


jax.tree_util.register_dataclass(
    Trajectories, data_fields=["states", "actions", "lengths"], meta_fields=[]
)


def validate_trajectories(mdp: TabularMDP, observed, name: str = "demos"):
    """Validate observed arrays ``(N, T + 1, 2)`` (or one ``(T + 1, 2)``) against ``mdp``.

    Vectorised on the host; the first offending demonstration and step are named in the error.

    Returns:
        ``(observed_int32 of shape (N, T + 1, 2), Trajectories)``.
    """
    array = np.asarray(observed)
    if not np.issubdtype(array.dtype, np.integer):
        if (
            np.issubdtype(array.dtype, np.floating)
            and np.all(np.isfinite(array))
            and np.all(array == np.round(array))
        ):
            array = array.astype(np.int64)
        else:
            raise ValueError(f"`{name}` must be an integer array; got dtype {array.dtype}.")
    horizon = mdp.horizon
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (horizon + 1, 2):
        raise ValueError(
            f"`{name}` must have shape (N, T + 1, 2) = (N, {horizon + 1}, 2) for horizon "
            f"{horizon}; got shape {np.asarray(observed).shape}."
        )
    states, actions = array[:, :, 0], array[:, :, 1]
    num_states, num_actions = mdp.num_states, mdp.num_actions
    terminal = np.asarray(mdp.terminal)
    steps = np.arange(horizon + 1)

    def fail(mask, message):
        if mask.any():
            i, t = (int(v) for v in np.argwhere(mask)[0])
            raise ValueError(f"`{name}`[{i}] step {t}: " + message(i, t))

    # Lengths: the first step whose state is terminal, else T.
    in_range = (states >= 0) & (states < num_states)
    is_terminal = np.where(in_range, terminal[np.clip(states, 0, num_states - 1)], False)
    hit = is_terminal[:, :horizon]
    lengths = np.where(hit.any(axis=1), hit.argmax(axis=1), horizon)
    alive = steps[None, :] <= lengths[:, None]  # rows that carry a state
    acting = steps[None, :] < lengths[:, None]  # rows that carry an action

    fail(alive & ~in_range, lambda i, t: f"state {states[i, t]} out of range [0, {num_states}).")
    fail(
        ~alive & (states != PAD),
        lambda i, t: f"rows after termination must be (-1, -1); got state {states[i, t]}.",
    )
    fail(
        ~acting & (actions != PAD),
        lambda i, t: (
            f"action must be -1 (row T, a terminal state, or after termination); "
            f"got {actions[i, t]}."
        ),
    )
    fail(
        acting & ((actions < 0) | (actions >= num_actions)),
        lambda i, t: f"action {actions[i, t]} out of range [0, {num_actions}).",
    )
    rho = np.asarray(mdp.initial_dist)
    fail(
        (rho[states[:, 0]] <= 0)[:, None] & (steps[None, :1] == 0),
        lambda i, t: f"start state {states[i, 0]} has initial probability 0.",
    )
    s = np.clip(states[:, :-1], 0, num_states - 1)
    a = np.clip(actions[:, :-1], 0, num_actions - 1)
    s_next = np.clip(states[:, 1:], 0, num_states - 1)
    probs = np.asarray(mdp.transition_prob(s, a, s_next))
    fail(
        acting[:, :-1] & (probs <= 0),
        lambda i, t: (
            f"transition ({states[i, t]}, {actions[i, t]}) -> {states[i, t + 1]} has probability 0 "
            "under the MDP's dynamics."
        ),
    )
    observed_int = jnp.asarray(array, dtype=jnp.int32)
    return observed_int, Trajectories.from_array(observed_int)
