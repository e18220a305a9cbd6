"""Checked trapezoid quadrature of log Z against closed forms (THEORY §8.3)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.energy.density import BananaEnergy, GaussianEnergy, GaussianMixtureEnergy
from ebm_ppl.exact.quadrature import QuadratureResult, quadrature_log_z

# THEORY §8.3: double well a = 2, log Z = log(sqrt(2 pi) * 1.410914703196)
DOUBLE_WELL_LOG_Z = 1.263176752934


def test_banana_is_log_pi_for_every_curvature():
    model = BananaEnergy()
    for curvature in (1.0, 0.3):
        params = {"log_scale": jnp.log(jnp.array([1.0, 0.5])), "curvature": jnp.asarray(curvature)}
        result = quadrature_log_z(
            lambda x, p=params: model.energy(p, x), ((-7.0, 7.0), (-6.0, 50.0)), 513
        )
        assert isinstance(result, QuadratureResult)
        assert result.num_points == (1025, 1025)
        # the box misses 2 Phi(-7) = 2.6e-12 of the x1 mass
        assert abs(float(result.log_z) - math.log(math.pi)) < 1e-11
        assert float(result.refinement_error) < 1e-12
        np.testing.assert_allclose(result.log_z, model.log_z(params), atol=1e-11)


def test_gaussian_and_mixture_closed_forms():
    gauss = GaussianEnergy(dim=2)
    params = {"loc": jnp.array([0.5, -1.0]), "log_scale": jnp.log(jnp.array([1.5, 0.5]))}
    result = quadrature_log_z(lambda x: gauss.energy(params, x), ((-14.5, 15.5), (-6.0, 4.0)), 257)
    expected = math.log(2 * math.pi) + math.log(0.75)
    assert abs(float(result.log_z) - expected) < 1e-12
    np.testing.assert_allclose(gauss.log_z(params), expected, rtol=1e-14)

    mixture = GaussianMixtureEnergy(jnp.array([0.5, 0.3, 0.2]), offset=1.0)
    params = {
        "locs": jnp.array([[-2.5, 0.0], [2.5, 0.5], [0.0, 3.0]]),
        "log_scales": jnp.log(jnp.array([0.6, 0.8, 0.5])),
    }
    result = quadrature_log_z(lambda x: mixture.energy(params, x), ((-10, 10), (-10, 10)), 257)
    assert abs(float(result.log_z) - 1.0) < 1e-12


def test_double_well_reference_value_and_one_dimension():
    energy = lambda x: 2.0 * (x[0] ** 2 - 1) ** 2 + 0.5 * x[1] ** 2  # noqa: E731
    result = quadrature_log_z(energy, ((-4.0, 4.0), (-10.0, 10.0)), 257)
    assert abs(float(result.log_z) - DOUBLE_WELL_LOG_Z) < 1e-11
    # separable: the 1-D integral of exp(-2 (u^2 - 1)^2) is 1.410914703196 (THEORY §8.3)
    one_d = quadrature_log_z(lambda x: 2.0 * (x[0] ** 2 - 1) ** 2, (-4.0, 4.0), 257)
    assert abs(float(one_d.log_z) - math.log(1.410914703196)) < 1e-11


def test_convergence_checks_raise():
    narrow = lambda x: 0.5 * jnp.sum((x / 0.05) ** 2)  # noqa: E731
    with pytest.raises(ValueError, match="num_points"):
        quadrature_log_z(narrow, ((-1.0, 1.0), (-1.0, 1.0)), 9)
    unchecked = quadrature_log_z(narrow, ((-1.0, 1.0), (-1.0, 1.0)), 9, check=False)
    assert float(unchecked.refinement_error) > 1e-8
    wide = lambda x: 0.5 * jnp.sum(x**2)  # noqa: E731
    with pytest.raises(ValueError, match="widen `bounds`"):
        quadrature_log_z(wide, ((-3.0, 3.0), (-8.0, 8.0)), 129)


def test_bad_arguments():
    energy = lambda x: jnp.sum(x**2)  # noqa: E731
    with pytest.raises(ValueError, match="bounds"):
        quadrature_log_z(energy, ((1.0, -1.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="num_points"):
        quadrature_log_z(energy, ((-1.0, 1.0),), 2)
    with pytest.raises(ValueError, match="limit"):
        quadrature_log_z(energy, ((-1, 1),) * 3, 1025)
    with pytest.raises(ValueError, match="NaN"):
        quadrature_log_z(lambda x: jnp.log(x[0]), (-1.0, 1.0), 9)
    with pytest.raises(ValueError, match="scalar"):
        quadrature_log_z(lambda x: x, ((-1.0, 1.0), (-1.0, 1.0)), 9)
