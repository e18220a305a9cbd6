"""The toy 2-D EBM problems (THEORY §8.3): exact data, quadrature log Z, energy models."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive
from scipy import stats

from ebm_ppl.energy.density import DoubleWellEnergy, GaussianMixtureEnergy
from ebm_ppl.models import toy2d
from ebm_ppl.problems import DensityProblem, make_problem

ALPHA = 1e-3
LOG_Z = {
    "gaussian": math.log(2 * math.pi) + math.log(0.75),
    "banana": math.log(math.pi),
    "double_well": 1.263176752934,  # THEORY §8.3
    "mixture": 1.0,
}
NUM_DATA = 2000


@pytest.fixture(scope="module")
def problems():
    return {
        energy: make_problem(
            "toy2d", jax.random.key(3), energy=energy, num_data=NUM_DATA, num_points=257
        )
        for energy in toy2d.ENERGIES
    }


def _double_well_cdf(barrier):
    """CDF of exp(-a (u^2 - 1)^2) by cumulative trapezoid on a fine grid (error < 1e-9)."""
    grid = np.linspace(-4.0, 4.0, 40_001)
    density = np.exp(-barrier * (grid**2 - 1) ** 2)
    cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    cumulative /= cumulative[-1]
    return lambda u: np.interp(u, grid, cumulative)


def _mixture_cdf(weights, locs, scales):
    return lambda u: np.sum(
        weights * stats.norm.cdf((np.asarray(u)[:, None] - locs) / scales), axis=1
    )


def test_problems_log_z_and_shapes(problems):
    for energy, problem in problems.items():
        assert isinstance(problem, DensityProblem)
        assert problem.name == "toy2d" and problem.dim == 2
        assert problem.data.shape == (NUM_DATA, 2)
        assert np.all(np.isfinite(problem.data))
        assert abs(float(problem.log_z) - LOG_Z[energy]) < 1e-10, energy
        model = problem.energy_model
        if hasattr(model, "log_z"):
            np.testing.assert_allclose(model.log_z(problem.true_params), LOG_Z[energy], rtol=1e-13)


def test_data_are_exact_draws(problems):
    """Kolmogorov-Smirnov tests of each coordinate (or its exact transform) against scipy CDFs."""
    p_values = {}
    data = {energy: np.asarray(problem.data) for energy, problem in problems.items()}
    x = data["gaussian"]
    p_values["gaussian x1"] = stats.kstest(x[:, 0], stats.norm(0.5, 1.5).cdf).pvalue
    p_values["gaussian x2"] = stats.kstest(x[:, 1], stats.norm(-1.0, 0.5).cdf).pvalue
    x = data["banana"]
    p_values["banana x1"] = stats.kstest(x[:, 0], stats.norm(0, 1).cdf).pvalue
    p_values["banana shear"] = stats.kstest(x[:, 1] - x[:, 0] ** 2, stats.norm(0, 0.5).cdf).pvalue
    x = data["double_well"]
    p_values["double_well x1"] = stats.kstest(x[:, 0], _double_well_cdf(2.0)).pvalue
    p_values["double_well x2"] = stats.kstest(x[:, 1], stats.norm(0, 1).cdf).pvalue
    x = data["mixture"]
    weights, scales = np.array([0.5, 0.3, 0.2]), np.array([0.6, 0.8, 0.5])
    locs = np.array([[-2.5, 0.0], [2.5, 0.5], [0.0, 3.0]])
    for axis in (0, 1):
        cdf = _mixture_cdf(weights, locs[:, axis], scales)
        p_values[f"mixture x{axis + 1}"] = stats.kstest(x[:, axis], cdf).pvalue
    failed = {name: p for name, p in p_values.items() if p < ALPHA}
    assert not failed, failed


def test_double_well_sampler_other_barrier_and_dimension():
    model = DoubleWellEnergy(dim=3)
    params = {"log_barrier": jnp.asarray(math.log(0.7))}
    draws = np.asarray(model.sample(jax.random.key(5), params, 1500))
    assert draws.shape == (1500, 3)
    assert stats.kstest(draws[:, 0], _double_well_cdf(0.7)).pvalue > ALPHA
    assert stats.kstest(draws[:, 2], stats.norm(0, 1).cdf).pvalue > ALPHA


def test_energy_models_prior_and_dtype():
    for energy in toy2d.ENERGIES:
        model = toy2d.energy_model(energy)
        init = model.init_params()
        params32 = jax.tree.map(
            lambda v: jnp.asarray(v, jnp.float32), toy2d.reference_params(energy)
        )

        @jax.jit
        def bundle(key, init, params32, model=model):
            point = jnp.array([0.3, -0.2])
            return dict(
                prior=Predictive(model.prior, num_samples=3)(key),
                energy=model.energy(init, point),
                energy32=model.energy(params32, point.astype(jnp.float32)),
                sample32=model.sample(key, params32, 4),
                batch=jax.vmap(lambda x: model.energy(init, x))(jnp.zeros((5, 2))),
            )

        out = bundle(jax.random.key(0), init, params32)
        assert set(out["prior"]) == set(init)
        for name, value in init.items():
            assert out["prior"][name].shape == (3,) + jnp.shape(value)
        assert jnp.isfinite(out["energy"])
        assert out["energy32"].dtype == jnp.float32
        assert out["sample32"].dtype == jnp.float32 and out["sample32"].shape == (4, 2)
        assert out["batch"].shape == (5,)  # energy is a function of one point: vmap for batches


def test_errors():
    with pytest.raises(ValueError, match="energy"):
        toy2d.make_problem(energy="ring")
    with pytest.raises(ValueError, match="num_data"):
        toy2d.make_problem(num_data=-1)
    model = toy2d.energy_model("gaussian")
    with pytest.raises(ValueError, match=r"shape \(d,\)"):
        model.energy(model.init_params(), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="log_scale"):
        model.energy({"loc": jnp.zeros(2)}, jnp.zeros(2))
    with pytest.raises(ValueError, match="data"):
        DensityProblem(name="x", energy_model=model, dim=2, data=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="dim"):
        DensityProblem(name="x", energy_model=model, dim=3)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixtureEnergy(jnp.array([0.5, 0.6]))
    no_data = toy2d.make_problem(energy="double_well", num_data=0)
    assert no_data.data is None
    # a DensityProblem is a pytree with static name and dim
    leaves, tree = jax.tree.flatten(no_data)
    rebuilt = jax.tree.unflatten(tree, leaves)
    assert rebuilt.dim == 2 and float(rebuilt.log_z) == float(no_data.log_z)
