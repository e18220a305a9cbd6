"""Exact LQR MaxEnt (THEORY §8.1): batch Gaussian = soft Riccati = quadrature = reference values,
the trajectory-level >= causal inequality, gradients = feature expectations, exact samplers.

The library calls of each case run in one jitted bundle (one compile per case); the quadrature
oracles are NumPy, written from the definitions (rollout, cost, noise density), independent of
the batch and Riccati formulas.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from ebm_ppl.energy.quadratic import QuadraticCost
from ebm_ppl.exact import lqr
from ebm_ppl.spaces.linear_gaussian import (
    CostMatrices,
    GaussianTrajectories,
    LinearGaussianSystem,
    rollout_states,
    validate_trajectories,
)

# THEORY §8.1 reference values
LOG_Z_DETERMINISTIC = 2.112306461529
MCE_NOISY = 1.775506020547
TL_NOISY = 2.246814855126
SCALAR_TL = 0.196498902892
SCALAR_MCE = 0.026760308862

A = np.array([[1.0, 0.1], [0.0, 1.0]])
B = np.array([[0.0], [0.1]])
X0 = np.array([1.0, -0.5])
Q, R, QF = np.diag([1.0, 0.5]), np.array([[0.3]]), np.diag([2.0, 1.0])
COST = CostMatrices(jnp.asarray(Q), jnp.asarray(R), jnp.asarray(QF))
COST_MODEL = QuadraticCost(2, 1, terminal_scale=2.0)
PARAMS = {"log_q": jnp.log(jnp.array([1.0, 0.5])), "log_r": jnp.log(jnp.array([0.3]))}
NUM_DRAWS = 20_000


def reference(noise=0.0, horizon=3):
    return LinearGaussianSystem(A, B, noise_cov=noise * np.eye(2), horizon=horizon)


# ---------------------------------------------------------------------------- NumPy oracles
def trapezoid_log_z(log_f, bounds, num_points):
    """log of the product trapezoid rule on the fine grid (2n - 1 nodes per axis), with the
    refinement change against the nested coarse grid and the mass in a 5 % boundary band."""
    fine = 2 * num_points - 1
    axes = [np.linspace(lo, hi, fine) for lo, hi in bounds]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    values = log_f(mesh.reshape(-1, len(bounds))).reshape(mesh.shape[:-1])

    def rule(values, axes):
        total = values
        band = np.zeros(values.shape, bool)
        for axis, grid in enumerate(axes):
            weights = np.full(grid.size, grid[1] - grid[0])
            weights[[0, -1]] *= 0.5
            view = [1] * len(axes)
            view[axis] = grid.size
            total = total + np.log(weights).reshape(view)
            width = max(1, int(np.ceil(0.05 * (grid.size - 1))))
            edge = np.zeros(grid.size, bool)
            edge[:width] = edge[-width:] = True
            band = band | edge.reshape(view)
        return logsumexp(total), np.exp(logsumexp(total[band]) - logsumexp(total))

    log_z, edge_mass = rule(values, axes)
    coarse, _ = rule(values[(slice(None, None, 2),) * len(bounds)], [g[::2] for g in axes])
    return log_z, abs(log_z - coarse), edge_mass


def reference_energy(z):
    """c(z) of stacked controls (points, 3): roll x_{t+1} = A x_t + B u_t from X0."""
    x = np.broadcast_to(X0, (z.shape[0], 2))
    cost = np.zeros(z.shape[0])
    for t in range(3):
        u = z[:, t : t + 1]
        cost += 0.5 * np.einsum("pi,ij,pj->p", x, Q, x) + 0.5 * R[0, 0] * u[:, 0] ** 2
        x = x @ A.T + u @ B.T
    return cost + 0.5 * np.einsum("pi,ij,pj->p", x, QF, x)


# ---------------------------------------------------------------------------- library results
# Eager calls of the public functions: their jitted cores compile once per shape and process and
# serve the deterministic and the noisy case alike (the noise is an array, not a setting). The
# costly programs (Jacobians, samplers) are built only in the test that needs them, so the two
# xdist workers do not both compile them.
LABELS = {"det": 0.0, "noisy": 0.05}


@functools.cache
def reference_results(label):
    """Batch Gaussian, both Riccati columns, their moments and expected features at X0."""
    system = reference(noise=LABELS[label])
    out = {"batch": lqr.batch_gaussian(system, COST, X0)}
    for kind in lqr.MODELS:
        solution = lqr.soft_riccati(system, COST, model=kind)
        stats = lqr.moments(system, solution, X0)
        out[kind] = dict(
            solution=solution,
            value=lqr.initial_value(solution, X0),
            moments=stats,
            features=np.asarray(COST_MODEL.expected_features(stats)),
        )
    return out


def _values(params, system):
    """(V0 causal, W0 trajectory-level) at X0 as a function of the parameters."""
    cost = COST_MODEL.matrices(params)
    return jnp.stack(
        [lqr.initial_value(lqr.soft_riccati(system, cost, model=k), X0) for k in lqr.MODELS]
    )


def likelihood_paths():
    """Five trajectories of the deterministic reference dynamics from X0."""
    controls = np.random.default_rng(0).normal(size=(5, 3, 1))
    return GaussianTrajectories(rollout_states(reference(), X0, controls), jnp.asarray(controls))


# ---------------------------------------------------------------------------- log Z
def test_deterministic_reference_batch_riccati_quadrature():
    """T = 3, m = 1: log Z(x0) by batch, both Riccati columns and a 3-D trapezoid rule."""
    results = reference_results("det")
    batch = results["batch"]
    causal, trajectory = results["causal"]["value"], results["trajectory"]["value"]
    for value in (batch.log_z, causal, trajectory):
        assert abs(float(value) / LOG_Z_DETERMINISTIC - 1) < 1e-11
    assert abs(float(causal - batch.log_z)) < 1e-12
    mean, sd = np.asarray(batch.control_mean).ravel(), np.sqrt(np.diag(batch.control_cov))
    bounds = [(mu - 10 * s, mu + 10 * s) for mu, s in zip(mean, sd, strict=True)]
    log_z, refinement, edge_mass = trapezoid_log_z(lambda z: -reference_energy(z), bounds, 25)
    assert refinement < 1e-10 and edge_mass < 1e-15
    assert abs(log_z - LOG_Z_DETERMINISTIC) < 1e-9


def test_noisy_reference_riccati_matches_theory():
    """Sigma_w = 0.05 I, T = 3: MCE V0 and trajectory-level log Z to relative 1e-9; batch equal."""
    results = reference_results("noisy")
    causal, trajectory = results["causal"]["value"], results["trajectory"]["value"]
    assert abs(float(causal) / MCE_NOISY - 1) < 1e-9
    assert abs(float(trajectory) / TL_NOISY - 1) < 1e-9
    assert abs(float(results["batch"].log_z - trajectory)) < 1e-12
    assert float(trajectory - causal) > 0.4


def test_scalar_stochastic_batch_riccati_quadrature():
    """Scalar T = 1, Sigma_w = 0.2: TL by batch, Riccati and a 2-D integral over (u0, x1); MCE by
    Riccati and a 1-D integral over u0."""
    a, b, noise, q, r, qf, x0 = 0.9, 0.5, 0.2, 1.0, 0.3, 2.0, 1.0
    system = LinearGaussianSystem([[a]], [[b]], noise_cov=[[noise]], horizon=1)
    cost = CostMatrices(jnp.array([[q]]), jnp.array([[r]]), jnp.array([[qf]]))

    start = jnp.array([x0])
    tl_riccati = lqr.initial_value(lqr.soft_riccati(system, cost, model="trajectory"), start)
    tl_batch = lqr.batch_gaussian(system, cost, start).log_z
    mce_riccati = lqr.initial_value(lqr.soft_riccati(system, cost, model="causal"), start)

    def tl_log_f(points):  # log N(x1; a x0 + b u, noise) - c(x0, u, x1)
        u, x1 = points[:, 0], points[:, 1]
        log_density = -0.5 * (x1 - a * x0 - b * u) ** 2 / noise - 0.5 * math.log(
            2 * math.pi * noise
        )
        return log_density - 0.5 * q * x0**2 - 0.5 * r * u**2 - 0.5 * qf * x1**2

    def mce_log_f(points):  # r(x0, u) + E_w[-qf x1^2 / 2]
        u = points[:, 0]
        return -0.5 * q * x0**2 - 0.5 * r * u**2 - 0.5 * qf * ((a * x0 + b * u) ** 2 + noise)

    tl_quad, tl_change, tl_edge = trapezoid_log_z(tl_log_f, [(-12.0, 10.0), (-8.0, 8.0)], 161)
    mce_quad, mce_change, mce_edge = trapezoid_log_z(mce_log_f, [(-14.0, 12.0)], 201)
    assert max(tl_change, mce_change) < 1e-11 and max(tl_edge, mce_edge) < 1e-12
    for value in (tl_riccati, tl_batch, tl_quad):
        assert abs(float(value) - SCALAR_TL) < 1e-10
    for value in (mce_riccati, mce_quad):
        assert abs(float(value) - SCALAR_MCE) < 1e-10


def random_results(system, cost, x0):
    """Batch, both Riccati columns and the tilted moments (eager calls of the public API)."""
    tilted = lqr.soft_riccati(system, cost, model="trajectory")
    return dict(
        batch=lqr.batch_gaussian(system, cost, x0),
        trajectory=lqr.initial_value(tilted, x0),
        causal=lqr.initial_value(lqr.soft_riccati(system, cost, model="causal"), x0),
        tilted=lqr.moments(system, tilted, x0),
    )


def random_case(seed, n=3, m=2, horizon=4, rank=2):
    """A random system with singular PSD noise (rank 2 of 3) and random PSD/PD cost."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n)) / math.sqrt(n)
    b = rng.normal(size=(n, m))
    root = rng.normal(size=(n, rank)) * 0.4
    system = LinearGaussianSystem(a, b, noise_cov=root @ root.T, horizon=horizon)
    q, r, f = (rng.normal(size=(k, k)) for k in (n, m, n))
    cost = CostMatrices(
        *(jnp.asarray(x) for x in (q @ q.T / n, r @ r.T / m + 0.5 * np.eye(m), f @ f.T / n))
    )
    return system, cost, jnp.asarray(rng.normal(size=n))


