"""SGLD / SGHMC with persistent-chain grad log Z against a grid posterior (THEORY §1.5, §7).

Problem: a 1-D Gaussian EBM with both parameters free (loc m, log scale), N = 20 exact draws
at (0.5, 0), N(0, 1) priors; its log Z is closed-form, so the grid posterior (301 x 301 points
spanning at least +-8 sd) is exact up to grid error. Rules (the issue's, DESIGN §5): per site,
|mean - grid mean| <= 4 MCSE + 0.1 sd_grid and |sd / sd_grid - 1| <= 4 MCSE_sd / sd + 0.2, the
0.1 sd and 0.2 being the stated allowances for the samplers' step-size and gradient-noise
biases (for SGLD at this step about +2.5 % in sd from the discretisation alone).
"""

import math

import arviz_stats
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ebm_ppl.diagnostics import summary
from ebm_ppl.energy.density import GaussianEnergy
from ebm_ppl.inference.sgld import infer_sgmcmc
from ebm_ppl.problems import DensityProblem

NUM_DATA = 20
TRUE = {"loc": jnp.asarray([0.5]), "log_scale": jnp.asarray([0.0])}
PERSISTENT = dict(num_particles=128, kernel_step_size=0.2, num_integration_steps=8)
SITES = ("loc", "log_scale")


@pytest.fixture(scope="module")
def problem():
    model = GaussianEnergy(dim=1)
    data = model.sample(jax.random.key(0), TRUE, NUM_DATA)
    return DensityProblem(name="gauss1d", energy_model=model, dim=1, true_params=TRUE, data=data)


@pytest.fixture(scope="module")
def grid(problem):
    """Marginal posterior mean and sd of each site on a 301 x 301 grid (closed-form log Z)."""
    x = np.asarray(problem.data)[:, 0]
    n = x.shape[0]
    centre_m, centre_s = x.mean(), math.log(x.std())
    half_m, half_s = 10 * x.std() / math.sqrt(n), 10 / math.sqrt(2 * n)
    loc = np.linspace(centre_m - half_m, centre_m + half_m, 301)
    log_scale = np.linspace(centre_s - half_s, centre_s + half_s, 301)
    m, s = np.meshgrid(loc, log_scale, indexing="ij")
    residual = (x[:, None, None] - m[None]) * np.exp(-s[None])
    log_post = (
        stats.norm.logpdf(m)
        + stats.norm.logpdf(s)
        - 0.5 * np.sum(residual**2, axis=0)
        - n * (0.5 * math.log(2 * math.pi) + s)  # - N log Z(theta)
    )
    weights = np.exp(log_post - log_post.max())
    weights /= weights.sum()
    out = {}
    for name, values, axis in (("loc", m, loc), ("log_scale", s, log_scale)):
        mean = float(np.sum(weights * values))
        sd = float(np.sqrt(np.sum(weights * (values - mean) ** 2)))
        assert axis[0] <= mean - 8 * sd and mean + 8 * sd <= axis[-1], name  # spans +-8 sd
        out[name] = (mean, sd)
    return out


@pytest.fixture(scope="module")
def sgld_tree(problem):
    return infer_sgmcmc(
        jax.random.key(1),
        problem,
        method="sgld",
        num_chains=4,
        num_warmup=500,
        num_samples=4000,
        step_size=2.5e-3,
        **PERSISTENT,
    )


def assert_matches_grid(tree, grid, label):
    posterior = tree["posterior"]
    for name in SITES:
        draws = posterior[name]
        mean, sd = float(draws.mean()), float(draws.std())
        mcse = float(arviz_stats.mcse(draws, method="mean").values.item())
        mcse_sd = float(arviz_stats.mcse(draws, method="sd").values.item())
        ess = float(arviz_stats.ess(draws).values.item())
        grid_mean, grid_sd = grid[name]
        assert ess > 100, (label, name, ess)  # informative
        assert abs(mean - grid_mean) <= 4 * mcse + 0.1 * grid_sd, (label, name, mean, grid_mean)
        assert abs(sd / grid_sd - 1) <= 4 * mcse_sd / sd + 0.2, (label, name, sd, grid_sd)


def test_sgld_matches_grid_posterior(sgld_tree, grid):
    assert_matches_grid(sgld_tree, grid, "sgld")


def test_sghmc_minibatch_matches_grid_posterior(problem, grid):
    tree = infer_sgmcmc(
        jax.random.key(2),
        problem,
        method="sghmc",
        num_chains=4,
        num_warmup=500,
        num_samples=4000,
        step_size=0.01,
        friction=5.0,
        batch_size=10,
        init_params=TRUE,
        **PERSISTENT,
    )
    assert_matches_grid(tree, grid, "sghmc")
    assert tree.attrs["sampler_batch_size"] == 10 and tree.attrs["sampler_friction"] == 5.0
    assert "minibatch" in tree.attrs["likelihood_kind"]


