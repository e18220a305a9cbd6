"""The LogZEstimator interface with its exact member."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.energy import LinearReward
from ebm_ppl.exact.enumerate import enumerated_log_probs
from ebm_ppl.exact.tabular import start_states
from ebm_ppl.logz import LogZResult, exact
from ebm_ppl.problems import Problem


@pytest.fixture
def problem(random_mdp):
    mdp = random_mdp(2, num_states=4, num_actions=2, horizon=3)
    return Problem(name="tiny", mdp=mdp, energy_model=LinearReward(mdp.features))


def test_exact_matches_enumeration(problem):
    params = {"theta": jnp.array([0.3, -0.7])}
    reward = problem.energy_model.reward(params)
    for model in ("trajectory", "trajectory_global"):
        result = exact(model).run(jax.random.key(0), problem, params)
        assert isinstance(result, LogZResult)
        _, _, log_z = enumerated_log_probs(problem.mdp, reward, model)
        if model == "trajectory":
            assert result.log_z.shape == (problem.mdp.num_states,)
            np.testing.assert_allclose(result.log_z, log_z, rtol=1e-10)
        else:
            assert result.log_z.shape == ()
            np.testing.assert_allclose(result.log_z, log_z, rtol=1e-10)
        np.testing.assert_array_equal(result.stderr, 0.0)


def test_s0_subset_and_vmap_over_keys(problem):
    params = {"theta": jnp.array([0.3, -0.7])}
    estimator = exact("trajectory")
    full = estimator.run(jax.random.key(0), problem, params).log_z
    subset = estimator.run(jax.random.key(0), problem, params, s0=jnp.array([2, 0])).log_z
    np.testing.assert_allclose(subset, full[jnp.array([2, 0])])
    mapped = jax.jit(
        jax.vmap(
            lambda k, pr, pa, d, s: estimator.run(k, pr, pa, data=d, s0=s),
            in_axes=(0, None, None, None, None),
        )
    )(jax.random.split(jax.random.key(1), 3), problem, params, None, start_states(problem.mdp))
    np.testing.assert_allclose(mapped.log_z, jnp.broadcast_to(full, (3,) + full.shape))
    with pytest.raises(TypeError, match="s0"):
        jax.jit(lambda pr: estimator.run(jax.random.key(0), pr, params))(problem)


def test_float32_is_preserved(problem):
    mdp32 = jax.tree.map(
        lambda x: x.astype(jnp.float32) if x.dtype == jnp.float64 else x, problem.mdp
    )
    problem32 = problem.replace(mdp=mdp32, energy_model=LinearReward(mdp32.features))
    result = exact("trajectory").run(
        jax.random.key(0), problem32, {"theta": jnp.array([0.3, -0.7], jnp.float32)}
    )
    assert result.log_z.dtype == jnp.float32
    assert np.all(np.isfinite(result.log_z))


def test_errors(problem):
    with pytest.raises(ValueError, match="model"):
        exact("causal")
    with pytest.raises(ValueError, match="s0"):
        exact("trajectory_global").run(jax.random.key(0), problem, {"theta": jnp.zeros(2)}, s0=0)
    with pytest.raises(ValueError, match="s0"):
        exact("trajectory").run(jax.random.key(0), problem, {"theta": jnp.zeros(2)}, s0=[7])
