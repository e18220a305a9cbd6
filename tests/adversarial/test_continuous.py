"""Continuous-state policies as generators, and GAN-GCL / GCL on continuous problems.

Closed forms first: Gaussian/softmax policy densities against NumPyro; the linear-Gaussian
family on the LQR reference problem (it contains the soft-optimal policy, THEORY §8.1b, so the
ELBO reaches the soft-Riccati log Z, checked through a closed-form KL); facts 1-2 on pooled LQR
samples; GAN-GCL against the exact LQR maximum likelihood; a softmax generator on MountainCar
against exact enumeration of the action sequences (termination included).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest
from scipy import stats

from ebm_ppl.adversarial import continuous as ac
from ebm_ppl.exact import lqr as exact
from ebm_ppl.models import lqr
from ebm_ppl.models import mountaincar as mc
from ebm_ppl.policies.gaussian import (
    linear_gaussian,
    linear_gaussian_params,
    linear_softmax,
    mlp_gaussian,
    mlp_softmax,
)
from ebm_ppl.spaces import PAD

FAST_COMPILE = {"xla_backend_optimization_level": 0}
LQR_POLICY = linear_gaussian(2, 1)  # shared: compiled fits are reused across tests
PENDULUM_POLICY = linear_gaussian(2, 1, bound=2.0, loc=[math.pi, 0.0])  # the torque box


@pytest.fixture(scope="module")
def pendulum_problem():
    from ebm_ppl.models import pendulum

    return pendulum.make_problem()  # the fixture's demos: 10 starts x 10, T = 50


@pytest.fixture(scope="module", autouse=True)
def _cheap_compilation():
    """Compiling dominates these small programs: ask XLA for little optimisation while this
    module runs (restored afterwards; results are unaffected, only speed)."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def _perturb(params, seed, scale=0.3):
    """Random parameters around ``params`` (NumPy noise: no compilation)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda leaf: leaf + (scale * rng.normal(size=leaf.shape)).astype(leaf.dtype), params
    )


_mvn_log_prob = jax.jit(
    lambda mean, tril, u: dist.MultivariateNormal(mean, scale_tril=tril).log_prob(u)
)
_normal_log_prob = jax.jit(lambda mean, std, u: dist.Normal(mean, std).to_event(1).log_prob(u))


def _batch_means_se(path, num_batches=10):
    batches = np.asarray(path).reshape(num_batches, -1, *np.shape(path)[1:]).mean(axis=1)
    return batches.std(axis=0, ddof=1) / np.sqrt(num_batches)


def _tril(raw):
    raw = np.asarray(raw)
    return np.tril(raw, -1) + np.diag(np.exp(np.diag(raw)))


# ---------------------------------------------------------------------------- (a) densities
def test_gaussian_log_prob_matches_numpyro():
    rng = np.random.default_rng(0)
    x, u = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    loc, scale = np.array([0.1, -0.2, 0.3]), np.array([2.0, 0.5, 1.5])
    t = 2
    # diagonal, linear mean -> independent Normals
    policy = linear_gaussian(3, 2, loc=loc, scale=scale)
    params = _perturb(policy.init_params(jax.random.key(2), 4), 3)
    mean = ((x - loc) / scale) @ np.asarray(params["gain"][t]).T + np.asarray(params["bias"][t])
    expected = _normal_log_prob(mean, np.exp(params["log_std"][t]), u)
    np.testing.assert_allclose(policy.log_prob(params, t, x, u), expected, rtol=1e-12)
    # sample = mean + std * eps: with a vanishing std it returns the mean (shape (5, 2))
    tight = {**params, "log_std": params["log_std"] - 40.0}
    np.testing.assert_allclose(policy.sample(jax.random.key(0), tight, t, x), mean, atol=1e-12)
    # full Cholesky, linear mean -> MultivariateNormal(scale_tril)
    policy = linear_gaussian(3, 2, covariance="cholesky")
    params = _perturb(policy.init_params(jax.random.key(2), 4), 4)
    tril = _tril(params["raw_scale_tril"][t])
    mean = x @ np.asarray(params["gain"][t]).T + np.asarray(params["bias"][t])
    expected = _mvn_log_prob(mean, tril, u)
    np.testing.assert_allclose(policy.log_prob(params, t, x, u), expected, rtol=1e-12)
    # the same policy from natural parameters (linear_gaussian_params)
    cov = np.einsum("tij,tkj->tik", *(2 * [rng.normal(size=(4, 2, 2))])) + 0.5 * np.eye(2)
    natural = linear_gaussian_params(params["gain"], params["bias"], cov)
    expected = _mvn_log_prob(mean, np.linalg.cholesky(cov[t]), u)
    np.testing.assert_allclose(policy.log_prob(natural, t, x, u), expected, rtol=1e-12)
    # MLP mean
    policy = mlp_gaussian(3, 2, hidden_sizes=(4, 5), covariance="cholesky")
    params = _perturb(policy.init_params(jax.random.key(5), 4), 6)
    h = x
    for layer in params["layers"][:-1]:
        h = np.tanh(h @ np.asarray(layer["weight"][t]) + np.asarray(layer["bias"][t]))
    last = params["layers"][-1]
    mean = h @ np.asarray(last["weight"][t]) + np.asarray(last["bias"][t])
    tril = _tril(params["raw_scale_tril"][t])
    expected = _mvn_log_prob(mean, tril, u)
    np.testing.assert_allclose(policy.log_prob(params, t, x, u), expected, rtol=1e-12)


def test_rollout_shapes_and_dtype_float32():
    """Rollouts keep the input dtype (float32 here; every other test runs in float64)."""
    dtype = jnp.float32
    a = np.asarray([[1.0, 0.1], [0.0, 1.0]], np.float32)
    b = np.asarray([[0.0, 0.5], [0.1, 0.0]], np.float32)
    step = lambda x, u: jnp.asarray(a) @ x + jnp.asarray(b) @ u
    policy = mlp_gaussian(2, 2, hidden_sizes=(3,))
    params = _perturb(policy.init_params(jax.random.key(0), 5, dtype), 1)
    x0 = np.asarray([[1.0, -0.5], [0.2, 0.3], [0.0, 0.0]], np.float32)
    out = policy.rollout(jax.random.key(2), params, x0, step, 5)
    assert out.states.shape == (3, 6, 2) and out.actions.shape == (3, 5, 2)
    assert out.log_q.shape == (3,)
    assert out.states.dtype == out.actions.dtype == out.log_q.dtype == dtype
    np.testing.assert_array_equal(out.states[:, 0], x0)
    following = np.asarray(out.states[:, :-1]) @ a.T + np.asarray(out.actions) @ b.T
    np.testing.assert_allclose(out.states[:, 1:], following, rtol=1e-5, atol=1e-6)
    # log q of the rollout (from the noise) = the density of its actions
    np.testing.assert_allclose(
        out.log_q, policy.trajectory_log_prob(params, out.states, out.actions), rtol=1e-5
    )
    # softmax: integer actions, the same dtype for states and log q
    soft = linear_softmax(2, 3)
    soft_params = _perturb(soft.init_params(jax.random.key(3), 5, dtype), 4)
    move = lambda x, k: x + jnp.asarray([0.1, -0.1], dtype) * (k - 1)
    out = soft.rollout(jax.random.key(5), soft_params, x0, move)
    assert out.actions.shape == (3, 5) and out.actions.dtype == jnp.int32
    assert out.states.dtype == out.log_q.dtype == dtype
    np.testing.assert_allclose(
        out.log_q, soft.trajectory_log_prob(soft_params, out.states, out.actions), rtol=1e-5
    )


def test_softmax_policy_normalised_and_sampled():
    x = jax.random.normal(jax.random.key(0), (7, 2))
    for policy in (linear_softmax(2, 3), mlp_softmax(2, 3, hidden_sizes=(4,))):
        params = _perturb(policy.init_params(jax.random.key(1), 3), 2, scale=1.0)
        log_probs = jnp.stack([policy.log_prob(params, 1, x, jnp.full((7,), a)) for a in range(3)])
        np.testing.assert_allclose(jnp.exp(log_probs).sum(0), 1.0, rtol=1e-12)
        np.testing.assert_array_equal(policy.log_prob(params, 1, x, jnp.full((7,), PAD)), 0.0)
        draws = policy.sample(jax.random.key(3), params, 1, jnp.broadcast_to(x[0], (3000, 2)))
        counts = np.bincount(np.asarray(draws), minlength=3)
        expected = 3000 * np.exp(np.asarray(log_probs[:, 0]))
        assert expected.min() >= 5
        assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_softmax_rollout_termination_mask():
    """After the first terminal state: actions PAD, log q adds 0, the state is frozen."""
    policy = linear_softmax(1, 2)
    params = policy.init_params(jax.random.key(0), 6)
    out = policy.rollout(  # one start (n,): no batch axis
        jax.random.key(1),
        params,
        jnp.zeros(1),
        lambda x, a: x + 1.0,
        6,
        terminated=lambda x: x[0] >= 2.0,
    )
    assert out.states.shape == (7, 1) and out.actions.shape == (6,) and out.log_q.shape == ()
    np.testing.assert_array_equal(out.actions[2:], PAD)
    assert np.all(np.asarray(out.actions[:2]) >= 0)
    np.testing.assert_allclose(out.log_q, 2 * math.log(0.5), rtol=1e-12)
    np.testing.assert_array_equal(out.states[2:, 0], 2.0)


# ---------------------------------------------------------------------------- (b) LQR, ELBO = log Z
def _lqr_step(problem):
    a, b = problem.system.transition, problem.system.control_matrix
    return lambda x, u: a @ x + b @ u


@pytest.fixture(scope="module")
def reference():
    problem = lqr.make_problem(jax.random.key(0), num_demos=50)
    theta = problem.true_params
    solution = exact.soft_riccati(problem.system, problem.cost_matrices(theta))
    return problem, theta, solution


@functools.partial(jax.jit, static_argnums=3)
def _closed_form_kl(problem, theta, params, covariance):
    """KL(q || p_theta(. | x0)) for a linear-Gaussian policy on the deterministic LQR: the stacked
    controls are affine in the policy noise, z = c + M eps, so q = N(c, M M^T); p_theta is the
    batch Gaussian N(-H^-1 g, H^-1) (THEORY §8.1a). Written independently of the policy code."""
    system = problem.system
    x0 = system.initial_mean
    horizon, m = system.horizon, system.control_dim

    def controls(eps):
        x, out = x0, []
        for t in range(horizon):
            if covariance == "diagonal":
                tril = jnp.diag(jnp.exp(params["log_std"][t]))
            else:
                raw = params["raw_scale_tril"][t]
                tril = jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))
            u = params["gain"][t] @ x + params["bias"][t] + tril @ eps[t]
            out.append(u)
            x = system.transition @ x + system.control_matrix @ u
        return jnp.concatenate(out)

    zero = jnp.zeros((horizon, m))
    mean_q = controls(zero)
    root = jax.jacfwd(controls)(zero).reshape(horizon * m, horizon * m)
    cov_q = root @ root.T
    batch = exact.batch_gaussian(system, problem.cost_matrices(theta), x0)
    mean_p, cov_p, prec_p = (
        batch.control_mean.reshape(-1),
        batch.control_cov,
        batch.control_precision,
    )
    diff = mean_p - mean_q
    k = horizon * m
    _, logdet_p = jnp.linalg.slogdet(cov_p)
    _, logdet_q = jnp.linalg.slogdet(cov_q)
    return 0.5 * (jnp.trace(prec_p @ cov_q) + diff @ prec_p @ diff - k + logdet_p - logdet_q)


def _soft_optimal(solution, covariance="diagonal"):
    """The soft-optimal policy N(-K_t x, M_uu^-1) (THEORY §8.1b) as linear-Gaussian params."""
    horizon, m, _ = solution.gain.shape
    return linear_gaussian_params(
        -solution.gain, jnp.zeros((horizon, m)), solution.control_cov, covariance=covariance
    )


def test_exact_soft_optimal_policy_is_a_zero_variance_proposal(reference):
    """Plugging the exact soft-optimal policy of exact/lqr.py into the family: KL = 0 in closed
    form, every draw has R - log q = log Z (ELBO = log Z to 1e-8 with zero variance), its
    trajectory log-probability is the library's exact causal likelihood, and the reparameterised
    ELBO gradient vanishes (sticking the landing)."""
    problem, theta, solution = reference
    log_z = float(problem.log_z(theta))
    assert abs(log_z - 2.112306461529) < 1e-10  # THEORY §8.1 reference value
    params = _soft_optimal(solution)
    assert abs(float(_closed_form_kl(problem, theta, params, "diagonal"))) < 1e-10
    demos = ac.demonstrations(problem)
    np.testing.assert_allclose(
        LQR_POLICY.trajectory_log_prob(params, demos.states, demos.actions),
        problem.log_likelihood(theta),
        rtol=1e-10,
    )
    x0 = problem.system.initial_mean
    elbo = lambda p: ac.generator_elbo(jax.random.key(1), problem, LQR_POLICY, theta, p, x0)
    estimate = elbo(params)
    assert abs(float(estimate.elbo) - log_z) < 1e-8
    assert float(estimate.stderr) < 1e-9  # sd of the 64 log weights < 1e-8
    grads = jax.jit(jax.grad(lambda p: elbo(p).surrogate))(params)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) < 1e-12


def test_fitted_elbo_reaches_soft_riccati_log_z(reference):
    """Maximising the ELBO over the linear-Gaussian family (which contains p_theta) drives
    KL(q || p_theta) = log Z - ELBO to 0 (closed form, from 0.72 to < 1e-4); the Monte Carlo ELBO
    agrees with the closed-form one within 4 SE before and after, and stays <= log Z (4 SE)."""
    problem, theta, _ = reference
    log_z = float(problem.log_z(theta))
    x0 = problem.system.initial_mean
    init = LQR_POLICY.init_params(jax.random.key(0), problem.system.horizon)
    kl0 = float(_closed_form_kl(problem, theta, init, "diagonal"))
    fitted, trace = ac.fit_generator(
        jax.random.key(1), problem, LQR_POLICY, theta, init, x0, num_steps=800, num_samples=64
    )
    kl = float(_closed_form_kl(problem, theta, fitted, "diagonal"))
    print(f"KL before {kl0:.4g}, after {kl:.3g}")
    assert kl0 > 0.5 and 0 <= kl < 1e-4
    # the first step's estimate is at the initial policy
    assert abs(float(trace.elbo[0]) - (log_z - kl0)) < 4 * float(trace.stderr[0])
    estimate = ac.generator_elbo(jax.random.key(2), problem, LQR_POLICY, theta, fitted, x0)
    assert abs(float(estimate.elbo) - (log_z - kl)) < 4 * float(estimate.stderr) + 1e-12
    tail = np.asarray(trace.elbo)[400:]  # stationary: one bound check on the average
    assert tail.mean() <= log_z + 4 * _batch_means_se(tail)


# ---------------------------------------------------------------------------- (c) facts 1 and 2
@pytest.fixture(scope="module")
def random_starts():
    return lqr.make_problem(jax.random.key(1), num_demos=50, initial_std=0.3)


@pytest.mark.parametrize("nu", [1, 3])
def test_facts_on_lqr_pooled_samples(nu, reference, random_starts):
    """Facts 1 and 2 to 1e-8 on pooled LQR samples from a generator that is not p_theta, at a
    theta that is not the data's: nu = 1 from the fixed start (one zeta), nu = 3 from random starts
    (a zeta per start, N_g(x0) = 3 N_d(x0)); the stop-gradient negative control for nu = 1."""
    problem = reference[0] if nu == 1 else random_starts
    theta = {"log_q": jnp.array([0.2, -0.4]), "log_r": jnp.array([-1.0])}
    solution = exact.soft_riccati(problem.system, problem.cost_matrices(theta))
    params = _perturb(_soft_optimal(solution), 0, scale=0.2)
    demos = ac.demonstrations(problem)
    assert demos.start_states.shape[0] == (1 if nu == 1 else 50)
    samples = ac.rollouts(jax.random.key(2), problem, LQR_POLICY, params, demos, nu)
    assert samples.groups.shape == (nu * demos.groups.shape[0],)
    facts = ac.check_equivalence(problem, theta, LQR_POLICY, params, demos, samples)
    np.testing.assert_allclose(facts.sum_d, facts.num_data, rtol=1e-8)  # fact 1 (per start)
    np.testing.assert_allclose(facts.log_z_mixture, facts.zeta, rtol=1e-8, atol=1e-8)
    for d, c in zip(
        jax.tree.leaves(facts.discriminator_grad), jax.tree.leaves(facts.cost_grad), strict=True
    ):
        np.testing.assert_allclose(d, c, rtol=1e-8, atol=1e-10)  # fact 2
    if nu == 1:
        control = ac.check_equivalence(
            problem, theta, LQR_POLICY, params, demos, samples, stop_gradient=False
        )
        gap = max(
            float(jnp.max(jnp.abs(d - c)))
            for d, c in zip(
                jax.tree.leaves(control.discriminator_grad),
                jax.tree.leaves(control.cost_grad),
                strict=True,
            )
        )
        assert gap > 1e-3  # without the stop-gradient fact 2 fails


# ---------------------------------------------------------------------------- (d) GAN-GCL on LQR
def _exact_mle(problem):
    """Exact MLE of the LQR cost (Newton trust region on the closed-form likelihood, to a
    gradient below 1e-8) and its standard errors from the observed information."""
    from scipy.optimize import minimize

    def nll(v):
        return -jnp.mean(problem.log_likelihood({"log_q": v[:2], "log_r": v[2:]}))

    derivatives = jax.jit(lambda v: (*jax.value_and_grad(nll)(v), jax.hessian(nll)(v)))
    cache = {}

    def evaluate(v):
        key = tuple(np.asarray(v, float))
        if key not in cache:
            cache[key] = tuple(np.asarray(d, float) for d in derivatives(jnp.asarray(v)))
        return cache[key]

    result = minimize(
        lambda v: evaluate(v)[:2],
        np.zeros(3),
        jac=True,
        hess=lambda v: evaluate(v)[2],
        method="trust-exact",
        options={"gtol": 1e-10},
    )
    value, grad, hess = evaluate(result.x)
    assert np.max(np.abs(grad)) < 1e-8, result  # (status 2 at rounding level is fine)
    return result.x, np.sqrt(np.diag(np.linalg.inv(hess * problem.num_demos)))


@pytest.fixture(scope="module")
def lqr10():
    problem = lqr.make_problem(jax.random.key(0), num_demos=200, horizon=10)
    mle, se = _exact_mle(problem)
    return problem, mle, se


def test_gan_gcl_recovers_lqr_cost_like_the_exact_mle(lqr10):
    """GAN-GCL with a linear-Gaussian generator on LQR (T = 10, 200 demos, nu = 2).

    With the generator at p_theta, D is the constant 1/(1 + nu) at zeta = log Z and the
    discriminator's theta-gradient is nu/(1+nu) [mean_D grad c - mean_G grad c]: its stationary
    point is the MLE's score equation with E_p_theta[grad c] replaced by an N_g-sample average
    (facts 1-2 with the mixture). So the average theta-bar of the iterates (second half) differs
    from the exact MLE by (i) Monte Carlo noise, estimated by batch means over the averaged
    iterates (4 MCSE), and (ii) the O(1/N_g) bias of the self-normalised mixture gradient, of
    order sqrt(N_d)/N_g = 0.035 MLE standard errors here (allowed: 0.1 SE). Both are far below the
    MLE's own sampling error, checked separately against the truth (4 SE)."""
    problem, mle, se = lqr10
    trainer = ac.gan_gcl(
        problem,
        LQR_POLICY,
        nu=2,
        policy_steps=3,
        generator_samples=32,
        cost_optimizer=optax.adam(0.1),
    )
    num_steps = 600
    demos = ac.demonstrations(problem)
    state = trainer.init(jax.random.key(0))
    state, infos = ac.train(jax.random.key(1), trainer, state, demos, num_steps)
    assert int(state.step) == num_steps
    path = np.concatenate([np.asarray(infos.params["log_q"]), np.asarray(infos.params["log_r"])], 1)
    tail = path[num_steps // 2 :]
    average = tail.mean(axis=0)
    mcse = _batch_means_se(tail)
    print("theta-bar", average, "MLE", mle, "SE", se, "MCSE", mcse)
    print("(theta-bar - MLE) / SE", (average - mle) / se)
    assert np.all(np.abs(average - mle) <= 4 * mcse + 0.1 * se)
    truth = np.concatenate([problem.true_params["log_q"], problem.true_params["log_r"]])
    assert np.all(np.abs(average - truth) <= 4 * se)
    # over the averaged iterates the generator's Monte Carlo ELBO is below log Z(theta_t), and
    # the learned zeta tracks log Z(theta_t); D is 1/(1 + nu) on both sides (fact 1)
    log_z = np.asarray(
        jax.jit(jax.vmap(lambda v: problem.log_z({"log_q": v[:2], "log_r": v[2:]})))(tail)
    )
    gap = np.asarray(infos.elbo)[num_steps // 2 :] - log_z
    error = np.asarray(infos.zeta)[num_steps // 2 :, 0] - log_z
    print("ELBO - log Z", gap.mean(), "zeta - log Z", error.mean(), "MCSE", _batch_means_se(error))
    assert gap.mean() <= 4 * _batch_means_se(gap)
    assert abs(error.mean()) <= 4 * _batch_means_se(error)
    mean_d = np.asarray(infos.mean_d_data)[num_steps // 2 :]
    assert abs(mean_d.mean() - 1 / 3) <= 4 * _batch_means_se(mean_d)


def test_gan_zeta_is_log_z_with_a_fitted_generator(reference):
    """zeta* with the generator fitted at theta (fact 1) is within 5 SE + s^2/2 of the exact
    soft-Riccati log Z, at the data's theta and at a theta far from it (the generator is exact up
    to its fitting error, so D is nearly constant and zeta* = log Z whatever the data)."""
    problem, theta, _ = reference
    estimator = ac.gan_zeta(LQR_POLICY, 400, generator_steps=800)
    for params in (theta, {"log_q": jnp.array([1.0, 0.5]), "log_r": jnp.array([0.0])}):
        result = estimator.run(jax.random.key(0), problem, params)
        truth = float(problem.log_z(params))
        assert result.log_z.shape == (1,) and result.stderr.shape == (1,)
        error, stderr = float(result.log_z[0]) - truth, float(result.stderr[0])
        print("gan_zeta error", error, "SE", stderr, "ESS", float(result.info.ess[0]))
        assert abs(error) <= 5 * stderr + 0.5 * stderr**2


# ---------------------------------------------------------------------------- (e) MountainCar
MC_STARTS = np.array([[-0.52, 0.0], [0.44, 0.03]])  # ordinary; near the goal (terminates)
MC_HORIZON = 4
MC_POLICY = mlp_softmax(2, 3, hidden_sizes=(32,), loc=MC_STARTS[0], scale=[0.01, 0.003])


@pytest.fixture(scope="module")
def mountaincar():
    base = mc.make_problem(jax.random.key(0), horizon=MC_HORIZON, num_demos=0, num_starts=2)
    problem = base.replace(start_states=jnp.asarray(MC_STARTS), log_z=None)
    params = {"weights": jnp.asarray(mc.TRUE_WEIGHTS)}
    return problem, params, mc.trajectory_log_probs(params, jnp.asarray(MC_STARTS), MC_HORIZON)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _enumerated(energy_model, policy, policy_params, sequences, log_p, log_z, x0):
    """Exact ELBO and KL(q || p_theta) at one start by enumerating the 3^T sequences (a trajectory
    that ends at the goal after L steps has 3^(T-L) padded duplicates, each weighted 3^-(T-L))."""
    playable = jnp.where(sequences == PAD, 1, sequences)
    states = jax.vmap(lambda a: energy_model.rollout(a, x0)[0])(playable)
    log_q = policy.trajectory_log_prob(policy_params, states, sequences)
    duplicates = (MC_HORIZON - jnp.sum(sequences != PAD, axis=1)) * math.log(3)
    log_q_sequence = log_q - duplicates
    q = jnp.exp(log_q_sequence)
    returns = log_p + log_z + duplicates  # -E(tau)
    elbo = jnp.sum(q * (returns - log_q))
    kl = jnp.sum(q * (log_q_sequence - log_p))
    return elbo, kl, jnp.sum(q)


def test_softmax_generator_on_mountaincar_matches_enumeration(mountaincar):
    """At both starts (one ordinary, one where sequences reach the goal and are padded) and for
    the uniform and the fitted generator: ELBO = log Z - KL <= log Z exactly (enumeration), and
    the Monte Carlo ELBO of the rollouts (termination mask included) equals the enumerated one
    within 4 SE. The score-function generator step fitted at the ordinary start drives the KL to
    near zero (<= 5e-3 nats and <= 5% of the uniform policy's 0.10)."""
    problem, params, enumeration = mountaincar
    policy = MC_POLICY
    init = policy.init_params(jax.random.key(0), MC_HORIZON)
    fit = lambda key, init: ac.fit_generator(
        key, problem, policy, params, init, MC_STARTS[0], num_steps=500, num_samples=64
    )[0]
    fitted = jax.jit(fit)(jax.random.key(2), init)
    kls = {}
    for name, policy_params in (("uniform", init), ("fitted", fitted)):
        for i in range(2):
            estimate = ac.generator_elbo(
                jax.random.key(3 + i),
                problem,
                policy,
                params,
                policy_params,
                MC_STARTS[i],
                num_samples=4000,
            )
            sequences, log_p, log_z = (v[i] for v in enumeration)
            elbo, kl, mass = (
                float(v)
                for v in _enumerated(
                    problem.energy_model,
                    policy,
                    policy_params,
                    sequences,
                    log_p,
                    log_z,
                    jnp.asarray(MC_STARTS[i]),
                )
            )
            np.testing.assert_allclose(mass, 1.0, rtol=1e-10)
            np.testing.assert_allclose(elbo, float(log_z) - kl, rtol=1e-10, atol=1e-10)
            assert elbo <= float(log_z) and kl >= 0
            assert abs(float(estimate.elbo) - elbo) <= 4 * float(estimate.stderr) + 1e-12
            kls[name, i] = kl
    print("KL", kls)
    assert kls["fitted", 0] <= 5e-3 and kls["fitted", 0] <= 0.05 * kls["uniform", 0]


def test_gcl_runs_on_mountaincar_with_a_zeta_table(mountaincar):
    """GCL (the zeta* fixed point per start, score-function generator) on exact MountainCar
    demonstrations from two starts: a (2,) zeta table; demonstrations padded after the goal."""
    problem, params, (sequences, log_p, _) = mountaincar
    index = jax.random.categorical(jax.random.key(0), log_p, shape=(6, 2)).T  # 6 per start
    problem = problem.replace(demos=jnp.take_along_axis(sequences, index[:, :, None], axis=1))
    demos = ac.demonstrations(problem)
    assert demos.states.shape == (12, MC_HORIZON + 1, 2) and demos.start_states.shape == (2, 2)
    np.testing.assert_array_equal(demos.groups, np.repeat([0, 1], 6))
    assert np.any(np.asarray(demos.actions[6:]) == PAD)  # the near-goal start terminates
    trainer = ac.gcl(problem, MC_POLICY, nu=2, generator_samples=8)
    state = trainer.init(jax.random.key(0))
    state, infos = ac.train(
        jax.random.key(1), trainer, state, demos, 5, compiler_options=FAST_COMPILE
    )
    assert infos.log_z.shape == (5, 2) and np.all(np.isfinite(np.asarray(infos.log_z)))
    assert np.all(np.isfinite(np.asarray(infos.elbo))) and int(state.step) == 5


# ---------------------------------------------------------------------------- (e') AIRL
def _value_shaping(solution):
    """The soft values h_t = V_t = -1/2 x'P_t x + v_t (t < T) as shaping parameters (T, p)."""
    n = solution.value_matrix.shape[-1]
    rows, cols = np.triu_indices(n)
    doubled = np.where(rows == cols, 1.0, 2.0)  # x_i x_j appears once for i < j
    matrices, offsets = np.asarray(solution.value_matrix[:-1]), np.asarray(solution.value_offset)
    return jnp.asarray(
        np.stack(
            [
                np.concatenate([[offsets[t]], np.zeros(n), -0.5 * m[rows, cols] * doubled])
                for t, m in enumerate(matrices)
            ]
        )
    )


@pytest.mark.parametrize("nu", [1, 3])
def test_airl_logits_telescope_and_vanish_at_the_soft_optimum(nu, reference, mountaincar):
    """AIRL's per-step logits, exactly (float64): (i) at the true theta, the soft-Riccati values as
    shaping and the soft-optimal policy, every logit is -log nu (f_t = log pi*_t, the optimum of
    the recovery theorem, THEORY §9.4); (ii) at any theta, shaping and policy they sum along each
    trajectory to GAN-GCL's logit with zeta = h_0(x_0) less (L - 1) log nu (L decisions), also on
    MountainCar where padded steps after the goal are not decisions and h = 0 at the goal; (iii)
    the per-step rewards sum to R_theta."""
    problem, theta, solution = reference
    horizon = problem.system.horizon
    demos = ac.demonstrations(problem)
    logits, alive = ac.airl_logits(
        problem, theta, _value_shaping(solution), LQR_POLICY, _soft_optimal(solution), demos, nu
    )
    assert logits.shape == (50, horizon) and bool(jnp.all(alive))
    np.testing.assert_allclose(logits, -math.log(nu), atol=1e-12)

    rng = np.random.default_rng(nu)
    other = {"log_q": jnp.array([0.2, -0.4]), "log_r": jnp.array([-1.0])}
    mc_problem, mc_params, (sequences, log_p, _) = mountaincar
    index = jax.random.categorical(jax.random.key(nu), log_p, shape=(6, 2)).T
    mc_problem = mc_problem.replace(demos=jnp.take_along_axis(sequences, index[:, :, None], axis=1))
    cases = (
        (problem, other, LQR_POLICY, _perturb(_soft_optimal(solution), nu), demos),
        (mc_problem, mc_params, MC_POLICY, None, ac.demonstrations(mc_problem)),
    )
    for prob, params, policy, policy_params, batch in cases:
        if policy_params is None:
            policy_params = _perturb(policy.init_params(jax.random.key(0), MC_HORIZON), nu)
        width = batch.states.shape[-1]
        shaping = jnp.asarray(
            rng.normal(size=(batch.actions.shape[1], 1 + width * (width + 3) // 2))
        )
        logits, alive = ac.airl_logits(prob, params, shaping, policy, policy_params, batch, nu)
        decisions = jnp.sum(alive, axis=1)
        log_q = policy.trajectory_log_prob(policy_params, batch.states, batch.actions)
        returns = ac.returns(prob, params, batch)
        zeta = ac.shaping_features(batch.states[:, 0]) @ shaping[0]
        trajectory_logit = returns - zeta - math.log(nu) - log_q
        np.testing.assert_allclose(
            jnp.sum(jnp.where(alive, logits, 0.0), axis=1),
            trajectory_logit - (decisions - 1) * math.log(nu),
            rtol=1e-12,
            atol=1e-11,
        )
        np.testing.assert_allclose(
            jnp.sum(ac.step_rewards(prob, params, batch), axis=1), returns, rtol=1e-12, atol=1e-12
        )
    assert np.any(~np.asarray(alive))  # MountainCar: some demonstrations reach the goal


def test_airl_recovers_lqr_cost_and_its_h0_tracks_log_z(lqr10):
    """AIRL with the problem's reward class and time-indexed quadratic shaping on LQR (T = 10, 200
    demos, nu = 2): the classes hold the truth (r_theta* and h_t = V_t), so the estimator is
    consistent. The average of the iterates (second half) is within 4 MLE standard errors + 4
    MCSE of the true theta (the MLE's SE as the scale: by Cramer-Rao AIRL's sampling error is at
    least the MLE's; its distance to the exact MLE, printed, is 0.04-0.19 SE here).
    h_0(x_0) tracks log Z(theta_t) within 4 batch-means MCSE + the generator's KL(q || p_theta_t)
    = log Z - ELBO (measured; h_0 = V_0 = log Z needs q = p_theta) + p/N_d: the discriminator's
    p = 6 shaping parameters per step are fitted to the same N_d = 200 demonstrations every
    update, and the log-ratio of a p-parameter logistic fit is biased by O(p/N_d) towards them
    (measured: h_0 - log Z = -0.022, MCSE 0.004, KL 2e-4; p/N_d = 0.03).
    """
    problem, mle, se = lqr10
    trainer = ac.airl(
        problem,
        LQR_POLICY,
        nu=2,
        policy_steps=3,
        generator_samples=32,
        discriminator_optimizer=optax.adam(0.1),
    )
    num_steps = 1500
    demos = ac.demonstrations(problem)
    state = trainer.init(jax.random.key(0))
    state, infos = ac.train(jax.random.key(1), trainer, state, demos, num_steps)
    assert int(state.step) == num_steps and state.shaping.shape == (10, 6)
    path = np.concatenate([np.asarray(infos.params["log_q"]), np.asarray(infos.params["log_r"])], 1)
    tail = path[num_steps // 2 :]
    average, mcse = tail.mean(axis=0), _batch_means_se(tail)
    truth = np.concatenate([problem.true_params["log_q"], problem.true_params["log_r"]])
    print("AIRL theta-bar", average, "MLE", mle, "truth", truth, "SE", se, "MCSE", mcse)
    print("(theta-bar - MLE) / SE", (average - mle) / se)
    assert np.all(np.abs(average - truth) <= 4 * se + 4 * mcse)
    log_z = np.asarray(
        jax.jit(jax.vmap(lambda v: problem.log_z({"log_q": v[:2], "log_r": v[2:]})))(tail)
    )
    error = np.asarray(infos.log_z)[num_steps // 2 :, 0] - log_z
    kl = log_z - np.asarray(infos.elbo)[num_steps // 2 :]  # the generator's KL(q || p_theta_t)
    print("h_0 - log Z", error.mean(), "MCSE", _batch_means_se(error), "KL", kl.mean())
    overfit = state.shaping.shape[1] / problem.num_demos  # O(p / N_d): see the docstring
    assert abs(error.mean()) <= 4 * _batch_means_se(error) + kl.mean() + overfit
    # D is near 1/(1 + nu) on the demonstrations' transitions (only the step-0 sum is pinned by
    # a stationarity condition, the constant of h_0, so no tolerance is derived for the mean)
    print("mean D on the data", np.asarray(infos.mean_d_data)[num_steps // 2 :].mean())


def test_squashed_gaussian_policy_is_a_density_on_the_box():
    """A bounded Gaussian policy (u = bound tanh z): its log-probability is the change of
    variables log N(artanh(u/2)) - log(2 (1 - (u/2)^2)) inside the box (written independently of
    the library's stable sech form) and integrates to 1 over it (quadrature), and it is -inf on
    and outside the boundary; rollouts stay in the box and their log q equals
    trajectory_log_prob of the same actions (the Jacobian counted once, whether from z or from
    u = bound tanh z)."""
    from scipy import integrate

    rng = np.random.default_rng(7)
    policy = linear_gaussian(2, 1, bound=2.0, loc=[math.pi, 0.0])
    params = _perturb(policy.init_params(jax.random.key(0), 5), 8)
    x = rng.normal(size=(6, 2)) + [math.pi, 0.0]
    u = rng.uniform(-1.99, 1.99, size=(6, 1))
    t = 3
    mean = (x - [math.pi, 0.0]) @ np.asarray(params["gain"][t]).T + np.asarray(params["bias"][t])
    std = np.exp(np.asarray(params["log_std"][t]))
    expected = stats.norm.logpdf(np.arctanh(u / 2), mean, std) - np.log(2 * (1 - (u / 2) ** 2))
    np.testing.assert_allclose(policy.log_prob(params, t, x, u), expected[:, 0], rtol=1e-10)
    density = jax.jit(lambda v: jnp.exp(policy.log_prob(params, t, x[0], jnp.reshape(v, (1,)))))
    mass, error = integrate.quad(lambda v: float(density(v)), -2.0, 2.0, limit=200)
    assert abs(mass - 1.0) < 1e-8 + error
    edge = np.array([[2.0], [-2.5]])
    assert np.all(np.isneginf(np.asarray(policy.log_prob(params, t, x[:2], edge))))
    draws = policy.rollout(jax.random.key(1), params, x, lambda s, a: s + 0.05 * a[0])
    assert float(jnp.max(jnp.abs(draws.actions))) < 2.0
    np.testing.assert_allclose(
        policy.trajectory_log_prob(params, draws.states, draws.actions), draws.log_q, rtol=1e-9
    )
    with pytest.raises(ValueError, match="`bound`"):
        linear_gaussian(2, 1, bound=0.0)


def test_pendulum_gan_with_a_squashed_generator(pendulum_problem):
    """The pendulum through the continuous GAN (T = 50, its fixture's 10 starts x 10 demos): facts
    1 and 2 hold to 1e-8 on pooled samples (nu = 2) of a squashed generator, per start; the
    generator fitted at the true theta from start 0 has a Monte Carlo ELBO below the reference
    log Z (plain IS with 2^16 draws from the moment-matched box proposal, k-hat checked in
    tests/logz/test_continuous.py), within 4 SE; gan_zeta at starts 0 and 1 is within 5 SE of its
    own + 5 SE of the reference (DESIGN §5, one replicate). Policies that do not respect the box
    are refused."""
    from ebm_ppl import logz
    from ebm_ppl.logz import control

    problem = pendulum_problem
    theta = problem.true_params
    demos = ac.demonstrations(problem)
    assert demos.actions.shape == (100, 50, 1) and demos.start_states.shape == (10, 2)
    params = _perturb(PENDULUM_POLICY.init_params(jax.random.key(0), 50), 1, scale=0.1)
    samples = ac.rollouts(jax.random.key(2), problem, PENDULUM_POLICY, params, demos, 2)
    other = {"log_weights": theta["log_weights"] + jnp.array([0.3, -0.2, 0.1])}
    facts = ac.check_equivalence(problem, other, PENDULUM_POLICY, params, demos, samples)
    np.testing.assert_allclose(facts.sum_d, facts.num_data, rtol=1e-8)
    np.testing.assert_allclose(facts.log_z_mixture, facts.zeta, rtol=1e-8, atol=1e-8)
    for d, c in zip(
        jax.tree.leaves(facts.discriminator_grad), jax.tree.leaves(facts.cost_grad), strict=True
    ):
        np.testing.assert_allclose(d, c, rtol=1e-8, atol=1e-10)

    proposal = control.moment_matched_box_proposal(problem.demos, 2.0)
    reference = control.per_start(logz.importance(2**16, proposal=proposal, model="ebm"))
    ref = jax.jit(lambda k: reference.run(k, problem, theta, s0=jnp.array([0, 1])))(
        jax.random.key(0)
    )
    init = PENDULUM_POLICY.init_params(jax.random.key(0), 50)
    x0 = problem.start_states[0]
    fitted, _ = jax.jit(
        lambda k: ac.fit_generator(
            k, problem, PENDULUM_POLICY, theta, init, x0, num_steps=500, num_samples=64
        )
    )(jax.random.key(1))
    elbo = ac.generator_elbo(
        jax.random.key(2), problem, PENDULUM_POLICY, theta, fitted, x0, num_samples=4096
    )
    print("ELBO", float(elbo.elbo), "+-", float(elbo.stderr), "log Z", float(ref.log_z[0]))
    assert float(elbo.elbo) <= float(ref.log_z[0]) + 4 * float(elbo.stderr)
    zeta = ac.gan_zeta(PENDULUM_POLICY, 256, generator_steps=500).run(
        jax.random.key(3), problem, theta, s0=problem.start_states[:2]
    )
    print("gan_zeta", zeta.log_z, "+-", zeta.stderr, "reference", ref.log_z, "+-", ref.stderr)
    allowed = 5 * np.asarray(zeta.stderr) + 5 * np.asarray(ref.stderr)
    assert np.all(np.abs(np.asarray(zeta.log_z) - np.asarray(ref.log_z)) <= allowed)
    with pytest.raises(ValueError, match="squashed Gaussian policy with one action and bound"):
        ac.gan_gcl(problem, linear_gaussian(2, 1))
    with pytest.raises(ValueError, match="must be unbounded for an LQR problem"):
        ac.gan_gcl(lqr.make_problem(num_demos=4), linear_gaussian(2, 1, bound=2.0))


# ---------------------------------------------------------------------------- (f) errors
def test_errors_name_the_argument(reference, mountaincar, random_starts):
    problem, theta, _ = reference
    discrete = mountaincar[0]
    with pytest.raises(ValueError, match="`state_dim`"):
        linear_gaussian(0, 1)
    with pytest.raises(ValueError, match="`action_dim`"):
        mlp_gaussian(2, 1.5)
    with pytest.raises(ValueError, match="`covariance`"):
        linear_gaussian(2, 1, covariance="full")
    with pytest.raises(ValueError, match="`init_std`"):
        linear_gaussian(2, 1, init_std=0.0)
    with pytest.raises(ValueError, match="`hidden_sizes`"):
        mlp_softmax(2, 3, hidden_sizes=(4, 0))
    with pytest.raises(ValueError, match="`num_actions`"):
        linear_softmax(2, 1)
    with pytest.raises(ValueError, match="`scale`"):
        linear_softmax(2, 3, scale=[1.0, -1.0])
    with pytest.raises(ValueError, match="`loc`"):
        linear_gaussian(2, 1, loc=[0.0, 0.0, 0.0])
    policy = LQR_POLICY
    with pytest.raises(ValueError, match="`horizon`"):
        policy.init_params(jax.random.key(0), 0)
    params = policy.init_params(jax.random.key(0), 3)
    step = _lqr_step(problem)
    with pytest.raises(ValueError, match="`horizon`"):
        policy.rollout(jax.random.key(0), params, jnp.zeros(2), step, 4)
    with pytest.raises(ValueError, match="`x0`"):
        policy.rollout(jax.random.key(0), params, jnp.zeros(3), step)
    with pytest.raises(TypeError, match="`step_fn`"):
        policy.rollout(jax.random.key(0), params, jnp.zeros(2), None)
    with pytest.raises(ValueError, match="`actions`"):
        policy.trajectory_log_prob(params, jnp.zeros((4, 2)), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="`u`"):
        linear_softmax(2, 3).log_prob(
            linear_softmax(2, 3).init_params(jax.random.key(0), 2), 0, jnp.zeros(2), 1.0
        )
    # trainers and estimators
    with pytest.raises(ValueError, match="`nu`"):
        ac.gan_gcl(problem, policy, nu=0)
    with pytest.raises(ValueError, match="`policy` must be a softmax policy"):
        ac.gan_gcl(discrete, policy)
    with pytest.raises(ValueError, match="`policy` has 4 actions"):
        ac.gcl(discrete, linear_softmax(2, 4))
    with pytest.raises(ValueError, match="`policy` must be a gaussian policy"):
        ac.gcl(problem, linear_softmax(2, 3))
    with pytest.raises(ValueError, match="`policy` has state_dim"):
        ac.gan_gcl(problem, linear_gaussian(3, 1))
    with pytest.raises(TypeError, match="`policy`"):
        ac.gan_zeta("linear", 10)
    with pytest.raises(ValueError, match="`problem.system` must be deterministic"):
        ac.gan_gcl(lqr.make_problem(num_demos=0, noise=0.05), policy)
    with pytest.raises(ValueError, match="`estimator`"):
        ac.gan_gcl(discrete, linear_softmax(2, 3), estimator="reparam")
    with pytest.raises(ValueError, match="`generator_samples`"):
        ac.gcl(problem, policy, estimator="score", generator_samples=1)
    with pytest.raises(ValueError, match="`demos`"):
        ac.demonstrations(problem.replace(demos=None))
    with pytest.raises(ValueError, match=r"`shaping` must have shape \(T, p\) = \(3, 6\)"):
        ac.airl_logits(
            problem, theta, jnp.zeros((3, 5)), policy, params, ac.demonstrations(problem)
        )
    with pytest.raises(ValueError, match="`nu`"):
        ac.airl(problem, policy, nu=0)
    with pytest.raises(TypeError, match="`problem`"):
        ac.demonstrations(object())
    trainer = ac.gan_gcl(problem, policy)
    with pytest.raises(ValueError, match="`zeta`"):
        trainer.init(jax.random.key(0), zeta=jnp.zeros(3))
    state = trainer.init(jax.random.key(0))
    with pytest.raises(TypeError, match="`batch`"):
        trainer.update(jax.random.key(0), state, problem.demos)
    with pytest.raises(ValueError, match="`batch` has 50 start states"):
        trainer.update(jax.random.key(0), state, ac.demonstrations(random_starts))
    with pytest.raises(ValueError, match="`weights`"):
        ac.generator_elbo(
            jax.random.key(0),
            problem,
            policy,
            theta,
            params,
            jnp.zeros((2, 2)),
            weights=jnp.array([0.2, 0.2]),
        )