@pytest.mark.parametrize("seed", range(3))
def test_random_systems_trajectory_level_at_least_causal(seed):
    """Random systems with singular noise: batch = Riccati (trajectory-level); W0 > V0 under
    noise and W0 = V0 without; the tilted forward pass gives the batch control marginals."""
    system, cost, x0 = random_case(seed)
    out = random_results(system, cost, x0)
    quiet = random_results(system.replace(noise_cov=np.zeros((3, 3))), cost, x0)
    scale = max(1.0, abs(float(out["trajectory"])))
    assert abs(float(out["batch"].log_z - out["trajectory"])) < 1e-10 * scale
    assert float(out["trajectory"] - out["causal"]) > 1e-3
    assert abs(float(quiet["causal"] - quiet["batch"].log_z)) < 1e-10 * scale
    assert abs(float(quiet["causal"] - quiet["trajectory"])) < 1e-10 * scale
    np.testing.assert_allclose(out["tilted"].control_mean, out["batch"].control_mean, atol=1e-10)
    m = system.control_dim
    blocks = [out["batch"].control_cov[t * m : (t + 1) * m, t * m : (t + 1) * m] for t in range(4)]
    np.testing.assert_allclose(out["tilted"].control_cov, np.stack(blocks), atol=1e-10)


# ---------------------------------------------------------------------------- gradients
def test_grad_log_z_equals_feature_expectation():
    """grad_theta = -1/2 w * E[Phi] (THEORY §1.5, §8.1): trajectory-level log Z under its tilted
    law, causal V0 under the true dynamics, with and without noise (autodiff through the Riccati
    scan); batch log Z has the same gradient (central differences, h = 1e-5); deterministic:
    E[Phi] under N(-H^-1 g, H^-1) pushed through X = F x0 + G z (NumPy) agrees."""
    jacobian = jax.jit(jax.jacfwd(_values))
    weights = np.array([1.0, 0.5, 0.3])  # diag Q, diag R
    flat = np.concatenate([np.asarray(PARAMS["log_q"]), np.asarray(PARAMS["log_r"])])
    for label, scale in LABELS.items():
        system, results = reference(noise=scale), reference_results(label)
        grads = jacobian(PARAMS, system)
        grads = np.concatenate([grads["log_q"], grads["log_r"]], axis=-1)
        for i, kind in enumerate(lqr.MODELS):
            expected = -0.5 * weights * results[kind]["features"]
            np.testing.assert_allclose(grads[i], expected, rtol=1e-10, atol=1e-13)
        differences = []
        for j in range(3):
            step = np.zeros(3)
            step[j] = 1e-5
            shifted = [
                lqr.batch_gaussian(
                    system,
                    COST_MODEL.matrices({"log_q": theta[:2], "log_r": theta[2:]}),
                    X0,
                ).log_z
                for theta in (flat + step, flat - step)
            ]
            differences.append(float(shifted[0] - shifted[1]) / 2e-5)
        np.testing.assert_allclose(differences, grads[1], rtol=1e-7)

    results = reference_results("det")
    batch = results["batch"]
    powers = [np.linalg.matrix_power(A, k) for k in range(4)]
    free = np.concatenate(powers[1:])  # F_t = A^t
    control_map = np.block(  # G_tk = A^(t-1-k) B for k < t
        [
            [powers[t - 1 - k] @ B if k < t else np.zeros((2, 1)) for k in range(3)]
            for t in (1, 2, 3)
        ]
    )
    mean_z, cov_z = np.asarray(batch.control_mean).ravel(), np.asarray(batch.control_cov)
    mean_x = free @ X0 + control_map @ mean_z
    cov_x = control_map @ cov_z @ control_map.T
    state_sq = np.concatenate([X0[None] ** 2, (mean_x**2 + np.diag(cov_x)).reshape(3, 2)])
    control_sq = mean_z**2 + np.diag(cov_z)
    # Phi = (sum_{t<T} x_t^2 + kappa x_T^2, sum_t u_t^2) with kappa = 2
    gaussian = np.concatenate([state_sq[:-1].sum(0) + 2.0 * state_sq[-1], [control_sq.sum()]])
    for kind in lqr.MODELS:
        np.testing.assert_allclose(gaussian, results[kind]["features"], rtol=1e-10)


