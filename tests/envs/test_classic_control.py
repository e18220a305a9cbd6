"""JAX Pendulum-v1 and MountainCar-v0 dynamics against Gymnasium's internal state.

The reference is ``env.unwrapped.state`` after ``env.step`` (the observations are float32
copies). The reference side loops over the 1,000 pairs (it is Gymnasium); the JAX side is one
vectorised call.
"""

import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.envs.classic_control import (
    ActionSequenceProblem,
    MountainCarParams,
    PendulumParams,
    angle_normalize,
    mountaincar_observation,
    mountaincar_step,
    mountaincar_terminated,
    pendulum_cost,
    pendulum_observation,
    pendulum_step,
    rollout,
)

NUM_PAIRS = 1000
TOLERANCE = 1e-12


def _make(env_id):
    env = gymnasium.make(env_id, disable_env_checker=True)
    env.reset(seed=0)
    return env


def _pendulum_pairs(rng):
    # unwrapped angles of several turns, velocities and torques beyond the bounds (clipping)
    states = np.stack(
        [rng.uniform(-3 * math.pi, 3 * math.pi, NUM_PAIRS), rng.uniform(-9, 9, NUM_PAIRS)], axis=1
    )
    actions = rng.uniform(-3, 3, NUM_PAIRS)
    return states, actions


def _gym_pendulum(env, states, actions, action_dtype=np.float64):
    next_states, observations, costs = [], [], []
    for state, action in zip(states, actions, strict=True):
        env.unwrapped.state = np.array(state, dtype=np.float64)
        observation, reward, *_ = env.step(np.array([action], dtype=action_dtype))
        next_states.append(np.asarray(env.unwrapped.state, dtype=np.float64))
        observations.append(observation)
        costs.append(-reward)
    return np.array(next_states), np.array(observations), np.array(costs)


def test_pendulum_step_matches_gymnasium_state_on_1000_pairs():
    rng = np.random.default_rng(0)
    states, actions = _pendulum_pairs(rng)
    env = _make("Pendulum-v1")
    expected, observations, costs = _gym_pendulum(env, states, actions)
    env.close()
    got = np.asarray(pendulum_step(states, actions))
    error = np.max(np.abs(got - expected))
    assert error <= TOLERANCE, f"max |JAX - Gymnasium| = {error:.3g}"
    # the clips were exercised: torque beyond +-2, new velocity at +-8
    assert np.sum(np.abs(actions) > 2) > 100
    assert np.sum(np.abs(expected[:, 1]) == 8.0) > 50
    # the cost (minus the reward) and the float32 observation
    np.testing.assert_allclose(np.asarray(pendulum_cost(states, actions)), costs, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(pendulum_observation(got)), observations, atol=1e-6)


def test_pendulum_float32_actions_make_gymnasium_round_the_torque_term():
    """Finding: a float32 action makes Gymnasium compute ``3.0 / (m l^2) * u`` in float32.

    Under NumPy 2 (NEP 50) a Python float times a float32 scalar stays float32, so the torque
    term is rounded to float32 before it joins the float64 sum. The float64 JAX step then differs
    by up to ``~6 * 2^-24 * dt``; rounding that one term reproduces Gymnasium exactly.
    """
    rng = np.random.default_rng(1)
    states, actions = _pendulum_pairs(rng)
    actions32 = actions.astype(np.float32)
    env = _make("Pendulum-v1")
    expected, _, _ = _gym_pendulum(env, states, actions32, action_dtype=np.float32)
    env.close()
    got = np.asarray(pendulum_step(states, actions32.astype(np.float64)))
    error = np.max(np.abs(got - expected))
    assert 0 < error <= 6 * 2.0**-24 * 0.05
    # the explanation, reproduced in NumPy: the torque term in float32, the rest in float64
    torque32 = np.clip(actions32, np.float32(-2), np.float32(2))
    velocity = states[:, 1] + (15.0 * np.sin(states[:, 0]) + (3.0 * torque32)) * 0.05
    velocity = np.clip(velocity, -8, 8)
    np.testing.assert_array_equal(velocity, expected[:, 1])


def test_mountaincar_step_matches_gymnasium_state_on_1000_pairs():
    rng = np.random.default_rng(2)
    positions = rng.uniform(-1.2, 0.6, NUM_PAIRS)
    velocities = rng.uniform(-0.07, 0.07, NUM_PAIRS)
    # 150 states just right of the left wall moving left (wall clip and velocity reset), 50 at
    # the wall itself, 50 near the right bound moving right (position clip, goal)
    positions[:150] = -1.2 + rng.uniform(0, 0.02, 150)
    velocities[:150] = rng.uniform(-0.07, -0.01, 150)
    positions[150:200] = -1.2
    positions[200:250] = 0.6 - rng.uniform(0, 0.02, 50)
    velocities[200:250] = rng.uniform(0.01, 0.07, 50)
    states = np.stack([positions, velocities], axis=1)
    actions = rng.integers(0, 3, NUM_PAIRS)

    env = _make("MountainCar-v0")
    expected, terminated = [], []
    for state, action in zip(states, actions, strict=True):
        env.unwrapped.state = np.array(state, dtype=np.float64)
        _, _, done, _, _ = env.step(int(action))
        expected.append(np.asarray(env.unwrapped.state, dtype=np.float64))
        terminated.append(done)
    env.close()
    expected = np.array(expected)

    got = np.asarray(mountaincar_step(states, actions))
    error = np.max(np.abs(got - expected))
    assert error <= TOLERANCE, f"max |JAX - Gymnasium| = {error:.3g}"
    np.testing.assert_array_equal(np.asarray(mountaincar_terminated(got)), terminated)
    at_wall = expected[:, 0] == -1.2
    assert at_wall.sum() > 100 and np.all(expected[at_wall, 1] >= 0)
    assert np.sum(expected[:, 0] == 0.6) > 10 and np.sum(terminated) > 50
    np.testing.assert_array_equal(np.asarray(mountaincar_observation(got)), got)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "MountainCar-v0"])
