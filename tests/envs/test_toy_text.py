"""Tests of the Gymnasium toy-text adapter (``ebm_ppl.envs.toy_text``).

Frequency tests compare the adapter's ``P(s'|s,a)`` with the REAL ``env.step`` (made with
``gymnasium.make``, wrappers included); the environments' own tables are never sampled. Design:

1. Uniformly random policy rollouts from ``reset`` (up to the MDP's horizon). Every observed
   transition must have positive probability under the MDP, ``terminated`` must equal
   ``mdp.terminal[s']`` (terminated transitions land in a masked absorbing state), and the rollouts,
   encoded as observed arrays ``(T + 1, 2)``, must pass ``validate_trajectories``.
2. Chi-square test of the transition law. To visit chosen ``(s, a)`` pairs often enough, the state
   is set by hand (``env.unwrapped.s = s``) before each ``env.step(a)``, with ``a`` drawn
   uniformly at random (a uniformly random policy at ``s``). ``s`` runs over the non-terminal
   states visited by the rollouts of 1 (a random subset for Taxi). Given the action, each draw is
   independent of all others (the env's RNG), so the counts of each pair are multinomial given the
   number of times its action was drawn. Cells with expected count < 5 are pooled within a pair;
   all pairs enter one chi-square statistic with ``sum(cells - 1)`` degrees of freedom, tested at
   alpha = 1e-3. A draw at a successor of probability 0 fails outright.
3. Chi-square of ``reset`` frequencies against ``mdp.initial_dist``.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from scipy.stats import chi2

from ebm_ppl.envs import (  # importing ebm_ppl.envs registers ebm_ppl/ObjectWorld-v0
    OBJECTWORLD_ID,
    cliffwalking,
    frozenlake,
    load_toy_text,
    reward_table_from_env,
    tabular_mdp_from_env,
    taxi,
)
from ebm_ppl.spaces.tabular import PAD, validate_trajectories

ALPHA = 1e-3
MIN_EXPECTED = 5.0


# ---------------------------------------------------------------------- helpers
def dense_probs(mdp) -> np.ndarray:
    return np.asarray(mdp.to_dense().transitions, dtype=np.float64)


def pooled_chi_square(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Chi-square statistic and dof over independent multinomial rows.

    Args:
        counts: ``(R, C)`` observed counts, one row per multinomial (an ``(s, a)`` pair).
        probs: ``(R, C)`` probabilities of each row's cells.

    Cells of probability 0 must be empty. Within a row, the cells with expected count < 5 are pooled
    into one cell; if that pool is still < 5 it absorbs the smallest remaining cell. A row left with
    one cell adds nothing.
    """
    stat, dof = 0.0, 0
    for row_counts, row_probs in zip(counts, probs, strict=True):
        n = row_counts.sum()
        assert np.all(row_counts[row_probs <= 0] == 0), "a draw hit a successor of probability 0"
        if n == 0:
            continue
        support = row_probs > 0
        observed, expected = row_counts[support].astype(float), n * row_probs[support]
        order = np.argsort(expected)
        observed, expected = observed[order], expected[order]
        small = expected < MIN_EXPECTED
        groups_o, groups_e = list(observed[~small]), list(expected[~small])
        if small.any():
            pool_o, pool_e = observed[small].sum(), expected[small].sum()
            if pool_e < MIN_EXPECTED and groups_e:
                pool_o, pool_e = pool_o + groups_o.pop(0), pool_e + groups_e.pop(0)
            groups_o.append(pool_o)
            groups_e.append(pool_e)
        groups_o, groups_e = np.array(groups_o), np.array(groups_e)
        if groups_e.size < 2:
            assert groups_o.sum() == n
            continue
        stat += float(np.sum((groups_o - groups_e) ** 2 / groups_e))
        dof += groups_e.size - 1
    return stat, dof


def random_rollouts(env, num_episodes: int, horizon: int, rng: np.random.Generator, seed: int):
    """Uniformly random policy episodes through ``env.step``: [(states, actions, terminated)]."""
    num_actions = env.action_space.n
    episodes = []
    for i in range(num_episodes):
        state, _ = env.reset(seed=seed if i == 0 else None)
        states, actions, terminated = [int(state)], [], False
        for _ in range(horizon):
            action = int(rng.integers(num_actions))
            state, _, terminated, truncated, _ = env.step(action)
            states.append(int(state))
            actions.append(action)
            if terminated or truncated:
                break
        episodes.append((states, actions, bool(terminated)))
    return episodes


