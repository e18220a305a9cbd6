"""AIRL / GAIL on tabular MDPs (THEORY §9.4): population recovery theorem, trainers, transfer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_ppl.adversarial.airl import (
    Transitions,
    airl,
    airl_discriminator_loss,
    discounted_occupancy,
    enumerate_transitions,
    gail,
    policy_evd,
    sample_transitions,
    transfer_evd,
    transitions_from_trajectories,
)
from ebm_ppl.exact.infinite import soft_value_iteration
from ebm_ppl.metrics import pearson_distance
from ebm_ppl.spaces.tabular import TabularMDP
from models.objectworld import make_problem

DISCOUNT = 0.9


def _ring_mdp(num_states: int) -> TabularMDP:
    """Deterministic ring; actions stay / left / right (every state can stay: decomposable)."""
    transitions = np.zeros((num_states, 3, num_states))
    for s in range(num_states):
        transitions[s, 0, s] = 1.0
        transitions[s, 1, (s - 1) % num_states] = 1.0
        transitions[s, 2, (s + 1) % num_states] = 1.0
    initial = np.full(num_states, 1.0 / num_states)
    return TabularMDP.from_dense(transitions, initial, horizon=10)


def _spread(x):
    return float(jnp.max(x) - jnp.min(x))


def _correlation(x, y):
    return 1.0 - 2.0 * float(pearson_distance(x, y)) ** 2


def test_population_recovery_theorem():
    """[AIRL] Thm C.1: at the population optimum g = r + c and h = V_soft + c'."""
    num_states = 7
    mdp = _ring_mdp(num_states)
    reward = jax.random.normal(jax.random.key(3), (num_states,))
    expert = soft_value_iteration(mdp, reward, discount=DISCOUNT)
    # the policy is at the optimum pi = pi_E: both sides are the expert's exact occupancy
    population = enumerate_transitions(mdp, expert.log_policy, discount=DISCOUNT)

    def loss(x):
        params = {"g": x[:num_states], "h": x[num_states:]}
        return airl_discriminator_loss(
            params, population, population, expert.log_policy, discount=DISCOUNT
        )

    x = jnp.zeros((2 * num_states,))
    loss_fn, grad_fn, hess_fn = jax.jit(loss), jax.jit(jax.grad(loss)), jax.jit(jax.hessian(loss))
    for _ in range(100):  # damped Newton; the Hessian is singular along the constant shift only
        grad = grad_fn(x)
        if float(jnp.linalg.norm(grad)) < 1e-10:
            break
        direction = jnp.linalg.pinv(hess_fn(x), rtol=1e-10, hermitian=True) @ grad
        step = 1.0
        while float(loss_fn(x - step * direction)) > float(loss_fn(x)) and step > 1e-8:
            step /= 2
        x = x - step * direction
    assert float(jnp.linalg.norm(grad_fn(x))) < 1e-10
    g, h = x[:num_states], x[num_states:]
    assert _spread(g - reward) < 1e-6
    assert _spread(h - expert.values) < 1e-6
    # and the optimum is D = 1/2: loss = 2 log 2
    np.testing.assert_allclose(float(loss(x)), 2 * np.log(2), rtol=1e-10)
    # negative control: without the shaping term the state-only g cannot reach D = 1/2
    g_only = jax.jit(lambda g: loss(jnp.concatenate([g, jnp.zeros(num_states)])))
    g_grad, g_hess = jax.jit(jax.grad(g_only)), jax.jit(jax.hessian(g_only))
    g0 = jnp.zeros((num_states,))
    for _ in range(30):
        g0 = g0 - jnp.linalg.solve(g_hess(g0), g_grad(g0))
    assert float(jnp.linalg.norm(g_grad(g0))) < 1e-8
    assert float(g_only(g0)) > 2 * np.log(2) + 1e-4