def test_rollout_matches_a_gymnasium_episode(env_id):
    rng = np.random.default_rng(3)
    horizon = 40
    env = _make(env_id)
    x0 = np.array(env.unwrapped.state, dtype=np.float64)
    if env_id == "Pendulum-v1":
        actions, step = rng.uniform(-2, 2, horizon), pendulum_step
        as_action = lambda a: np.array([a])
    else:
        actions, step = rng.integers(0, 3, horizon), mountaincar_step
        as_action = int
    expected = [x0]
    for action in actions:
        env.step(as_action(action))
        expected.append(np.asarray(env.unwrapped.state, dtype=np.float64))
    env.close()
    states = rollout(step, x0, actions)
    assert states.shape == (horizon + 1, 2)
    np.testing.assert_allclose(np.asarray(states), np.array(expected), rtol=0, atol=TOLERANCE)


def test_dtype_is_preserved_and_constants_are_gymnasiums():
    state32 = jnp.asarray([[0.3, -1.0]], jnp.float32)
    assert pendulum_step(state32, jnp.zeros(1, jnp.float32)).dtype == jnp.float32
    assert mountaincar_step(state32 * 0.1, jnp.ones(1, jnp.int32)).dtype == jnp.float32
    assert rollout(pendulum_step, state32[0], jnp.zeros(5, jnp.float32)).dtype == jnp.float32
    assert pendulum_step(jnp.asarray([[1, 0]]), jnp.zeros(1)).dtype == jnp.float64  # ints promote
    pendulum = _make("Pendulum-v1").unwrapped
    params = PendulumParams()
    assert (params.g, params.m, params.l, params.dt) == (
        pendulum.g,
        pendulum.m,
        pendulum.l,
        pendulum.dt,
    )
    assert (params.max_speed, params.max_torque) == (pendulum.max_speed, pendulum.max_torque)
    car = _make("MountainCar-v0").unwrapped
    constants = MountainCarParams()
    for name in MountainCarParams._fields:
        assert getattr(constants, name) == getattr(car, name), name
    # angle wrap: [-pi, pi), sign of the divisor as Python's %
    angles = np.array([-7.0, -math.pi, 0.0, math.pi, 7.0])
    wrapped = ((angles + math.pi) % (2 * math.pi)) - math.pi
    np.testing.assert_allclose(np.asarray(angle_normalize(angles)), wrapped, atol=1e-15)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(
        ValueError, match=r"`state` must have shape \(\.\.\., 2\).*got shape \(3,\)"
    ):
        pendulum_step(jnp.zeros(3), jnp.zeros(()))
    with pytest.raises(ValueError, match=r"`action` must have the batch shape of `state`, \(4,\)"):
        mountaincar_step(jnp.zeros((4, 2)), jnp.zeros((4, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"`x0` must have shape \(d,\)"):
        rollout(pendulum_step, jnp.zeros((2, 2)), jnp.zeros(3))
    with pytest.raises(ValueError, match=r"`actions` must have shape \(T,\) with T >= 1"):
        rollout(pendulum_step, jnp.zeros(2), jnp.zeros(0))
    with pytest.raises(ValueError, match=r"`horizon` must be an int >= 1; got 0"):
        ActionSequenceProblem("x", None, 0, np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"`demos` must have shape \(n, m, T\) = \(1, m, 3\)"):
        ActionSequenceProblem("x", None, 3, np.zeros((1, 2)), demos=np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="`model` must be 'trajectory'"):
        ActionSequenceProblem("x", None, 3, np.zeros((1, 2)), model="causal")


def test_action_sequence_problem_is_a_pytree():
    problem = ActionSequenceProblem(
        "x", None, 3, np.zeros((2, 2)), demos=np.zeros((2, 5, 3)), log_z=np.zeros(2)
    )
    leaves, treedef = jax.tree.flatten(problem)
    rebuilt = jax.tree.unflatten(treedef, leaves)
    assert rebuilt.horizon == 3 and rebuilt.num_starts == 2
    total = jax.jit(lambda p: p.demos.sum() + p.log_z.sum())(problem)
    assert float(total) == 0.0