def to_observed(states, actions, horizon: int) -> np.ndarray:
    """Encode one episode as the library's observed array ``(T + 1, 2)`` (module tabular)."""
    observed = np.full((horizon + 1, 2), PAD, dtype=np.int64)
    observed[: len(states), 0] = states
    observed[: len(actions), 1] = actions
    return observed


def make(env_id: str, kwargs: dict):
    return gymnasium.make(env_id, **kwargs)


def one_step_counts(env, states, draws: int, num_states: int, rng, terminal=None) -> np.ndarray:
    """``(len(states), A, S)`` counts of ``env.step(a)`` outcomes from each state set by hand.

    ``draws`` steps per state, each with a uniformly random action. If ``terminal`` is given, also
    check that ``terminated`` is returned exactly when the next state is terminal.
    """
    num_actions = env.action_space.n
    base = env.unwrapped
    counts = np.zeros((len(states), num_actions, num_states), dtype=np.int64)
    for i, s in enumerate(states):
        for action in rng.integers(num_actions, size=draws):
            base.s = int(s)
            s_next, _, terminated, _, _ = env.step(int(action))
            counts[i, action, s_next] += 1
            if terminal is not None:
                assert bool(terminated) == bool(terminal[s_next])
    return counts


# ---------------------------------------------------------------------- frequency tests
# (env id, make kwargs, rollout episodes, max number of chi-square states, draws per state,
#  whether the dynamics are stochastic)
CASES = {
    "frozenlake-slippery": (
        "FrozenLake-v1",
        {"map_name": "4x4", "is_slippery": True},
        300,
        None,
        1000,
        True,
    ),
    "frozenlake": (
        "FrozenLake-v1",
        {"map_name": "4x4", "is_slippery": False},
        300,
        None,
        40,
        False,
    ),
    "cliffwalking": ("CliffWalking-v1", {}, 100, None, 40, False),
    "cliffwalking-slippery": ("CliffWalking-v1", {"is_slippery": True}, 100, None, 600, True),
    "taxi": ("Taxi-v4", {}, 100, 40, 60, False),
    "taxi-rainy": ("Taxi-v4", {"is_rainy": True}, 100, 40, 800, True),
    "objectworld": (OBJECTWORLD_ID, {"size": 6, "slip": 0.0, "horizon": 20}, 60, None, 25, False),
    "objectworld-slip": (
        OBJECTWORLD_ID,
        {"size": 6, "slip": 0.2, "horizon": 20},
        60,
        None,
        1000,
        True,
    ),
}
HORIZON = 30


