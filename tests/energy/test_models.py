"""Energy models: prior sites, shapes, no free output bias, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive

from ebm_ppl.energy import LinearReward, MLPReward, TabularReward


def test_linear_prior_and_reward():
    features = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)))
    energy = LinearReward(features, prior_scale=2.0)
    draws = Predictive(energy.prior, num_samples=2000)(jax.random.key(0))["theta"]
    assert draws.shape == (2000, 3)
    assert abs(float(draws.std()) - 2.0) < 4 * 2.0 / np.sqrt(2 * 6000)
    params = {"theta": jnp.array([1.0, 0.0, -1.0])}
    np.testing.assert_allclose(energy.reward(params), features @ params["theta"])
    np.testing.assert_allclose(energy.cost(params), -energy.reward(params))


def test_mlp_has_no_output_bias():
    features = jnp.asarray(np.random.default_rng(1).normal(size=(5, 2)))
    energy = MLPReward(features, hidden=(4, 3))
    params = energy.init_params(jax.random.key(0))
    assert set(params) == {"w0", "b0", "w1", "b1", "w_out"}
    assert params["w_out"].shape == (3,)
    zero_out = dict(params, w_out=jnp.zeros(3))
    np.testing.assert_array_equal(energy.reward(zero_out), 0.0)
    sites = Predictive(energy.prior, num_samples=1)(jax.random.key(1))
    assert set(sites) == set(params)


def test_tabular_and_errors():
    energy = TabularReward((4, 2))
    assert energy.reward({"reward": jnp.ones((4, 2))}).shape == (4, 2)
    with pytest.raises(ValueError, match="shape"):
        energy.reward({"reward": jnp.ones((4,))})
    with pytest.raises(ValueError, match="features"):
        LinearReward(jnp.ones(3))
    with pytest.raises(ValueError, match="features"):
        LinearReward(jnp.array([[1.0, jnp.nan]]))
    with pytest.raises(ValueError, match="prior_scale"):
        LinearReward(jnp.ones((2, 2)), prior_scale=0.0)
    with pytest.raises(ValueError, match="theta"):
        LinearReward(jnp.ones((2, 2))).reward({"theta": jnp.ones(3)})
