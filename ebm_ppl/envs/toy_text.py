r"""Gymnasium toy-text environments as :class:`~ebm_ppl.spaces.TabularMDP`\ s.

This module is the library's one adapter to Gymnasium's tabular environments (DESIGN §4): it reads
the table every toy-text environment carries,

* ``env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated), ...]`` and
* ``env.unwrapped.initial_state_distrib`` (shape ``(S,)``),

and turns it into a finite-horizon MDP with the library's conventions (THEORY §0.4, module
docstring of :mod:`ebm_ppl.spaces.tabular`): ``T = horizon`` decisions, observed arrays of shape
``(T + 1, 2)``, and terminal states that are **absorbing and masked**.

**Termination rule.** Gymnasium flags termination on a *transition*; the library flags it on a
*state*. A next state reached with ``terminated=True`` becomes a terminal state of the MDP: its rows
are replaced by self-loops for every action (``P(s | s, a) = 1``) and it is set in
``mdp.terminal``. This is faithful only when the flag is a function of the next state, so the
adapter checks it: among the transitions that a trajectory can actually take (those of positive
probability out of the non-terminal states reachable from ``initial_state_distrib``), a state
reached both with ``terminated=True`` and with ``terminated=False`` -- or a start state that is also
reached with ``terminated=True`` -- raises ``ValueError`` ("inconsistent flags"). States that no
trajectory can reach keep the table's rows and their flags are ignored; Taxi needs this (see
:func:`taxi`). Duplicate ``(prob, next_state)`` entries of one ``P[s][a]`` list are summed, every
row is checked to sum to 1 (within ``1e-8``; then renormalised exactly) and so is
``initial_state_distrib``.

What the three Gymnasium 1.x environments do (read from their tables in gymnasium 1.4):

* ``FrozenLake-v1``: entering a hole ``H`` or the goal ``G`` terminates (reward ``1`` at ``G``, else
  ``0`` with the default ``reward_schedule``). The table already has ``(1.0, s, 0, True)``
  self-loops at ``H``/``G``; these become masked terminal states. The start ``S`` is the only start
  state. Slippery: the intended move and the two perpendicular ones, ``success_rate`` (default 1/3)
  and ``(1 - success_rate) / 2`` each; moves into a wall stay, so e.g. a corner has duplicate
  entries that are summed.
* ``CliffWalking-v1``: 4x12 grid, start 36. Stepping onto the cliff (row 3, columns 1..10) does
  **not** terminate: it teleports to the start 36 with reward ``-100`` and ``terminated=False``.
  Only the goal 47 is terminal (every other step costs ``-1``, the goal included). The cliff
  cells 37..46 keep their table rows but no trajectory reaches them. ``is_slippery=True``
  (``CliffWalkingSlippery-v1``): intended and both perpendicular moves with 1/3 each.
* ``Taxi-v4``: 500 states ``((row * 5 + col) * 5 + passenger) * 4 + destination``; start states
  are the 300 with the passenger at one of the four locations and not at its destination, uniform.
  A successful dropoff (reward ``20``) terminates, landing in one of the 4 states with the taxi at
  the destination and the passenger there (passenger index = destination index); those 4 are the
  terminal states. The other 96 states with passenger index = destination index are unreachable,
  and moves among them reach the 4 terminal states with ``terminated=False``: this is why the
  consistency check is restricted to reachable states. Illegal pickup/dropoff cost ``-10``, every
  other step ``-1``. ``is_rainy=True`` is supported (its duplicate entries are summed);
  ``fickle_passenger=True`` is refused because its ``step`` changes the destination outside the
  table.

The horizon and the Gymnasium ``TimeLimit`` (``max_episode_steps``) are independent: the MDP's
horizon is what the caller passes. :func:`make_toy_text_env` makes an environment whose
``TimeLimit`` is the horizon, for :func:`collect_demonstrations`, which rolls a time-indexed policy
through the **real** ``env.step`` (not through the MDP's tables) and encodes the episodes as the
library's observed arrays.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections import deque
from typing import Any

import gymnasium
import jax
import numpy as np

from ebm_ppl.spaces.tabular import PAD, TabularMDP, validate_trajectories

__all__ = [
    "tabular_mdp_from_env",
    "reward_table_from_env",
    "load_toy_text",
    "frozenlake",
    "cliffwalking",
    "taxi",
    "make_toy_text_env",
    "collect_demonstrations",
    "FROZENLAKE_ID",
    "CLIFFWALKING_ID",
    "TAXI_ID",
]

FROZENLAKE_ID = "FrozenLake-v1"
"""Gymnasium id of FrozenLake, loaded by :func:`frozenlake`."""

CLIFFWALKING_ID = "CliffWalking-v1"
"""Gymnasium id of CliffWalking, loaded by :func:`cliffwalking`."""

TAXI_ID = "Taxi-v4"
"""Gymnasium id of Taxi, loaded by :func:`taxi`."""

_ROW_ATOL = 1e-8


@dataclasses.dataclass(frozen=True)
class _Table:
    """A toy-text table read into arrays, with the termination rule already applied.

    ``rows[s][a]`` is a tuple ``(next_states, probs, rewards)`` of arrays sorted by next state,
    probabilities > 0 and summed over duplicates; ``rewards`` is the expected reward of each
    transition. Terminal states have the row ``([s], [1.0], [0.0])`` for every action.
    ``reachable`` marks the states some trajectory from ``initial_dist`` can visit.
    """

    num_states: int
    num_actions: int
    rows: list
    initial_dist: np.ndarray
    terminal: np.ndarray
    reachable: np.ndarray


def _num(space: Any, fallback: int) -> int:
    n = getattr(space, "n", None)
    return int(n) if n is not None else fallback


def _lookup(container: Any, key: int, name: str) -> Any:
    try:
        return container[key]
    except (KeyError, IndexError):
        raise ValueError(f"{name} must have an entry for index {key}; it has none.") from None


def _read_table(env: Any) -> _Table:
    """Parse and validate ``env.unwrapped.P`` and ``initial_state_distrib`` (host-side)."""
    base = getattr(env, "unwrapped", env)
    table = getattr(base, "P", None)
    if table is None:
        raise TypeError(
            f"`env` must carry a toy-text table `P[s][a] = [(prob, next_state, reward, "
            f"terminated), ...]`; got {type(base).__name__} without attribute `P`."
        )
    if getattr(base, "fickle_passenger", False):
        raise ValueError(
            "`env` has `fickle_passenger=True`: its `step` changes the destination outside the "
            "table `P`, so no tabular MDP read from `P` describes it. Make it with "
            "`fickle_passenger=False`."
        )
    num_states = _num(getattr(base, "observation_space", None), len(table))
    if len(table) != num_states:
        raise ValueError(
            f"`env.P` must have one entry for each of the {num_states} states 0..{num_states - 1}; "
            f"got {len(table)} entries."
        )
    num_actions = _num(getattr(base, "action_space", None), len(_lookup(table, 0, "`env.P`")))

    rho = np.asarray(getattr(base, "initial_state_distrib", None), dtype=np.float64)
    if rho.shape != (num_states,):
        raise ValueError(
            f"`env.initial_state_distrib` must have shape (S,) = ({num_states},); got shape "
            f"{rho.shape}."
        )
    if not np.all(np.isfinite(rho)) or np.any(rho < 0) or abs(rho.sum() - 1.0) > _ROW_ATOL:
        raise ValueError(
            "`env.initial_state_distrib` must be non-negative and sum to 1; got sum "
            f"{rho.sum()!r} and minimum {rho.min()!r}."
        )
    rho = rho / rho.sum()

    rows: list = []
    # flags[s][a]: list of (next_state, terminated) over entries with prob > 0.
    flags: list = []
    for s in range(num_states):
        actions = _lookup(table, s, "`env.P`")
        if len(actions) != num_actions:
            raise ValueError(f"`env.P[{s}]` must have {num_actions} actions; got {len(actions)}.")
        row_s, flags_s = [], []
        for a in range(num_actions):
            entries = _lookup(actions, a, f"`env.P[{s}]`")
            acc_p: dict[int, float] = {}
            acc_r: dict[int, float] = {}
            entry_flags: list[tuple[int, bool]] = []
            for entry in entries:
                if len(entry) != 4:
                    raise ValueError(
                        f"`env.P[{s}][{a}]` entries must be (prob, next_state, reward, "
                        f"terminated); got {entry!r}."
                    )
                p, nxt, r, term = entry
                p, r = float(p), float(r)
                if not isinstance(nxt, (numbers.Integral, np.integer)) or not (
                    0 <= int(nxt) < num_states
                ):
                    raise ValueError(
                        f"`env.P[{s}][{a}]` next state must be an int in [0, {num_states}); got "
                        f"{nxt!r}."
                    )
                if not np.isfinite(p) or p < 0:
                    raise ValueError(
                        f"`env.P[{s}][{a}]` probabilities must be finite and >= 0; got {p!r}."
                    )
                if not np.isfinite(r):
                    raise ValueError(f"`env.P[{s}][{a}]` rewards must be finite; got {r!r}.")
                if p == 0:
                    continue
                nxt = int(nxt)
                acc_p[nxt] = acc_p.get(nxt, 0.0) + p
                acc_r[nxt] = acc_r.get(nxt, 0.0) + p * r
                entry_flags.append((nxt, bool(term)))
            total = sum(acc_p.values())
            if abs(total - 1.0) > _ROW_ATOL:
                raise ValueError(
                    f"`env.P[{s}][{a}]` probabilities must sum to 1 (tolerance {_ROW_ATOL:g}); "
                    f"they sum to {total!r}."
                )
            nexts = np.array(sorted(acc_p), dtype=np.int64)
            probs = np.array([acc_p[n] for n in nexts]) / total
            rewards = np.array([acc_r[n] / acc_p[n] for n in nexts])
            row_s.append((nexts, probs, rewards))
            flags_s.append(entry_flags)
        rows.append(row_s)
        flags.append(flags_s)

    terminal, reachable = _termination(num_states, num_actions, rho, flags)
    for s in np.flatnonzero(terminal):
        loop = (np.array([s], dtype=np.int64), np.ones(1), np.zeros(1))
        rows[s] = [loop] * num_actions
    return _Table(num_states, num_actions, rows, rho, terminal, reachable)


def _termination(num_states, num_actions, rho, flags):
    """Terminal mask and reachable set by a search from the start states (see module docstring).

    Raises ``ValueError`` when a reachable state is reached both with ``terminated=True`` and with
    ``terminated=False`` (a start state counts as reached with ``False``).
    """
    continued: dict[int, str] = {}  # state -> first way it was reached without terminating
    terminated: dict[int, str] = {}  # state -> first transition reaching it with terminated=True
    queue: deque[int] = deque()
    for s in np.flatnonzero(rho > 0):
        continued[int(s)] = f"the start distribution (initial probability {rho[s]:g})"
        queue.append(int(s))

    def conflict(state: int) -> ValueError:
        return ValueError(
            f"Inconsistent flags in `env.P`: state {state} is reached with terminated=True by "
            f"{terminated[state]} and with terminated=False by {continued[state]}. The adapter "
            "needs termination to be a property of the next state (a masked absorbing state)."
        )

    while queue:
        s = queue.popleft()
        for a in range(num_actions):
            for nxt, term in flags[s][a]:
                where = f"transition P[{s}][{a}] (state {s}, action {a})"
                if term:
                    terminated.setdefault(nxt, where)
                    if nxt in continued:
                        raise conflict(nxt)
                else:
                    if nxt in terminated:
                        continued.setdefault(nxt, where)
                        raise conflict(nxt)
                    if nxt not in continued:
                        continued[nxt] = where
                        queue.append(nxt)
    terminal = np.zeros(num_states, dtype=bool)
    terminal[list(terminated)] = True
    reachable = terminal.copy()
    reachable[list(continued)] = True
    return terminal, reachable


def tabular_mdp_from_env(
    env: Any, horizon: int, *, sparse: bool = False, features=None
) -> TabularMDP:
    """The finite-horizon MDP of a toy-text environment's table.

    Reads ``env.unwrapped.P`` and ``env.unwrapped.initial_state_distrib`` (see the module
    docstring for the termination rule and what it means for FrozenLake, CliffWalking and Taxi).
    State and action indices are the environment's own. Works on any object with these two
    attributes (a Gymnasium env, its ``unwrapped`` env, or a plain object); ``observation_space.n``
    and ``action_space.n`` give ``S`` and ``A`` when present, else ``len(P)`` and ``len(P[0])``.

    Args:
        env: a toy-text environment, wrapped or not.
        horizon: number of decisions ``T >= 1`` of the MDP (independent of any ``TimeLimit``).
        sparse: build the sparse successor form (``K`` = the largest number of distinct next states
            of any ``(s, a)``; successors in increasing index order, padded with ``s`` and
            probability 0, as :meth:`TabularMDP.to_sparse`) instead of the dense ``(S, A, S)``
            tensor.
        features: optional ``(S, F)`` or ``(S, A, F)`` features to attach.

    Returns:
        A validated :class:`TabularMDP` with ``terminal`` set as described; it is in float64 when
        ``jax_enable_x64`` is on, else in JAX's default float.

    Raises:
        ValueError: a row or the start distribution that does not sum to 1, a next state out of
            range, a negative or non-finite probability or reward, inconsistent ``terminated``
            flags, or an environment whose ``step`` departs from its table (Taxi's fickle
            passenger).
        TypeError: ``env`` carries no table ``P``.
    """
    table = _read_table(env)
    terminal = table.terminal
    if sparse:
        width = max(len(row[0]) for row_s in table.rows for row in row_s)
        shape = (table.num_states, table.num_actions, width)
        successors = np.broadcast_to(np.arange(table.num_states)[:, None, None], shape).copy()
        probs = np.zeros(shape)
        for s, row_s in enumerate(table.rows):
            for a, (nexts, p, _) in enumerate(row_s):
                successors[s, a, : len(nexts)] = nexts
                probs[s, a, : len(nexts)] = p
        return TabularMDP.from_sparse(
            successors, probs, table.initial_dist, horizon, features=features, terminal=terminal
        )
    transitions = np.zeros((table.num_states, table.num_actions, table.num_states))
    for s, row_s in enumerate(table.rows):
        for a, (nexts, p, _) in enumerate(row_s):
            transitions[s, a, nexts] = p
    return TabularMDP.from_dense(
        transitions, table.initial_dist, horizon, features=features, terminal=terminal
    )


def reward_table_from_env(env: Any) -> np.ndarray:
    r"""Expected reward of each transition, ``R[s, a, s'] = E[r | s, a, s']``, from ``env.P``.

    For the entries ``(p_i, s', r_i, _)`` of ``P[s][a]`` that lead to ``s'`` (after summing
    duplicates), ``R[s, a, s'] = \sum_i p_i r_i / \sum_i p_i``: the mean reward the environment pays
    on that transition. It is what a reward of shape ``(S, A, S)`` in this library needs
    (:math:`R(\tau)=\sum_{t<T} R(s_t, a_t, s_{t+1})`), and its expectation over ``s'`` is the
    expected reward of ``(s, a)``. For example slippery CliffWalking from the start 36 with action
    *right* reaches 36 either via the cliff (``-100``) or by bumping into the bottom edge (``-1``),
    each with probability 1/3, so ``R[36, 1, 36] = -50.5``. Entries with ``P(s'|s,a) = 0`` and the
    rows of terminal (masked) states are 0; the reward of the transition *into* a terminal state is
    kept (e.g. FrozenLake's goal reward ``1``).

    Args:
        env: a toy-text environment, wrapped or not (see :func:`tabular_mdp_from_env`).

    Returns:
        ``(S, A, S)`` float64 NumPy array.
    """
    table = _read_table(env)
    rewards = np.zeros((table.num_states, table.num_actions, table.num_states))
    for s, row_s in enumerate(table.rows):
        for a, (nexts, _, r) in enumerate(row_s):
            rewards[s, a, nexts] = r
    return rewards


def load_toy_text(
    env_id: str, horizon: int, *, sparse: bool = False, **env_kwargs
) -> tuple[TabularMDP, np.ndarray]:
    """``gymnasium.make(env_id, **env_kwargs)`` read into ``(mdp, rewards)``.

    Args:
        env_id: a registered toy-text id, e.g. ``"FrozenLake-v1"``.
        horizon: number of decisions ``T >= 1``.
        sparse: sparse successor form (see :func:`tabular_mdp_from_env`).
        **env_kwargs: passed to ``gymnasium.make`` (e.g. ``is_slippery``, ``map_name``).

    Returns:
        The :class:`TabularMDP` and the ``(S, A, S)`` expected-reward table of
        :func:`reward_table_from_env`.
    """
    env = gymnasium.make(env_id, **env_kwargs)
    try:
        return tabular_mdp_from_env(env, horizon, sparse=sparse), reward_table_from_env(env)
    finally:
        env.close()


def frozenlake(
    horizon: int = 100,
    map_name: str | None = "4x4",
    is_slippery: bool = True,
    *,
    sparse: bool = False,
    **env_kwargs,
) -> TabularMDP:
    """FrozenLake (``FrozenLake-v1``) as a :class:`TabularMDP`.

    16 states (4x4) or 64 (8x8), row-major, 4 actions (0 left, 1 down, 2 right, 3 up). Holes and the
    goal are masked terminal states (entering them terminates); the start cell is the only start
    state. Slippery: the intended move with ``success_rate`` (default 1/3), each perpendicular one
    with ``(1 - success_rate) / 2``.

    Args:
        horizon: number of decisions (default 100, Gymnasium's ``max_episode_steps`` for
            ``FrozenLake-v1``).
        map_name: ``"4x4"`` or ``"8x8"`` (or ``None`` with ``desc=`` in ``env_kwargs``).
        is_slippery: stochastic moves as above.
        sparse: sparse successor form.
        **env_kwargs: further ``FrozenLakeEnv`` arguments (``desc``, ``success_rate``).
    """
    env_kwargs.update(map_name=map_name, is_slippery=is_slippery)
    return load_toy_text(FROZENLAKE_ID, horizon, sparse=sparse, **env_kwargs)[0]


def cliffwalking(horizon: int = 100, *, sparse: bool = False, **env_kwargs) -> TabularMDP:
    """CliffWalking (``CliffWalking-v1``) as a :class:`TabularMDP`.

    48 states (4x12, row-major), 4 actions (0 up, 1 right, 2 down, 3 left), start 36. Only the
    goal 47 is terminal: falling off the cliff returns to the start with reward -100 and does not
    terminate, so the cliff cells 37..46 are never visited (they keep their table rows).

    Args:
        horizon: number of decisions (default 100; Gymnasium registers no time limit).
        sparse: sparse successor form.
        **env_kwargs: further ``CliffWalkingEnv`` arguments (``is_slippery=True``: intended and the
            two perpendicular moves with probability 1/3 each).
    """
    return load_toy_text(CLIFFWALKING_ID, horizon, sparse=sparse, **env_kwargs)[0]


def taxi(horizon: int = 200, *, sparse: bool = False, **env_kwargs) -> TabularMDP:
    """Taxi (``Taxi-v4``) as a :class:`TabularMDP`.

    500 states, 6 actions (0 south, 1 north, 2 east, 3 west, 4 pickup, 5 dropoff), 300 equally
    likely start states. The 4 states reached by a successful dropoff (taxi and passenger at the
    destination) are the terminal states; the other 96 states with the passenger at its
    destination are unreachable and keep the table's rows.

    Args:
        horizon: number of decisions (default 200, Gymnasium's ``max_episode_steps``).
        sparse: sparse successor form.
        **env_kwargs: further ``TaxiEnv`` arguments (``is_rainy``; ``fickle_passenger=True`` is
            refused with ``ValueError``).
    """
    return load_toy_text(TAXI_ID, horizon, sparse=sparse, **env_kwargs)[0]


# ---------------------------------------------------------------------- the real environment
_POLICY_ATOL = 1e-5


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def make_toy_text_env(env_id: str, horizon: int, **env_kwargs) -> gymnasium.Env:
    """``gymnasium.make(env_id, max_episode_steps=horizon, **env_kwargs)``.

    The environment's ``TimeLimit`` is set to the MDP's horizon, so an episode that has not
    terminated is truncated exactly at step ``T`` -- the end of the library's observed array --
    whatever limit the id registers (``FrozenLake-v1``: 100 or 200, ``Taxi-v4``: 200,
    ``CliffWalking-v1``: none). This is the environment :func:`collect_demonstrations` expects.

    Args:
        env_id: a registered toy-text id, e.g. :data:`FROZENLAKE_ID`.
        horizon: number of decisions ``T >= 1``.
        **env_kwargs: further arguments of the environment (``is_slippery``, ``map_name``, ...).

    Returns:
        The wrapped Gymnasium environment; the caller closes it.

    Raises:
        ValueError: ``horizon`` is not an int ``>= 1``.
    """
    horizon = _check_count("horizon", horizon, 1)
    return gymnasium.make(env_id, max_episode_steps=horizon, **env_kwargs)


def _state_index(observation: Any, num_states: int, where) -> int:
    """``observation`` as a state index; ``where()`` describes the call for the error message."""
    if isinstance(observation, bool) or not isinstance(observation, (numbers.Integral, np.integer)):
        raise TypeError(
            f"`env` must return integer state observations; {where()} returned {observation!r} "
            f"({type(observation).__name__})."
        )
    if not 0 <= int(observation) < num_states:
        raise ValueError(
            f"`env` must return states in [0, {num_states}); {where()} returned {observation!r}."
        )
    return int(observation)


def collect_demonstrations(rng_key, env: Any, log_policy, num_demos: int) -> jax.Array:
    r"""Roll a time-indexed policy through the **real** ``env.step`` and record the episodes.

    Episode ``i`` starts from ``env.reset(seed=seed_i)`` and, for ``t = 0, 1, ...``, draws
    :math:`a_t \sim \pi_t(\cdot\mid s_t) = \exp(\text{log\_policy}[t, s_t])` by inverting the
    action CDF at a uniform :math:`u_{i,t}`, then calls ``env.step(a_t)``. Next states, start
    states and termination come from the environment itself (its own random generator, seeded per
    episode), not from the MDP's tables: this is the difference from
    :func:`ebm_ppl.exact.sampling.sample_trajectories`, which samples the same law from the tables.
    With ``log_policy`` the causal soft-optimal policy of a reward
    (``soft_bellman(mdp, reward, model="causal").log_policy``) the episodes are exact draws of the
    maximum-causal-entropy model (THEORY §1.3), provided the environment's ``step`` follows its
    table (which the validation below checks).

    The per-episode seeds and all uniforms ``(N, T)`` are drawn up front from ``rng_key`` with
    JAX; the loop over ``env.step`` is Python, ``O(N T)`` steps (this is the real environment,
    not a hot path). Same key and same environment settings give the same episodes.

    **Encoding** (module :mod:`ebm_ppl.spaces.tabular`): row ``t`` is ``(s_t, a_t)``. An episode
    that terminates at step ``k`` (``terminated=True``) ends with row ``k = (s_k, -1)`` and rows of
    ``-1`` after it; the adapter's termination rule makes ``s_k`` a masked terminal state of the
    MDP, and that is checked on every step. An episode that runs to the horizon ends with row
    ``T = (s_T, -1)``; a ``TimeLimit`` truncation exactly at step ``T`` is that end. **Truncation
    before** ``T`` raises ``ValueError``: the encoding has no way to mark an episode cut short
    without terminating, and padding it would claim a termination that did not happen. Make the
    environment with :func:`make_toy_text_env` (``max_episode_steps = T``) or any limit ``>= T``.

    The result is validated with :func:`~ebm_ppl.spaces.tabular.validate_trajectories` against
    ``tabular_mdp_from_env(env, T)``: every start state has positive initial probability and every
    recorded transition has positive probability under the environment's table.

    Args:
        rng_key: JAX key (split into the episodes' reset seeds and the action uniforms).
        env: a toy-text environment, wrapped or not, with integer observations; it is reset and
            stepped (its state changes), not closed.
        log_policy: ``(T, S, A)`` log-probabilities of actions at each step, normalised over
            actions (e.g. ``SoftBellman.log_policy``); ``T`` is the horizon of the episodes.
        num_demos: number of episodes ``N >= 1``.

    Returns:
        ``(N, T + 1, 2)`` int32 observed arrays.

    Raises:
        ValueError: ``log_policy`` of the wrong shape for the environment, not normalised or not
            finite where it is not ``-inf``; ``num_demos < 1``; truncation before ``T``;
            ``terminated`` that disagrees with the MDP's terminal states; or episodes that the
            environment's table gives probability 0 (its ``step`` departs from ``P``).
        TypeError: ``env`` carries no table ``P`` or returns non-integer observations.
    """
    num_demos = _check_count("num_demos", num_demos, 1)
    log_probs = np.asarray(log_policy, dtype=np.float64)
    if log_probs.ndim != 3 or log_probs.shape[0] < 1:
        raise ValueError(
            f"`log_policy` must have shape (T, S, A) with T >= 1; got shape {log_probs.shape}."
        )
    horizon = log_probs.shape[0]
    mdp = tabular_mdp_from_env(env, horizon)
    num_states, num_actions = mdp.num_states, mdp.num_actions
    if log_probs.shape[1:] != (num_states, num_actions):
        raise ValueError(
            f"`log_policy` must have shape (T, S, A) = ({horizon}, {num_states}, {num_actions}) "
            f"for this environment; got shape {log_probs.shape}."
        )
    if np.isnan(log_probs).any() or np.isposinf(log_probs).any():
        index = tuple(int(i) for i in np.argwhere(~(log_probs < np.inf))[0])
        raise ValueError(
            f"`log_policy` must be finite or -inf; got {log_probs[index]} at index {index}."
        )
    probs = np.exp(log_probs)
    totals = probs.sum(-1)
    if np.any(np.abs(totals - 1.0) > _POLICY_ATOL):
        index = tuple(int(i) for i in np.argwhere(np.abs(totals - 1.0) > _POLICY_ATOL)[0])
        raise ValueError(
            f"`log_policy` must be normalised over actions (exp sums to 1 within "
            f"{_POLICY_ATOL:g}); at (t, s) = {index} it sums to {totals[index]!r}."
        )
    cdf = np.cumsum(probs, axis=-1)

    key_seeds, key_actions = jax.random.split(rng_key)
    seeds = np.asarray(jax.random.randint(key_seeds, (num_demos,), 0, np.iinfo(np.int32).max))
    uniforms = np.asarray(jax.random.uniform(key_actions, (num_demos, horizon)), dtype=np.float64)
    terminal = np.asarray(mdp.terminal)

    observed = np.full((num_demos, horizon + 1, 2), PAD, dtype=np.int64)
    for i in range(num_demos):
        observation, _ = env.reset(seed=int(seeds[i]))
        state = _state_index(observation, num_states, lambda i=i: f"`env.reset` (episode {i})")
        observed[i, 0, 0] = state
        for t in range(horizon):
            row = cdf[t, state]
            action = min(
                int(np.searchsorted(row, uniforms[i, t] * row[-1], side="right")), num_actions - 1
            )
            observed[i, t, 1] = action
            observation, _, terminated, truncated, _ = env.step(action)
            where = lambda i=i, t=t, s=state, a=action: (
                f"`env.step` (episode {i}, step {t}, state {s}, action {a})"
            )
            state = _state_index(observation, num_states, where)
            observed[i, t + 1, 0] = state
            if bool(terminated) != bool(terminal[state]):
                raise ValueError(
                    f"{where()} returned terminated={bool(terminated)} at state {state}, but the "
                    f"MDP read from the environment's table has terminal[{state}] = "
                    f"{bool(terminal[state])}: the environment's `step` departs from its table."
                )
            if terminated:
                break
            if truncated and t + 1 < horizon:
                raise ValueError(
                    f"{where()} truncated the episode after {t + 1} steps, before the horizon "
                    f"T = {horizon}: the observed encoding cannot mark a truncated episode. "
                    "Make the environment with `make_toy_text_env(env_id, horizon=T)` or a "
                    "`max_episode_steps` >= T."
                )
    demos, _ = validate_trajectories(mdp, observed, name="collected demonstrations")
    return demos
