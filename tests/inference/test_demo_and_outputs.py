"""The `ebm-ppl demo` configuration, the two NUTS back ends against each other, saved DataTrees."""

import json

import jax
import numpy as np
import pytest
from arviz_stats import ess, mcse, rhat

from ebm_ppl import diagnostics
from ebm_ppl.cli import main
from ebm_ppl.inference.posterior import infer_reward
from ebm_ppl.problems import make_problem


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`ebm-ppl demo` as shipped: ObjectWorld 8x8, 50 demos, NumPyro NUTS, 4 x 1000 draws."""
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    return out, diagnostics.load(out / "posterior.nc")


def test_demo_converges(demo_run):
    out, idata = demo_run
    assert idata.attrs["method"] == "nuts" and idata.attrs["num_demos"] == 50
    assert idata["posterior"].sizes["chain"] == 4 and idata["posterior"].sizes["draw"] == 1000
    r_hat = rhat(idata, var_names=["theta"])["theta"].values
    bulk = ess(idata, var_names=["theta"], method="bulk")["theta"].values
    assert (r_hat < 1.01).all(), r_hat
    assert (bulk > 400).all(), bulk
    assert int(idata["sample_stats"]["diverging"].sum()) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["divergences"] == 0 and report["max_rhat"] < 1.01
    assert report["interval"] == "90% equal-tailed interval"
    assert 0 <= report["recovery"]["epic_posterior_mean"] <= 1
    for name in ("posterior.nc", "summary.csv", "chains_trace.png", "chains_rank.png"):
        assert (out / name).stat().st_size > 0


def test_numpyro_and_blackjax_agree_on_objectworld_means(demo_run):
    _, numpyro_idata = demo_run
    problem = make_problem("objectworld", jax.random.key(0), num_demos=50)
    blackjax_idata = infer_reward(
        jax.random.key(7),
        problem,
        method="blackjax-nuts",
        num_chains=4,
        num_warmup=1000,
        num_samples=1000,
        progress_bar=False,
        posterior_predictive=False,
    )
    np.testing.assert_array_equal(
        numpyro_idata["observed_data"]["demos"].values, np.asarray(problem.demos)
    )
    means, errors = [], []
    for idata in (numpyro_idata, blackjax_idata):
        means.append(idata["posterior"]["theta"].mean(("chain", "draw")).values)
        errors.append(mcse(idata, var_names=["theta"])["theta"].values)
    tolerance = 4 * np.sqrt(errors[0] ** 2 + errors[1] ** 2)
    assert (np.abs(means[0] - means[1]) <= tolerance).all(), (means, tolerance)


@pytest.fixture(scope="module")
def small_posteriors(make_tiny_problem):
    problem = make_tiny_problem(5, num_features=2, num_demos=25, terminal=True, horizon=4)
    trees = {}
    for likelihood in ("causal", "trajectory", "birl"):
        trees[likelihood] = infer_reward(
            jax.random.key(1),
            problem,
            method="blackjax-nuts",
            likelihood=likelihood,
            num_chains=2,
            num_warmup=300,
            num_samples=300,
            progress_bar=False,
        )
    return problem, trees


def test_datatree_groups_and_attributes(small_posteriors):
    problem, trees = small_posteriors
    idata = trees["causal"]
    assert set(idata.children) >= {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "prior",
        "observed_data",
        "constant_data",
        "posterior_predictive",
    }
    posterior = idata["posterior"]
    assert posterior["reward"].dims == ("chain", "draw", "state", "action")
    centred = posterior["reward_canonical"].mean(("state", "action")).values
    np.testing.assert_allclose(centred, 0, atol=1e-12)
    assert idata["log_likelihood"]["demos"].dims == ("chain", "draw", "demo")
    assert idata["log_likelihood"].sizes["demo"] == 25
    for name in ("diverging", "energy", "step_size", "tree_depth", "acceptance_rate", "lp"):
        assert name in idata["sample_stats"]
    predictive = idata["posterior_predictive"]
    assert predictive["state_occupancy"].dims == ("chain", "draw", "state")
    # decisions per trajectory: at most T = 4 in expectation, and evd >= 0 (hard policies)
    assert (predictive["state_occupancy"].sum("state").values <= 4 + 1e-9).all()
    assert (predictive["evd"].values >= -1e-9).all()
    for key in ("problem", "likelihood", "method", "seed", "versions", "parameter_sites"):
        assert key in idata.attrs
    assert "numpyro==" in idata.attrs["versions"]


def test_log_likelihood_is_the_exact_per_demo_log_prob(small_posteriors):
    from ebm_ppl.likelihood.problem import trajectory_distribution

    problem, trees = small_posteriors
    idata = trees["trajectory"]
    theta = idata["posterior"]["theta"].values[1, 17]
    expected = trajectory_distribution(problem, {"theta": theta}, model="trajectory").log_prob(
        problem.demos
    )
    np.testing.assert_allclose(idata["log_likelihood"]["demos"].values[1, 17], expected, rtol=1e-12)


def test_saved_posterior_loads_back_with_the_same_numbers_and_loo_runs(small_posteriors, tmp_path):
    _, trees = small_posteriors
    idata = trees["causal"]
    path = diagnostics.save(idata, tmp_path / "posterior.nc")
    loaded = diagnostics.load(path)
    for group in idata.children:
        for name, variable in idata[group].data_vars.items():
            np.testing.assert_array_equal(loaded[group][name].values, variable.values)
    assert loaded.attrs["likelihood"] == "causal"
    result = diagnostics.loo(loaded)
    assert np.isfinite(result.elpd)
    assert result.pareto_k.shape == (25,)
    assert (result.pareto_k.values < 0.7).all()


def test_likelihoods_compared_by_psis_loo(small_posteriors):
    _, trees = small_posteriors
    table = diagnostics.compare(trees)
    assert set(table.index) == set(trees)
    assert np.isfinite(table["elpd"].values).all()
    assert (table["pareto_k_max"] < 0.7).all()
    for idata in trees.values():
        assert (diagnostics.loo(idata).pareto_k.values < 0.7).all()


def test_compare_refuses_different_demonstrations(small_posteriors, make_tiny_problem):
    _, trees = small_posteriors
    other_problem = make_tiny_problem(6, num_features=2, num_demos=25, terminal=True, horizon=4)
    other = infer_reward(
        jax.random.key(2),
        other_problem,
        method="blackjax-nuts",
        num_chains=2,
        num_warmup=50,
        num_samples=50,
        progress_bar=False,
        posterior_predictive=False,
    )
    with pytest.raises(ValueError, match="different demonstrations"):
        diagnostics.compare({"a": trees["causal"], "b": other})


def test_summary_states_its_interval(small_posteriors):
    _, trees = small_posteriors
    table = diagnostics.summary(trees["causal"])
    assert table.attrs["interval"] == "90% equal-tailed interval"
    assert {"eti90_lb", "eti90_ub", "r_hat", "ess_bulk"} <= set(table.columns)
    table = diagnostics.summary(trees["causal"], ci_prob=0.5, ci_kind="hdi")
    assert table.attrs["interval"] == "50% highest-density interval"


def test_blackjax_programs_compile_once_for_repeated_runs(small_posteriors, make_tiny_problem):
    """A second posterior of the same shapes (other demos, other key) reuses the compiled code."""
    from ebm_ppl.inference import nuts

    problem, _ = small_posteriors
    warmup, sample = nuts._blackjax_programs("causal", 1.0, "soft", None, 300, 0.8)
    sizes = (warmup._cache_size(), sample._cache_size())
    other = make_tiny_problem(5, num_features=2, num_demos=25, terminal=True, horizon=4)
    other = other.replace(demos=np.asarray(other.demos)[::-1])
    infer_reward(
        jax.random.key(9),
        other,
        method="blackjax-nuts",
        num_chains=2,
        num_warmup=300,
        num_samples=300,
        progress_bar=False,
        posterior_predictive=False,
    )
    assert (warmup._cache_size(), sample._cache_size()) == sizes == (1, 1)
