"""Tests of the ObjectWorld Gymnasium environment and ``objectworld_mdp``.

The frequency test of the adapter against ``env.step`` (slip 0 and 0.2) lives with the other
environments in ``test_toy_text.py``.
"""

from __future__ import annotations

import importlib

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import ebm_ppl.envs
from ebm_ppl.envs import OBJECTWORLD_ID, ObjectWorldEnv, objectworld_mdp, register_objectworld

# (row, col) change of each action: stay, north, east, south, west
MOVES = {0: (0, 0), 1: (-1, 0), 2: (0, 1), 3: (1, 0), 4: (0, -1)}


def expected_next(state: int, action: int, size: int) -> int:
    row, col = divmod(state, size)
    d_row, d_col = MOVES[action]
    new_row, new_col = row + d_row, col + d_col
    if not (0 <= new_row < size and 0 <= new_col < size):
        return state
    return new_row * size + new_col


def test_registered_id_makes_the_env_and_registration_is_idempotent():
    register_objectworld()
    importlib.reload(ebm_ppl.envs)  # registers again: must not raise or duplicate
    assert OBJECTWORLD_ID in gymnasium.registry
    env = gymnasium.make(OBJECTWORLD_ID)
    base = env.unwrapped
    assert isinstance(base, ObjectWorldEnv)
    assert env.spec.max_episode_steps == 20 == base.horizon
    assert env.observation_space == gymnasium.spaces.Discrete(64)
    assert env.action_space == gymnasium.spaces.Discrete(5)
    assert base.objects.shape == (2, 3)
    env = gymnasium.make(OBJECTWORLD_ID, size=5, num_colours=3, objects_per_colour=2, slip=0.1)
    assert (env.unwrapped.size, env.unwrapped.slip) == (5, 0.1)
    assert env.unwrapped.objects.shape == (3, 2)


def test_gymnasium_env_checker_passes():
    env = gymnasium.make(OBJECTWORLD_ID, size=4, slip=0.2, render_mode="ansi")
    check_env(env.unwrapped)


def test_deterministic_moves_with_slip_zero():
    size = 5
    env = gymnasium.make(OBJECTWORLD_ID, size=size)
    env.reset(seed=0)
    for seed in (0, 1):
        env.reset(seed=seed)
        for state in range(size * size):
            for action in range(5):
                env.unwrapped.s = state
                obs, reward, terminated, _, info = env.step(action)
                assert obs == expected_next(state, action, size)
                assert info["executed_action"] == action
                assert reward == 0.0 and not terminated
    # a few by hand: top-left corner 0 and the centre 12 of a 5x5 grid
    nxt = env.unwrapped.next_state
    assert list(nxt[0]) == [0, 0, 1, 5, 0]
    assert list(nxt[12]) == [12, 7, 13, 17, 11]
    mdp = objectworld_mdp(size=size, slip=0.0)
    probs = np.asarray(mdp.transitions)
    assert set(np.unique(probs)) == {0.0, 1.0}
    for state in range(size * size):
        for action in range(5):
            assert probs[state, action, expected_next(state, action, size)] == 1.0


def test_slip_probabilities_by_hand():
    env = ObjectWorldEnv(size=4, slip=0.2)
    probs = env.transition_probs()
    # corner 0, action 0 (stay): stay, north and west all stay -> 0.8 + 3 * 0.04
    np.testing.assert_allclose(probs[0, 0, [0, 1, 4]], [0.92, 0.04, 0.04])
    # interior 5, action 2 (east): 0.8 + 0.04 to 6, 0.04 to each of 5, 1, 9, 4
    np.testing.assert_allclose(probs[5, 2, [6, 5, 1, 9, 4]], [0.84, 0.04, 0.04, 0.04, 0.04])
    np.testing.assert_allclose(probs.sum(-1), 1.0)
    assert env.P[5][2] == [
        (pytest.approx(0.04), 1, 0.0, False),
        (pytest.approx(0.04), 4, 0.0, False),
        (pytest.approx(0.04), 5, 0.0, False),
        (pytest.approx(0.84), 6, 0.0, False),
        (pytest.approx(0.04), 9, 0.0, False),
    ]


