"""LQR problems (THEORY §8.1): exact demos, NUTS vs a grid posterior, and the chi^2/(2K) Jensen
bias of importance sampling under an over-dispersed Gaussian proposal (THEORY §6)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS

from ebm_ppl.continuous import LinearGaussianProblem, posterior_model
from ebm_ppl.energy.quadratic import QuadraticCost
from ebm_ppl.exact import lqr as exact
from ebm_ppl.inference.exchange import sample_exchange
from ebm_ppl.logz.importance import draw_weighted, iwae_estimate
from ebm_ppl.models import lqr
from ebm_ppl.spaces.linear_gaussian import GaussianTrajectories, to_observed


# ---------------------------------------------------------------------------- problems
def test_make_problem_reference():
    problem = lqr.make_problem(system="reference", num_demos=0)
    assert isinstance(problem, LinearGaussianProblem)
    assert problem.name == "lqr" and problem.model == "causal"
    assert problem.demos is None and problem.num_demos == 0
    assert problem.system.horizon == 3 and problem.energy_model.num_params == 3
    log_z = problem.log_z(problem.true_params)
    assert abs(float(log_z) - 2.112306461529) < 1e-10  # THEORY §8.1


def _check_scalar_problem(problem):
    assert problem.name == "lqr" and problem.model == "causal" and problem.num_demos == 30
    assert problem.demos.states.shape == (30, 3, 1) and problem.demos.controls.shape == (30, 2, 1)
    starts = np.asarray(problem.demos.states[:, 0, 0])
    assert np.std(starts) > 0.2  # random starts around x0 = 1
    loglik = problem.log_likelihood(problem.true_params)
    assert loglik.shape == (30,) and np.all(np.isfinite(np.asarray(loglik)))
    # the NumPyro distribution is the same likelihood on observed arrays
    distribution = problem.trajectory_distribution(problem.true_params)
    assert distribution.event_shape == (3, 2)
    np.testing.assert_allclose(distribution.log_prob(to_observed(problem.demos)), loglik)


def test_bad_problem_arguments():
    with pytest.raises(ValueError, match="`system` must be one of"):
        lqr.make_problem(system="cartpole")
    with pytest.raises(ValueError, match="`noise` must be a real number >= 0"):
        lqr.make_problem(noise=-0.1)
    with pytest.raises(ValueError, match="`model` must be one of"):
        lqr.make_problem(model="trajectory_global")
    with pytest.raises(ValueError, match="`num_demos` must be an int >= 0"):
        lqr.make_problem(num_demos=-1)
    with pytest.raises(ValueError, match="`true_params` must be"):
        lqr.make_problem(true_params={"log_q": [0.0, 0.0]}, num_demos=0)
    with pytest.raises(ValueError, match=r"`params\['log_r'\]` must have shape \(1,\)"):
        lqr.make_problem(true_params={"log_q": [0.0, 0.0], "log_r": [0.0, 0.0]}, num_demos=0)
    problem = lqr.make_problem(num_demos=0)
    with pytest.raises(ValueError, match="`discount` must be 1"):
        problem.replace(discount=0.9)
    with pytest.raises(ValueError, match="has no `demos`"):
        problem.log_likelihood(problem.true_params)
    with pytest.raises(ValueError, match="needs a deterministic `system`"):
        lqr.control_space_problem(lqr.make_problem(noise=0.05, num_demos=0))
    with pytest.raises(ValueError, match="inconsistent with the dynamics"):
        bad = GaussianTrajectories(np.ones((1, 4, 2)), np.zeros((1, 3, 1)))
        problem.replace(demos=bad)
    with pytest.raises(ValueError, match="`prior_scale` must be > 0"):
        QuadraticCost(2, 1, prior_scale=0.0)
    with pytest.raises(ValueError, match=r"`params\['log_q'\]` must have shape \(2,\)"):
        QuadraticCost(2, 1).matrices({"log_q": jnp.zeros(3), "log_r": jnp.zeros(1)})


# ---------------------------------------------------------------------------- NUTS vs grid
GRID = 200


def _log_posterior_grid(problem, centre, half_width):
    """Unnormalised log posterior on a GRID x GRID box centre +- half_width (log_q, log_r)."""
    axes = [np.linspace(c - w, c + w, GRID) for c, w in zip(centre, half_width, strict=True)]
    q, r = np.meshgrid(*axes, indexing="ij")
    points = jnp.asarray(np.stack([q.ravel(), r.ravel()], axis=-1))

    @jax.jit
    def log_post(problem, points):
        def one(point):
            params = {"log_q": point[:1], "log_r": point[1:]}
            prior = dist.Normal(0.0, 1.0).log_prob(point).sum()
            return prior + problem.log_likelihood(params).sum()

        return jax.vmap(one)(points)

    return axes, np.asarray(log_post(problem, points)).reshape(GRID, GRID)


def _marginals(axes, log_post):
    weights = np.exp(log_post - log_post.max())
    weights /= weights.sum()
    out = []
    for axis, grid in enumerate(axes):
        mass = weights.sum(axis=1 - axis)
        mean = float(mass @ grid)
        sd = float(np.sqrt(mass @ (grid - mean) ** 2))
        out.append((grid, mass, mean, sd))
    return out


def _grid_marginals(problem):
    """Marginals on a 200 x 200 grid over +-8 posterior sd (a coarse pass finds the box)."""
    coarse_axes, coarse = _log_posterior_grid(problem, (0.0, 0.0), (4.0, 4.0))
    coarse_marginals = _marginals(coarse_axes, coarse)
    centre = [m[2] for m in coarse_marginals]
    half_width = [8 * m[3] for m in coarse_marginals]
    axes, log_post = _log_posterior_grid(problem, centre, half_width)
    weights = np.exp(log_post - log_post.max())
    edge = weights[[0, -1]].sum() + weights[:, [0, -1]].sum()
    assert edge / weights.sum() < 1e-6  # the box holds the mass (the small-q tail is the longest)
    return _marginals(axes, log_post)


def _check_against_grid(marginals, draws, min_ess=400):
    """DESIGN §5: means within 4 MCSE + grid spacing, 5/50/95 % quantiles within 4 MCSE_q +
    spacing (draws ``(chains, samples)`` per site)."""
    for (grid, mass, mean, _), name in zip(marginals, ("log_q", "log_r"), strict=True):
        chains = np.asarray(draws[name])
        ess = float(effective_sample_size(chains))
        assert ess > min_ess, (name, ess)
        flat = chains.ravel()
        spacing = grid[1] - grid[0]
        mcse = flat.std(ddof=1) / math.sqrt(ess)
        assert abs(flat.mean() - mean) <= 4 * mcse + spacing, (name, flat.mean(), mean, mcse)
        cdf = np.cumsum(mass)
        for p in (0.05, 0.5, 0.95):
            grid_q = float(np.interp(p, cdf, grid))
            density = float(np.interp(grid_q, grid, mass)) / spacing
            mcse_q = math.sqrt(p * (1 - p) / ess) / density
            sampled_q = float(np.quantile(flat, p))
            assert abs(sampled_q - grid_q) <= 4 * mcse_q + spacing, (name, p, sampled_q, grid_q)


def test_nuts_matches_grid_posterior():
    """Scalar system with noise (T = 2, random starts, 30 exact causal demonstrations). NUTS on
    the exact causal likelihood vs a 200 x 200 grid over +-8 posterior sd (DESIGN §5): means
    within 4 MCSE + grid spacing, 5/50/95 % quantiles within 4 MCSE_q + spacing."""
    problem = lqr.make_problem(
        jax.random.key(4), system="scalar", noise=0.2, horizon=2, initial_std=0.5, num_demos=30
    )
    _check_scalar_problem(problem)
    marginals = _grid_marginals(problem)
    mcmc = MCMC(
        NUTS(posterior_model),
        num_warmup=500,
        num_samples=1500,
        num_chains=2,
        chain_method="vectorized",  # one compiled program for both chains
        progress_bar=False,
    )
    mcmc.run(jax.random.key(7), problem)
    samples = mcmc.get_samples(group_by_chain=True)
    _check_against_grid(
        marginals, {"log_q": samples["log_q"][..., 0], "log_r": samples["log_r"][..., 0]}
    )


def test_exchange_matches_grid_posterior():
    """The exchange algorithm on the trajectory-level model of the same noisy scalar system
    (30 exact trajectory-level demonstrations from random starts; auxiliary data drawn exactly
    from the tilted soft-Riccati solution at each demonstration's x_0, so every Z(theta, x_0)
    cancels): the same grid checks as NUTS, against the grid of the trajectory-level likelihood.
    The causal model with noise is refused (its likelihood is not f(x)/Z(theta))."""
    problem = lqr.make_problem(
        jax.random.key(4),
        system="scalar",
        noise=0.2,
        horizon=2,
        initial_std=0.5,
        num_demos=30,
        model="trajectory",
    )
    marginals = _grid_marginals(problem)
    start = {"log_q": jnp.zeros((4, 1)), "log_r": jnp.zeros((4, 1))}
    draws = sample_exchange(
        jax.random.key(7), problem, None, start, num_warmup=1000, num_samples=4000
    )
    assert abs(float(np.mean(draws.sample_stats["acceptance_rate"])) - 0.3) < 0.1
    _check_against_grid(
        marginals, {name: draws.positions[name][..., 0] for name in ("log_q", "log_r")}
    )
    with pytest.raises(ValueError, match="trajectory-level model"):
        sample_exchange(jax.random.key(0), problem.replace(model="causal"), None, start)
    with pytest.raises(ValueError, match="`model` must be 'trajectory'"):
        sample_exchange(jax.random.key(0), problem, None, start, model="trajectory_global")


# ---------------------------------------------------------------------------- Jensen bias
S = 1.5
DIM = 3  # T m of the reference case


def _rho(k: int) -> float:
    """E_q[(p/q)^k] for p = N(mu, Sigma), q = N(mu, s^2 Sigma) in d dimensions (closed form):
    per whitened coordinate int phi^k (phi(x/s)/s)^(1-k) dx = s^(k-1) / sqrt(k - (k-1)/s^2)."""
    return (S ** (k - 1) / math.sqrt(k - (k - 1) / S**2)) ** DIM


def test_importance_jensen_bias():
    """IS with q = N(mu, s^2 Sigma), s = 1.5, on the deterministic reference case's controls
    (p_theta = N(mu, Sigma), d = 3; checked first: -E - log Z is its log-density), 2^19 draws
    grouped in K = 16 and K = 64.

    E log Z_K - log Z = -chi^2/(2K) + c2/K^2 + O(K^-3) with, for log(1 + delta),
    c2 = mu3/3 - 3 chi^4/4 (mu3 = E_q[(w/Z - 1)^3]); allowance 4 SE + 2|c2|/K^2 (the first
    neglected term, doubled for the rest; successive terms shrink by about chi^2/K <= 0.05).
    Var log Z_K = chi^2/K + (2.5 chi^4 - mu3)/K^2: within 4 SE(var) + 2|.|/K^2."""
    problem = lqr.make_problem(system="reference", num_demos=0)
    controls = lqr.control_space_problem(problem)
    cost = problem.cost_matrices(problem.true_params)
    batch = exact.batch_gaussian(problem.system, cost, problem.system.initial_mean)
    log_z = float(controls.log_z)
    assert abs(log_z - 2.112306461529) < 1e-10
    mean, cov = batch.control_mean.ravel(), batch.control_cov
    points = jnp.asarray(np.random.default_rng(1).normal(size=(4, DIM)))
    energy = jax.jit(jax.vmap(controls.energy_model.energy, in_axes=(None, 0)))(
        controls.true_params, points
    )
    gaussian = dist.MultivariateNormal(mean, cov).log_prob(points)
    np.testing.assert_allclose(-energy - log_z, gaussian, rtol=1e-11)

    @jax.jit
    def draw(key, controls, proposal):
        return draw_weighted(
            key, controls, controls.true_params, 2**19, proposal=proposal, model="ebm"
        ).log_weights

    proposal = dist.MultivariateNormal(mean, S**2 * cov)
    log_weights = draw(jax.random.key(2), controls, proposal)
    # bounded weights (q is wider than p in every direction): p/q <= s^d, so IS is reliable
    assert float(jnp.max(log_weights)) - log_z <= DIM * math.log(S) + 1e-9
    chi2 = _rho(2) - 1
    mu3 = _rho(3) - 3 * _rho(2) + 2
    assert abs(chi2 - ((S**2 / math.sqrt(2 * S**2 - 1)) ** DIM - 1)) < 1e-12  # the brief's form
    for k in (16, 64):
        estimate, stderr = iwae_estimate(log_weights, k)
        per_group = np.asarray(jax.nn.logsumexp(log_weights.reshape(-1, k), axis=-1))
        per_group = per_group - math.log(k)
        assert abs(float(estimate) - per_group.mean()) < 1e-12
        bias = float(estimate) - log_z
        predicted = -chi2 / (2 * k)
        c2 = mu3 / 3 - 3 * chi2**2 / 4
        assert abs(bias - predicted) <= 4 * float(stderr) + 2 * abs(c2) / k**2, (k, bias, predicted)
        assert abs(predicted) > 4 * float(stderr)  # the sign is resolved: biased low
        assert bias < 0
        # DESIGN §5 rule for estimators consistent in Z: |bias| <= 5 SE + s^2 / 2
        variance = per_group.var(ddof=1)
        assert abs(bias) <= 5 * float(stderr) + variance / 2
        centred = (per_group - per_group.mean()) ** 2
        var_se = centred.std(ddof=1) / math.sqrt(per_group.size)
        v2 = 2.5 * chi2**2 - mu3
        assert abs(variance - chi2 / k) <= 4 * var_se + 2 * abs(v2) / k**2, (k, variance)