# ---------------------------------------------------------------------------- likelihoods
def test_log_likelihoods():
    """Deterministic: sum log pi (causal) = -c - log Z (trajectory) = log N(z; -H^-1 g, H^-1).
    Noisy: the two models differ."""
    paths = likelihood_paths()
    loglik = {
        (label, kind): lqr.log_likelihood(reference(noise=scale), COST, paths, model=kind)
        for label, scale in LABELS.items()
        for kind in lqr.MODELS
    }
    np.testing.assert_allclose(loglik["det", "causal"], loglik["det", "trajectory"], rtol=1e-11)
    batch = reference_results("det")["batch"]
    diff = np.asarray(paths.controls).reshape(5, 3) - np.asarray(batch.control_mean).ravel()
    precision = np.asarray(batch.control_precision)
    gaussian = (
        -0.5 * np.einsum("pi,ij,pj->p", diff, precision, diff)
        + 0.5 * np.linalg.slogdet(precision)[1]
        - 1.5 * math.log(2 * math.pi)
    )
    np.testing.assert_allclose(loglik["det", "causal"], gaussian, rtol=1e-11)
    gap = np.asarray(loglik["noisy", "causal"] - loglik["noisy", "trajectory"])
    assert np.all(np.abs(gap) > 1e-6)


# ---------------------------------------------------------------------------- samplers
def _within(draws, mean, tol_sd=4.0):
    draws = np.asarray(draws)
    se = draws.std(axis=0, ddof=1) / math.sqrt(draws.shape[0])
    gap = np.abs(draws.mean(axis=0) - np.asarray(mean))
    assert np.all(gap <= tol_sd * se + 1e-12), float((gap / se).max())