def test_datatree_is_labelled_approximate(sgld_tree, problem):
    tree = sgld_tree
    assert {"posterior", "sample_stats", "observed_data", "constant_data"} <= set(tree.children)
    assert tree.attrs["approximate"] == 1
    assert tree.attrs["likelihood_kind"].startswith("approximate (sgld")
    assert "exact data term" in tree.attrs["likelihood_kind"]
    assert tree.attrs["method"] == "sgld" and tree.attrs["model"] == "ebm"
    assert list(tree.attrs["parameter_sites"]) == list(SITES)
    assert tree.attrs["sampler_step_size"] == 2.5e-3
    assert tree.attrs["sampler_num_particles"] == 128
    posterior = tree["posterior"]
    assert posterior["loc"].shape == (4, 4000, 1)
    assert np.all(np.isfinite(posterior["log_scale"].values))
    sample_stats = tree["sample_stats"]
    assert "pcd_ess" not in sample_stats  # 2 steps per gradient: too short for an ESS
    assert float(sample_stats["acceptance_rate"].mean()) > 0.9
    np.testing.assert_array_equal(sample_stats["step_size"].values, 2.5e-3)
    np.testing.assert_array_equal(tree["observed_data"]["data"].values, problem.data)
    np.testing.assert_array_equal(tree["constant_data"]["true_loc"].values, TRUE["loc"])
    table = summary(tree)
    assert set(table.index) == {"loc[0]", "log_scale[0]"} and table["r_hat"].max() < 1.05


def test_float32_thinning_minibatch_and_same_key(problem):
    """float32 data and parameters stay float32; thinning, minibatches and a fixed key give the
    same draws twice (the second call reuses the compiled program)."""
    data32 = jnp.asarray(problem.data, jnp.float32)
    problem32 = problem.replace(
        data=data32, true_params=jax.tree.map(lambda v: v.astype(jnp.float32), TRUE)
    )
    settings = dict(
        num_chains=2, num_warmup=5, num_samples=10, thinning=2, batch_size=5, num_particles=8
    )
    first = infer_sgmcmc(jax.random.key(3), problem32, **settings)
    again = infer_sgmcmc(jax.random.key(3), problem32, **settings)
    for name in SITES:
        values = first["posterior"][name].values
        assert values.dtype == np.float32 and values.shape == (2, 10, 1)
        np.testing.assert_array_equal(values, again["posterior"][name].values)
    assert first["observed_data"]["data"].dtype == np.float32
    assert first.attrs["sampler_thinning"] == 2 and first.attrs["sampler_batch_size"] == 5


def test_errors(problem, random_mdp):
    from ebm_ppl.energy import LinearReward
    from ebm_ppl.mcmc.chains import mcmc_kernel
    from ebm_ppl.problems import Problem

    key = jax.random.key(0)
    cases = [
        ("method", dict(method="sgnht")),
        ("data", dict(data=jnp.zeros((5, 2)))),
        ("data", dict(data=jnp.asarray([[0.0], [jnp.nan]]))),
        ("num_chains", dict(num_chains=0)),
        ("num_warmup", dict(num_warmup=-1)),
        ("num_samples", dict(num_samples=0)),
        ("thinning", dict(thinning=0)),
        ("step_size", dict(step_size=0.0)),
        ("step_size", dict(step_size=float("inf"))),
        ("friction", dict(friction=-1.0)),
        ("batch_size", dict(batch_size=NUM_DATA + 1)),
        ("batch_size", dict(batch_size=0)),
        ("num_particles", dict(num_particles=0)),
        ("num_mcmc_steps", dict(num_mcmc_steps=0)),
        ("kernel", dict(kernel="rwm")),
        ("kernel_step_size", dict(kernel_step_size=0.0)),
        ("num_integration_steps", dict(num_integration_steps=0)),
        ("init_params", dict(init_params={"loc": jnp.zeros(1)})),
        ("init_params", dict(init_params={"loc": jnp.zeros(2), "log_scale": jnp.zeros(1)})),
        ("init_params", dict(init_params={"loc": jnp.zeros(1), "log_scale": jnp.full(1, jnp.inf)})),
    ]
    for match, kwargs in cases:
        with pytest.raises(ValueError, match=match):
            infer_sgmcmc(key, problem, **kwargs)
    with pytest.raises(ValueError, match="data"):
        infer_sgmcmc(key, problem.replace(data=None))
    with pytest.raises(TypeError, match="kernel"):
        infer_sgmcmc(key, problem, kernel=mcmc_kernel)
    assert mcmc_kernel("mala", step_size=0.1).name == "mala"  # a Kernel object is accepted
    mdp = random_mdp(0)
    tabular = Problem(name="tiny", mdp=mdp, energy_model=LinearReward(mdp.features))
    with pytest.raises(TypeError, match="DensityProblem"):
        infer_sgmcmc(key, tabular)
