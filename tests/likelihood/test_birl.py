"""The Bayesian-IRL Boltzmann likelihood (THEORY §7.5) against NumPy oracles and enumeration."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

from ebm_ppl.energy import LinearReward
from ebm_ppl.exact.enumerate import enumerate_trajectories
from ebm_ppl.exact.trajectory import log_base_measure
from ebm_ppl.likelihood.birl import BoltzmannTrajectories
from ebm_ppl.likelihood.problem import trajectory_distribution
from ebm_ppl.problems import Problem
from ebm_ppl.spaces.tabular import TabularMDP, validate_trajectories
from tests.exact.conftest import pooled_chi_square

DISCOUNT = 0.8


# ---------------------------------------------------------------------- NumPy oracles
def numpy_r_sa(mdp, reward) -> np.ndarray:
    reward = np.asarray(reward, dtype=np.float64)
    num_states, num_actions = mdp.num_states, mdp.num_actions
    if reward.ndim == 1:
        reward = np.broadcast_to(reward[:, None], (num_states, num_actions))
    return np.where(np.asarray(mdp.terminal)[:, None], 0.0, reward)


def numpy_soft_log_policy(mdp, reward, alpha, discount, sweeps=600) -> np.ndarray:
    """Stationary discounted soft value iteration with reward alpha * R."""
    transitions = np.asarray(mdp.to_dense().transitions, dtype=np.float64)
    terminal = np.asarray(mdp.terminal)
    r_sa = alpha * numpy_r_sa(mdp, reward)
    values = np.zeros(mdp.num_states)
    for _ in range(sweeps):
        q_values = r_sa + discount * transitions @ values
        top = q_values.max(axis=1)
        soft = top + np.log(np.exp(q_values - top[:, None]).sum(axis=1))
        values = np.where(terminal, 0.0, soft)
    q_values = r_sa + discount * transitions @ values
    return q_values - values[:, None]


def numpy_hard_log_policy(mdp, reward, alpha, discount, sweeps=600) -> np.ndarray:
    """log softmax(alpha Q*) with Q* from plain (hard) value iteration."""
    transitions = np.asarray(mdp.to_dense().transitions, dtype=np.float64)
    terminal = np.asarray(mdp.terminal)
    r_sa = numpy_r_sa(mdp, reward)
    values = np.zeros(mdp.num_states)
    for _ in range(sweeps):
        values = np.where(terminal, 0.0, (r_sa + discount * transitions @ values).max(axis=1))
    logits = alpha * (r_sa + discount * transitions @ values)
    top = logits.max(axis=1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))


def numpy_log_prob(mdp, log_policy, observed) -> np.ndarray:
    """log rho0 + sum log P + sum log pi over the live steps, by explicit loops."""
    transitions = np.asarray(mdp.to_dense().transitions, dtype=np.float64)
    rho = np.asarray(mdp.initial_dist, dtype=np.float64)
    out = []
    for obs in np.asarray(observed):
        total = np.log(rho[obs[0, 0]])
        for t in range(obs.shape[0] - 1):
            s, a = obs[t]
            if a < 0:
                break
            total += log_policy[s, a] + np.log(transitions[s, a, obs[t + 1, 0]])
        out.append(total)
    return np.array(out)


# ---------------------------------------------------------------------- exact tier
@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("q", ["soft", "hard"])
def test_probabilities_sum_to_one_over_all_trajectories(random_mdp, q, terminal):
    mdp = random_mdp(3, num_states=3, num_actions=2, horizon=4, terminal=terminal)
    reward = mdp.features @ jnp.array([0.7, -1.2])
    distribution = BoltzmannTrajectories(mdp, reward, rationality=1.7, discount=DISCOUNT, q=q)
    observed = enumerate_trajectories(mdp).observed
    total = jnp.sum(jnp.exp(distribution.log_prob(observed)))
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("q", ["soft", "hard"])
def test_log_policy_and_log_prob_match_numpy(random_mdp, q, sparse):
    mdp = random_mdp(4, num_states=4, num_actions=3, horizon=3, terminal=True)
    mdp = mdp.to_sparse() if sparse else mdp
    reward = np.asarray(mdp.features @ jnp.array([0.9, 0.4]))
    alpha = 0.6
    distribution = BoltzmannTrajectories(mdp, reward, rationality=alpha, discount=DISCOUNT, q=q)
    oracle = (numpy_soft_log_policy if q == "soft" else numpy_hard_log_policy)(
        mdp, reward, alpha, DISCOUNT
    )
    live = ~np.asarray(mdp.terminal)
    np.testing.assert_allclose(distribution.log_policy[live], oracle[live], rtol=1e-10, atol=1e-10)
    observed = enumerate_trajectories(mdp).observed[::7]
    np.testing.assert_allclose(
        distribution.log_prob(observed), numpy_log_prob(mdp, oracle, observed), rtol=1e-10
    )
    base = jax.vmap(lambda obs: log_base_measure(mdp, obs))(jnp.asarray(observed))
    np.testing.assert_allclose(
        distribution.log_prob_policy(observed), distribution.log_prob(observed) - base, rtol=1e-12
    )


@pytest.mark.parametrize("q", ["soft", "hard"])
def test_only_rationality_times_reward_is_identified(random_mdp, q):
    """THEORY §1.6: (R, alpha) and (alpha R, 1) give the same policy, for both Q kinds."""
    mdp = random_mdp(5, num_states=4, num_actions=2, terminal=True)
    reward = mdp.features @ jnp.array([1.1, -0.3])
    scaled = BoltzmannTrajectories(mdp, reward, rationality=2.5, discount=DISCOUNT, q=q)
    folded = BoltzmannTrajectories(mdp, 2.5 * reward, rationality=1.0, discount=DISCOUNT, q=q)
    np.testing.assert_allclose(scaled.log_policy, folded.log_policy, rtol=1e-10, atol=1e-12)


def test_soft_gradients_match_finite_differences(random_mdp):
    """d/dR and d/dalpha of the soft log-likelihood (implicit VJP of soft value iteration)."""
    mdp = random_mdp(6, num_states=3, num_actions=2, horizon=4, terminal=True)
    reward = jnp.asarray(np.random.default_rng(0).normal(size=(3, 2)))
    demos = BoltzmannTrajectories(mdp, reward, discount=DISCOUNT).sample(jax.random.key(0), (5,))

    @jax.jit
    def objective(reward, alpha):
        distribution = BoltzmannTrajectories(
            mdp, reward, rationality=alpha, discount=DISCOUNT, q="soft"
        )
        return jnp.sum(distribution.log_prob(demos))

    alpha = jnp.asarray(1.3)
    grad_r, grad_a = jax.jit(jax.grad(objective, argnums=(0, 1)))(reward, alpha)
    assert np.all(np.isfinite(grad_r)) and np.isfinite(grad_a)
    step = 1e-5
    fd_r = np.zeros(reward.shape)
    for index in np.ndindex(*reward.shape):
        e = jnp.zeros(reward.shape).at[index].set(step)
        fd_r[index] = (objective(reward + e, alpha) - objective(reward - e, alpha)) / (2 * step)
    fd_a = (objective(reward, alpha + step) - objective(reward, alpha - step)) / (2 * step)
    np.testing.assert_allclose(grad_r, fd_r, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_a, fd_a, rtol=1e-6, atol=1e-8)


def test_numpyro_model_with_sampled_rationality(random_mdp):
    """log_density of a NumPyro model with a sampled alpha is prior + likelihood, and smooth."""
    mdp = random_mdp(7, num_states=3, num_actions=2, horizon=3)
    energy = LinearReward(mdp.features)
    demos = BoltzmannTrajectories(mdp, energy.reward({"theta": jnp.array([1.0, -1.0])})).sample(
        jax.random.key(1), (10,)
    )

    def model(demos):
        params = energy.prior()
        alpha = numpyro.sample("rationality", dist.LogNormal(0.0, 0.5))
        numpyro.sample(
            "demos",
            BoltzmannTrajectories(mdp, energy.reward(params), rationality=alpha, q="soft"),
            obs=demos,
        )

    values = {"theta": jnp.array([0.2, 0.1]), "rationality": jnp.asarray(0.8)}
    value, grads = jax.jit(jax.value_and_grad(lambda v: log_density(model, (demos,), {}, v)[0]))(
        values
    )
    expected = (
        energy.prior_distribution().log_prob(values["theta"])
        + dist.LogNormal(0.0, 0.5).log_prob(0.8)
        + BoltzmannTrajectories(mdp, energy.reward(values), rationality=0.8).log_prob(demos).sum()
    )
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_is_a_pytree_under_jit_and_problem_dispatch(random_mdp):
    mdp = random_mdp(8, num_states=3, num_actions=2, horizon=3)
    energy = LinearReward(mdp.features)
    params = {"theta": jnp.array([0.5, -0.5])}
    observed = jnp.asarray(enumerate_trajectories(mdp).observed[:20])
    for q in ("soft", "hard"):
        distribution = BoltzmannTrajectories(mdp, energy.reward(params), q=q, rationality=0.9)
        jitted = jax.jit(lambda d, v: d.log_prob(v))(distribution, observed)
        np.testing.assert_allclose(jitted, distribution.log_prob(observed), rtol=1e-12)
        problem = Problem(name="tiny", mdp=mdp, energy_model=energy, birl_discount=0.9)
        via_problem = trajectory_distribution(problem, params, model="birl", rationality=0.9, q=q)
        np.testing.assert_allclose(
            via_problem.log_prob(observed), distribution.log_prob(observed), rtol=1e-12
        )
    traced = jax.jit(
        lambda a: BoltzmannTrajectories(mdp, energy.reward(params), rationality=a).log_prob(
            observed
        )
    )(0.9)
    np.testing.assert_allclose(
        traced,
        BoltzmannTrajectories(mdp, energy.reward(params), rationality=0.9).log_prob(observed),
        rtol=1e-12,
    )


def test_bad_inputs(random_mdp):
    mdp = random_mdp(9)
    reward = mdp.features @ jnp.array([0.5, 0.5])
    for alpha in (0.0, -1.0, np.inf):
        with pytest.raises(ValueError, match="rationality"):
            BoltzmannTrajectories(mdp, reward, rationality=alpha)
    with pytest.raises(ValueError, match="rationality"):
        BoltzmannTrajectories(mdp, reward, rationality=jnp.ones(2))
    with pytest.raises(ValueError, match="q"):
        BoltzmannTrajectories(mdp, reward, q="optimal")
    for discount in (1.0, 0.0, 1.2):
        with pytest.raises(ValueError, match="discount"):
            BoltzmannTrajectories(mdp, reward, discount=discount)
    with pytest.raises(TypeError, match="discount"):
        jax.jit(lambda g: BoltzmannTrajectories(mdp, reward, discount=g).log_policy)(0.9)
    with pytest.raises(TypeError, match="mdp"):
        BoltzmannTrajectories(np.zeros((3, 2, 3)), reward)
    with pytest.raises(ValueError, match="reward"):
        BoltzmannTrajectories(mdp, jnp.zeros((2, 2)))


# ---------------------------------------------------------------------- statistical tier
@pytest.mark.parametrize("q", ["soft", "hard"])
def test_sample_frequencies_match_enumerated_probabilities(random_mdp, q):
    """Pooled chi-square (cells with expected count < 5 pooled), alpha = 1e-3, fixed seed, 20 000
    independent draws against the enumerated trajectory probabilities."""
    mdp = random_mdp(10, num_states=3, num_actions=2, horizon=3, terminal=True)
    reward = mdp.features @ jnp.array([1.0, -0.8])
    distribution = BoltzmannTrajectories(mdp, reward, rationality=1.5, discount=DISCOUNT, q=q)
    num_draws = 20_000
    draws = np.asarray(distribution.sample(jax.random.key(42), (num_draws,)))
    validate_trajectories(mdp, draws)
    enumeration = enumerate_trajectories(mdp)
    probs = np.exp(np.asarray(distribution.log_prob(enumeration.observed)))
    codes = {tuple(obs.ravel()): i for i, obs in enumerate(enumeration.observed)}
    counts = np.zeros(len(codes))
    for obs in draws:
        counts[codes[tuple(obs.ravel())]] += 1
    _, dof, p_value = pooled_chi_square(counts, probs)
    assert dof >= 10
    assert p_value > 1e-3


@pytest.mark.parametrize("q", ["soft", "hard"])
def test_float32_is_preserved(random_mdp, q):
    mdp64 = random_mdp(11, num_states=3, num_actions=2, horizon=3, terminal=True)
    mdp = TabularMDP.from_dense(
        np.asarray(mdp64.transitions, np.float32),
        np.asarray(mdp64.initial_dist, np.float32),
        mdp64.horizon,
        terminal=mdp64.terminal,
    )
    reward = np.asarray(mdp64.features @ jnp.array([0.6, -0.2]), np.float32)
    distribution = BoltzmannTrajectories(mdp, reward, rationality=1.2, discount=DISCOUNT, q=q)
    observed = enumerate_trajectories(mdp).observed
    log_prob = distribution.log_prob(observed)
    assert distribution.log_policy.dtype == jnp.float32 and log_prob.dtype == jnp.float32
    reference = BoltzmannTrajectories(
        mdp64, reward.astype(np.float64), rationality=1.2, discount=DISCOUNT, q=q
    )
    np.testing.assert_allclose(log_prob, reference.log_prob(observed), rtol=1e-4, atol=1e-4)
