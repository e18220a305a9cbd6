"""Regression tests for defects found in review (each failed before its fix)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_ppl.exact.enumerate import enumerated_log_probs
from ebm_ppl.exact.tabular import initial_values, log_partition, soft_bellman
from ebm_ppl.inference import fit_reward
from ebm_ppl.likelihood.problem import trajectory_distribution
from ebm_ppl.problems import make_problem
from ebm_ppl.spaces.tabular import TabularMDP


def _cycle_mdp(dtype=np.float64):
    transitions = np.zeros((3, 2, 3), dtype)
    for s in range(3):
        for a in range(2):
            transitions[s, a, (s + a + 1) % 3] = 1
    return TabularMDP.from_dense(transitions, np.array([0.5, 0.3, 0.2], dtype), 3)


@pytest.mark.parametrize("sparse", [False, True])
def test_next_state_reward_on_impossible_transition_does_not_poison_values(sparse):
    """A huge r(s,a,s') where P(s'|s,a) = 0 used to set a global shift and give NaN."""
    mdp = _cycle_mdp()
    reward = np.zeros((3, 2, 3))
    reward[0, 0, 0] = 800.0
    solver = mdp.to_sparse() if sparse else mdp
    _, _, log_z = enumerated_log_probs(mdp, reward, "trajectory")
    np.testing.assert_allclose(initial_values(solver, reward, model="trajectory"), log_z)
    np.testing.assert_allclose(soft_bellman(solver, reward, model="trajectory").values[0], log_z)
    grad = jax.grad(lambda r: initial_values(solver, r, model="trajectory").sum())(reward)
    assert np.all(np.isfinite(grad))


def test_float32_next_state_reward_spread():
    mdp32 = _cycle_mdp(np.float32)
    reward = np.zeros((3, 2, 3), np.float32)
    reward[0, 0, 1] = 120.0
    expected = initial_values(_cycle_mdp(), reward.astype(np.float64), model="trajectory")
    for solver in (mdp32, mdp32.to_sparse()):
        got = initial_values(solver, reward, model="trajectory")
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_hub_state_uses_scatter_add_and_agrees_with_dense():
    """A state every other state can reach has in-degree O(S): no O(S^2) predecessor table."""
    num_states = 60
    rng = np.random.default_rng(0)
    transitions = np.zeros((num_states, 2, num_states))
    transitions[:, 0, 0] = 1.0  # action 0 jumps to the hub
    transitions[np.arange(num_states), 1, (np.arange(num_states) + 1) % num_states] = 1.0
    dense = TabularMDP.from_dense(transitions, np.full(num_states, 1 / num_states), 5)
    sparse = dense.to_sparse()
    assert sparse.predecessors is None
    reward = jnp.asarray(rng.normal(size=(num_states, 2)))

    def grad(mdp, model):
        return jax.grad(lambda r: jnp.dot(mdp.initial_dist, initial_values(mdp, r, model=model)))(
            reward
        )

    for model in ("causal", "trajectory"):
        grads = [grad(dense, model), grad(sparse, model)]
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-15)


def test_fit_accepts_any_optax_optimiser():
    problem = make_problem("objectworld", jax.random.key(0), num_demos=40, size=4, horizon=6)
    adam = fit_reward(problem, optimizer=optax.adam(0.1), num_steps=300)
    lbfgs = fit_reward(problem, num_steps=30)
    np.testing.assert_allclose(adam.params["theta"], lbfgs.params["theta"], atol=1e-3)


def test_model_override_keeps_the_problems_discount():
    problem = make_problem("objectworld", jax.random.key(0), num_demos=2, size=4, horizon=4)
    discounted = problem.replace(discount=0.9)
    with pytest.raises(ValueError, match="discount"):
        trajectory_distribution(discounted, discounted.true_params, model="trajectory")


def test_global_log_z_gradient_in_rho_is_finite_where_rho_is_zero():
    mdp = _cycle_mdp()

    def log_z(rho):
        moved = TabularMDP(mdp.transitions, None, None, None, rho, mdp.terminal, None, mdp.horizon)
        return log_partition(moved, jnp.ones(3), model="trajectory_global")

    grad = jax.grad(log_z)(jnp.array([0.5, 0.5, 0.0]))
    assert np.all(np.isfinite(grad))


def test_log_prob_rejects_malformed_arrays():
    """Out-of-range actions, truncation at a non-terminal state and wrong horizons used to be
    clamped into finite log-probabilities. Validated distributions raise; unvalidated (and traced)
    calls return -inf."""
    from ebm_ppl.likelihood import CausalTrajectories

    transitions = np.full((2, 4, 2), 0.5)
    mdp = TabularMDP.from_dense(transitions, np.array([0.5, 0.5]), 2)
    distribution = CausalTrajectories(mdp, jnp.zeros((2, 4)), validate_args=False)
    valid = jnp.array([[0, 3], [1, 2], [0, -1]])  # action 3 >= S: still a valid trajectory
    assert bool(distribution.support(valid))
    np.testing.assert_allclose(
        distribution.log_prob(valid), np.log(0.5**3 / 16)
    )  # rho_0, two P = 1/2, two pi = 1/4
    out_of_range = jnp.array([[0, 7], [1, 2], [0, -1]])
    truncated = jnp.array([[0, 1], [1, -1], [-1, -1]])
    assert distribution.log_prob(out_of_range) == -jnp.inf
    assert distribution.log_prob(truncated) == -jnp.inf
    with pytest.raises(ValueError, match=r"shape \(\.\.\., T \+ 1, 2\)"):
        distribution.log_prob(valid[:2])
    checked = CausalTrajectories(mdp, jnp.zeros((2, 4)))  # NumPyro validates by default
    with pytest.raises(ValueError, match=r"`value`\[0\] step 0: action 7 out of range"):
        checked.log_prob(out_of_range)
