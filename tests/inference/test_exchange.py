"""The exchange algorithm targets the exact posterior: it matches exact-likelihood NUTS."""

import jax
import numpy as np
import pytest
from arviz_stats import mcse

from ebm_ppl.inference.posterior import infer_reward
from ebm_ppl.problems import make_problem

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@pytest.fixture(scope="module")
def posteriors():
    problem = make_problem(
        "objectworld", jax.random.key(0), size=5, num_demos=20, horizon=10, model="trajectory"
    )
    common = dict(num_chains=4, progress_bar=False, posterior_predictive=False)
    exchange = infer_reward(
        jax.random.key(1), problem, method="exchange", num_warmup=1000, num_samples=3000, **common
    )
    nuts = infer_reward(
        jax.random.key(2),
        problem,
        method="blackjax-nuts",
        num_warmup=500,
        num_samples=1000,
        **common,
    )
    return exchange, nuts


def test_exchange_matches_nuts_means_and_quantiles(posteriors):
    exchange, nuts = posteriors
    draws = [np.asarray(t["posterior"]["theta"]).reshape(-1, 2) for t in (exchange, nuts)]
    errors = [mcse(t, var_names=["theta"])["theta"].values for t in (exchange, nuts)]
    difference = np.abs(draws[0].mean(axis=0) - draws[1].mean(axis=0))
    assert (difference <= 4 * np.hypot(*errors)).all(), (difference, errors)
    for q in QUANTILES:
        q_errors = [
            mcse(t, var_names=["theta"], method="quantile", prob=q)["theta"].values
            for t in (exchange, nuts)
        ]
        gap = np.abs(np.quantile(draws[0], q, axis=0) - np.quantile(draws[1], q, axis=0))
        assert (gap <= 4 * np.hypot(*q_errors)).all(), (q, gap, q_errors)


def test_exchange_reports_its_kernel(posteriors):
    exchange, _ = posteriors
    stats = exchange["sample_stats"]
    assert 0.15 < float(stats["acceptance_rate"].mean()) < 0.5
    assert np.unique(stats["step_size"].values[0]).size == 1  # the scale is frozen after warm-up
    assert exchange.attrs["method"] == "exchange"


def test_exchange_refuses_normalised_likelihoods():
    problem = make_problem("objectworld", jax.random.key(0), size=5, num_demos=5, horizon=5)
    with pytest.raises(ValueError, match="method='exchange' needs"):
        infer_reward(jax.random.key(0), problem, method="exchange", likelihood="causal")
