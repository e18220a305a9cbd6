"""Simulation-based calibration of the exact-likelihood posteriors (DESIGN §5).

For each of 200 datasets: draw theta from the prior, demonstrations from the model at theta, run
one BlackJAX NUTS chain (all datasets batched with ``vmap``, compiled once), thin the draws to
near independence, keep L = 99, and record the rank of the true theta among them. Under a
correct sampler and likelihood the ranks are uniform on {0, ..., 99}: a 10-bin chi-square per
parameter, Bonferroni across parameters, family alpha = 1e-3.
"""

from functools import partial

import jax
import numpy as np
import pytest
from scipy import stats

from ebm_ppl.exact.sampling import sample_trajectories
from ebm_ppl.inference.nuts import nuts_chain

NUM_DATASETS = 200
NUM_RANK_DRAWS = 99
THINNING = 5
NUM_DEMOS = 10
FAMILY_ALPHA = 1e-3


def chi_square_p_values(ranks, num_bins=10):
    """Per-parameter p-values of the uniformity of ranks in {0..L} over ``num_bins`` equal bins."""
    bins = ranks * num_bins // (NUM_RANK_DRAWS + 1)
    p_values = []
    for column in bins.T:
        counts = np.bincount(column, minlength=num_bins)
        p_values.append(stats.chisquare(counts).pvalue)
    return np.array(p_values)


def lag_one_autocorrelation(draws):
    """Mean over datasets and parameters of the lag-1 autocorrelation of the kept draws."""
    centred = draws - draws.mean(axis=1, keepdims=True)
    numerator = (centred[:, 1:] * centred[:, :-1]).sum(axis=1)
    return float((numerator / (centred**2).sum(axis=1)).mean())


def simulate_datasets(rng_key, problem, likelihood):
    """Prior draws of theta and, for each, demonstrations sampled exactly from the model."""
    energy, mdp = problem.energy_model, problem.mdp
    key_theta, key_demos = jax.random.split(rng_key)
    theta = energy.prior_scale * jax.random.normal(key_theta, (NUM_DATASETS, energy.num_features))

    def simulate(key, theta):
        reward = energy.reward({"theta": theta})
        return sample_trajectories(key, mdp, reward, model=likelihood, num_samples=NUM_DEMOS)

    return theta, jax.vmap(simulate)(jax.random.split(key_demos, NUM_DATASETS), theta)


@partial(jax.jit, static_argnames=("likelihood",))
def batched_posteriors(keys, demos, start, problem, *, likelihood):
    """One NUTS chain per dataset, all datasets in one compiled program."""
    model_kwargs = {"likelihood": likelihood, "rationality": 1.0, "q": "soft"}
    chain = lambda key, d, s: nuts_chain(
        key,
        problem,
        d,
        s,
        model_kwargs=model_kwargs,
        num_warmup=200,
        num_samples=NUM_RANK_DRAWS * THINNING,
    )
    return jax.vmap(chain)(keys, demos, start)


@pytest.fixture(scope="module")
def sbc_runs(make_tiny_problem):
    runs = {}
    for likelihood in ("causal", "trajectory"):
        problem = make_tiny_problem(11, num_features=2, model=likelihood, num_demos=NUM_DEMOS)
        key_data, key_init, key_chain = jax.random.split(jax.random.key(2026), 3)
        theta, demos = simulate_datasets(key_data, problem, likelihood)
        start = {"theta": jax.random.uniform(key_init, theta.shape, minval=-2.0, maxval=2.0)}
        keys = jax.random.split(key_chain, NUM_DATASETS)
        positions, stats_ = batched_posteriors(keys, demos, start, problem, likelihood=likelihood)
        draws = np.asarray(positions["theta"])[:, THINNING - 1 :: THINNING]
        runs[likelihood] = (np.asarray(theta), draws, np.asarray(stats_["diverging"]))
    return runs


@pytest.mark.parametrize("likelihood", ["causal", "trajectory"])
def test_sbc_ranks_are_uniform(sbc_runs, likelihood):
    theta, draws, diverging = sbc_runs[likelihood]
    assert draws.shape == (NUM_DATASETS, NUM_RANK_DRAWS, 2)
    assert np.isfinite(draws).all()
    assert diverging.mean() < 0.01
    # the thinned draws are near independent (the rank test's assumption)
    assert abs(lag_one_autocorrelation(draws)) < 0.1
    ranks = (draws < theta[:, None, :]).sum(axis=1)
    p_values = chi_square_p_values(ranks)
    assert (p_values > FAMILY_ALPHA / theta.shape[1]).all(), p_values


@pytest.mark.parametrize("likelihood", ["causal", "trajectory"])
def test_sbc_detects_a_miscalibrated_posterior(sbc_runs, likelihood):
    """Negative control: ranks against a shifted truth (a biased posterior) fail the test."""
    theta, draws, _ = sbc_runs[likelihood]
    shift = 0.5 * draws.std(axis=1).mean(axis=0)
    ranks = (draws < (theta + shift)[:, None, :]).sum(axis=1)
    p_values = chi_square_p_values(ranks)
    assert (p_values <= FAMILY_ALPHA / theta.shape[1]).any(), p_values


def test_rank_statistic_of_a_perfect_sampler_is_uniform():
    """The rank bookkeeping itself: exact posterior draws (here: the prior) give uniform ranks."""
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(NUM_DATASETS, 2))
    draws = rng.normal(size=(NUM_DATASETS, NUM_RANK_DRAWS, 2))
    ranks = (draws < theta[:, None, :]).sum(axis=1)
    assert (chi_square_p_values(ranks) > FAMILY_ALPHA / 2).all()