@pytest.mark.parametrize("case", list(CASES))
def test_adapter_matches_env_step(case):
    env_id, kwargs, episodes, max_states, draws, stochastic = CASES[case]
    rng = np.random.default_rng(20261125)
    env = make(env_id, kwargs)
    horizon = kwargs.get("horizon", HORIZON)
    mdp = tabular_mdp_from_env(env, horizon)
    probs = dense_probs(mdp)
    terminal = np.asarray(mdp.terminal)

    # 1. random-policy rollouts
    rollouts = random_rollouts(env, episodes, horizon, rng, seed=1)
    visited = set()
    for states, actions, terminated in rollouts:
        for t, action in enumerate(actions):
            s, s_next = states[t], states[t + 1]
            assert probs[s, action, s_next] > 0, (s, action, s_next)
            assert not terminal[s]
            visited.add(s)
            assert terminal[s_next] == (terminated and t == len(actions) - 1)
    observed = np.stack([to_observed(*episode[:2], horizon) for episode in rollouts])
    validate_trajectories(mdp, observed)

    # 2. chi-square on one-step draws from chosen states
    states = np.array(sorted(visited))
    if max_states is not None and states.size > max_states:
        states = np.sort(rng.choice(states, size=max_states, replace=False))
    assert states.size >= min(8, mdp.num_states // 2)
    counts = one_step_counts(env, states, draws, mdp.num_states, rng, terminal)
    stat, dof = pooled_chi_square(
        counts.reshape(-1, mdp.num_states), probs[states].reshape(-1, mdp.num_states)
    )
    if stochastic:
        assert dof > 0
        assert chi2.sf(stat, dof) > ALPHA, (stat, dof)
    else:
        assert dof == 0

    # 3. reset frequencies against the initial distribution
    rho = np.asarray(mdp.initial_dist, dtype=np.float64)
    num_resets = max(200, int(np.ceil(MIN_EXPECTED * 1.5 / rho[rho > 0].min())))
    starts = np.bincount([env.reset()[0] for _ in range(num_resets)], minlength=mdp.num_states)
    stat, dof = pooled_chi_square(starts[None], rho[None])
    assert dof == 0 or chi2.sf(stat, dof) > ALPHA, (stat, dof)
    env.close()


@pytest.mark.parametrize(
    ("env_id", "env_kwargs", "wrong_kwargs"),
    [
        ("FrozenLake-v1", {"is_slippery": True}, {"success_rate": 0.4}),
        (OBJECTWORLD_ID, {"size": 4, "slip": 0.2}, {"slip": 0.3}),
    ],
)
def test_frequency_test_rejects_a_wrong_mdp(env_id, env_kwargs, wrong_kwargs):
    """Negative control: the same draws reject an MDP read from a slightly different env."""
    rng = np.random.default_rng(7)
    env = make(env_id, env_kwargs)
    env.reset(seed=7)
    wrong = tabular_mdp_from_env(make(env_id, {**env_kwargs, **wrong_kwargs}), 5)
    states = np.flatnonzero(~np.asarray(wrong.terminal))
    counts = one_step_counts(env, states, 1000, wrong.num_states, rng)
    probs = dense_probs(wrong)[states]
    stat, dof = pooled_chi_square(
        counts.reshape(-1, wrong.num_states), probs.reshape(-1, wrong.num_states)
    )
    assert chi2.sf(stat, dof) < ALPHA


def test_chi_square_helper_detects_a_wrong_law():
    rng = np.random.default_rng(0)
    p_true, p_wrong = np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.4, 0.2])
    counts = rng.multinomial(2000, p_true, size=4)
    stat, dof = pooled_chi_square(counts, np.tile(p_wrong, (4, 1)))
    assert dof == 8 and chi2.sf(stat, dof) < ALPHA
    stat, dof = pooled_chi_square(counts, np.tile(p_true, (4, 1)))
    assert chi2.sf(stat, dof) > ALPHA
    # pooling: expected counts 9.5, 0.25, 0.25 -> the two small cells join the big one: dof 0
    stat, dof = pooled_chi_square(np.array([[9, 1, 0]]), np.array([[0.95, 0.025, 0.025]]))
    assert dof == 0


# ---------------------------------------------------------------------- termination semantics
def test_frozenlake_terminal_states_are_holes_and_goal():
    env = gymnasium.make("FrozenLake-v1", map_name="8x8", is_slippery=True)
    mdp = tabular_mdp_from_env(env, 5)
    desc = env.unwrapped.desc.ravel()
    expected = np.isin(desc, [b"H", b"G"])
    np.testing.assert_array_equal(np.asarray(mdp.terminal), expected)
    probs = dense_probs(mdp)
    for s in np.flatnonzero(expected):
        np.testing.assert_allclose(probs[s, :, s], 1.0)
    np.testing.assert_array_equal(np.asarray(mdp.initial_dist) > 0, desc == b"S")


def test_cliffwalking_cliff_resets_and_only_goal_terminates():
    env = gymnasium.make("CliffWalking-v1")
    mdp = tabular_mdp_from_env(env, 5)
    rewards = reward_table_from_env(env)
    probs = dense_probs(mdp)
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(mdp.terminal)), [47])
    np.testing.assert_allclose(probs[47, :, 47], 1.0)
    np.testing.assert_allclose(rewards[47], 0.0)
    # start 36, action right (1): into the cliff -> back to 36 with -100, not terminated
    assert probs[36, 1, 36] == 1.0 and rewards[36, 1, 36] == -100.0
    # from 35 down (2) into the goal: reward -1, terminal
    assert probs[35, 2, 47] == 1.0 and rewards[35, 2, 47] == -1.0
    slippery = gymnasium.make("CliffWalking-v1", is_slippery=True)
    rewards = reward_table_from_env(slippery)
    # right from 36: cliff (-100, to 36), up (-1, to 24), down bumps the edge (-1, to 36)
    np.testing.assert_allclose(
        dense_probs(tabular_mdp_from_env(slippery, 5))[36, 1, [24, 36]], [1 / 3, 2 / 3], rtol=1e-6
    )
    assert rewards[36, 1, 36] == pytest.approx(-50.5)


