"""The JAX Pareto-smoothed importance sampling of ``ebm_ppl.logz.psis`` against ArviZ (THEORY §7.6).

ArviZ-stats' ``psislw`` is written for LOO log-likelihoods and negates its input, so the oracle for
log importance weights ``lw`` is ``array_stats.psislw(-lw)``; it returns normalised smoothed log
weights, ours are on the input scale.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from arviz_stats.base import array_stats
from jax.scipy.special import logsumexp

from ebm_ppl.logz.importance import draw_weighted, psis
from ebm_ppl.logz.psis import (
    gpd_fit,
    khat_threshold,
    pareto_khat,
    psis_smooth,
    psis_tail_length,
)

S = 4096


def _weight_sets():
    """Five heavy-tailed (Pareto, true k = 0.6..1.3) and five light-tailed sets of log weights."""
    rng = np.random.default_rng(0)
    heavy = [k * rng.exponential(size=S) for k in (0.6, 0.75, 0.8, 1.0, 1.3)]
    light = [rng.normal(scale=s, size=S) for s in (0.2, 0.5, 0.8)]
    light += [rng.uniform(size=S), -rng.exponential(size=S)]
    return np.stack(heavy), np.stack(light)


@pytest.fixture(scope="module")
def smoothed():
    heavy, light = _weight_sets()
    weights = np.concatenate([heavy, light])
    result = jax.jit(psis_smooth)(jnp.asarray(weights))
    return weights, result


def test_khat_and_smoothed_weights_match_arviz(smoothed):
    weights, result = smoothed
    for row, lw in enumerate(weights):
        reference_weights, reference_khat = array_stats.psislw(-lw, r_eff=1.0)
        assert abs(float(result.khat[row]) - float(reference_khat)) < 1e-6, row
        mine = np.asarray(result.log_weights[row] - logsumexp(result.log_weights[row]))
        np.testing.assert_allclose(mine, reference_weights, atol=1e-6, rtol=0)
    khat = np.asarray(result.khat)
    assert np.all(khat[:5] > 0.5) and np.all(khat[5:] < 0.5)  # heavy vs light, as generated


def test_unnormalised_scale_and_the_untouched_body(smoothed):
    """Only the M largest weights change; the rest keep their value and scale."""
    weights, result = smoothed
    tail = psis_tail_length(S)
    for row, lw in enumerate(weights):
        body = np.argsort(lw)[: S - tail]
        np.testing.assert_array_equal(np.asarray(result.log_weights[row])[body], lw[body])
        assert np.max(np.asarray(result.log_weights[row])) <= lw.max() + 1e-12  # truncation


def test_small_samples_r_eff_and_tail_length_match_arviz():
    rng = np.random.default_rng(1)
    for num in (25, 100, 224, 225, 226, 1000, 4096, 10**5):
        for r_eff in (0.3, 0.7, 1.0, 2.0):
            expected = int(array_stats._get_ps_tails(num, r_eff, tail="right"))
            assert psis_tail_length(num, r_eff) == expected, (num, r_eff)
    for num, r_eff in ((30, 1.0), (226, 1.0), (1000, 0.7)):
        lw = 0.9 * rng.standard_t(3, size=num)
        reference_weights, reference_khat = array_stats.psislw(-lw, r_eff=r_eff)
        result = psis_smooth(jnp.asarray(lw), r_eff=r_eff)
        np.testing.assert_allclose(float(result.khat), float(reference_khat), atol=1e-6)
        mine = np.asarray(result.log_weights - logsumexp(result.log_weights))
        np.testing.assert_allclose(mine, reference_weights, atol=1e-6, rtol=0)


def test_jit_vmap_float32_and_degenerate_tails():
    heavy, _ = _weight_sets()
    batched = jax.jit(jax.vmap(pareto_khat))(jnp.asarray(heavy))
    one_by_one = [float(pareto_khat(jnp.asarray(lw))) for lw in heavy[:2]]
    np.testing.assert_allclose(batched[:2], one_by_one, rtol=1e-12)
    as_float32 = psis_smooth(jnp.asarray(heavy, jnp.float32))
    assert as_float32.khat.dtype == jnp.float32
    assert as_float32.log_weights.dtype == jnp.float32
    np.testing.assert_allclose(as_float32.khat, batched, atol=1e-3)
    # a constant tail (ArviZ raises): k-hat NaN and nothing smoothed
    constant = jnp.zeros(100)
    result = psis_smooth(constant)
    assert np.isnan(result.khat)
    np.testing.assert_array_equal(result.log_weights, constant)
    # a tied tail whose first quartile equals its minimum: ArviZ's NaN, reproduced
    tied = np.concatenate([np.zeros(80), np.full(15, 1.0), np.linspace(1.1, 2.0, 5)])
    _, reference_khat = array_stats.psislw(-tied)
    assert np.isnan(reference_khat) and np.isnan(float(psis_smooth(jnp.asarray(tied)).khat))
    khat, sigma = gpd_fit(jnp.array([0.0, 0.0, 0.0, 0.0, 1.0]))
    assert np.isnan(khat) and np.isnan(sigma)


def test_khat_threshold_and_errors():
    assert khat_threshold(100) == pytest.approx(0.5)
    assert khat_threshold(320) == pytest.approx(1 - 1 / math.log10(320))
    assert khat_threshold(1000) == pytest.approx(2 / 3)
    assert khat_threshold(2200) == 0.7 and khat_threshold(10**4) == 0.7
    with pytest.raises(ValueError, match="num_samples"):
        khat_threshold(1)
    with pytest.raises(ValueError, match="at least 5"):
        psis_smooth(jnp.zeros(24))
    with pytest.raises(ValueError, match="r_eff"):
        psis_tail_length(100, r_eff=0.0)
    with pytest.raises(ValueError, match=r"\(\.\.\., S\)"):
        pareto_khat(jnp.zeros(()))


# ---------------------------------------------------------------------------- the estimator's flag
@dataclasses.dataclass(frozen=True)
class MixtureEnergy:
    """E = -log(sum_k 1/2 N(x; m_k, I)), modes at +-mean: Z = 1 (log Z = 0)."""

    def energy(self, params, x):
        log_pdf = dist.Normal(params["modes"], 1.0).to_event(1).log_prob(x)
        return -(logsumexp(log_pdf) - math.log(params["modes"].shape[0]))


jax.tree_util.register_dataclass(MixtureEnergy, data_fields=[], meta_fields=[])


@dataclasses.dataclass(frozen=True)
class DensityProblem:
    """A local stand-in for the R^d problem: ``energy_model.energy(params, x)`` and ``dim``."""

    name: str
    energy_model: object
    dim: int
    true_params: object = None
    data: object = None


jax.tree_util.register_dataclass(
    DensityProblem,
    data_fields=["energy_model", "true_params", "data"],
    meta_fields=["name", "dim"],
)


def test_psis_flags_a_bimodal_target_and_passes_a_matched_proposal():
    """Under a unimodal proposal between two far modes, k-hat exceeds the threshold in every
    replicate (info.ok False); a proposal covering a unimodal target passes, and its estimate
    is then accurate (DESIGN §5's rule, plus the measured smoothing adjustment)."""
    problem = DensityProblem(name="mixture", energy_model=MixtureEnergy(), dim=2)
    bimodal = {"modes": jnp.array([[-5.0, 0.0], [5.0, 0.0]])}
    unimodal = {"modes": jnp.array([[0.5, -0.5], [0.5, -0.5]])}
    proposal = dist.Normal(jnp.zeros(2), jnp.array([1.5, 1.5])).to_event(1)
    num, reps = 1000, 100
    estimator = psis(num, proposal=proposal, model="ebm")

    def body(key, problem, params):
        raw = draw_weighted(key, problem, params, num, proposal=proposal, model="ebm")
        return estimator.run(key, problem, params), logsumexp(raw.log_weights) - math.log(num)

    run = jax.jit(jax.vmap(body, in_axes=(0, None, None)))
    keys = jax.random.split(jax.random.key(0), reps)
    flagged, _ = run(keys, problem, bimodal)
    assert np.all(np.asarray(flagged.info.khat) > khat_threshold(num))
    assert not np.any(np.asarray(flagged.info.ok))
    np.testing.assert_allclose(flagged.info.khat_threshold, khat_threshold(num))
    matched, plain = run(keys, problem, unimodal)
    assert np.all(np.asarray(matched.info.ok))
    log_z = np.asarray(matched.log_z)  # the exact log Z is 0
    spread = log_z.std(ddof=1)
    allowance = 5 * spread / np.sqrt(reps) + spread**2 / 2
    allowance += np.mean(np.abs(log_z - np.asarray(plain)))  # the smoothing adjustment
    assert abs(log_z.mean()) <= allowance


def test_psis_flags_the_toy2d_mixture_under_a_unimodal_proposal():
    """THEORY §7.6 on the toy2d Gaussian-mixture energy: a unimodal Gaussian at the mixture mean,
    half as wide as the mixture, reaches the outer components only in its tails (k-hat above the
    threshold); the matched mixture passes. (A proposal that never reaches a mode cannot be
    flagged by any weight diagnostic.)"""
    import numpyro.distributions as dist

    from ebm_ppl.logz import psis as psis_estimator
    from ebm_ppl.logz.psis import khat_threshold
    from ebm_ppl.models import toy2d

    problem = toy2d.make_problem(jax.random.key(0), energy="mixture", num_data=16)
    params = problem.true_params
    locs, scales = params["locs"], jnp.exp(params["log_scales"])
    weights = jnp.asarray(problem.energy_model.weights)
    mean = weights @ locs
    second = weights @ (scales[:, None] ** 2 + locs**2)
    unimodal = dist.Normal(mean, 0.5 * jnp.sqrt(second - mean**2)).to_event(1)
    matched = dist.MixtureSameFamily(
        dist.Categorical(probs=weights),
        dist.Normal(locs, 1.2 * scales[:, None] * jnp.ones((1, 2))).to_event(1),
    )
    threshold = khat_threshold(4096)
    bad = psis_estimator(4096, proposal=unimodal, model="ebm").run(
        jax.random.key(1), problem, params
    )
    good = psis_estimator(4096, proposal=matched, model="ebm").run(
        jax.random.key(2), problem, params
    )
    assert float(bad.info.khat) > threshold and not bool(bad.info.ok)
    assert float(good.info.khat) < threshold and bool(good.info.ok)
    # the matched proposal's PSIS estimate is then close to the known log Z
    assert abs(float(good.log_z) - float(problem.log_z)) < 5 * float(good.stderr) + 0.01
