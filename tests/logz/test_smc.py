"""Particle SMC over time against the exact trajectory-level log Z (DESIGN §5 statistical rule).

Rule: over R >= 100 replicates, |mean log Z_hat - log Z| <= 5 SE + s^2 / 2 with s^2 the variance of
log Z_hat over the replicates (the Jensen allowance, THEORY §6); every configuration must also be
informative (s^2 / 2 < 0.5).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.energy import LinearReward
from ebm_ppl.exact.tabular import log_partition, soft_bellman, start_states
from ebm_ppl.logz.base import LogZResult
from ebm_ppl.logz.smc import ParticleSMCInfo, particle_smc
from ebm_ppl.models import objectworld, toy2d
from ebm_ppl.problems import Problem

NUM_REPLICATES = 200
# test-side jits lower only the LLVM optimisation level (the HLO is the library's): compile time
# dominates this file
FAST_COMPILE = {"xla_backend_optimization_level": 0}
THETA = jnp.array([0.6, -0.9])
# every random MDP has the same shapes, so each jitted configuration compiles once for all of them
SHAPE = dict(num_states=4, num_actions=3, horizon=5)
VARIANTS = [  # (deterministic, terminal)
    (True, False),
    (True, True),
    (False, False),
    (False, True),
]


@dataclasses.dataclass(frozen=True)
class ScaledTable:
    """A fixed reward table ((S,), (S, A) or (S, A, S)) times ``params['scale']``."""

    table: jax.Array

    def reward(self, params):
        return params["scale"] * self.table


jax.tree_util.register_dataclass(ScaledTable, data_fields=["table"], meta_fields=[])


def causal_proposal(problem, params):
    """The causal soft-optimal policy of the current reward (a params-dependent proposal)."""
    reward = problem.energy_model.reward(params)
    return soft_bellman(problem.mdp, reward, model="causal").log_policy


def batched(estimator, counter=None):
    """jit(vmap over keys) of ``estimator.run``; ``counter`` records each trace."""

    def run(key, problem, params, s0):
        if counter is not None:
            counter.append(1)
        return estimator.run(key, problem, params, s0=s0)

    return jax.jit(jax.vmap(run, in_axes=(0, None, None, None)), compiler_options=FAST_COMPILE)


def keys(seed, num=NUM_REPLICATES):
    return jax.random.split(jax.random.key(seed), num)


def assert_rule(log_z, exact, label=""):
    """DESIGN §5: |mean - exact| <= 5 SE + s^2/2 elementwise over the replicate axis 0."""
    log_z = np.asarray(log_z, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    assert np.all(np.isfinite(log_z)), label
    variance = log_z.var(axis=0, ddof=1)
    se = np.sqrt(variance / log_z.shape[0])
    error = np.abs(log_z.mean(axis=0) - exact)
    bound = 5 * se + 0.5 * variance
    assert np.all(0.5 * variance < 0.5), f"{label}: uninformative, s^2/2 = {0.5 * variance}"
    assert np.all(error <= bound), f"{label}: |error| {error} > bound {bound}"


@pytest.fixture
def mdps(random_mdp):
    return [
        random_mdp(10 + i, **SHAPE, deterministic=det, terminal=term)
        for i, (det, term) in enumerate(VARIANTS)
    ]


def test_trajectory_model_matches_log_partition(mdps):
    traces = []
    run = batched(particle_smc(128), traces)
    everything = jnp.arange(SHAPE["num_states"])  # terminal start states too: log Z = 0
    for i, mdp in enumerate(mdps):
        problem = Problem(name="tiny", mdp=mdp, energy_model=LinearReward(mdp.features))
        out = run(keys(i), problem, {"theta": THETA}, everything)
        exact = log_partition(mdp, problem.energy_model.reward({"theta": THETA}), s0=everything)
        assert out.log_z.shape == (NUM_REPLICATES, SHAPE["num_states"])
        assert_rule(out.log_z, exact, f"variant {VARIANTS[i]}")
        if VARIANTS[i][1]:  # started in the absorbing state: no weight, exactly log Z = 0
            np.testing.assert_array_equal(out.log_z[:, -1], 0.0)
        ess = np.asarray(out.info.ess)
        assert ess.shape == (NUM_REPLICATES, SHAPE["num_states"], SHAPE["horizon"])
        assert np.all((ess >= 1 - 1e-9) & (ess <= 128 + 1e-9))
        assert np.all(out.info.num_resampling <= SHAPE["horizon"] - 1)
        np.testing.assert_array_equal(out.num_energy_evals, 128 * 5 * 4)
    assert len(traces) == 1, "one compilation for every MDP of the same shapes"


def test_global_model_matches_log_partition(mdps):
    run = batched(particle_smc(256, model="trajectory_global"))
    for i, mdp in enumerate(mdps):
        problem = Problem(name="tiny", mdp=mdp, energy_model=LinearReward(mdp.features))
        out = run(keys(20 + i), problem, {"theta": THETA}, None)
        exact = log_partition(
            mdp, problem.energy_model.reward({"theta": THETA}), model="trajectory_global"
        )
        assert out.log_z.shape == (NUM_REPLICATES,)
        assert_rule(out.log_z, exact, f"global variant {VARIANTS[i]}")


def test_next_state_reward_sparse_multinomial_always(random_mdp):
    mdp = random_mdp(31, **SHAPE, terminal=True).to_sparse()
    table = np.random.default_rng(0).normal(size=(4, 3, 4))
    problem = Problem(name="tiny", mdp=mdp, energy_model=ScaledTable(jnp.asarray(table)))
    params = {"scale": jnp.asarray(0.7)}
    estimator = particle_smc(128, resample="always", scheme="multinomial")
    out = batched(estimator)(keys(3), problem, params, start_states(mdp))
    exact = log_partition(mdp, problem.energy_model.reward(params))
    assert_rule(out.log_z, exact, "(S, A, S) reward, sparse")
    np.testing.assert_array_equal(out.info.num_resampling, SHAPE["horizon"] - 1)


def test_causal_proposal_is_exact_under_deterministic_dynamics(mdps):
    """Deterministic dynamics: each weight telescopes to exp V_0(s0) = Z(s0), so SIS is exact."""
    run = batched(particle_smc(16, proposal=causal_proposal, resample="never"))
    everything = jnp.arange(SHAPE["num_states"])
    for i in (0, 1):
        mdp = mdps[i]
        problem = Problem(name="tiny", mdp=mdp, energy_model=LinearReward(mdp.features))
        out = run(keys(40 + i, 8), problem, {"theta": THETA}, everything)
        exact = log_partition(mdp, problem.energy_model.reward({"theta": THETA}), s0=everything)
        np.testing.assert_allclose(out.log_z, jnp.broadcast_to(exact, (8, 4)), atol=1e-12)
        np.testing.assert_array_equal(out.info.num_resampling, 0)


def test_objectworld_both_models():
    problem = objectworld.make_problem(
        jax.random.key(2), size=4, horizon=6, slip=0.2, num_demos=0, model="trajectory"
    )
    params = {"theta": 0.5 * problem.true_params["theta"]}
    reward = problem.energy_model.reward(params)
    s0 = jnp.array([0, 5, 15])
    out = batched(particle_smc(64, proposal=causal_proposal))(keys(5, 100), problem, params, s0)
    assert_rule(out.log_z, log_partition(problem.mdp, reward, s0=s0), "objectworld trajectory")
    estimator = particle_smc(128, model="trajectory_global")
    out = batched(estimator)(keys(6, 100), problem, params, None)
    exact = log_partition(problem.mdp, reward, model="trajectory_global")
    assert_rule(out.log_z, exact, "objectworld global")


def test_conformance_float32_determinism_and_stderr(mdps):
    mdp = mdps[3]
    mdp32 = jax.tree.map(lambda x: x.astype(jnp.float32) if x.dtype == jnp.float64 else x, mdp)
    problem = Problem(name="tiny", mdp=mdp32, energy_model=LinearReward(mdp32.features))
    params = {"theta": THETA.astype(jnp.float32)}
    estimator = particle_smc(64, model="trajectory")
    run = batched(estimator)
    out = run(keys(7, 4), problem, params, jnp.arange(4))
    again = run(keys(7, 4), problem, params, jnp.arange(4))
    assert isinstance(out, LogZResult) and isinstance(out.info, ParticleSMCInfo)
    assert out.log_z.dtype == jnp.float32 and out.stderr.dtype == jnp.float32
    assert np.all(np.isfinite(out.log_z))
    assert np.all(np.isnan(out.stderr))
    np.testing.assert_array_equal(out.log_z, again.log_z)
    assert estimator.models == ("trajectory",)
    assert not estimator.smooth and particle_smc(8, resample="never").smooth
    assert not particle_smc(8, resample="never", proposal=causal_proposal).smooth


def test_errors(mdps):
    mdp = mdps[0]
    problem = Problem(name="tiny", mdp=mdp, energy_model=LinearReward(mdp.features))
    params = {"theta": THETA}
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="num_particles"):
        particle_smc(0)
    with pytest.raises(ValueError, match="model"):
        particle_smc(8, model="causal")
    with pytest.raises(ValueError, match="resample"):
        particle_smc(8, resample="sometimes")
    with pytest.raises(ValueError, match="scheme"):
        particle_smc(8, scheme="residual")
    with pytest.raises(ValueError, match="ess_threshold"):
        particle_smc(8, ess_threshold=0.0)
    with pytest.raises(ValueError, match="s0"):
        particle_smc(8, model="trajectory_global").run(key, problem, params, s0=0)
    with pytest.raises(ValueError, match=r"shape \(T, S, A\)"):
        particle_smc(8, proposal=jnp.zeros((4, 4))).run(key, problem, params)
    with pytest.raises(ValueError, match="normalised"):
        particle_smc(8, proposal=jnp.zeros((4, 3))).run(key, problem, params)
    with pytest.raises(TypeError, match="tabular"):
        toy = toy2d.make_problem(energy="gaussian", num_data=0, num_points=65)
        particle_smc(8).run(key, toy, toy.true_params)
