"""Plug-in likelihoods with estimated log Z (THEORY §7.4) and PSIS reweighting to the exact one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from arviz_stats import mcse

from ebm_ppl import diagnostics
from ebm_ppl.exact.tabular import log_partition
from ebm_ppl.inference.posterior import infer_reward
from ebm_ppl.logz import importance, particle_smc

NUM_REPLICATES = 400
PLUG_IN = importance(2048, model="trajectory")
COMMON = dict(
    method="blackjax-nuts",
    num_chains=4,
    num_warmup=300,
    num_samples=1000,
    progress_bar=False,
    posterior_predictive=False,
)


@pytest.fixture(scope="module")
def problem(make_tiny_problem):
    return make_tiny_problem(8, num_features=2, num_demos=30, model="trajectory")


def test_plug_in_bias_matches_the_chi_square_prediction(problem):
    """E[N(log Z - log Z_K)] ~= N chi^2 / (2K) at fixed theta, for K and 2K (within 5 SE)."""
    params = problem.true_params
    starts = jnp.asarray([int(np.argmax(np.asarray(problem.mdp.initial_dist)))])
    exact = float(log_partition(problem.mdp, problem.energy_model.reward(params), s0=starts)[0])
    num_demos = problem.demos.shape[0]
    # chi^2(p || q) = E_q[w^2] / Z^2 - 1, from a large independent sample of weights
    from ebm_ppl.logz.importance import draw_weighted

    sample = draw_weighted(jax.random.key(1), problem, params, 200_000, s0=starts)
    log_w = np.asarray(sample.log_weights).ravel() - exact
    chi_square = float(np.mean(np.exp(2 * log_w)) - 1)
    for num_samples in (32, 64):
        run = importance(num_samples).run
        keys = jax.random.split(jax.random.key(num_samples), NUM_REPLICATES)
        runs = jax.jit(jax.vmap(lambda k, run=run: run(k, problem, params, s0=starts).log_z))(keys)
        deficit = num_demos * (exact - np.asarray(runs)[:, 0])
        se = deficit.std(ddof=1) / np.sqrt(NUM_REPLICATES)
        predicted = num_demos * chi_square / (2 * num_samples)
        assert abs(deficit.mean() - predicted) <= 5 * se, (num_samples, deficit.mean(), predicted)


def test_plug_in_refusals(problem):
    with pytest.raises(ValueError, match="not a smooth function"):
        infer_reward(jax.random.key(0), problem, estimator=particle_smc(64))
    with pytest.raises(ValueError, match="makes a plug-in likelihood for NUTS"):
        infer_reward(jax.random.key(0), problem, method="exchange", estimator=importance(64))


@pytest.fixture(scope="module")
def plug_in_and_exact(problem):
    plug_in = infer_reward(jax.random.key(1), problem, estimator=PLUG_IN, **COMMON)
    exact = infer_reward(jax.random.key(2), problem, **COMMON)
    return plug_in, exact


def test_plug_in_posterior_is_labelled_and_reports_khat(plug_in_and_exact):
    plug_in, exact = plug_in_and_exact
    assert plug_in.attrs["likelihood_kind"].startswith("plug-in (biased")
    assert exact.attrs["likelihood_kind"] == "exact"
    khat = plug_in["sample_stats"]["khat"].values
    assert khat.shape == (4, 1000)
    # NaN only where the generalized-Pareto fit is undefined (documented by the estimator)
    assert np.isfinite(khat).mean() > 0.9


def test_psis_reweighting_recovers_the_exact_posterior(plug_in_and_exact, problem):
    plug_in, exact = plug_in_and_exact
    reweighted = diagnostics.psis_reweight(jax.random.key(3), plug_in, problem)
    assert reweighted.attrs["ok"] == 1, reweighted.attrs["khat"]
    draws = np.asarray(reweighted["posterior"]["theta"])[0]
    exact_draws = np.asarray(exact["posterior"]["theta"]).reshape(-1, 2)
    # Monte Carlo error of the reweighted mean: sd / sqrt(ESS of the smoothed weights x r_eff)
    effective = reweighted.attrs["ess"] * reweighted.attrs["r_eff"]
    se_reweighted = draws.std(axis=0) / np.sqrt(effective)
    se_exact = mcse(exact, var_names=["theta"])["theta"].values
    gap = np.abs(draws.mean(axis=0) - exact_draws.mean(axis=0))
    assert (gap <= 4 * np.hypot(se_reweighted, se_exact)).all(), (gap, se_reweighted, se_exact)


def test_plug_in_runs_with_other_keys_reuse_the_compiled_sampler(plug_in_and_exact, problem):
    """The estimator's key is a traced argument: a new run compiles nothing new."""
    from ebm_ppl.inference import nuts
    from ebm_ppl.inference.posterior import PlugIn

    plug_in = PlugIn.build(PLUG_IN, problem.mdp)
    warmup, sample = nuts._blackjax_programs("trajectory", 1.0, "soft", plug_in, 300, 0.8)
    assert (warmup._cache_size(), sample._cache_size()) == (1, 1)
    other = infer_reward(jax.random.key(11), problem, estimator=PLUG_IN, **COMMON)
    assert (warmup._cache_size(), sample._cache_size()) == (1, 1)
    first, _ = plug_in_and_exact
    assert not np.array_equal(
        other["posterior"]["theta"].values, first["posterior"]["theta"].values
    )