def test_reset_step_reward_and_truncation():
    reward = np.arange(9, dtype=float)
    env = ObjectWorldEnv(size=3, horizon=3, reward=reward)
    first = [env.reset(seed=3)[0] for _ in range(1)] + [env.reset()[0] for _ in range(5)]
    again = [env.reset(seed=3)[0] for _ in range(1)] + [env.reset()[0] for _ in range(5)]
    assert first == again
    obs, info = env.reset(options={"state": 4})
    assert obs == 4 and info["prob"] == pytest.approx(1 / 9)
    out = [env.step(2) for _ in range(3)]
    assert [o[0] for o in out] == [5, 5, 5]
    assert [o[1] for o in out] == [4.0, 5.0, 5.0]  # reward of the state the action is taken in
    assert [o[3] for o in out] == [False, False, True]
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"state": 9})
    with pytest.raises(ValueError, match="action"):
        env.step(5)
    # through gymnasium.make the TimeLimit (20 = default horizon) truncates at step 20
    made = gymnasium.make(OBJECTWORLD_ID)
    made.reset(seed=0)
    flags = [made.step(0)[3] for _ in range(20)]
    assert flags == [False] * 19 + [True]


def test_features_by_hand():
    # 4x4 grid; colour 0 at cells 0 (0,0) and 15 (3,3); colour 1 at 6 (1,2) and 9 (2,1)
    env = ObjectWorldEnv(size=4, num_colours=2, objects_per_colour=2, objects=[[0, 15], [6, 9]])
    dist = env.features()
    assert dist.shape == (16, 2)
    np.testing.assert_allclose(dist[5], [np.sqrt(2.0), 1.0])  # cell (1,1)
    np.testing.assert_allclose(dist[3], [3.0, np.sqrt(2.0)])  # cell (0,3)
    np.testing.assert_array_equal(dist[[0, 15], 0], 0.0)
    np.testing.assert_array_equal(dist[[6, 9], 1], 0.0)
    indicator = env.features("indicator")
    assert indicator.shape == (16, 2 * 4)
    np.testing.assert_array_equal(indicator[5], [0, 1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(indicator[3], [0, 0, 1, 1, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="kind"):
        env.features("colour")


def test_seeded_placement():
    a, b = ObjectWorldEnv(seed=5), ObjectWorldEnv(seed=5)
    np.testing.assert_array_equal(a.objects, b.objects)
    np.testing.assert_array_equal(a.features(), b.features())
    c = ObjectWorldEnv(seed=6)
    assert not np.array_equal(a.objects, c.objects)
    assert np.unique(a.objects).size == a.objects.size == 6
    expected = np.random.default_rng(5).choice(64, size=6, replace=False).reshape(2, 3)
    np.testing.assert_array_equal(a.objects, expected)
    big = ObjectWorldEnv(size=3, num_colours=3, objects_per_colour=3, seed=1)
    assert sorted(big.objects.ravel()) == list(range(9))  # every cell used exactly once


def test_objectworld_mdp():
    mdp = objectworld_mdp(seed=5, slip=0.2)
    assert (mdp.num_states, mdp.num_actions, mdp.horizon) == (64, 5, 20)
    assert not np.asarray(mdp.terminal).any()
    np.testing.assert_allclose(np.asarray(mdp.initial_dist), 1 / 64)
    np.testing.assert_allclose(
        np.asarray(mdp.features), ObjectWorldEnv(seed=5).features(), rtol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(mdp.transitions), ObjectWorldEnv(slip=0.2).transition_probs(), atol=1e-7
    )
    sparse = objectworld_mdp(seed=5, slip=0.2, sparse=True)
    assert sparse.is_sparse
    np.testing.assert_allclose(
        np.asarray(sparse.to_dense().transitions), np.asarray(mdp.transitions), atol=1e-7
    )
    indicator = objectworld_mdp(size=5, horizon=3, feature_kind="indicator")
    assert indicator.features.shape == (25, 2 * 5) and indicator.horizon == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"slip": 1.5}, "slip"),
        ({"size": 0}, "size"),
        ({"size": 2, "num_colours": 2, "objects_per_colour": 3}, "num_colours"),
        ({"horizon": 0}, "horizon"),
        ({"size": 2, "objects_per_colour": 1, "reward": np.zeros(3)}, "reward"),
        ({"size": 2, "objects_per_colour": 1, "reward": [0.0, np.nan, 0.0, 0.0]}, "reward"),
        ({"size": 3, "objects_per_colour": 1, "objects": [[0], [0]]}, "distinct"),
        ({"size": 3, "objects_per_colour": 1, "objects": [[0], [9]]}, "cell indices"),
        ({"size": 3, "objects": [[0, 1]]}, "shape"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ObjectWorldEnv(**kwargs)


def test_render_ansi():
    env = ObjectWorldEnv(
        size=3, num_colours=2, objects_per_colour=1, objects=[[0], [8]], render_mode="ansi"
    )
    env.reset(options={"state": 4})
    assert env.render() == "0..\n.A.\n..1\n"
