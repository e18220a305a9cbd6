"""MCMC gradient estimators of the MaxEnt objective (issue 8, item 1; THEORY §1.5, §5.1).

Tolerances follow DESIGN §5: Monte Carlo comparisons use standard errors computed in the test
(per-chain time averages of independent chains, or the spread over independent replicates);
fixed seeds; no tolerance is tuned to pass. Targets:

* tabular, deterministic dynamics: long-run Metropolis-within-Gibbs gradients vs the exact
  :math:`\\nabla\\log Z(s_0)` (occupancy / feature expectations), within 4 MCSE;
* CD-1 vs its exact expectation from the kernel's transition matrix (5 SE), and its bias vs
  the true gradient (asserted larger than 5 SE);
* toy2d Gaussian and banana: PCD recovers the energy up to a constant (Pearson > 0.99 on the
  grid points with p > 1e-3);
* deterministic LQR as an EBM over controls: PCD with a Robbins–Monro step reaches the exact MLE
  (exact gradient of the closed-form log Z, Newton) within 5 % relative norm, iterates averaged
  over the last quarter.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_ppl.energy.tabular import LinearReward
from ebm_ppl.exact.lqr import batch_gaussian, sample_controls
from ebm_ppl.exact.tabular import log_partition, occupancy_measures
from ebm_ppl.mcmc import (
    KERNELS,
    PersistentChains,
    cd_gradient,
    expected_cd_gradient,
    gibbs_kernel,
    init_chains,
    init_chains_from_data,
    long_run_gradient,
    mcmc_kernel,
    pcd,
    pcd_gradient,
    trajectory_energy,
    transition_matrix,
)
from ebm_ppl.mcmc.tabular import next_state_table, rollout
from ebm_ppl.spaces.tabular import TabularMDP
from models import lqr, toy2d

THETA = jnp.asarray([1.0, -0.5])


def toy2d_data(energy, num_data):
    """Model, true params and exact draws (no quadrature: Gaussian and banana have closed-form
    log Z)."""
    model = toy2d.energy_model(energy)
    params = toy2d.reference_params(energy)
    return model, params, model.sample(jax.random.key(0), params, num_data)


# ----------------------------------------------------------------------------- fixtures
def reference_mdp(horizon=3):
    """THEORY §1.4: S = 3, A = 2, s' = (s + a + 1) mod 3, phi = (1[s=2], 1[a=1])."""
    transitions = np.zeros((3, 2, 3))
    for s in range(3):
        for a in range(2):
            transitions[s, a, (s + a + 1) % 3] = 1.0
    features = np.zeros((3, 2, 2))
    features[2, :, 0] = 1.0
    features[:, 1, 1] = 1.0
    return TabularMDP.from_dense(transitions, np.array([0.5, 0.3, 0.2]), horizon, features=features)


def exact_grad_log_z(mdp, reward, start):
    """:math:`\\sum_s start(s)\\nabla_\\theta\\log Z(s)` = expected features (linear reward)."""
    occupancy = occupancy_measures(mdp, reward, model="trajectory", start=start)
    return jnp.einsum("sa,saf->f", occupancy.state_action, mdp.features)


def tabular_setup():
    mdp = reference_mdp()
    model = LinearReward(mdp.features)
    return mdp, model, {"theta": THETA}, trajectory_energy(model, mdp)


# ----------------------------------------------------------------------------- exact tier
def test_reference_log_z_and_transition_matrix_invariance():
    """The energy matches THEORY's V_0; each kernel's exact matrix is stochastic and leaves
    p_theta(.|s0) invariant."""
    mdp, model, params, energy_fn = tabular_setup()
    np.testing.assert_allclose(
        log_partition(mdp, model.reward(params), s0=jnp.arange(3)),
        [2.2614156559, 2.2614156559, 3.0142338370],
        rtol=1e-9,
    )
    for scan, s0 in (("systematic", 0), ("random", 2)):
        tm = transition_matrix(mdp, energy_fn, params, s0, scan=scan)
        np.testing.assert_allclose(tm.matrix.sum(axis=1), 1.0, atol=1e-12)
        assert float(tm.matrix.min()) >= 0.0
        np.testing.assert_allclose(tm.target @ tm.matrix, tm.target, atol=1e-12)
        w0 = log_partition(mdp, model.reward(params), s0=s0)[0]
        log_target = -jax.vmap(lambda x: energy_fn(params, x))(tm.trajectories) - w0
        np.testing.assert_allclose(jnp.log(tm.target), log_target, atol=1e-10)


