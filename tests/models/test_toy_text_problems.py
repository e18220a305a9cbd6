"""The Gymnasium toy-text problems (``frozenlake``, ``cliffwalking``, ``taxi``) and
``ebm_ppl.envs.toy_text.collect_demonstrations``.

What is checked, and why it shows that the demonstrations are the stated policy's episodes through
the real ``env.step``:

1. Every problem builds through the registry with its defaults and with small options; its MDP,
   features, true parameters and demonstrations have the documented shapes and values; the
   demonstrations validate against the MDP, are reproducible for a key and differ for another.
2. The features reproduce the environment's own reward (CliffWalking, Taxi) or cell kinds
   (FrozenLake, against the map), so the stated ``theta`` means what the module says.
3. **Policy.** The first actions of independent demonstrations, given their start state, are
   independent draws of ``pi_0(. | s_0)`` of the causal soft-optimal policy of the stated reward.
   One chi-square over the start states (cells with expected count < 5 pooled within a start
   state), alpha = 1e-3, fixed key; the same counts against the uniform policy must be rejected
   (the test has power).
4. **Dynamics.** Next states come from ``env.step``: under deterministic dynamics every recorded
   successor is the MDP's unique successor; under slippery FrozenLake the first transitions
   ``s_1 | (s_0, a_0)`` pass a chi-square against the table; a counting wrapper sees one
   ``env.step`` per recorded action; a wrapper that departs from the table is caught.
5. ``soft_bellman`` and ``CausalTrajectories(...).log_prob`` are finite on every problem's demos.
6. Bad options and bad ``collect_demonstrations`` arguments raise ``ValueError`` naming the
   argument.
"""

from __future__ import annotations

import gymnasium
import jax
import numpy as np
import pytest
from scipy.stats import chi2

from ebm_ppl.envs.toy_text import (
    CLIFFWALKING_ID,
    FROZENLAKE_ID,
    collect_demonstrations,
    make_toy_text_env,
    reward_table_from_env,
)
from ebm_ppl.exact.tabular import soft_bellman
from ebm_ppl.likelihood import CausalTrajectories
from ebm_ppl.models import cliffwalking, frozenlake, taxi
from ebm_ppl.problems import PROBLEMS, list_problems, make_problem
from ebm_ppl.spaces.tabular import PAD, validate_trajectories

ALPHA = 1e-3
MIN_EXPECTED = 5.0
MODULES = {"frozenlake": frozenlake, "cliffwalking": cliffwalking, "taxi": taxi}
# name -> (num states, num actions, default horizon, num features)
SIZES = {"frozenlake": (16, 4, 100, 3), "cliffwalking": (48, 4, 50, 2), "taxi": (500, 6, 50, 3)}


