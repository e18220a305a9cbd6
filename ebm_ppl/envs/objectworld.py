r"""ObjectWorld as a Gymnasium environment (``ebm_ppl/ObjectWorld-v0``) and as a TabularMDP.

ObjectWorld (Levine, Popović & Koltun 2011 [GPIRL]; Wulfmeier et al. 2015 [W15]) is an ``N x N``
grid with coloured objects on some cells. Here:

* **States.** Cell ``(row, col)`` is state ``s = row * N + col``; row 0 is the north (top) edge.
  Observations are the state index (``Discrete(N * N)``).
* **Actions.** 5 actions: ``0`` stay, ``1`` up/north (``row - 1``), ``2`` right/east (``col + 1``),
  ``3`` down/south (``row + 1``), ``4`` left/west (``col - 1``). A move off the grid stays in place.
* **Slip.** With probability ``1 - slip`` the intended action is executed; with probability
  ``slip`` the executed action is drawn uniformly from all 5 actions (the intended one included).
  So ``P(s' | s, a) = (1 - slip) 1[s' = m(s, a)] + (slip / 5) #{b : m(s, b) = s'}``, with
  ``m(s, b)`` the cell that action ``b`` moves to; the intended outcome has probability
  ``1 - slip + slip / 5`` when it differs from all other moves (e.g. ``0.84`` at ``slip = 0.2``).
  ``slip = 0`` (the default) is deterministic.
* **Start and end.** The initial state is uniform over all cells; there are no terminal states.
  Episodes are truncated after ``horizon`` steps (default 20).
* **Objects.** ``num_colours`` colours with ``objects_per_colour`` objects each, at distinct cells
  drawn by ``np.random.default_rng(seed).choice(N * N, num_colours * objects_per_colour,
  replace=False)``; colour ``c`` gets draws ``c*K .. c*K + K - 1``. (Levine's objects carry an inner
  and an outer colour; ours carry one.) The placement ``seed`` is not the RNG of ``reset``/``step``,
  which use ``self.np_random`` as Gymnasium requires.
* **Rewards.** ``step`` pays ``reward[s]`` for the state ``s`` in which the action is taken, from
  the ``(S,)`` array given to the constructor (default zeros): the true reward of a problem is
  defined by the problem layer, not by the environment. This matches the library's
  :math:`R(\tau) = \sum_{t<T} r(s_t, a_t)` with a state-only reward.

The environment exposes the toy-text table ``self.P[s][a] = [(prob, next_state, reward,
terminated), ...]`` (duplicates already summed, next states increasing) and
``self.initial_state_distrib``, so :func:`ebm_ppl.envs.toy_text.tabular_mdp_from_env` reads it like
any toy-text environment; :func:`objectworld_mdp` builds the MDP exactly that way. ``step`` does
**not** sample from ``P``: it draws the slip and moves, so comparing the two is a real test.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from ebm_ppl.envs.toy_text import tabular_mdp_from_env
from ebm_ppl.spaces.tabular import TabularMDP

__all__ = ["ObjectWorldEnv", "objectworld_mdp", "register_objectworld", "OBJECTWORLD_ID"]

OBJECTWORLD_ID = "ebm_ppl/ObjectWorld-v0"
"""Gymnasium id registered by ``import ebm_ppl.envs``."""

NUM_ACTIONS = 5
ACTION_DELTAS = np.array([[0, 0], [-1, 0], [0, 1], [1, 0], [0, -1]], dtype=np.int64)
"""``(row, col)`` change of each action: stay, up/north, right/east, down/south, left/west."""


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


class ObjectWorldEnv(gymnasium.Env):
    """ObjectWorld grid (see the module docstring for the exact dynamics).

    Args:
        size: grid side ``N >= 1``; ``S = N * N`` states.
        num_colours: number of object colours ``C >= 1``.
        objects_per_colour: objects per colour ``K >= 1``; ``C * K <= N * N``.
        slip: probability in ``[0, 1]`` that the executed action is redrawn uniformly from all 5.
        horizon: episode length; ``step`` returns ``truncated=True`` at step ``horizon``. The
            registered id also carries ``max_episode_steps=20`` (the default horizon): with
            ``gymnasium.make(OBJECTWORLD_ID, horizon=H)`` pass ``max_episode_steps=H`` too, or the
            ``TimeLimit`` wrapper truncates at 20.
        seed: integer seed of the object placement (not of ``reset``/``step``).
        reward: optional ``(S,)`` finite reward of each state, paid by ``step`` for the state the
            action is taken in. Default zeros.
        objects: optional ``(C, K)`` distinct cell indices overriding the seeded placement.
        render_mode: ``None`` or ``"ansi"``.

    Attributes:
        P: toy-text table ``P[s][a] = [(prob, next_state, reward[s], False), ...]``.
        initial_state_distrib: ``(S,)`` uniform.
        objects: ``(C, K)`` int array, the cells of the objects of each colour.
        next_state: ``(S, 5)`` int array, the cell each executed action leads to.
        s: the current state (set it directly to step from a chosen state, as in toy-text envs).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        size: int = 8,
        num_colours: int = 2,
        objects_per_colour: int = 3,
        slip: float = 0.0,
        horizon: int = 20,
        seed: int = 0,
        reward=None,
        objects=None,
        render_mode: str | None = None,
    ):
        self.size = _check_int("size", size, 1)
        self.num_colours = _check_int("num_colours", num_colours, 1)
        self.objects_per_colour = _check_int("objects_per_colour", objects_per_colour, 1)
        self.horizon = _check_int("horizon", horizon, 1)
        num_states = self.size * self.size
        self.num_states, self.num_actions = num_states, NUM_ACTIONS
        slip = float(slip)
        if not 0.0 <= slip <= 1.0:
            raise ValueError(f"`slip` must be a probability in [0, 1]; got {slip!r}.")
        self.slip = slip
        if render_mode not in (None, "ansi"):
            raise ValueError(f"`render_mode` must be None or 'ansi'; got {render_mode!r}.")
        self.render_mode = render_mode

        count = self.num_colours * self.objects_per_colour
        if objects is None:
            if count > num_states:
                raise ValueError(
                    f"`num_colours * objects_per_colour` must be <= size**2 = {num_states} "
                    f"(one object per cell); got {self.num_colours} * "
                    f"{self.objects_per_colour} = {count}."
                )
            rng = np.random.default_rng(_check_int("seed", seed, 0))
            cells = rng.choice(num_states, size=count, replace=False)
            objects = cells.reshape(self.num_colours, self.objects_per_colour)
        else:
            objects = np.asarray(objects)
            expected = (self.num_colours, self.objects_per_colour)
            if objects.shape != expected or not np.issubdtype(objects.dtype, np.integer):
                raise ValueError(
                    f"`objects` must be an int array of shape (num_colours, objects_per_colour) = "
                    f"{expected}; got shape {objects.shape} and dtype {objects.dtype}."
                )
            if objects.min() < 0 or objects.max() >= num_states:
                raise ValueError(
                    f"`objects` must hold cell indices in [0, {num_states}); got "
                    f"{objects.min()}..{objects.max()}."
                )
            if np.unique(objects).size != objects.size:
                raise ValueError(f"`objects` must be distinct cells; got {objects.tolist()}.")
        self.objects = np.asarray(objects, dtype=np.int64)

        if reward is None:
            reward = np.zeros(num_states)
        reward = np.asarray(reward, dtype=np.float64)
        if reward.shape != (num_states,):
            raise ValueError(
                f"`reward` must have shape (S,) = ({num_states},); got shape {reward.shape}."
            )
        if not np.all(np.isfinite(reward)):
            bad = int(np.flatnonzero(~np.isfinite(reward))[0])
            raise ValueError(f"`reward` must be finite; got {reward[bad]} at state {bad}.")
        self.reward = reward

        rows, cols = np.divmod(np.arange(num_states), self.size)
        moved = np.stack([rows, cols], -1)[:, None, :] + ACTION_DELTAS[None, :, :]
        inside = np.all((moved >= 0) & (moved < self.size), axis=-1)
        target = moved[..., 0] * self.size + moved[..., 1]
        self.next_state = np.where(inside, target, np.arange(num_states)[:, None])

        self.P = self._table()
        self.initial_state_distrib = np.full(num_states, 1.0 / num_states)
        self.observation_space = spaces.Discrete(num_states)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.s = 0
        self._elapsed = 0

    # ------------------------------------------------------------------ dynamics
    def transition_probs(self) -> np.ndarray:
        """Dense ``(S, 5, S)`` ``P(s' | s, a)`` as in the module docstring (float64)."""
        num_states = self.num_states
        probs = np.zeros((num_states, NUM_ACTIONS, num_states))
        s_idx = np.arange(num_states)[:, None]
        for executed in range(NUM_ACTIONS):
            targets = self.next_state[:, executed][:, None]
            weight = np.full((1, NUM_ACTIONS), self.slip / NUM_ACTIONS)
            weight[0, executed] += 1.0 - self.slip
            np.add.at(probs, (s_idx, np.arange(NUM_ACTIONS)[None, :], targets), weight)
        return probs

    def _table(self) -> dict:
        probs = self.transition_probs()
        table = {}
        for s in range(self.num_states):
            reward = float(self.reward[s])
            table[s] = {
                a: [
                    (float(probs[s, a, n]), int(n), reward, False)
                    for n in np.flatnonzero(probs[s, a])
                ]
                for a in range(NUM_ACTIONS)
            }
        return table

    # ------------------------------------------------------------------ features
    def features(self, kind: str = "distance") -> np.ndarray:
        """State features of the object layout.

        Args:
            kind: ``"distance"``: ``(S, C)``, the Euclidean distance (in cells, unscaled) from each
                cell to the nearest object of each colour (0 on an object of that colour).
                ``"indicator"``: ``(S, C * N)``, Levine et al.'s binary features
                ``1[distance to nearest object of colour c <= d]`` for ``d = 1..N``, colour-major
                (column ``c * N + d - 1``).

        Returns:
            float64 NumPy array.
        """
        rows, cols = np.divmod(np.arange(self.num_states), self.size)
        cells = np.stack([rows, cols], -1).astype(np.float64)
        obj = cells[self.objects]  # (C, K, 2)
        dist = np.linalg.norm(cells[:, None, None, :] - obj[None], axis=-1).min(axis=-1)  # (S, C)
        if kind == "distance":
            return dist
        if kind == "indicator":
            thresholds = np.arange(1, self.size + 1, dtype=np.float64)
            indicator = dist[:, :, None] <= thresholds[None, None, :]
            return indicator.reshape(self.num_states, -1).astype(np.float64)
        raise ValueError(f"`kind` must be one of ('distance', 'indicator'); got {kind!r}.")

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode in a uniformly drawn cell (or ``options={"state": s}``).

        Returns:
            ``(observation, info)`` with ``info = {"prob": initial probability of the state}``.
        """
        super().reset(seed=seed)
        if options is not None and "state" in options:
            state = int(options["state"])
            if not 0 <= state < self.num_states:
                raise ValueError(
                    f"`options['state']` must be in [0, {self.num_states}); got {state}."
                )
        else:
            state = int(self.np_random.integers(self.num_states))
        self.s = state
        self._elapsed = 0
        return state, {"prob": float(self.initial_state_distrib[state])}

    def step(self, action):
        """Take ``action`` from ``self.s``: slip with probability ``slip``, then move.

        Returns:
            ``(observation, reward, terminated, truncated, info)``; ``reward = reward[s]`` of the
            state the action was taken in, ``terminated`` is always ``False``, ``truncated`` is
            ``True`` at step ``horizon``; ``info["executed_action"]`` is the action actually
            executed.
        """
        if not self.action_space.contains(action):
            raise ValueError(f"`action` must be an int in [0, {NUM_ACTIONS}); got {action!r}.")
        executed = int(action)
        if self.slip > 0 and self.np_random.random() < self.slip:
            executed = int(self.np_random.integers(NUM_ACTIONS))
        state = self.s
        self.s = int(self.next_state[state, executed])
        self._elapsed += 1
        reward = float(self.reward[state])
        truncated = self._elapsed >= self.horizon
        return self.s, reward, False, truncated, {"executed_action": executed}

    def render(self):
        """Text picture (``render_mode="ansi"``): ``A`` agent, digit: object colour, ``.`` empty."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; pass render_mode='ansi'.")
            return None
        grid = np.full(self.num_states, ".", dtype=object)
        for colour, cells in enumerate(self.objects):
            grid[cells] = str(colour % 10)
        grid[self.s] = "A"
        lines = ["".join(grid[r * self.size : (r + 1) * self.size]) for r in range(self.size)]
        return "\n".join(lines) + "\n"