# ----------------------------------------------------------------------------- tabular MCMC
@pytest.mark.parametrize("scan", ["systematic", "random"])
def test_long_run_tabular_gradient_matches_exact(scan):
    """Long-run Gibbs-MH average of -grad E vs the exact grad log Z(s0) mixed over the chains'
    starts, within 4 MCSE (MCSE from the per-chain averages of 192 independent chains)."""
    mdp, model, params, energy_fn = tabular_setup()
    table = next_state_table(mdp)
    starts = jnp.tile(jnp.arange(3, dtype=jnp.int32), 64)  # 64 chains from each start
    positions = jax.vmap(lambda s: rollout(table, s, jnp.zeros(3, jnp.int32)))(starts)
    kernel = gibbs_kernel(mdp, scan=scan)
    num_steps = 250 if scan == "systematic" else 700
    run = jax.jit(
        lambda key, chains: long_run_gradient(
            key, params, chains, energy_fn, kernel, num_steps, num_burnin=50
        )
    )
    grad, chains, info = run(jax.random.key(0), init_chains(positions))
    exact = exact_grad_log_z(mdp, model.reward(params), jnp.full(3, 1 / 3))
    # the starts are stratified (64 per state), so the MCSE is the stratified one (the pooled
    # info.grad_stderr also counts the between-start spread and is conservative here)
    means = np.asarray(info.chain_means["theta"]).reshape(64, 3, 2)
    mcse = np.sqrt(np.sum(means.var(axis=0, ddof=1) / 64, axis=0)) / 3
    assert np.all(mcse > 0) and np.all(mcse <= np.asarray(info.grad_stderr["theta"]))
    np.testing.assert_array_less(np.abs(grad["theta"] - exact), 4 * mcse)
    assert 0.2 < float(info.acceptance_rate) < 1.0
    assert float(info.ess) > 100
    assert isinstance(chains, PersistentChains) and int(chains.step) == 1
    # the start states never change
    np.testing.assert_array_equal(chains.positions[:, 0, 0], starts)


def test_cd1_matches_exact_expectation_and_is_biased():
    """CD-1 from off-model data: the replicate mean equals the exact expectation from the
    kernel's transition matrix within 5 SE, and that expectation is > 5 SE from grad log Z(s0)."""
    mdp, model, params, energy_fn = tabular_setup()
    table = next_state_table(mdp)
    # off-model data from s0 = 0: every sequence once, plus the all-zeros sequence 8 more times
    sequences = jnp.asarray(np.indices((2, 2, 2)).reshape(3, -1).T, jnp.int32)
    sequences = jnp.concatenate([sequences, jnp.zeros((8, 3), jnp.int32)])
    data = jax.vmap(lambda a: rollout(table, 0, a))(sequences)
    kernel = gibbs_kernel(mdp, scan="systematic")
    one = lambda key: cd_gradient(key, params, data, energy_fn, kernel, 1)[0]["theta"]
    grads = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(1), 400))
    mean = grads.mean(axis=0)
    se = grads.std(axis=0, ddof=1) / np.sqrt(grads.shape[0])
    tm = transition_matrix(mdp, energy_fn, params, 0, scan="systematic")
    expected = expected_cd_gradient(params, data, energy_fn, tm, 1)["theta"]
    np.testing.assert_array_less(np.abs(mean - expected), 5 * se)
    true = exact_grad_log_z(mdp, model.reward(params), jnp.asarray([1.0, 0.0, 0.0]))
    assert float(jnp.max(jnp.abs(expected - true) / se)) > 5  # the CD-1 bias
    assert float(jnp.max(jnp.abs(mean - true) / se)) > 5
    # with many steps, CD-k tends to the true gradient (exactly, from the matrix)
    far = expected_cd_gradient(params, data, energy_fn, tm, 200)["theta"]
    np.testing.assert_allclose(far, true, atol=1e-8)


