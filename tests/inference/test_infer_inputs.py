"""`infer_reward` rejects bad inputs before sampling, and non-finite draws after."""

import jax
import numpy as np
import numpyro.distributions as dist
import pytest

from ebm_ppl import diagnostics
from ebm_ppl.inference import posterior as posterior_module
from ebm_ppl.inference.base import PosteriorDraws
from ebm_ppl.inference.posterior import NonFiniteDrawsError, check_draws, infer_reward
from ebm_ppl.logz import exact


@pytest.fixture(scope="module")
def problem(make_tiny_problem):
    return make_tiny_problem(0, num_features=2, num_demos=10)


@pytest.fixture
def no_sampling(monkeypatch):
    """Fail loudly if a sampler is reached: every error below must come before sampling."""
    from ebm_ppl.inference import nuts

    def refuse(*args, **kwargs):
        raise AssertionError("sampling started before the input was rejected")

    monkeypatch.setattr(nuts, "sample_numpyro_nuts", refuse)
    monkeypatch.setattr(nuts, "sample_blackjax_nuts", refuse)


def run(problem, **kwargs):
    kwargs.setdefault("num_warmup", 10)
    kwargs.setdefault("num_samples", 10)
    kwargs.setdefault("progress_bar", False)
    return infer_reward(jax.random.key(0), problem, **kwargs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d[:, :-1], r"shape \(N, T \+ 1, 2\)"),
        (lambda d: np.concatenate([d, d[:, -1:]], axis=1), r"horizon 3"),
        (lambda d: np.where(np.arange(4)[None, :, None] == 0, 99, d), r"`demos`\[0\] step 0"),
        (lambda d: d[:0], "empty"),
        (lambda d: d.astype(float) + 0.5, "integer"),
    ],
    ids=["short", "long", "state-out-of-range", "empty", "float"],
)
def test_bad_demos_are_rejected_before_sampling(problem, no_sampling, change, message):
    demos = change(np.asarray(problem.demos))
    with pytest.raises(ValueError, match=message):
        run(problem, demos=demos)


def test_missing_demos(problem, no_sampling):
    with pytest.raises(ValueError, match="no demonstrations"):
        run(problem.replace(demos=None))


def test_action_out_of_range(problem, no_sampling):
    demos = np.array(problem.demos)
    demos[0, 0, 1] = 7
    with pytest.raises(ValueError, match=r"`demos`\[0\] step 0"):
        run(problem, demos=demos)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "gibbs"}, "`method` must be one of"),
        ({"likelihood": "maxent"}, "`likelihood` must be one of"),
        ({"q": "hard"}, "q='hard'"),
        ({"method": "policywalk", "likelihood": "causal"}, "likelihood='birl'"),
        ({"num_chains": 0}, "`num_chains`"),
        ({"num_samples": 2.5}, "`num_samples`"),
        ({"target_accept_prob": 1.0}, "`target_accept_prob`"),
        ({"rationality": 2.0}, "applies to likelihood='birl' only"),
        ({"likelihood": "birl", "rationality": -1.0}, "`rationality` must be"),
        ({"likelihood": "birl", "rationality": dist.Normal(0, 1)}, r"\(0, inf\)"),
        ({"likelihood": "causal", "estimator": exact("trajectory")}, "cannot serve"),
    ],
)
def test_bad_settings_are_rejected_before_sampling(problem, no_sampling, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(problem, **kwargs)


def test_non_finite_initial_position(problem, no_sampling):
    with pytest.raises(ValueError, match=r"`init_params\['theta'\]` must be finite"):
        run(problem, init_params={"theta": np.array([0.0, np.nan])})


def test_init_outside_the_prior_support(problem, no_sampling):
    prior = dist.Gamma(2.0, 1.0)
    with pytest.raises(ValueError, match="outside the support of its prior"):
        run(
            problem,
            likelihood="birl",
            rationality=prior,
            init_params={"theta": np.zeros(2), "rationality": -1.0},
        )


def test_init_with_wrong_sites_or_shape(problem, no_sampling):
    with pytest.raises(ValueError, match="exactly the latent sites"):
        run(problem, init_params={"beta": np.zeros(2)})
    with pytest.raises(ValueError, match=r"must have shape \(2,\) or \(4, \*\(2,\)\)"):
        run(problem, init_params={"theta": np.zeros(3)})


def test_non_finite_draws_are_reported_with_chain_draw_and_parameter():
    theta = np.zeros((2, 5, 3))
    theta[1, 3, 2] = np.nan
    with pytest.raises(NonFiniteDrawsError, match=r"chain 1, draw 3, parameter theta\[2\]"):
        check_draws({"theta": theta})
    check_draws({"theta": np.zeros((2, 5, 3))})  # finite draws pass


def test_infer_reward_refuses_to_summarise_non_finite_draws(problem, monkeypatch):
    from ebm_ppl.inference import nuts

    def broken(*args, **kwargs):
        theta = np.zeros((4, 10, 2))
        theta[2, 7, 0] = np.inf
        return PosteriorDraws(positions={"theta": theta}, sample_stats={}, info={})

    monkeypatch.setattr(nuts, "sample_blackjax_nuts", broken)
    with pytest.raises(NonFiniteDrawsError, match=r"chain 2, draw 7, parameter theta\[0\]"):
        run(problem, method="blackjax-nuts")


def test_truth_is_passed_by_explicit_reward_or_cost_keyword(problem):
    """A reward table is never taken positionally, so it cannot be mistaken for a cost."""
    rewards = np.zeros((1, 2, problem.mdp.num_states, problem.mdp.num_actions))
    table = np.asarray(problem.true_reward())
    import xarray as xr

    tree = xr.DataTree.from_dict(
        {"posterior": xr.Dataset({"reward": (("chain", "draw", "state", "action"), rewards)})}
    )
    with pytest.raises(TypeError):
        diagnostics.reward_recovery(tree, problem, table)
    with pytest.raises(ValueError, match="either `reward=` or `cost=`"):
        diagnostics.reward_recovery(tree, problem, reward=table, cost=-table)
    by_reward = diagnostics.reward_recovery(tree, problem, reward=table)
    by_cost = diagnostics.reward_recovery(tree, problem, cost=-table)
    assert by_reward == by_cost


def test_prior_sites_match_the_model(problem):
    sites = posterior_module._prior_sites(
        problem, {"likelihood": "birl", "rationality": dist.Gamma(2.0, 1.0), "q": "soft"}
    )
    assert sorted(sites) == ["rationality", "theta"]