def test_occupancy_and_transitions():
    mdp = _ring_mdp(5)
    log_policy = jax.nn.log_softmax(jax.random.normal(jax.random.key(0), (5, 3)))
    occupancy = discounted_occupancy(mdp, log_policy, discount=DISCOUNT)
    np.testing.assert_allclose(float(occupancy.sum()), 1 / (1 - DISCOUNT), rtol=1e-12)
    population = enumerate_transitions(mdp, log_policy, discount=DISCOUNT)
    np.testing.assert_allclose(float(population.weights.sum()), 1.0, rtol=1e-12)
    draws = sample_transitions(jax.random.key(1), mdp, log_policy, 20_000, discount=DISCOUNT)
    # every draw is a possible transition; state frequencies match the occupancy
    probs = mdp.transitions[draws.states, draws.actions, draws.next_states]
    assert bool(jnp.all(probs > 0))
    freq = jnp.bincount(draws.states, length=5) / 20_000
    expected = occupancy.sum(1) * (1 - DISCOUNT)
    np.testing.assert_allclose(freq, expected, atol=4 * np.sqrt(0.25 / 20_000))
    observed = jnp.array([[[0, 1], [4, 2], [0, -1]], [[2, 0], [2, -1], [-1, -1]]])
    batch = transitions_from_trajectories(observed, discount=0.5)
    np.testing.assert_array_equal(batch.weights, [1.0, 0.5, 1.0, 0.0])
    np.testing.assert_array_equal(batch.next_states[:3], [4, 0, 2])


def _objectworld(slip):
    problem = make_problem(jax.random.key(0), size=4, slip=slip, num_demos=0)
    return problem.mdp, problem.true_reward()


def test_airl_training_and_transfer():
    mdp, reward = _objectworld(0.0)
    expert = soft_value_iteration(mdp, reward, discount=DISCOUNT)
    batch = sample_transitions(jax.random.key(1), mdp, expert.log_policy, 4000, discount=DISCOUNT)
    trainer = airl(mdp, discount=DISCOUNT, optimizer=optax.adam(0.1))
    state = trainer.init(jax.random.key(2))
    keys = jax.random.split(jax.random.key(3), 150)
    correlations, losses = [], []
    for key in keys:
        state, info = trainer.update(key, state, batch)
        correlations.append(_correlation(info.reward, reward))
        losses.append(float(info.discriminator_loss))
    assert np.all(np.isfinite(losses))
    assert correlations[-1] > correlations[0] + 0.05
    assert correlations[-1] > 0.9
    assert info.reward.shape == info.potential.shape == (mdp.num_states,)
    # transfer: re-optimise g under slip 0.3 and score it with the true reward
    slip_mdp, slip_reward = _objectworld(0.3)
    np.testing.assert_allclose(slip_reward, reward)
    evd = float(transfer_evd(reward, info.reward, slip_mdp, discount=DISCOUNT))
    assert np.isfinite(evd) and evd >= -1e-9
    # sampled policy side runs too
    sampled = airl(mdp, discount=DISCOUNT, policy_batch_size=500)
    state, info = sampled.update(jax.random.key(4), sampled.init(jax.random.key(5)), batch)
    assert np.isfinite(float(info.discriminator_loss))


def test_gail_reference_policy_evd():
    mdp, reward = _objectworld(0.0)
    expert = soft_value_iteration(mdp, reward, discount=DISCOUNT)
    batch = enumerate_transitions(mdp, expert.log_policy, discount=DISCOUNT)
    trainer = gail(mdp, discount=DISCOUNT, optimizer=optax.adam(0.1))
    state = trainer.init(jax.random.key(0))
    evd_start = float(policy_evd(reward, state.log_policy, mdp, discount=DISCOUNT))
    for key in jax.random.split(jax.random.key(1), 100):
        state, info = trainer.update(key, state, batch)
    evd_end = float(policy_evd(reward, state.log_policy, mdp, discount=DISCOUNT))
    assert np.isfinite(float(info.discriminator_loss))
    assert 0 <= evd_end < evd_start


def test_errors():
    mdp = _ring_mdp(4)
    with pytest.raises(ValueError, match="discount"):
        airl(mdp, discount=1.0)
    with pytest.raises(ValueError, match="discriminator_steps"):
        gail(mdp, discount=0.5, discriminator_steps=0)
    trainer = airl(mdp, discount=0.5)
    state = trainer.init(jax.random.key(0))
    bad = Transitions(jnp.array([0, 9]), jnp.array([0, 0]), jnp.array([0, 1]), jnp.ones(2))
    with pytest.raises(ValueError, match="batch.states"):
        trainer.update(jax.random.key(1), state, bad)
    with pytest.raises(ValueError, match="features"):
        airl(mdp, discount=0.5, features=jnp.ones((3, 2)))
