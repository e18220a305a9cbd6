"""Reward posteriors: NUTS against grid posteriors of the exact likelihood (DESIGN §5 rules)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from arviz_stats import mcse
from jax.scipy.special import logsumexp

from ebm_ppl.inference.posterior import infer_reward
from ebm_ppl.likelihood.problem import trajectory_distribution

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def grid_log_posterior(problem, likelihood, axes):
    """Unnormalised log posterior (Normal prior x exact likelihood) on the product grid."""
    mesh = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1)
    flat = mesh.reshape(-1, len(axes))
    scale = problem.energy_model.prior_scale

    def log_post(theta):
        distribution = trajectory_distribution(problem, {"theta": theta}, model=likelihood)
        log_prior = jnp.sum(-0.5 * (theta / scale) ** 2)
        return log_prior + distribution.log_prob(problem.demos).sum()

    values = jax.lax.map(jax.jit(log_post), flat, batch_size=1024)
    return values.reshape(mesh.shape[:-1])


def grid_marginal_quantiles(problem, likelihood, num_params, points=201):
    """Marginal quantiles of the grid posterior; grid >= 200 points/dim over mean +- 8 sd.

    A coarse pass over +-6 prior sd finds the posterior mean and sd; the fine grid spans +-8 sd.
    """
    coarse = [jnp.linspace(-6.0, 6.0, 121)] * num_params
    logp = grid_log_posterior(problem, likelihood, coarse)
    weights = np.exp(np.asarray(logp - logsumexp(logp)))
    means, sds = [], []
    for d in range(num_params):
        marginal = weights.sum(axis=tuple(i for i in range(num_params) if i != d))
        mean = (marginal * np.asarray(coarse[d])).sum()
        means.append(mean)
        sds.append(np.sqrt((marginal * (np.asarray(coarse[d]) - mean) ** 2).sum()))
    axes = [jnp.linspace(m - 8 * s, m + 8 * s, points) for m, s in zip(means, sds, strict=True)]
    logp = grid_log_posterior(problem, likelihood, axes)
    weights = np.exp(np.asarray(logp - logsumexp(logp)))
    result = []
    for d in range(num_params):
        marginal = weights.sum(axis=tuple(i for i in range(num_params) if i != d))
        x = np.asarray(axes[d])
        spacing = x[1] - x[0]
        # each grid point carries the mass of the cell centred on it: a piecewise-linear CDF
        edges = np.concatenate([[x[0] - spacing / 2], x + spacing / 2])
        cdf = np.concatenate([[0.0], np.cumsum(marginal)])
        result.append((np.interp(QUANTILES, cdf, edges), spacing))
    return result


def assert_quantiles_match(idata, grid, site="theta"):
    draws = np.asarray(idata["posterior"][site])
    for d, (grid_q, spacing) in enumerate(grid):
        for q, expected in zip(QUANTILES, grid_q, strict=True):
            sample_q = np.quantile(draws[..., d].ravel(), q)
            error = float(mcse(idata, var_names=[site], method="quantile", prob=q)[site].values[d])
            tolerance = 4 * error + spacing
            assert abs(sample_q - expected) <= tolerance, (d, q, sample_q, expected, tolerance)


@pytest.mark.parametrize(
    ("likelihood", "method", "num_params", "seed"),
    [
        ("causal", "nuts", 1, 3),
        ("trajectory", "blackjax-nuts", 2, 4),
    ],
)
def test_nuts_quantiles_match_grid_posterior(
    make_tiny_problem, likelihood, method, num_params, seed
):
    problem = make_tiny_problem(seed, num_features=num_params, model=likelihood, num_demos=40)
    idata = infer_reward(
        jax.random.key(seed),
        problem,
        method=method,
        likelihood=likelihood,
        num_chains=4,
        num_warmup=500,
        num_samples=1000,
        progress_bar=False,
        posterior_predictive=False,
    )
    grid = grid_marginal_quantiles(problem, likelihood, num_params)
    assert_quantiles_match(idata, grid)


def test_grid_quantile_check_detects_a_wrong_posterior(make_tiny_problem):
    """Negative control: the check fails on draws from the posterior of other demos."""
    problem = make_tiny_problem(3, num_features=1, num_demos=40)
    other = make_tiny_problem(3, num_features=1, num_demos=40, theta=[-0.6])
    idata = infer_reward(
        jax.random.key(0),
        other,
        method="blackjax-nuts",
        num_chains=2,
        num_warmup=300,
        num_samples=500,
        progress_bar=False,
        posterior_predictive=False,
    )
    grid = grid_marginal_quantiles(problem, "causal", 1)
    with pytest.raises(AssertionError):
        assert_quantiles_match(idata, grid)