# ----------------------------------------------------------------------------- R^d kernels
@pytest.mark.parametrize("name", KERNELS)
def test_long_run_gradient_gaussian_each_kernel(name):
    """Each BlackJAX kernel at fixed theta: grad log Z of the Gaussian (loc: 0, log_scale: 1)
    from a long run of 64 chains started at the data, within 4 MCSE (per-chain averages)."""
    model, params, data = toy2d_data("gaussian", 500)
    kernel = mcmc_kernel(name, step_size=0.3, num_integration_steps=5, max_num_doublings=3)
    chains = init_chains_from_data(jax.random.key(1), data, 64)
    grad, chains, info = jax.jit(
        lambda key, c: long_run_gradient(key, params, c, model.energy, kernel, 60, num_burnin=10)
    )(jax.random.key(3), chains)
    exact = jax.grad(model.log_z)(params)
    for key in ("loc", "log_scale"):
        np.testing.assert_array_less(
            np.abs(grad[key] - exact[key]), 4 * info.grad_stderr[key], err_msg=f"{name} {key}"
        )
    assert 0.3 < float(info.acceptance_rate) <= 1.0
    assert float(info.ess) > 20
    assert chains.positions.shape == (64, 2) and int(chains.step) == 1


# ----------------------------------------------------------------------------- trainers
def _fit_pcd(model, kernel, data, params, num_updates, optimizer, *, num_chains=256):
    trainer = pcd(model, kernel, num_chains=num_chains, num_steps=5, optimizer=optimizer)
    state = trainer.init(jax.random.key(1), params, data=data)

    @jax.jit
    def go(rng_key, state):
        def body(state, key):
            state, info = trainer.update(key, state, data)
            return state, (state.params, info)

        return jax.lax.scan(body, state, jax.random.split(rng_key, num_updates))

    state, (path, infos) = go(jax.random.key(2), state)
    average = jax.tree.map(lambda p: p[-num_updates // 4 :].mean(axis=0), path)
    return state, average, infos


@pytest.mark.parametrize("energy", ["gaussian", "banana"])
def test_pcd_recovers_toy2d_energy(energy):
    """PCD (MALA, step halved every 80 updates) from init_params: learned energy vs true energy
    on the quadrature box's grid where p > 1e-3: Pearson > 0.99."""
    model, true_params, data = toy2d_data(energy, 4000)
    kernel = mcmc_kernel("mala", step_size=0.05)
    optimizer = optax.sgd(optax.exponential_decay(0.05, 80, 0.5))
    _, average, infos = _fit_pcd(model, kernel, data, None, 480, optimizer)
    (lo0, hi0), (lo1, hi1) = toy2d.reference_bounds(energy)
    grid = jnp.stack(
        jnp.meshgrid(jnp.linspace(lo0, hi0, 201), jnp.linspace(lo1, hi1, 201)), -1
    ).reshape(-1, 2)
    true_energy = jax.vmap(lambda x: model.energy(true_params, x))(grid)
    learned = jax.vmap(lambda x: model.energy(average, x))(grid)
    keep = np.asarray(jnp.exp(-true_energy - model.log_z(true_params)) > 1e-3)
    assert keep.sum() > 100
    pearson = np.corrcoef(np.asarray(true_energy)[keep], np.asarray(learned)[keep])[0, 1]
    assert pearson > 0.99, pearson
    assert 0.3 < float(infos.acceptance_rate[-1]) <= 1.0
    assert np.all(np.isfinite(np.asarray(infos.ess)))


def test_pcd_reaches_lqr_mle():
    """Deterministic LQR (scalar system, T = 3) as an EBM over the stacked controls: PCD with
    a decaying SGD step reaches the exact MLE (Newton on the closed-form NLL) within 5 %."""
    base = lqr.make_problem(system="scalar", horizon=3, num_demos=0)
    problem = lqr.control_space_problem(base)
    model, true_params = problem.energy_model, problem.true_params
    exact = batch_gaussian(base.system, base.cost_matrices(true_params), model.x0)
    data = sample_controls(jax.random.key(0), exact, 2000).reshape(2000, -1)

    def nll(vector):
        params = {"log_q": vector[:1], "log_r": vector[1:]}
        log_z = batch_gaussian(base.system, base.cost_matrices(params), model.x0).log_z
        return jnp.mean(jax.vmap(lambda z: model.energy(params, z))(data)) + log_z

    grad = jax.jit(jax.grad(nll))
    mle = jnp.concatenate([true_params["log_q"], true_params["log_r"]])
    eye = jnp.eye(2)
    for _ in range(8):  # Newton with a central-difference Hessian of the exact gradient
        hessian = jnp.stack([(grad(mle + 1e-5 * e) - grad(mle - 1e-5 * e)) / 2e-5 for e in eye])
        mle = mle - jnp.linalg.solve(0.5 * (hessian + hessian.T), grad(mle))
    assert float(jnp.linalg.norm(grad(mle))) < 1e-9
    assert np.all(np.linalg.eigvalsh(np.asarray(hessian)) > 0.1)  # identified

    kernel = mcmc_kernel("mala", step_size=0.5)
    optimizer = optax.sgd(optax.polynomial_schedule(1.0, 0.05, 1.0, 300))
    start = jax.tree.map(jnp.zeros_like, true_params)
    _, average, infos = _fit_pcd(model, kernel, data, start, 300, optimizer)
    fitted = jnp.concatenate([average["log_q"], average["log_r"]])
    relative = float(jnp.linalg.norm(fitted - mle) / jnp.linalg.norm(mle))
    assert relative < 0.05, (fitted, mle)
    assert 0.3 < float(infos.acceptance_rate[-1]) <= 1.0


# ----------------------------------------------------------------------------- errors
def test_errors_name_the_argument():
    mdp, model, params, energy_fn = tabular_setup()
    with pytest.raises(ValueError, match="`name`"):
        mcmc_kernel("gibbs", step_size=0.1)
    with pytest.raises(ValueError, match="`step_size`"):
        mcmc_kernel("mala", step_size=-1.0)
    with pytest.raises(ValueError, match="`num_integration_steps`"):
        mcmc_kernel("hmc", step_size=0.1, num_integration_steps=0)
    kernel = mcmc_kernel("mala", step_size=0.1)
    x = jnp.zeros((4, 2))
    gauss = toy2d.energy_model("gaussian")
    gparams = gauss.init_params()
    with pytest.raises(TypeError, match="`chain_state`"):
        pcd_gradient(jax.random.key(0), gparams, x, gauss.energy, kernel, 1)
    with pytest.raises(ValueError, match="`num_steps`"):
        pcd_gradient(jax.random.key(0), gparams, init_chains(x), gauss.energy, kernel, 0)
    with pytest.raises(TypeError, match="`kernel`"):
        cd_gradient(jax.random.key(0), gparams, x, gauss.energy, "mala", 1)
    with pytest.raises(ValueError, match="`positions`"):
        init_chains(jnp.zeros(()))
    with pytest.raises(ValueError, match="`num_chains`"):
        init_chains_from_data(jax.random.key(0), x, 0)
    with pytest.raises(ValueError, match="exactly one of `data`"):
        pcd(gauss, kernel).init(jax.random.key(0))
    with pytest.raises(ValueError, match="`params`"):
        pcd(lambda p, x: jnp.sum(x**2), kernel).init(jax.random.key(0), data=x)
    with pytest.raises(ValueError, match="`scan`"):
        gibbs_kernel(mdp, scan="blocked")
    stochastic = TabularMDP.from_dense(np.full((2, 2, 2), 0.5), np.array([1.0, 0.0]), 2)
    with pytest.raises(ValueError, match="`mdp` must have deterministic dynamics"):
        gibbs_kernel(stochastic)
    with pytest.raises(ValueError, match="`s0`"):
        transition_matrix(mdp, energy_fn, params, 7)
    tm = transition_matrix(mdp, energy_fn, params, 0)
    wrong_start = jax.vmap(lambda a: rollout(next_state_table(mdp), 1, a))(
        jnp.zeros((2, 3), jnp.int32)
    )
    with pytest.raises(ValueError, match="`data`"):
        expected_cd_gradient(params, wrong_start, energy_fn, tm, 1)


@pytest.mark.parametrize("name", ["mala", "hmc"])
def test_float32_is_preserved(name):
    """No float64 leaks: float32 params and chains give float32 gradients (BlackJAX's NUTS
    clashes on float32 under x64, documented in mcmc_kernel)."""
    model = toy2d.energy_model("gaussian")
    params = jax.tree.map(lambda p: p.astype(jnp.float32), model.init_params())
    chains = init_chains(jnp.zeros((8, 2), jnp.float32))
    kernel = mcmc_kernel(name, step_size=0.1)
    grad, chains, _ = pcd_gradient(jax.random.key(0), params, chains, model.energy, kernel, 2)
    assert grad["loc"].dtype == jnp.float32 and chains.positions.dtype == jnp.float32