def _squares(mean, cov):
    return np.asarray(mean) ** 2 + np.diagonal(np.asarray(cov), axis1=-2, axis2=-1)


def test_samplers_match_moments():
    """Exact draws (fixed seeds, K = 20000 each), both models, with and without noise: per-step
    means and second moments within 4 SE of the closed-form propagation; trajectory-level (and
    deterministic) controls match the batch Gaussian; draws are consistent with the dynamics (and
    noisy draws impossible without noise). sample_controls: mean and covariance of N(-H^-1 g,
    H^-1) within 4 SE."""
    keys = iter(jax.random.split(jax.random.key(11), 5))
    for label, scale in LABELS.items():
        system, results = reference(noise=scale), reference_results(label)
        for kind in lqr.MODELS:
            solution, stats = results[kind]["solution"], results[kind]["moments"]
            paths = lqr.sample_trajectories(next(keys), system, solution, X0, NUM_DRAWS)
            assert paths.states.shape == (NUM_DRAWS, 4, 2)
            assert paths.controls.shape == (NUM_DRAWS, 3, 1)
            _within(paths.states[:, 1:], stats.state_mean[1:])
            _within(paths.controls, stats.control_mean)
            _within(paths.states[:, 1:] ** 2, _squares(stats.state_mean[1:], stats.state_cov[1:]))
            _within(paths.controls**2, _squares(stats.control_mean, stats.control_cov))
            if kind == "trajectory" or label == "det":
                _within(paths.controls, results["batch"].control_mean)
            first = jax.tree.map(lambda x: x[:50], paths)
            validate_trajectories(system, first)
            if label == "noisy":
                with pytest.raises(ValueError, match="trajectory 0, step 0"):
                    validate_trajectories(reference(), first)

    batch = reference_results("det")["batch"]
    controls = np.asarray(lqr.sample_controls(next(keys), batch, NUM_DRAWS))
    assert controls.shape == (NUM_DRAWS, 3, 1)
    _within(controls, batch.control_mean)
    centred = controls.reshape(NUM_DRAWS, 3) - np.asarray(batch.control_mean).ravel()
    products = centred[:, :, None] * centred[:, None, :]
    _within(products.reshape(NUM_DRAWS, 9), np.asarray(batch.control_cov).ravel())