# ---------------------------------------------------------------------- helpers
def pooled_chi_square(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Chi-square statistic and dof over independent multinomial rows ``(R, C)``.

    Within a row, cells with expected count < 5 are pooled; a pool still < 5 absorbs the smallest
    remaining cell; a row left with one cell adds nothing. Cells of probability 0 must be empty.
    """
    stat, dof = 0.0, 0
    for row_counts, row_probs in zip(counts, probs, strict=True):
        n = row_counts.sum()
        assert np.all(row_counts[row_probs <= 0] == 0), "a draw hit a cell of probability 0"
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
            continue
        stat += float(np.sum((groups_o - groups_e) ** 2 / groups_e))
        dof += groups_e.size - 1
    return stat, dof


def start_action_counts(demos: np.ndarray, num_states: int, num_actions: int) -> np.ndarray:
    """``(S, A)`` counts of ``(s_0, a_0)`` over the demonstrations (one draw each)."""
    counts = np.zeros((num_states, num_actions), dtype=np.int64)
    np.add.at(counts, (demos[:, 0, 0], demos[:, 0, 1]), 1)
    return counts


def dense(mdp) -> np.ndarray:
    return np.asarray(mdp.to_dense().transitions, dtype=np.float64)


@pytest.fixture(scope="module")
def default_problems():
    """Each problem with its default options (50 demonstrations), built once for this module."""
    return {name: make_problem(name, jax.random.key(0)) for name in MODULES}


# ---------------------------------------------------------------------- registry and building
def test_registry_lists_the_toy_text_problems():
    for name in MODULES:
        assert name in list_problems()
        assert PROBLEMS[name] == f"ebm_ppl.models.{name}"
    with pytest.raises(ValueError, match="`name` must be one of"):
        make_problem("frozen_lake", jax.random.key(0))


@pytest.mark.parametrize("name", list(MODULES))
def test_default_problem(name, default_problems):
    problem = default_problems[name]
    module = MODULES[name]
    num_states, num_actions, horizon, num_features = SIZES[name]
    mdp = problem.mdp
    assert problem.name == name and problem.model == "causal" and problem.discount == 1.0
    assert (mdp.num_states, mdp.num_actions, mdp.horizon) == (num_states, num_actions, horizon)
    assert problem.energy_model.features.shape == (num_states, num_actions, num_features)
    assert problem.energy_model.features is mdp.features
    assert len(module.FEATURE_NAMES) == num_features
    np.testing.assert_array_equal(problem.true_params["theta"], module.TRUE_THETA)
    # the features say which kind of step (s, a) is: they sum to 1 on live rows, 0 on terminal ones
    totals = np.asarray(mdp.features).sum(-1)
    live = ~np.asarray(mdp.terminal)
    np.testing.assert_allclose(totals[live], 1.0, atol=1e-12)
    np.testing.assert_array_equal(totals[~live], 0.0)

    demos = np.asarray(problem.demos)
    assert demos.shape == (50, horizon + 1, 2) and problem.demos.dtype == np.int32
    validate_trajectories(mdp, demos, name="demos")
    # soft-optimal episodes of the stated reward reach a terminal state within the horizon
    lengths = (demos[:, :, 1] != PAD).sum(1)
    final = demos[np.arange(len(demos)), lengths, 0]
    assert np.asarray(mdp.terminal)[final].mean() > 0.5

    reward = problem.true_reward()
    recursion = soft_bellman(mdp, reward, model="causal")
    assert np.all(np.isfinite(np.asarray(recursion.values)))
    assert np.all(np.isfinite(np.asarray(recursion.log_policy)))
    log_prob = np.asarray(CausalTrajectories(mdp, reward).log_prob(problem.demos))
    assert log_prob.shape == (50,) and np.all(np.isfinite(log_prob))


def test_grid_shapes(default_problems):
    for name, shape in [
        ("frozenlake", frozenlake.GRID_SHAPE),
        ("cliffwalking", cliffwalking.GRID_SHAPE),
    ]:
        assert shape[0] * shape[1] == default_problems[name].mdp.num_states
    assert frozenlake.grid_shape("8x8") == (8, 8)
    assert not hasattr(taxi, "GRID_SHAPE")


SMALL_OPTIONS = [
    ("frozenlake", {"map_name": "8x8", "is_slippery": False, "horizon": 30, "model": "trajectory"}),
    ("cliffwalking", {"is_slippery": True, "horizon": 25, "true_params": [-1.0, -20.0]}),
    ("taxi", {"is_rainy": True, "horizon": 20, "sparse": True, "prior_scale": 5.0}),
]


@pytest.mark.parametrize(("name", "options"), SMALL_OPTIONS, ids=lambda v: str(v))
def test_small_options_and_keys(name, options):
    num_demos = 8
    key, other = jax.random.key(3), jax.random.key(4)
    problem = make_problem(name, key, num_demos=num_demos, **options)
    horizon = options["horizon"]
    assert problem.mdp.horizon == horizon
    assert problem.mdp.is_sparse == options.get("sparse", False)
    assert problem.model == options.get("model", "causal")
    if "prior_scale" in options:
        assert problem.energy_model.prior_scale == options["prior_scale"]
    if "true_params" in options:
        np.testing.assert_array_equal(problem.true_params["theta"], options["true_params"])
    assert problem.demos.shape == (num_demos, horizon + 1, 2)
    validate_trajectories(problem.mdp, problem.demos)
    # same key: same demonstrations (the env is reset with seeds drawn from the key)
    again = make_problem(name, key, num_demos=num_demos, **options)
    np.testing.assert_array_equal(again.demos, problem.demos)
    different = make_problem(name, other, num_demos=num_demos, **options)
    assert not np.array_equal(different.demos, problem.demos)


def test_no_demos():
    problem = frozenlake.make_problem(jax.random.key(0), num_demos=0, horizon=5)
    assert problem.demos is None and problem.true_params is not None


# ---------------------------------------------------------------------- features mean what they say
def test_frozenlake_features_match_the_map():
    env = gymnasium.make(FROZENLAKE_ID, map_name="4x4", is_slippery=True)
    cells = env.unwrapped.desc.flatten()
    env.close()
    problem = frozenlake.make_problem(jax.random.key(0), num_demos=0, horizon=5)
    transitions = dense(problem.mdp)
    live = ~np.asarray(problem.mdp.terminal)
    features = np.asarray(problem.mdp.features)
    for k, kinds in enumerate((b"FS", b"H", b"G")):
        enters = np.isin(cells, [bytes([c]) for c in kinds])
        expected = (transitions * enters).sum(-1) * live[:, None]
        np.testing.assert_allclose(features[..., k], expected, atol=1e-12)


@pytest.mark.parametrize(
    ("module", "env_id", "options"),
    [
        (cliffwalking, CLIFFWALKING_ID, {"is_slippery": False}),
        (cliffwalking, CLIFFWALKING_ID, {"is_slippery": True}),
        (taxi, "Taxi-v4", {"is_rainy": False}),
        (taxi, "Taxi-v4", {"is_rainy": True}),
    ],
    ids=["cliff", "cliff-slippery", "taxi", "taxi-rainy"],
)
def test_env_theta_is_the_environments_reward(module, env_id, options):
    problem = module.make_problem(jax.random.key(0), num_demos=0, horizon=3, **options)
    env = gymnasium.make(env_id, **options)
    expected_reward = (dense(problem.mdp) * reward_table_from_env(env)).sum(-1)
    env.close()
    live = ~np.asarray(problem.mdp.terminal)
    reward = np.asarray(problem.mdp.features) @ np.asarray(module.ENV_THETA)
    np.testing.assert_allclose(reward[live], expected_reward[live], atol=1e-9)
    np.testing.assert_allclose(
        module.TRUE_THETA, module.INVERSE_TEMPERATURE * np.asarray(module.ENV_THETA)
    )


# ---------------------------------------------------------------------- the policy
POLICY_DEMOS = {"frozenlake": 600, "cliffwalking": 600, "taxi": 6000}


@pytest.fixture(scope="module")
def many_demos():
    """Each default problem with enough demonstrations for the frequency tests (fixed key)."""
    return {
        name: make_problem(name, jax.random.key(11), num_demos=num)
        for name, num in POLICY_DEMOS.items()
    }


@pytest.mark.parametrize("name", list(POLICY_DEMOS))
def test_first_actions_follow_the_stated_policy(name, many_demos):
    problem = many_demos[name]
    mdp = problem.mdp
    policy = np.exp(np.asarray(soft_bellman(mdp, problem.true_reward()).log_policy[0]))
    counts = start_action_counts(np.asarray(problem.demos), mdp.num_states, mdp.num_actions)
    assert counts.sum() == POLICY_DEMOS[name]
    stat, dof = pooled_chi_square(counts, policy)
    assert dof >= 2  # enough cells survive pooling for a real test
    assert stat < chi2.isf(ALPHA, dof), (stat, dof)
    # negative control: the same counts are far from the uniform policy
    uniform = np.full_like(policy, 1.0 / mdp.num_actions)
    stat_u, dof_u = pooled_chi_square(counts, uniform)
    assert stat_u > chi2.isf(ALPHA, dof_u)


# ---------------------------------------------------------------------- the dynamics
def assert_successors_are_the_mdps(problem):
    transitions = dense(problem.mdp)
    assert np.all(transitions.max(-1) == 1.0)  # deterministic
    demos = np.asarray(problem.demos)
    acting = demos[:, :-1, 1] != PAD
    s, a, s_next = demos[:, :-1, 0][acting], demos[:, :-1, 1][acting], demos[:, 1:, 0][acting]
    np.testing.assert_array_equal(s_next, transitions[s, a].argmax(-1))


@pytest.mark.parametrize("name", ["cliffwalking", "taxi"])
def test_deterministic_successors_are_the_mdps(name, many_demos):
    assert_successors_are_the_mdps(many_demos[name])


def test_deterministic_frozenlake_successors_are_the_mdps():
    problem = frozenlake.make_problem(jax.random.key(5), is_slippery=False)
    assert_successors_are_the_mdps(problem)


def test_slippery_first_transitions_follow_the_table(many_demos):
    """``s_1 | (s_0, a_0)``: one independent draw of the env's dynamics per demonstration."""
    problem = many_demos["frozenlake"]
    demos = np.asarray(problem.demos)
    transitions = dense(problem.mdp)
    (start,) = np.flatnonzero(np.asarray(problem.mdp.initial_dist))
    assert np.all(demos[:, 0, 0] == start)
    counts = np.zeros((problem.mdp.num_actions, problem.mdp.num_states), dtype=np.int64)
    np.add.at(counts, (demos[:, 0, 1], demos[:, 1, 0]), 1)
    stat, dof = pooled_chi_square(counts, transitions[start])
    assert dof >= 1
    assert stat < chi2.isf(ALPHA, dof), (stat, dof)


class CountSteps(gymnasium.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        return self.env.step(action)


class ShiftStates(gymnasium.Wrapper):
    """Reports the next cell to the right: a ``step`` that departs from the table ``P``."""

    def step(self, action):
        state, reward, terminated, truncated, info = self.env.step(action)
        return (state + 1) % 48, reward, terminated, truncated, info


def uniform_log_policy(horizon, num_states, num_actions):
    return np.full((horizon, num_states, num_actions), -np.log(num_actions))


def test_collect_demonstrations_steps_the_real_env():
    env = CountSteps(make_toy_text_env(FROZENLAKE_ID, 10, is_slippery=True))
    demos = np.asarray(
        collect_demonstrations(jax.random.key(0), env, uniform_log_policy(10, 16, 4), 5)
    )
    env.close()
    assert demos.shape == (5, 11, 2)
    assert env.steps == int((demos[:, :, 1] != PAD).sum())


def test_collect_demonstrations_catches_a_step_that_departs_from_the_table():
    env = ShiftStates(make_toy_text_env(CLIFFWALKING_ID, 10))
    with pytest.raises(ValueError, match="probability 0|terminated="):
        collect_demonstrations(jax.random.key(0), env, uniform_log_policy(10, 48, 4), 5)
    env.close()


def test_collect_demonstrations_refuses_early_truncation():
    env = make_toy_text_env(CLIFFWALKING_ID, 3)  # TimeLimit 3 < T = 10; the goal is 13 steps away
    with pytest.raises(ValueError, match="truncated the episode after 3 steps"):
        collect_demonstrations(jax.random.key(0), env, uniform_log_policy(10, 48, 4), 5)
    env.close()


def test_collect_demonstrations_bad_arguments():
    env = make_toy_text_env(CLIFFWALKING_ID, 5)
    key, good = jax.random.key(0), uniform_log_policy(5, 48, 4)
    with pytest.raises(ValueError, match="`num_demos` must be an int >= 1"):
        collect_demonstrations(key, env, good, 0)
    with pytest.raises(
        ValueError, match=r"`log_policy` must have shape \(T, S, A\) = \(5, 48, 4\)"
    ):
        collect_demonstrations(key, env, uniform_log_policy(5, 48, 5), 1)
    with pytest.raises(ValueError, match=r"`log_policy` must have shape \(T, S, A\) with T >= 1"):
        collect_demonstrations(key, env, good[0], 1)
    with pytest.raises(ValueError, match="`log_policy` must be normalised"):
        collect_demonstrations(key, env, good + 0.1, 1)
    bad = good.copy()
    bad[2, 7, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"`log_policy` must be finite or -inf; got nan at index \(2, 7, 1\)"
    ):
        collect_demonstrations(key, env, bad, 1)
    with pytest.raises(ValueError, match="`horizon` must be an int >= 1"):
        make_toy_text_env(CLIFFWALKING_ID, 0)
    env.close()


# ---------------------------------------------------------------------- bad options
BAD_OPTIONS = [
    ("frozenlake", {"map_name": "5x5"}, "`map_name` must be one of"),
    ("frozenlake", {"is_slippery": "yes"}, "`is_slippery` must be True or False"),
    ("cliffwalking", {"is_slippery": 1}, "`is_slippery` must be True or False"),
    ("taxi", {"is_rainy": None}, "`is_rainy` must be True or False"),
    ("frozenlake", {"horizon": 0}, "`horizon` must be an int >= 1"),
    ("taxi", {"horizon": 2.5}, "`horizon` must be an int >= 1"),
    ("cliffwalking", {"num_demos": -1}, "`num_demos` must be an int >= 0"),
    ("taxi", {"model": "nope"}, "`model` must be one of"),
    ("frozenlake", {"prior_scale": 0.0}, "`prior_scale` must be > 0"),
    ("cliffwalking", {"true_params": [1.0, 2.0, 3.0]}, r"`params\['theta'\]` must have shape"),
    ("taxi", {"true_params": {"w": [1.0, 2.0, 3.0]}}, "`true_params` must be"),
    ("frozenlake", {"true_params": [0.0, np.inf, 1.0]}, "`true_params` must be finite"),
]


@pytest.mark.parametrize(("name", "options", "message"), BAD_OPTIONS, ids=lambda v: str(v))
def test_bad_options(name, options, message):
    with pytest.raises(ValueError, match=message):
        make_problem(name, jax.random.key(0), **{"num_demos": 1, **options})
