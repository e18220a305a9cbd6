"""Hard discounted control (ebm_ppl.exact.hard) against brute-force NumPy value iteration.

The oracles are plain NumPy loops: value iteration to a fixed point for Q*, iterative policy
evaluation for Q^pi. Terminal states are absorbing with value 0 and no reward (THEORY §0.4).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.exact.hard import hard_q_values, policy_evaluation, policy_iteration
from ebm_ppl.spaces.tabular import TabularMDP
from tests.exact.conftest import (
    FAMILIES,
    FAMILY_IDS,
    FAST_COMPILE,
    family_cases,
    for_each_case,
    get_case,
    get_mdp,
)

DISCOUNT = 0.9
FORMS = ("dense", "sparse", "sparse_raw")


# ---------------------------------------------------------------------- NumPy oracles
def expected_reward(case, reward) -> np.ndarray:
    """r-bar(s, a) with terminal rows zeroed, from any reward shape."""
    reward = np.asarray(reward, dtype=np.float64)
    num_states, num_actions = case.num_states, case.num_actions
    if reward.ndim == 1:
        r_sa = np.broadcast_to(reward[:, None], (num_states, num_actions)).copy()
    elif reward.ndim == 2:
        r_sa = reward.copy()
    else:
        r_sa = np.sum(case.transitions * reward, axis=-1)
    r_sa[case.terminal] = 0.0
    return r_sa


def value_iteration(transitions, r_sa, terminal, discount, sweeps=500) -> np.ndarray:
    """Q* by plain value iteration (0.9^500 ~ 1e-23: converged to round-off)."""
    values = np.zeros(transitions.shape[0])
    for _ in range(sweeps):
        q_values = r_sa + discount * transitions @ values
        values = np.where(terminal, 0.0, q_values.max(axis=1))
    return r_sa + discount * transitions @ values


def iterative_evaluation(transitions, r_sa, terminal, policy, discount, sweeps=500):
    """Q^pi for an (S, A) stochastic policy by fixed-point iteration."""
    values = np.zeros(transitions.shape[0])
    for _ in range(sweeps):
        q_values = r_sa + discount * transitions @ values
        values = np.where(terminal, 0.0, np.sum(policy * q_values, axis=1))
    return r_sa + discount * transitions @ values


def lowest_argmax(q_values, tol=1e-9) -> np.ndarray:
    return np.argmax(q_values >= q_values.max(axis=1, keepdims=True) - tol, axis=1)


# ---------------------------------------------------------------------- jitted bundle
@partial(jax.jit, static_argnames=("discount",), compiler_options=FAST_COMPILE)
def bundle(mdp, reward, int_policy, prob_policy, discount):
    solution = policy_iteration(mdp, reward, discount=discount)
    return dict(
        policy=solution.policy,
        q_values=solution.q_values,
        num_iterations=solution.num_iterations,
        q_int=policy_evaluation(mdp, reward, int_policy, discount=discount),
        q_prob=policy_evaluation(mdp, reward, prob_policy, discount=discount),
    )


def random_policies(case, seed):
    rng = np.random.default_rng(seed)
    int_policy = rng.integers(case.num_actions, size=case.num_states)
    prob_policy = rng.dirichlet(np.ones(case.num_actions), size=case.num_states)
    return int_policy, prob_policy


@pytest.mark.parametrize("family", range(len(FAMILIES)), ids=FAMILY_IDS)
def test_policy_iteration_and_evaluation_match_numpy(family):
    """Q*, the greedy policy, and Q^pi of random policies, for every case, form and reward
    shape (next-state rewards in dense form only, to bound compile time)."""

    def check(name):
        case = get_case(name)
        int_policy, prob_policy = random_policies(case, 7)
        oracles = {}
        for shape in ("s", "sa", "sas"):
            r_sa = expected_reward(case, case.reward(shape, seed=3))
            oracles[shape] = (
                value_iteration(case.transitions, r_sa, case.terminal, DISCOUNT),
                iterative_evaluation(
                    case.transitions,
                    r_sa,
                    case.terminal,
                    np.eye(case.num_actions)[int_policy],
                    DISCOUNT,
                ),
                iterative_evaluation(case.transitions, r_sa, case.terminal, prob_policy, DISCOUNT),
            )
        for form in FORMS:
            mdp = get_mdp(name, form)
            for shape in ("s", "sa", "sas") if form == "dense" else ("sa",):
                reward = case.reward(shape, seed=3)
                out = bundle(mdp, reward, int_policy, prob_policy, DISCOUNT)
                q_star, q_int, q_prob = oracles[shape]
                where = f"form={form}, reward={shape}"
                np.testing.assert_allclose(
                    out["q_values"], q_star, rtol=1e-10, atol=1e-10, err_msg=where
                )
                np.testing.assert_array_equal(out["policy"], lowest_argmax(q_star), err_msg=where)
                assert 1 <= int(out["num_iterations"]) < 1000, where
                assert np.all(np.asarray(out["q_values"])[case.terminal] == 0), where
                np.testing.assert_allclose(
                    out["q_int"], q_int, rtol=1e-10, atol=1e-10, err_msg=where
                )
                np.testing.assert_allclose(
                    out["q_prob"], q_prob, rtol=1e-10, atol=1e-10, err_msg=where
                )

    for_each_case(family_cases(family), check)


@pytest.mark.parametrize("form", ["dense", "sparse"])
def test_warm_start_from_every_policy_gives_the_same_answer(form):
    """Policy iteration from each of the A^S deterministic policies ends at the same Q* and
    (lowest-tie) policy; from the optimal policy it stops after one evaluation."""
    name = "S3A2T3-stoch-term-3"
    case = get_case(name)
    mdp = get_mdp(name, form)
    reward = case.reward("sa", seed=5)
    cold = policy_iteration(mdp, reward, discount=DISCOUNT)
    starts = np.stack(
        np.meshgrid(*[np.arange(case.num_actions)] * case.num_states, indexing="ij"), -1
    ).reshape(-1, case.num_states)
    warm = jax.jit(
        jax.vmap(lambda p: policy_iteration(mdp, reward, discount=DISCOUNT, init_policy=p))
    )(jnp.asarray(starts, jnp.int32))
    np.testing.assert_allclose(
        warm.q_values, np.broadcast_to(cold.q_values, warm.q_values.shape), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_array_equal(warm.policy, np.broadcast_to(cold.policy, warm.policy.shape))
    again = policy_iteration(mdp, reward, discount=DISCOUNT, init_policy=cold.policy)
    assert int(again.num_iterations) == 1
    assert int(jnp.max(warm.num_iterations)) > 1  # some start policies needed improving


def test_ties_go_to_the_lowest_action():
    """Two identical actions (same dynamics, same reward): the policy picks the lower one, also
    when warm-started from the higher one, and at terminal states (all Q = 0) it is action 0."""
    rng = np.random.default_rng(0)
    base = rng.dirichlet(np.ones(4), size=(4, 2))
    transitions = np.concatenate([base[:, :1], base], axis=1)  # actions 0 and 1 identical
    transitions[3] = 0.0
    transitions[3, :, 3] = 1.0
    terminal = np.array([False, False, False, True])
    mdp = TabularMDP.from_dense(transitions, np.full(4, 0.25), 2, terminal=terminal)
    r = rng.normal(size=(4, 2))
    reward = np.concatenate([r[:, :1], r], axis=1)
    # make the duplicated action the best one everywhere
    reward[:, :2] += 5.0
    for init in (None, jnp.array([1, 1, 1, 2], jnp.int32)):
        solution = policy_iteration(mdp, reward, discount=DISCOUNT, init_policy=init)
        np.testing.assert_array_equal(solution.policy, [0, 0, 0, 0])


def test_q_star_gradient_matches_finite_differences():
    """Away from ties Q* is linear in the reward near R: the custom JVP (forward and reverse)
    equals central differences and the gradient of Q^pi at the optimal policy held fixed."""
    name = "S4A3T4-stoch-2"
    case = get_case(name)
    mdp = get_mdp(name, "sparse")
    reward = jnp.asarray(case.reward("sa", seed=11))
    weights = jnp.asarray(np.random.default_rng(2).normal(size=reward.shape))

    @jax.jit
    def objective(r):
        return jnp.sum(weights * hard_q_values(mdp, r, discount=DISCOUNT))

    grad = jax.jit(jax.grad(objective))(reward)
    forward = jax.jit(jax.jacfwd(objective))(reward)
    step = 1e-6
    fd = np.zeros(reward.shape)
    for index in np.ndindex(*reward.shape):
        e = jnp.zeros(reward.shape).at[index].set(step)
        fd[index] = (objective(reward + e) - objective(reward - e)) / (2 * step)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(forward, grad, rtol=1e-12, atol=1e-12)
    policy = policy_iteration(mdp, reward, discount=DISCOUNT).policy
    fixed = jax.grad(
        lambda r: jnp.sum(weights * policy_evaluation(mdp, r, policy, discount=DISCOUNT))
    )(reward)
    np.testing.assert_allclose(grad, fixed, rtol=1e-12, atol=1e-12)


def test_float32_is_preserved(random_mdp):
    mdp = random_mdp(3, num_states=4, num_actions=2, terminal=True)
    mdp32 = TabularMDP.from_dense(
        np.asarray(mdp.transitions, np.float32),
        np.asarray(mdp.initial_dist, np.float32),
        mdp.horizon,
        terminal=mdp.terminal,
    )
    reward = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    solution = policy_iteration(mdp32, reward, discount=DISCOUNT)
    assert solution.q_values.dtype == jnp.float32
    assert policy_evaluation(mdp32, reward, solution.policy, discount=0.5).dtype == jnp.float32
    reference = policy_iteration(mdp, reward.astype(np.float64), discount=DISCOUNT)
    np.testing.assert_allclose(solution.q_values, reference.q_values, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(solution.policy, reference.policy)


def test_bad_inputs(random_mdp):
    mdp = random_mdp(4)
    reward = np.zeros((3, 2))
    for discount in (1.0, 0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="discount"):
            policy_iteration(mdp, reward, discount=discount)
    with pytest.raises(TypeError, match="discount"):
        jax.jit(lambda g: policy_iteration(mdp, reward, discount=g).q_values)(0.9)
    with pytest.raises(TypeError, match="mdp"):
        policy_iteration(np.zeros((3, 2, 3)), reward, discount=0.9)
    with pytest.raises(ValueError, match="policy"):
        policy_evaluation(mdp, reward, np.zeros(2, int), discount=0.9)
    with pytest.raises(ValueError, match="policy"):
        policy_evaluation(mdp, reward, np.array([0, 2, 1]), discount=0.9)
    with pytest.raises(ValueError, match="policy"):
        policy_evaluation(mdp, reward, np.full((3, 2), 0.3), discount=0.9)
    with pytest.raises(ValueError, match="init_policy"):
        policy_iteration(mdp, reward, discount=0.9, init_policy=np.array([0, 5, 0]))
    with pytest.raises(ValueError, match="init_policy"):
        policy_iteration(mdp, reward, discount=0.9, init_policy=np.zeros(3))
    with pytest.raises(ValueError, match="max_iterations"):
        policy_iteration(mdp, reward, discount=0.9, max_iterations=0)
    with pytest.raises(ValueError, match="reward"):
        policy_iteration(mdp, np.zeros((3, 3)), discount=0.9)
