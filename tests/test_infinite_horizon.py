"""Infinite-horizon discounted soft value iteration and its implicit gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.exact.infinite import soft_value_iteration
from ebm_ppl.exact.tabular import soft_bellman


@pytest.mark.parametrize("sparse", [False, True])
def test_fixed_point_and_finite_horizon_limit(random_mdp, sparse):
    mdp = random_mdp(0, num_states=4, num_actions=3, horizon=400, terminal=True)
    mdp = mdp.to_sparse() if sparse else mdp
    reward = mdp.features @ jnp.array([0.5, -0.3])
    solution = soft_value_iteration(mdp, reward, discount=0.9)
    # V satisfies the Bellman equation, and the finite-horizon V_0 converges to it (0.9^400 ~ 5e-19)
    finite = soft_bellman(mdp, reward, discount=0.9).values[0]
    np.testing.assert_allclose(solution.values, finite, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        jax.nn.logsumexp(solution.q_values, axis=1)[:-1], solution.values[:-1]
    )
    assert solution.values[-1] == 0.0  # terminal state masked


def test_implicit_gradient_equals_finite_differences(random_mdp):
    mdp = random_mdp(1, num_states=4, num_actions=3)
    weights = jnp.arange(1.0, 5.0)
    reward = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)))

    def objective(r):
        return jnp.dot(weights, soft_value_iteration(mdp, r, discount=0.8).values)

    grad = jax.grad(objective)(reward)
    eps = 1e-5
    fd = np.zeros((4, 3))
    for i in range(4):
        for j in range(3):
            step = np.zeros((4, 3))
            step[i, j] = eps
            fd[i, j] = (objective(reward + step) - objective(reward - step)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(jax.jit(jax.grad(objective))(reward), grad, rtol=1e-12)


def test_rejects_bad_discount(random_mdp):
    mdp = random_mdp(2)
    with pytest.raises(ValueError, match="discount"):
        soft_value_iteration(mdp, jnp.zeros(3), discount=1.0)