# ---------------------------------------------------------------------------- dtype, jit, vmap
def test_float32_jit_vmap():
    """float32 in, float32 out (Riccati, batch under jit and vmap, sampler)."""
    system32 = LinearGaussianSystem(
        A.astype(np.float32),
        B.astype(np.float32),
        noise_cov=np.float32(0.05) * np.eye(2, dtype=np.float32),
        horizon=3,
    )
    assert system32.noise_cov.dtype == jnp.float32
    cost32 = CostMatrices(*(jnp.asarray(m, jnp.float32) for m in COST))
    x0 = jnp.asarray(np.stack([X0, -X0]), jnp.float32)

    solution = lqr.soft_riccati(system32, cost32, model="trajectory")
    riccati = lqr.initial_value(solution, x0)
    batch = jax.jit(jax.vmap(lambda x: lqr.batch_gaussian(system32, cost32, x).log_z))(x0)
    paths = lqr.sample_trajectories(jax.random.key(0), system32, solution, x0)
    assert riccati.dtype == batch.dtype == paths.states.dtype == paths.controls.dtype == jnp.float32
    assert riccati.shape == (2,) and paths.states.shape == (2, 4, 2)
    np.testing.assert_allclose(riccati[0], TL_NOISY, rtol=1e-5)
    np.testing.assert_allclose(batch, riccati, rtol=1e-5)


# ---------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_named_errors():
    a, b = np.eye(2), np.ones((2, 1))
    with pytest.raises(ValueError, match=r"`transition` must have shape \(n, n\)"):
        LinearGaussianSystem(np.ones((2, 3)), b)
    with pytest.raises(ValueError, match=r"`control_matrix` must have shape \(n, m\) = \(2, m\)"):
        LinearGaussianSystem(a, np.ones((3, 1)))
    with pytest.raises(ValueError, match="`noise_cov` must be positive semi-definite"):
        LinearGaussianSystem(a, b, noise_cov=-np.eye(2))
    with pytest.raises(ValueError, match="`noise_cov` must be symmetric"):
        LinearGaussianSystem(a, b, noise_cov=[[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"`initial_mean` must have shape \(n,\)"):
        LinearGaussianSystem(a, b, initial_mean=np.zeros(3))
    with pytest.raises(ValueError, match="`horizon` must be an int >= 1"):
        LinearGaussianSystem(a, b, horizon=0)
    with pytest.raises(ValueError, match="`transition` must be finite"):
        LinearGaussianSystem(np.array([[np.nan, 0.0], [0.0, 1.0]]), b)
    system = reference()
    with pytest.raises(ValueError, match="`cost.control` must be positive definite"):
        lqr.soft_riccati(system, COST._replace(control=jnp.zeros((1, 1))))
    with pytest.raises(ValueError, match=r"`cost.state` must have shape \(n, n\) = \(2, 2\)"):
        lqr.batch_gaussian(system, COST._replace(state=jnp.eye(3)), X0)
    with pytest.raises(TypeError, match="`cost` must be a CostMatrices"):
        lqr.soft_riccati(system, (COST.state, COST.control, COST.terminal))
    with pytest.raises(ValueError, match="`model` must be one of"):
        lqr.soft_riccati(system, COST, model="global")
    with pytest.raises(ValueError, match="`method` must be one of"):
        lqr.log_partition(system, COST, X0, method="quadrature")
    with pytest.raises(ValueError, match=r"`x0` must have shape \(n,\) with n = 2"):
        lqr.batch_gaussian(system, COST, np.zeros(3))
    fake = lqr.SoftRiccati(*([jnp.zeros((2, 1, 2))] * 9))  # a solution of horizon 2
    with pytest.raises(ValueError, match=r"`solution.gain` must have shape \(T, m, n\)"):
        lqr.sample_trajectories(jax.random.key(0), system, fake, X0, 2)
    with pytest.raises(ValueError, match="`num_samples` must be an int >= 1"):
        lqr.sample_trajectories(jax.random.key(0), reference(horizon=2), fake, X0, 0)
    with pytest.raises(ValueError, match=r"`demos.controls` must have shape \(N, T, m\)"):
        validate_trajectories(
            system, GaussianTrajectories(np.zeros((2, 4, 2)), np.zeros((2, 2, 1)))
        )
