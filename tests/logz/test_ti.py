"""Thermodynamic integration against closed forms and quadrature log Z (THEORY §8.3).

Rules (DESIGN §5; the ladder tolerance is the issue's): each run's log Z lies within
5 SE + |TI(L) - TI(L/2)| of the truth (the reported discretisation estimate is the stated
allowance, never tuned); over R replicates the mean does too, with the SE of the mean from the
spread. On the Gaussian, whose rung expectations g(beta) have a closed form, the Monte Carlo part is
checked alone (against the rule applied to the exact g), per rung, and the reported SE is checked
against the spread over replicates by a chi-square test at alpha = 1e-3.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import integrate, stats

from ebm_ppl.logz.ais import DEFAULT_REFERENCE_SCALE
from ebm_ppl.logz.ti import TIInfo, quadrature_weights, thermodynamic_integration
from ebm_ppl.models import toy2d

NUM_REPLICATES = 16
ESTIMATOR = thermodynamic_integration()  # defaults: 33 power-ladder rungs, Simpson, HMC
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@pytest.fixture(scope="module")
def problems():
    return {
        energy: toy2d.make_problem(energy=energy, num_data=0, num_points=257)
        for energy in ("gaussian", "banana")
    }


@pytest.fixture(scope="module")
def replicates(problems):
    """energy -> R runs of the default estimator (one compile each; runs are cheap)."""
    out = {}
    for energy, problem in problems.items():
        run = jax.jit(lambda key, params, problem=problem: ESTIMATOR.run(key, problem, params))
        runs = [
            run(key, problem.true_params)
            for key in jax.random.split(jax.random.key(10), NUM_REPLICATES)
        ]
        out[energy] = jax.tree.map(lambda *leaves: np.stack(leaves), *runs)
    return out


def gaussian_g(betas, loc, scale, ref_scale=DEFAULT_REFERENCE_SCALE):
    """Exact g(beta) = E_{pi_beta}[-E - log q] for a diagonal Gaussian energy and q = N(0, r^2 I):
    pi_beta is Gaussian with precision (1 - beta)/r^2 + beta/s^2 per coordinate."""
    betas = np.asarray(betas, np.float64)[:, None]
    loc, scale = np.asarray(loc)[None], np.asarray(scale)[None]
    precision = (1 - betas) / ref_scale**2 + betas / scale**2
    var = 1 / precision
    mean = betas * loc / scale**2 * var
    value = (
        -0.5 * (var + (mean - loc) ** 2) / scale**2
        + 0.5 * (var + mean**2) / ref_scale**2
        + 0.5 * math.log(2 * math.pi * ref_scale**2)
    )
    return value.sum(axis=1)


# ---------------------------------------------------------------------- exact tier
def test_quadrature_weights_exact_on_polynomials():
    rng = np.random.default_rng(0)
    betas = np.sort(np.concatenate([[0.0, 1.0], rng.uniform(size=7)]))  # 9 uneven nodes
    linear = 0.3 + 2.0 * betas
    np.testing.assert_allclose(quadrature_weights(betas, "trapezoid") @ linear, 1.3, rtol=1e-12)
    quadratic = 1.0 - betas + 3 * betas**2
    np.testing.assert_allclose(quadrature_weights(betas, "simpson") @ quadratic, 1.5, rtol=1e-12)
    uniform = np.linspace(0.0, 1.0, 9)  # with equal spacing Simpson is exact for cubics too
    cubic = 1.0 - uniform + 3 * uniform**2 - 4 * uniform**3
    np.testing.assert_allclose(quadrature_weights(uniform, "simpson") @ cubic, 0.5, rtol=1e-12)
    for rule in ("trapezoid", "simpson"):
        np.testing.assert_allclose(quadrature_weights(betas, rule).sum(), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="odd length"):
        quadrature_weights(betas[:-1], "simpson")
    with pytest.raises(ValueError, match="temperatures"):
        quadrature_weights([0.0, 0.5, 0.5, 1.0], "trapezoid")
    with pytest.raises(ValueError, match="rule"):
        quadrature_weights(betas, "midpoint")


def test_gaussian_path_closed_form_and_discretisation_check(problems):
    """The path identity with the exact integrand, and |Q_L - log Z| <= |Q_L - Q_{L/2}| on the
    default ladder for both rules (the discretisation allowance bounds the true error)."""
    params = problems["gaussian"].true_params
    loc, scale = params["loc"], np.exp(params["log_scale"])
    log_z = 0.5 * 2 * math.log(2 * math.pi) + float(np.sum(np.log(scale)))

    def g(beta):
        return float(gaussian_g([beta], loc, scale)[0])

    integral, _ = integrate.quad(g, 0, 1, points=[1e-6, 1e-4, 1e-2], limit=500, epsabs=1e-11)
    np.testing.assert_allclose(integral, log_z, rtol=1e-9)
    betas = (np.arange(33) / 32.0) ** 5  # the default ladder
    for rule in ("trapezoid", "simpson"):
        exact_g = gaussian_g(betas, loc, scale)
        fine = quadrature_weights(betas, rule) @ exact_g
        coarse = quadrature_weights(betas[::2], rule) @ exact_g[::2]
        assert abs(fine - log_z) <= abs(fine - coarse), (rule, fine - log_z, fine - coarse)


# ---------------------------------------------------------------------- statistical tier
@pytest.mark.parametrize("energy", ["gaussian", "banana"])
def test_matches_quadrature(problems, replicates, energy):
    problem, out = problems[energy], replicates[energy]
    exact = float(problem.log_z)
    log_z, se, disc = (
        np.asarray(a) for a in (out.log_z, out.stderr, out.info.discretisation_error)
    )
    assert np.all(np.isfinite(log_z)) and np.all(se > 0)
    errors = np.abs(log_z - exact)
    bound = 5 * se + disc
    assert np.all(errors <= bound), (energy, errors, bound)
    se_mean = log_z.std(ddof=1) / math.sqrt(NUM_REPLICATES)
    assert abs(log_z.mean() - exact) <= 5 * se_mean + disc.mean(), (
        energy,
        log_z.mean() - exact,
        se_mean,
        disc.mean(),
    )
    # informative: the allowance is a small fraction of a nat
    assert float(np.mean(bound)) < 0.5
    assert isinstance(out.info, TIInfo)
    np.testing.assert_allclose(out.info.weights.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(out.info.acceptance_rate > 0.5)
    assert np.all(out.info.rung_ess > 20)
    # HMC: (warm-up + kept) transitions of 10 leapfrog steps, one init and one log l per draw
    evals = 33 * 16 * ((128 + 256) * 10 + 1 + 256)
    np.testing.assert_array_equal(out.num_energy_evals, evals)


def test_gaussian_monte_carlo_part(problems, replicates):
    """Against the rule applied to the exact g: no discretisation allowance at all."""
    params = problems["gaussian"].true_params
    out = replicates["gaussian"]
    betas = np.asarray(out.info.temperatures[0])
    np.testing.assert_allclose(betas, (np.arange(33) / 32.0) ** 5, rtol=1e-12)
    exact_g = gaussian_g(betas, params["loc"], np.exp(params["log_scale"]))
    target = quadrature_weights(betas, "simpson") @ exact_g
    log_z, se = np.asarray(out.log_z), np.asarray(out.stderr)
    assert np.all(np.abs(log_z - target) <= 5 * se), (log_z - target) / se
    # every rung: mean over replicates within 5 SE (about 6e-7 per rung, 33 rungs)
    rung_se = np.sqrt(np.mean(np.square(out.info.rung_stderr), axis=0) / NUM_REPLICATES)
    z = (np.mean(out.info.rung_means, axis=0) - exact_g) / rung_se
    assert np.all(np.abs(z) <= 5), z
    # the reported SE matches the spread over replicates (chi-square, alpha = 1e-3)
    reported = float(np.mean(np.square(se)))
    statistic = (NUM_REPLICATES - 1) * log_z.var(ddof=1) / reported
    low, high = stats.chi2.ppf([5e-4, 1 - 5e-4], NUM_REPLICATES - 1)
    assert low < statistic < high, (statistic, low, high)


# ---------------------------------------------------------------------- conformance
def test_conformance_float32_vmap_and_options(problems):
    """jit(vmap over keys) compiles once for two params values, keeps float32, repeats exactly;
    MALA, the trapezoid rule, the geometric ladder and batch means within chains run."""
    problem = problems["gaussian"]
    params32 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), problem.true_params)
    estimator = thermodynamic_integration(
        9,
        num_chains=4,
        num_samples=16,
        num_warmup=8,
        kernel="mala",
        step_size=0.05,
        schedule="geometric",
        rule="trapezoid",
        num_batches=2,
    )
    traces = []

    def run(key, params):
        traces.append(1)
        return estimator.run(key, problem, params)

    batched = jax.jit(jax.vmap(run, in_axes=(0, None)), compiler_options=FAST_COMPILE)
    keys = jax.random.split(jax.random.key(3), 3)
    out = batched(keys, params32)
    other = batched(keys, jax.tree.map(lambda v: v + jnp.float32(0.1), params32))
    again = batched(keys, params32)
    assert len(traces) == 1
    assert out.log_z.shape == (3,)
    for leaf in (out.log_z, out.stderr, *out.info):
        assert leaf.dtype == jnp.float32
    assert np.all(np.isfinite(out.log_z)) and np.all(np.isfinite(other.log_z))
    np.testing.assert_array_equal(out.log_z, again.log_z)
    np.testing.assert_array_equal(out.num_energy_evals, 9 * 4 * ((8 + 16) + 1 + 16))
    assert out.info.temperatures.shape == (3, 9)
    assert estimator.models == ("ebm",) and not estimator.smooth
    assert estimator.name == "ti[mala]"


def test_errors(problems, random_mdp):
    from ebm_ppl.energy import LinearReward
    from ebm_ppl.problems import Problem

    problem = problems["gaussian"]
    params = problem.true_params
    key = jax.random.key(0)
    cases = [
        ("num_rungs", dict(num_rungs=0)),
        ("num_rungs", dict(num_rungs=31)),  # Simpson needs 4m + 1
        ("num_rungs", dict(num_rungs=4, rule="trapezoid")),
        ("rule", dict(rule="midpoint")),
        ("num_chains", dict(num_chains=0)),
        ("num_samples", dict(num_samples=0)),
        ("num_warmup", dict(num_warmup=-1)),
        ("num_batches", dict(num_samples=10, num_batches=3)),
        ("num_batches", dict(num_chains=1, num_batches=1)),
        ("step_size", dict(step_size=0.0)),
        ("num_integration_steps", dict(num_integration_steps=0)),
        ("kernel", dict(kernel="rwm")),
        ("schedule", dict(schedule="cosine")),
        ("schedule", dict(num_rungs=5, schedule=[0.0, 0.5, 1.0])),
        ("strictly increasing", dict(num_rungs=5, schedule=[0.0, 0.5, 0.4, 0.8, 1.0])),
    ]
    for match, kwargs in cases:
        with pytest.raises(ValueError, match=match):
            thermodynamic_integration(**kwargs)
    with pytest.raises(TypeError, match="NumPyro"):
        thermodynamic_integration(reference="normal")
    small = dict(num_rungs=5, num_chains=2, num_samples=2, num_warmup=0)
    bad_reference = dist.Normal(jnp.zeros(3), 1.0).to_event(1)
    with pytest.raises(ValueError, match="event shape"):
        thermodynamic_integration(reference=bad_reference, **small).run(key, problem, params)
    with pytest.raises(ValueError, match="s0"):
        thermodynamic_integration(**small).run(key, problem, params, s0=0)
    mdp = random_mdp(0)
    tabular = Problem(name="tiny", mdp=mdp, energy_model=LinearReward(mdp.features))
    with pytest.raises(TypeError, match="DensityProblem"):
        thermodynamic_integration(**small).run(key, tabular, {"theta": jnp.zeros(2)})