def test_taxi_terminal_states_are_the_four_successful_dropoffs():
    env = gymnasium.make("Taxi-v4")
    base = env.unwrapped
    mdp = tabular_mdp_from_env(env, 5)
    rewards = reward_table_from_env(env)
    locs = [(0, 0), (0, 4), (4, 0), (4, 3)]
    expected = sorted(base.encode(r, c, i, i) for i, (r, c) in enumerate(locs))
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(mdp.terminal)), expected)
    probs = dense_probs(mdp)
    for i, (r, c) in enumerate(locs):
        in_taxi, done = base.encode(r, c, 4, i), base.encode(r, c, i, i)
        assert probs[in_taxi, 5, done] == 1.0 and rewards[in_taxi, 5, done] == 20.0
        np.testing.assert_allclose(probs[done, :, done], 1.0)
    start = np.asarray(mdp.initial_dist)
    assert np.count_nonzero(start) == 300
    # an illegal pickup costs -10 and stays
    s = base.encode(2, 2, 0, 1)
    assert probs[s, 4, s] == 1.0 and rewards[s, 4, s] == -10.0


def test_taxi_fickle_passenger_is_refused():
    with pytest.raises(ValueError, match="fickle_passenger"):
        taxi(horizon=5, fickle_passenger=True)


def test_convenience_constructors_and_sparse_form():
    cases = [
        (frozenlake(horizon=7), gymnasium.make("FrozenLake-v1"), (16, 4)),
        (frozenlake(horizon=7, map_name="8x8", is_slippery=False), None, (64, 4)),
        (cliffwalking(horizon=7), gymnasium.make("CliffWalking-v1"), (48, 4)),
        (taxi(horizon=7), gymnasium.make("Taxi-v4"), (500, 6)),
    ]
    for mdp, env, (num_states, num_actions) in cases:
        assert mdp.horizon == 7 and not mdp.is_sparse
        assert (mdp.num_states, mdp.num_actions) == (num_states, num_actions)
        if env is not None:
            sparse = tabular_mdp_from_env(env, 7, sparse=True)
            assert sparse.is_sparse
            np.testing.assert_array_equal(dense_probs(sparse), dense_probs(mdp))
            np.testing.assert_array_equal(np.asarray(sparse.terminal), np.asarray(mdp.terminal))
    mdp, rewards = load_toy_text("FrozenLake-v1", 3, is_slippery=False)
    assert rewards.shape == (16, 4, 16)
    assert rewards[14, 2, 15] == 1.0 and rewards.sum() == 1.0  # only right from 14 into the goal


# ---------------------------------------------------------------------- hand-made tables
class FakeEnv:
    """Minimal toy-text-like object: a table ``P`` and ``initial_state_distrib``, nothing else."""

    def __init__(self, table, initial):
        self.P = table
        self.initial_state_distrib = np.asarray(initial, dtype=float)


def test_inconsistent_terminated_flags_raise():
    table = {
        0: {0: [(1.0, 1, 0.0, True)], 1: [(1.0, 1, 0.0, False)]},
        1: {0: [(1.0, 1, 0.0, True)], 1: [(1.0, 0, 0.0, False)]},
    }
    match = r"(?i)inconsistent flags.*state 1.*P\[0\]\[0\].*P\[0\]\[1\]"
    with pytest.raises(ValueError, match=match):
        tabular_mdp_from_env(FakeEnv(table, [1.0, 0.0]), 3)
    with pytest.raises(ValueError, match="(?i)inconsistent flags"):
        reward_table_from_env(FakeEnv(table, [1.0, 0.0]))
    # one (s, a) list with both flags for the same next state
    table = {0: {0: [(0.5, 1, 0.0, True), (0.5, 1, 0.0, False)]}, 1: {0: [(1.0, 1, 0.0, False)]}}
    with pytest.raises(ValueError, match="(?i)inconsistent flags"):
        tabular_mdp_from_env(FakeEnv(table, [1.0, 0.0]), 3)
    # a start state reached with terminated=True
    table = {0: {0: [(1.0, 1, 0.0, False)]}, 1: {0: [(1.0, 0, 0.0, True)]}}
    with pytest.raises(ValueError, match=r"(?i)inconsistent flags.*state 0.*start distribution"):
        tabular_mdp_from_env(FakeEnv(table, [1.0, 0.0]), 3)


