"""``ebm_ppl/LinearGaussian-v0``: registration, dynamics and returns against the exact layer."""

import math

import gymnasium
import jax
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import ebm_ppl.envs  # noqa: F401  (registers the environments)
from ebm_ppl.envs import LINEAR_GAUSSIAN_ID, LinearGaussianEnv, register_linear_gaussian
from ebm_ppl.exact import lqr
from ebm_ppl.spaces.linear_gaussian import quadratic_cost, rollout_states

NOISE = 0.05 * np.eye(2)


def _episode(env, rng, gains, roots, x0=None):
    """Roll a linear-Gaussian policy u = -K x + eps through env.step; returns the arrays."""
    options = None if x0 is None else {"state": x0}
    state, _ = env.reset(seed=int(rng.integers(2**31)), options=options)
    states, controls, noises, total = [state], [], [], 0.0
    for t in range(env.horizon):
        control = -gains[t] @ state + roots[t] @ rng.standard_normal(1)
        state, reward, terminated, truncated, info = env.step(control)
        assert not terminated and truncated == (t == env.horizon - 1)
        states.append(state)
        controls.append(control)
        noises.append(info["noise"])
        total += reward
    return np.stack(states), np.stack(controls), np.stack(noises), total


# Gymnasium's env checker advises bounded, normalised Box spaces; an LQR's states and controls live
# on all of R^n and R^m (bounding them would change the model), so its advice is expected here.
@pytest.mark.filterwarnings("ignore:.*Box (action|observation) space.*:UserWarning")
@pytest.mark.filterwarnings("ignore:.*For Box action spaces, we recommend.*:UserWarning")
def test_registered_and_idempotent():
    register_linear_gaussian()
    register_linear_gaussian()
    env = gymnasium.make(LINEAR_GAUSSIAN_ID, noise_cov=NOISE)
    state, info = env.reset(seed=0)
    assert isinstance(env.unwrapped, LinearGaussianEnv)
    assert state.dtype == np.float64 and state.shape == (2,) and info == {}
    np.testing.assert_array_equal(state, [1.0, -0.5])  # the reference start
    for _ in range(3):
        state, reward, terminated, truncated, _ = env.step(np.zeros(1))
    assert truncated and not terminated
    env.close()
    check_env(LinearGaussianEnv(noise_cov=NOISE), skip_render_check=True)


def test_soft_optimal_policy_through_env_step():
    """The causal soft-optimal policy rolled through env.step: states follow the system's dynamics
    with the reported noise, the return is -c(tau), and over 2000 episodes the per-step means of
    the states match the exact moments within 4 SE."""
    env = LinearGaussianEnv(noise_cov=NOISE, initial_cov=0.01 * np.eye(2))
    system, cost = env.system(), env.cost_matrices()
    solution = lqr.soft_riccati(system, cost, model="causal")
    gains, roots = np.asarray(solution.gain), np.linalg.cholesky(np.asarray(solution.control_cov))
    rng = np.random.default_rng(0)
    episodes = [_episode(env, rng, gains, roots) for _ in range(2000)]
    states, controls, noises, totals = (np.stack(x) for x in zip(*episodes, strict=True))
    np.testing.assert_allclose(
        rollout_states(system, states[:5, 0], controls[:5], noises[:5]), states[:5], atol=1e-12
    )
    np.testing.assert_allclose(
        totals[:5], -quadratic_cost(cost, states[:5], controls[:5]), rtol=1e-12
    )
    stats = lqr.moments(system, solution, system.initial_mean, system.initial_cov)
    se = states.std(axis=0, ddof=1) / math.sqrt(len(states))
    assert np.all(np.abs(states.mean(axis=0) - np.asarray(stats.state_mean)) <= 4 * se + 1e-12)
    env.close()


def test_bad_inputs():
    env = LinearGaussianEnv(horizon=1, render_mode="ansi")
    env.reset(seed=0, options={"state": np.array([0.5, 0.5])})
    assert env.render().startswith("t=0 x=(0.5, 0.5)")
    with pytest.raises(
        ValueError, match=r"`action` must be a finite array of shape \(m,\) = \(1,\)"
    ):
        env.step(np.zeros(2))
    env.step(np.zeros(1))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(1))
    with pytest.raises(ValueError, match=r"`options\['state'\]` must be a finite array"):
        env.reset(options={"state": [1.0]})
    with pytest.raises(ValueError, match="`state_cost` must be given with a custom"):
        LinearGaussianEnv(transition=np.eye(2), control_matrix=np.ones((2, 1)))
    with pytest.raises(ValueError, match="`cost.control` must be positive definite"):
        LinearGaussianEnv(control_cost=[[0.0]])
    with pytest.raises(ValueError, match="`noise_cov` must be positive semi-definite"):
        LinearGaussianEnv(noise_cov=-np.eye(2))
    with pytest.raises(ValueError, match="`render_mode` must be None or 'ansi'"):
        LinearGaussianEnv(render_mode="human")


def test_custom_scalar_env_matches_theory_value():
    """A custom scalar env hands its numbers to the exact layer (THEORY §8.1 scalar case)."""
    env = LinearGaussianEnv(
        transition=[[0.9]],
        control_matrix=[[0.5]],
        noise_cov=[[0.2]],
        state_cost=[[1.0]],
        control_cost=[[0.3]],
        terminal_cost=[[2.0]],
        initial_mean=[1.0],
        horizon=1,
    )
    value = lqr.log_partition(env.system(), env.cost_matrices(), np.array([1.0]))
    assert abs(float(value) - 0.196498902892) < 1e-10
    assert jax.numpy.asarray(env.system().transition).dtype == np.float64