def register_objectworld() -> None:
    """Register ``ebm_ppl/ObjectWorld-v0`` with Gymnasium (idempotent).

    ``max_episode_steps`` is 20, the default horizon (see :class:`ObjectWorldEnv` for other
    horizons).
    """
    if OBJECTWORLD_ID in gymnasium.registry:
        return
    gymnasium.register(
        id=OBJECTWORLD_ID,
        entry_point="ebm_ppl.envs.objectworld:ObjectWorldEnv",
        max_episode_steps=20,
    )


def objectworld_mdp(
    size: int = 8,
    num_colours: int = 2,
    objects_per_colour: int = 3,
    slip: float = 0.0,
    horizon: int = 20,
    seed: int = 0,
    sparse: bool = False,
    *,
    feature_kind: str = "distance",
) -> TabularMDP:
    """The ObjectWorld MDP, read from :class:`ObjectWorldEnv` by ``tabular_mdp_from_env``.

    Args:
        size, num_colours, objects_per_colour, slip, horizon, seed: as :class:`ObjectWorldEnv`.
        sparse: sparse successor form (``K <= 5``).
        feature_kind: ``"distance"`` (``(S, C)``, default) or ``"indicator"`` (``(S, C * N)``),
            see :meth:`ObjectWorldEnv.features`.

    Returns:
        A :class:`TabularMDP` with ``S = size**2`` states, 5 actions, uniform start, no terminal
        states and the features attached.
    """
    env = ObjectWorldEnv(
        size=size,
        num_colours=num_colours,
        objects_per_colour=objects_per_colour,
        slip=slip,
        horizon=horizon,
        seed=seed,
    )
    return tabular_mdp_from_env(env, horizon, sparse=sparse, features=env.features(feature_kind))