def test_duplicates_summed_terminal_self_loops_and_unreachable_flags_ignored():
    table = {
        0: {
            0: [(0.25, 1, 1.0, False), (0.25, 1, 3.0, False), (0.5, 2, 4.0, True)],
            1: [(1.0, 0, -1.0, False), (0.0, 3, 0.0, True)],  # a zero-probability entry is ignored
        },
        1: {0: [(1.0, 0, 0.0, False)], 1: [(1.0, 1, 0.0, False)]},
        2: {0: [(1.0, 0, 5.0, False)], 1: [(1.0, 1, 5.0, False)]},
        # state 3 is unreachable: its flag for state 2 (False) contradicts, and is ignored
        3: {0: [(1.0, 2, 0.0, False)], 1: [(0.5, 3, 0.0, False), (0.5, 3, 2.0, False)]},
    }
    env = FakeEnv(table, [1.0, 0.0, 0.0, 0.0])
    mdp = tabular_mdp_from_env(env, 4)
    probs = dense_probs(mdp)
    np.testing.assert_array_equal(np.asarray(mdp.terminal), [False, False, True, False])
    np.testing.assert_allclose(probs[0, 0], [0.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(probs[2], [[0, 0, 1, 0], [0, 0, 1, 0]])  # self-loops
    np.testing.assert_allclose(probs[3], [[0, 0, 1, 0], [0, 0, 0, 1]])  # kept, duplicates summed
    rewards = reward_table_from_env(env)
    assert rewards[0, 0, 1] == pytest.approx(2.0)  # (0.25 * 1 + 0.25 * 3) / 0.5
    assert rewards[0, 0, 2] == 4.0  # the reward into a terminal state is kept
    np.testing.assert_array_equal(rewards[2], 0.0)  # rows of terminal states pay nothing
    assert rewards[3, 1, 3] == 1.0
    sparse = tabular_mdp_from_env(env, 4, sparse=True)
    np.testing.assert_allclose(dense_probs(sparse), probs)


@pytest.mark.parametrize(
    ("table", "initial", "match"),
    [
        ({0: {0: [(0.5, 0, 0.0, False)]}}, [1.0], "sum to 1"),
        ({0: {0: [(0.5, 0, 0.0, False), (0.6, 0, 0.0, False)]}}, [1.0], "sum to 1"),
        ({0: {0: [(1.0, 1, 0.0, False)]}}, [1.0], r"next state must be an int in \[0, 1\)"),
        ({0: {0: [(-0.5, 0, 0.0, False), (1.5, 0, 0.0, False)]}}, [1.0], ">= 0"),
        ({0: {0: [(1.0, 0, float("nan"), False)]}}, [1.0], "rewards must be finite"),
        ({0: {0: [(1.0, 0, 0.0)]}}, [1.0], "entries must be"),
        ({0: {0: [(1.0, 0, 0.0, False)]}}, [0.5], "initial_state_distrib"),
        ({0: {0: [(1.0, 0, 0.0, False)]}}, [0.5, 0.5], "initial_state_distrib"),
        ({0: {0: [(1.0, 0, 0.0, False)]}, 1: {}}, [1.0, 0.0], "must have 1 actions"),
    ],
)
def test_bad_tables_raise(table, initial, match):
    with pytest.raises(ValueError, match=match):
        tabular_mdp_from_env(FakeEnv(table, initial), 2)


def test_env_without_table_raises_type_error():
    with pytest.raises(TypeError, match="toy-text table"):
        tabular_mdp_from_env(object(), 2)
