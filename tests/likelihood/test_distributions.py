"""NumPyro trajectory distributions: normalisation, log_prob definition, sampling, NumPyro use."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer.util import log_density

from ebm_ppl.energy import LinearReward
from ebm_ppl.exact.enumerate import enumerate_trajectories
from ebm_ppl.exact.tabular import soft_bellman
from ebm_ppl.exact.trajectory import log_base_measure
from ebm_ppl.likelihood import CausalTrajectories, MaxEntTrajectories
from ebm_ppl.logz import exact
from ebm_ppl.policies import PolicyRollout
from ebm_ppl.problems import Problem
from ebm_ppl.spaces.tabular import validate_trajectories


def _distributions(mdp, reward):
    """Builders by name (built lazily: each test pays only for the distribution it uses)."""
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(mdp.horizon, mdp.num_states, mdp.num_actions))
    return {
        "causal": lambda: CausalTrajectories(mdp, reward),
        "causal_discounted": lambda: CausalTrajectories(mdp, reward, discount=0.8),
        "trajectory": lambda: MaxEntTrajectories(mdp, reward, model="trajectory"),
        "trajectory_global": lambda: MaxEntTrajectories(mdp, reward, model="trajectory_global"),
        "rollout": lambda: PolicyRollout(mdp, jax.nn.log_softmax(jnp.asarray(logits))),
    }


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize(
    "name", ["causal", "causal_discounted", "trajectory", "trajectory_global", "rollout"]
)
def test_probabilities_sum_to_one_over_all_trajectories(random_mdp, name, terminal):
    mdp = random_mdp(3, num_states=3, num_actions=2, horizon=3, terminal=terminal)
    reward = mdp.features @ jnp.array([0.7, -1.2])
    distribution = _distributions(mdp, reward)[name]()
    observed = enumerate_trajectories(mdp).observed
    total = jnp.sum(jnp.exp(distribution.log_prob(observed)))
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)


@pytest.mark.parametrize("name", ["causal", "trajectory", "trajectory_global", "rollout"])
def test_log_prob_policy_is_log_prob_without_dynamics(random_mdp, name):
    mdp = random_mdp(4, horizon=4)
    reward = mdp.features @ jnp.array([0.3, 0.9])
    distribution = _distributions(mdp, reward)[name]()
    observed = enumerate_trajectories(mdp).observed[:50]
    base = jax.vmap(lambda obs: log_base_measure(mdp, obs))(jnp.asarray(observed))
    np.testing.assert_allclose(
        distribution.log_prob_policy(observed), distribution.log_prob(observed) - base, rtol=1e-12
    )


@pytest.mark.parametrize("name", ["causal", "trajectory", "trajectory_global", "rollout"])
def test_sample_shapes_and_validity(random_mdp, name):
    mdp = random_mdp(5, horizon=4, terminal=True)
    distribution = _distributions(mdp, mdp.features @ jnp.array([1.0, 0.0]))[name]()
    draws = distribution.sample(jax.random.key(0), (2, 3))
    assert draws.shape == (2, 3, mdp.horizon + 1, 2)
    validate_trajectories(mdp, draws.reshape(-1, mdp.horizon + 1, 2))
    assert np.all(np.isfinite(distribution.log_prob(draws)))


def test_deterministic_dynamics_causal_equals_trajectory(random_mdp):
    mdp = random_mdp(6, horizon=4, deterministic=True)
    reward = mdp.features @ jnp.array([0.5, -0.4])
    observed = enumerate_trajectories(mdp).observed
    np.testing.assert_allclose(
        CausalTrajectories(mdp, reward).log_prob(observed),
        MaxEntTrajectories(mdp, reward).log_prob(observed),
        rtol=1e-12,
    )


def test_numpyro_model_log_density_and_gradient(random_mdp):
    mdp = random_mdp(7, horizon=3)
    energy = LinearReward(mdp.features)
    demos = CausalTrajectories(mdp, energy.reward({"theta": jnp.array([1.0, -1.0])})).sample(
        jax.random.key(1), (20,)
    )

    def model(demos):
        params = energy.prior()
        numpyro.sample("demos", CausalTrajectories(mdp, energy.reward(params)), obs=demos)

    theta = jnp.array([0.2, 0.1])
    value, _ = log_density(model, (demos,), {}, {"theta": theta})
    prior = energy.prior_distribution().log_prob(theta)
    likelihood = CausalTrajectories(mdp, energy.reward({"theta": theta})).log_prob(demos).sum()
    np.testing.assert_allclose(value, prior + likelihood, rtol=1e-12)
    grad = jax.grad(lambda t: log_density(model, (demos,), {}, {"theta": t})[0])(theta)
    assert np.all(np.isfinite(grad))


def test_distribution_is_a_pytree_under_jit(random_mdp):
    mdp = random_mdp(8)
    reward = mdp.features @ jnp.array([0.5, 0.5])
    observed = jnp.asarray(enumerate_trajectories(mdp).observed[:10])
    for build in _distributions(mdp, reward).values():
        distribution = build()
        jitted = jax.jit(lambda d, v: d.log_prob(v))(distribution, observed)
        np.testing.assert_allclose(jitted, distribution.log_prob(observed), rtol=1e-12)


def test_from_estimator_exact_equals_default(random_mdp):
    mdp = random_mdp(9, horizon=3)
    energy = LinearReward(mdp.features)
    problem = Problem(name="tiny", mdp=mdp, energy_model=energy)
    params = {"theta": jnp.array([0.4, -0.8])}
    observed = enumerate_trajectories(mdp).observed
    for model in ("trajectory", "trajectory_global"):
        built = MaxEntTrajectories.from_estimator(
            jax.random.key(0), exact(model), problem, params, model=model
        )
        direct = MaxEntTrajectories(mdp, energy.reward(params), model=model)
        np.testing.assert_allclose(built.log_prob(observed), direct.log_prob(observed), rtol=1e-12)
    with pytest.raises(ValueError, match="serves models"):
        MaxEntTrajectories.from_estimator(
            jax.random.key(0), exact("trajectory"), problem, params, model="trajectory_global"
        )


def test_bad_inputs(random_mdp):
    mdp = random_mdp(10)
    reward = mdp.features @ jnp.array([0.5, 0.5])
    with pytest.raises(ValueError, match="discount"):
        CausalTrajectories(mdp, reward, discount=1.5)
    with pytest.raises(ValueError, match="model"):
        MaxEntTrajectories(mdp, reward, model="causal")
    with pytest.raises(ValueError, match="log_policy"):
        PolicyRollout(mdp, jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="log_z"):
        MaxEntTrajectories(mdp, reward, log_z=jnp.zeros(()))
    with pytest.raises(TypeError, match="mdp"):
        CausalTrajectories(np.zeros((3, 2, 3)), reward)


def test_causal_log_policy_matches_soft_bellman(random_mdp):
    mdp = random_mdp(11)
    reward = mdp.features @ jnp.array([0.5, 0.5])
    np.testing.assert_allclose(
        CausalTrajectories(mdp, reward).log_policy, soft_bellman(mdp, reward).log_policy
    )
