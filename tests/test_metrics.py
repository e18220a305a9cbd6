"""Tests of the reward-recovery metrics (``ebm_ppl.metrics``): EPIC and EVD (THEORY §9.1–§9.2).

Oracles are written independently here with explicit Python loops on tiny MDPs:

* the EPIC canonicalisation and the weighted Pearson distance over the coverage distribution;
* expected returns by enumerating every trajectory (stopping at terminal states);
* hard EVD by enumerating every time-indexed deterministic Markov policy.
"""

from __future__ import annotations

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.exact.tabular import soft_bellman
from ebm_ppl.metrics import (
    canonicalize_reward,
    epic_distance,
    expected_value_difference,
    hard_optimal_policy,
    pearson_distance,
    policy_value,
)
from ebm_ppl.spaces.tabular import TabularMDP

jax.config.update("jax_enable_x64", True)

SQRT_HALF = np.sqrt(0.5)


# ---------------------------------------------------------------------- fixtures and oracles
def random_mdp(rng, num_states, num_actions, horizon, *, kind="stochastic", terminal=None):
    """A small MDP; ``terminal`` (list of states) are made absorbing."""
    if kind == "stochastic":
        probs = rng.dirichlet(np.ones(num_states), size=(num_states, num_actions))
    else:  # deterministic
        nxt = rng.integers(num_states, size=(num_states, num_actions))
        probs = np.zeros((num_states, num_actions, num_states))
        np.put_along_axis(probs, nxt[..., None], 1.0, axis=-1)
    mask = np.zeros(num_states, dtype=bool)
    if terminal is not None:
        mask[terminal] = True
        probs[mask] = 0.0
        for s in terminal:
            probs[s, :, s] = 1.0
    rho = rng.dirichlet(np.ones(num_states))
    return TabularMDP.from_dense(probs, rho, horizon, terminal=mask)


def lift(reward, num_states, num_actions):
    reward = np.asarray(reward, dtype=np.float64)
    out = np.empty((num_states, num_actions, num_states))
    for s, a, s2 in itertools.product(range(num_states), range(num_actions), range(num_states)):
        if reward.ndim == 1:
            out[s, a, s2] = reward[s]
        elif reward.ndim == 2:
            out[s, a, s2] = reward[s, a]
        else:
            out[s, a, s2] = reward[s, a, s2]
    return out


def brute_canonical(reward, num_states, num_actions, gamma):
    """C(R)(s,a,s') = R + E[g R(s',A,S') - R(s,A,S') - g R(S,A,S')], loops, uniform D_S, D_A."""
    R = lift(reward, num_states, num_actions)
    n_s, n_a = num_states, num_actions
    out = np.empty_like(R)
    for s, a, s2 in itertools.product(range(n_s), range(n_a), range(n_s)):
        e_next = sum(R[s2, b, x] for b in range(n_a) for x in range(n_s)) / (n_a * n_s)
        e_here = sum(R[s, b, x] for b in range(n_a) for x in range(n_s)) / (n_a * n_s)
        e_all = sum(R[y, b, x] for y in range(n_s) for b in range(n_a) for x in range(n_s)) / (
            n_s * n_a * n_s
        )
        out[s, a, s2] = R[s, a, s2] + gamma * e_next - e_here - gamma * e_all
    return out


def brute_pearson_distance(x, y, w):
    w = np.asarray(w, dtype=np.float64) / np.sum(w)
    mx, my = np.sum(w * x), np.sum(w * y)
    cov = np.sum(w * (x - mx) * (y - my))
    rho = cov / np.sqrt(np.sum(w * (x - mx) ** 2) * np.sum(w * (y - my) ** 2))
    return np.sqrt((1 - rho) / 2)


def brute_epic(reward_a, reward_b, mdp, gamma):
    n_s, n_a = mdp.num_states, mdp.num_actions
    P = np.asarray(mdp.to_dense().transitions)
    terminal = np.asarray(mdp.terminal)
    ca = brute_canonical(reward_a, n_s, n_a, gamma)
    cb = brute_canonical(reward_b, n_s, n_a, gamma)
    xs, ys = [], []
    for s, a, s2 in itertools.product(range(n_s), range(n_a), range(n_s)):
        if P[s, a, s2] > 0 and not terminal[s]:
            xs.append(ca[s, a, s2])
            ys.append(cb[s, a, s2])
    return brute_pearson_distance(np.array(xs), np.array(ys), np.ones(len(xs)))


def enumerate_return(mdp, reward, policy, gamma, t, s):
    """E[sum_{k>=t} gamma^(k-t) r(s_k, a_k, s_{k+1}) | s_t = s] by enumerating every path."""
    P = np.asarray(mdp.to_dense().transitions)
    terminal = np.asarray(mdp.terminal)
    R = lift(reward, mdp.num_states, mdp.num_actions)
    T = mdp.horizon

    def rec(t, s):
        if t == T or terminal[s]:
            return 0.0
        total = 0.0
        for a in range(mdp.num_actions):
            if policy[t, s, a] == 0:
                continue
            for s2 in range(mdp.num_states):
                if P[s, a, s2] == 0:
                    continue
                weight = policy[t, s, a] * P[s, a, s2]
                total += weight * (R[s, a, s2] + gamma * rec(t + 1, s2))
        return total

    return rec(t, s)


def deterministic_policies(mdp):
    """Every time-indexed deterministic Markov policy, as one-hot (T, S, A) arrays."""
    T, n_s, n_a = mdp.horizon, mdp.num_states, mdp.num_actions
    for choice in itertools.product(range(n_a), repeat=T * n_s):
        policy = np.zeros((T, n_s, n_a))
        for index, a in enumerate(choice):
            policy[index // n_s, index % n_s, a] = 1.0
        yield policy


def brute_hard_evd(mdp, true_reward, learned_reward, gamma):
    rho = np.asarray(mdp.initial_dist)
    best_true, best_learned, chosen = -np.inf, -np.inf, None
    for policy in deterministic_policies(mdp):
        j_true = sum(
            rho[s] * enumerate_return(mdp, true_reward, policy, gamma, 0, s)
            for s in range(mdp.num_states)
        )
        j_learned = sum(
            rho[s] * enumerate_return(mdp, learned_reward, policy, gamma, 0, s)
            for s in range(mdp.num_states)
        )
        best_true = max(best_true, j_true)
        if j_learned > best_learned:
            best_learned, chosen = j_learned, j_true
    return best_true - chosen


def shaped(reward, potential, gamma, num_actions):
    R = np.asarray(reward)
    n_s = potential.shape[0]
    R = lift(R, n_s, num_actions)
    return R + gamma * potential[None, None, :] - potential[:, None, None]


def random_reward(rng, shape_kind, n_s, n_a):
    shape = {"s": (n_s,), "sa": (n_s, n_a), "sas": (n_s, n_a, n_s)}[shape_kind]
    return rng.normal(size=shape)


# ---------------------------------------------------------------------- Pearson distance
def test_pearson_distance_has_the_half():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([1.0, 3.0, 2.0])  # rho = 0.5 -> sqrt(0.25) = 0.5 (sqrt(0.5) without the 1/2)
    np.testing.assert_allclose(pearson_distance(x, y), 0.5, rtol=1e-14)
    uncorrelated = (np.array([1.0, -1.0, 1.0, -1.0]), np.array([1.0, 1.0, -1.0, -1.0]))
    np.testing.assert_allclose(pearson_distance(*uncorrelated), SQRT_HALF, rtol=1e-14)
    np.testing.assert_allclose(pearson_distance(x, -x), 1.0, rtol=1e-14)
    np.testing.assert_allclose(pearson_distance(x, 2 * x + 5), 0.0, atol=1e-14)


def test_pearson_distance_weights_equal_repeated_samples():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=6), rng.normal(size=6)
    counts = np.array([1, 3, 2, 1, 4, 2])
    repeated = pearson_distance(np.repeat(x, counts), np.repeat(y, counts))
    np.testing.assert_allclose(pearson_distance(x, y, counts.astype(float)), repeated, rtol=1e-12)
    rho = np.corrcoef(x, y)[0, 1]
    np.testing.assert_allclose(pearson_distance(x, y), np.sqrt((1 - rho) / 2), rtol=1e-12)


def test_pearson_distance_degenerate_inputs():
    x = np.array([1.0, 2.0, 4.0])
    const = np.full(3, 7.0)
    np.testing.assert_allclose(pearson_distance(const, 2 * const), 0.0)
    np.testing.assert_allclose(pearson_distance(const, x), SQRT_HALF)
    np.testing.assert_allclose(pearson_distance(x, np.zeros(3)), SQRT_HALF)
    # constant on the support of the weights: the outlier of weight 0 does not count
    weights = np.array([1.0, 1.0, 0.0])
    np.testing.assert_allclose(pearson_distance(np.array([3.0, 3.0, 9.0]), x, weights), SQRT_HALF)


# ---------------------------------------------------------------------- EPIC
@pytest.mark.parametrize("shape_kind", ["s", "sa", "sas"])
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_canonicalisation_matches_bruteforce(shape_kind, gamma):
    rng = np.random.default_rng(2)
    mdp = random_mdp(rng, 3, 2, 2, terminal=[2])
    reward = random_reward(rng, shape_kind, 3, 2)
    expected = brute_canonical(reward, 3, 2, gamma)
    np.testing.assert_allclose(canonicalize_reward(reward, mdp, gamma), expected, atol=1e-12)
    masked = lift(reward, 3, 2)
    masked[2] = 0.0
    np.testing.assert_allclose(
        canonicalize_reward(reward, mdp, gamma, mask_terminal=True),
        brute_canonical(masked, 3, 2, gamma),
        atol=1e-12,
    )


@pytest.mark.parametrize("kind", ["stochastic", "deterministic"])
def test_epic_matches_bruteforce(kind):
    rng = np.random.default_rng(3)
    mdp = random_mdp(rng, 4, 2, 3, kind=kind, terminal=[3])
    for shape_a, shape_b, gamma in [("sas", "sa", 1.0), ("s", "sas", 0.9), ("sa", "sa", 0.7)]:
        ra = random_reward(rng, shape_a, 4, 2)
        rb = random_reward(rng, shape_b, 4, 2)
        expected = brute_epic(ra, rb, mdp, gamma)
        np.testing.assert_allclose(epic_distance(ra, rb, mdp, gamma), expected, rtol=1e-12)
        sparse = epic_distance(ra, rb, mdp.to_sparse(), gamma)
        np.testing.assert_allclose(sparse, expected, rtol=1e-12)


@pytest.mark.parametrize("shape_kind", ["s", "sa", "sas"])
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_epic_invariant_to_shaping_and_positive_affine_maps(shape_kind, gamma):
    rng = np.random.default_rng(4)
    mdp = random_mdp(rng, 4, 2, 3, terminal=[3])
    reward = random_reward(rng, shape_kind, 4, 2)
    potential = 3 * rng.normal(size=4)
    assert float(epic_distance(reward, shaped(reward, potential, gamma, 2), mdp, gamma)) < 1e-10
    assert float(epic_distance(reward, 2.5 * reward + 3.0, mdp, gamma)) < 1e-10
    both = 0.3 * shaped(reward, potential, gamma, 2) - 7.0
    assert float(epic_distance(both, reward, mdp, gamma)) < 1e-10
    # negative control: shaping with the wrong discount is not invisible
    if gamma != 1.0:
        assert float(epic_distance(reward, shaped(reward, potential, 1.0, 2), mdp, gamma)) > 1e-3


def test_epic_of_negated_reward_is_one():
    rng = np.random.default_rng(5)
    mdp = random_mdp(rng, 4, 2, 3)
    for shape_kind in ["s", "sa", "sas"]:
        reward = random_reward(rng, shape_kind, 4, 2)
        np.testing.assert_allclose(epic_distance(reward, -reward, mdp), 1.0, atol=1e-12)


def test_epic_is_a_pseudometric_on_random_rewards():
    rng = np.random.default_rng(6)
    mdp = random_mdp(rng, 4, 2, 3, kind="deterministic")
    epic = jax.jit(epic_distance)
    rewards = [rng.normal(size=(4, 2, 4)) for _ in range(6)]
    dist = np.array([[float(epic(a, b, mdp)) for b in rewards] for a in rewards])
    assert np.all(dist >= 0) and np.all(dist <= 1)
    np.testing.assert_allclose(dist, dist.T, atol=1e-14)
    np.testing.assert_allclose(np.diag(dist), 0.0, atol=1e-10)
    for i, j, k in itertools.permutations(range(len(rewards)), 3):
        assert dist[i, k] <= dist[i, j] + dist[j, k] + 1e-12


def test_epic_degenerate_rewards():
    rng = np.random.default_rng(7)
    mdp = random_mdp(rng, 30, 4, 2)
    reward = rng.normal(size=(30, 4))
    zero_up_to_shaping = shaped(np.zeros(30), 100 * rng.normal(size=30), 0.9, 4) + 5.0
    np.testing.assert_allclose(epic_distance(np.zeros(30), zero_up_to_shaping, mdp, 0.9), 0.0)
    np.testing.assert_allclose(epic_distance(np.full(30, 2.0), np.zeros((30, 4)), mdp), 0.0)
    np.testing.assert_allclose(epic_distance(np.full(30, 2.0), reward, mdp), SQRT_HALF)
    np.testing.assert_allclose(epic_distance(reward, zero_up_to_shaping, mdp, 0.9), SQRT_HALF)


def test_epic_coverage_excludes_terminal_states():
    rng = np.random.default_rng(8)
    mdp = random_mdp(rng, 4, 2, 3, terminal=[1])
    reward = rng.normal(size=(4, 2, 4))
    # a change on terminal rows with zero row mean canonicalises to itself: only terminal rows move
    bump = np.zeros((4, 2, 4))
    bump[1] = rng.normal(size=(2, 4))
    bump[1] -= bump[1].mean()
    np.testing.assert_allclose(canonicalize_reward(bump, mdp), bump, atol=1e-12)
    assert float(epic_distance(reward, reward + bump, mdp)) < 1e-10
    # with a non-zero mean it leaks into transitions *into* the terminal state, unless masked
    bump[1] += 2.0
    assert float(epic_distance(reward, reward + bump, mdp)) > 1e-3
    assert float(epic_distance(reward, reward + bump, mdp, mask_terminal=True)) < 1e-10
    # the coverage can also be given explicitly; here: every transition, terminal rows included
    everything = np.ones((4, 2, 4))
    assert float(epic_distance(reward, reward + bump, mdp, coverage=everything)) > 1e-3


def test_epic_explicit_coverage_matches_weighted_bruteforce():
    rng = np.random.default_rng(9)
    mdp = random_mdp(rng, 4, 2, 3)
    ra, rb = rng.normal(size=(4, 2, 4)), rng.normal(size=(4, 2))
    weights = rng.uniform(size=(4, 2, 4))
    ca = brute_canonical(ra, 4, 2, 1.0).ravel()
    cb = brute_canonical(rb, 4, 2, 1.0).ravel()
    expected = brute_pearson_distance(ca, cb, weights.ravel())
    got = jax.jit(epic_distance)(ra, rb, mdp, coverage=weights)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


# ---------------------------------------------------------------------- policy evaluation
@pytest.mark.parametrize("terminal", [None, [0]])
@pytest.mark.parametrize("sparse", [False, True])
def test_policy_value_matches_trajectory_enumeration(terminal, sparse):
    rng = np.random.default_rng(10)
    mdp = random_mdp(rng, 3, 2, 3, terminal=terminal)
    reward = rng.normal(size=(3, 2, 3))
    policy = rng.dirichlet(np.ones(2), size=(3, 3))
    gamma = 0.9
    values = policy_value(mdp.to_sparse() if sparse else mdp, reward, policy, gamma)
    assert values.shape == (4, 3)
    expected = np.array(
        [[enumerate_return(mdp, reward, policy, gamma, t, s) for s in range(3)] for t in range(4)]
    )
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-14)


def test_policy_value_accepts_stationary_policy():
    rng = np.random.default_rng(11)
    mdp = random_mdp(rng, 3, 2, 3)
    reward = rng.normal(size=(3, 2))
    policy = rng.dirichlet(np.ones(2), size=3)
    np.testing.assert_allclose(
        policy_value(mdp, reward, policy),
        policy_value(mdp, reward, np.broadcast_to(policy, (3, 3, 2))),
    )


def test_hard_optimal_policy_is_optimal_per_state_and_breaks_ties_low():
    rng = np.random.default_rng(12)
    mdp = random_mdp(rng, 3, 2, 2)
    reward = rng.normal(size=(3, 2))
    policy = hard_optimal_policy(mdp, reward)
    assert policy.shape == (2, 3, 2)
    np.testing.assert_array_equal(np.asarray(policy).sum(-1), 1.0)
    best = policy_value(mdp, reward, policy)[0]
    for candidate in deterministic_policies(mdp):
        assert np.all(np.asarray(policy_value(mdp, reward, candidate)[0]) <= best + 1e-12)
    # all actions tied -> action 0 everywhere
    tied = hard_optimal_policy(mdp, np.ones(3))
    np.testing.assert_array_equal(np.asarray(tied)[..., 0], 1.0)
    # sparse form gives the same policy
    np.testing.assert_array_equal(hard_optimal_policy(mdp.to_sparse(), reward), policy)


# ---------------------------------------------------------------------- EVD
@pytest.mark.parametrize(
    "kind, sizes, terminal, shape_kind, gamma",
    [
        ("stochastic", (3, 2, 2), None, "sa", 1.0),
        ("deterministic", (3, 2, 2), None, "sas", 0.8),
        ("stochastic", (2, 3, 3), None, "s", 0.9),
        ("stochastic", (3, 2, 2), [2], "sas", 1.0),
    ],
)
def test_hard_evd_matches_policy_enumeration(kind, sizes, terminal, shape_kind, gamma):
    rng = np.random.default_rng(13)
    n_s, n_a, horizon = sizes
    mdp = random_mdp(rng, n_s, n_a, horizon, kind=kind, terminal=terminal)
    for _ in range(2):
        true_reward = random_reward(rng, shape_kind, n_s, n_a)
        learned = rng.normal(size=(n_s, n_a))
        got = expected_value_difference(true_reward, learned, mdp, discount=gamma)
        expected = brute_hard_evd(mdp, true_reward, learned, gamma)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_hard_evd_zero_for_true_and_affine_rewards_and_nonnegative():
    rng = np.random.default_rng(14)
    mdp = random_mdp(rng, 4, 2, 3)
    evd = jax.jit(partial(expected_value_difference, policy="hard", discount=0.95))
    true_reward = rng.normal(size=(4, 2, 4))
    assert float(evd(true_reward, true_reward, mdp)) == 0.0
    assert float(evd(true_reward, 3.0 * true_reward + 2.0, mdp)) == 0.0
    assert float(evd(true_reward, 0.1 * true_reward - 4.0, mdp)) == 0.0
    values = [float(evd(true_reward, rng.normal(size=(4, 2, 4)), mdp)) for _ in range(30)]
    assert min(values) >= 0.0 and max(values) > 0.0
    sparse = expected_value_difference(true_reward, -true_reward, mdp.to_sparse(), discount=0.95)
    np.testing.assert_allclose(sparse, evd(true_reward, -true_reward, mdp), rtol=1e-12)


def test_soft_evd():
    rng = np.random.default_rng(15)
    mdp = random_mdp(rng, 4, 2, 3)
    true_reward = rng.normal(size=(4, 2))
    learned = rng.normal(size=(4,))
    soft = partial(expected_value_difference, policy="soft")
    assert float(soft(true_reward, true_reward, mdp)) == 0.0
    # definition: expected (not entropy-regularised) true returns of the two MCE policies
    expert = jnp.exp(soft_bellman(mdp, true_reward).log_policy)
    learner = jnp.exp(soft_bellman(mdp, learned).log_policy)
    rho = np.asarray(mdp.initial_dist)
    expected = rho @ (
        np.asarray(policy_value(mdp, true_reward, expert)[0])
        - np.asarray(policy_value(mdp, true_reward, learner)[0])
    )
    np.testing.assert_allclose(soft(true_reward, learned, mdp), expected, rtol=1e-12)
    # not scale invariant, and negative when the learned policy is sharper than the soft expert
    assert float(soft(true_reward, 10.0 * true_reward, mdp)) < 0.0


def test_terminal_states_are_masked():
    # state 2 is terminal; a huge reward there is never collected
    probs = np.array(
        [
            [[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]],
            [[0.0, 0.1, 0.9], [0.5, 0.5, 0.0]],
            [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],
        ]
    )
    mdp = TabularMDP.from_dense(probs, [0.5, 0.3, 0.2], 3, terminal=np.array([False, False, True]))
    reward = np.array([[1.0, -0.5], [0.3, 2.0], [1e3, 1e3]])
    policy = np.full((3, 3, 2), 0.5)
    values = np.asarray(policy_value(mdp, reward, policy))
    np.testing.assert_array_equal(values[:, 2], 0.0)
    expected = [enumerate_return(mdp, reward, policy, 1.0, 0, s) for s in range(3)]
    np.testing.assert_allclose(values[0], expected, rtol=1e-12)
    # rewards on terminal rows change nothing
    other = reward.copy()
    other[2] = -1e3
    np.testing.assert_allclose(policy_value(mdp, other, policy), values)
    learned = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    learned_other = learned.copy()
    learned_other[2] = [50.0, -50.0]
    for variant in ["hard", "soft"]:
        evd = expected_value_difference(reward, learned, mdp, policy=variant)
        np.testing.assert_allclose(
            expected_value_difference(other, learned_other, mdp, policy=variant), evd
        )
    np.testing.assert_allclose(
        expected_value_difference(reward, learned, mdp),
        brute_hard_evd(mdp, reward, learned, 1.0),
        rtol=1e-12,
    )


def test_float32_is_preserved():
    rng = np.random.default_rng(16)
    probs = rng.dirichlet(np.ones(3), size=(3, 2)).astype(np.float32)
    mdp = TabularMDP.from_dense(probs, np.full(3, 1 / 3, np.float32), 2)
    ra = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
    rb = jnp.asarray(rng.normal(size=(3,)), jnp.float32)
    assert epic_distance(ra, rb, mdp).dtype == jnp.float32
    assert canonicalize_reward(ra, mdp).dtype == jnp.float32
    assert pearson_distance(ra, -ra).dtype == jnp.float32
    for variant in ["hard", "soft"]:
        assert expected_value_difference(ra, rb, mdp, policy=variant).dtype == jnp.float32
    assert policy_value(mdp, ra, hard_optimal_policy(mdp, ra)).dtype == jnp.float32


# ---------------------------------------------------------------------- validation
def test_bad_inputs_raise_documented_errors():
    rng = np.random.default_rng(17)
    mdp = random_mdp(rng, 3, 2, 2)
    good = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"`reward_b` must have shape .*got shape \(2, 2\)"):
        epic_distance(good, np.zeros((2, 2)), mdp)
    with pytest.raises(ValueError, match="`learned_reward` must have shape"):
        expected_value_difference(good, np.zeros(4), mdp)
    with pytest.raises(ValueError, match="`true_reward` must be finite"):
        expected_value_difference(np.full(3, np.nan), good, mdp)
    with pytest.raises(ValueError, match="`policy` must be one of"):
        expected_value_difference(good, good, mdp, policy="greedy")
    with pytest.raises(ValueError, match="`discount` must lie in"):
        epic_distance(good, good, mdp, 1.5)
    with pytest.raises(ValueError, match="`discount` must lie in"):
        hard_optimal_policy(mdp, good, 0.0)
    with pytest.raises(ValueError, match=r"`policy` must have shape \(T, S, A\) = \(2, 3, 2\)"):
        policy_value(mdp, good, np.full((3, 3, 2), 0.5))
    with pytest.raises(ValueError, match=r"`policy`\[1, 0\] .* must sum to 1"):
        policy_value(mdp, good, np.array([[[0.5, 0.5]] * 3, [[0.5, 0.6]] + [[0.5, 0.5]] * 2]))
    with pytest.raises(ValueError, match="`coverage` must be >= 0"):
        epic_distance(good, good, mdp, coverage=-np.ones((3, 2, 3)))
    with pytest.raises(ValueError, match="`y` must have the shape of `x`"):
        pearson_distance(np.ones(3), np.ones(4))
    with pytest.raises(TypeError, match="`mdp` must be a TabularMDP"):
        epic_distance(good, good, "mdp")
    absorbing = TabularMDP.from_dense(np.ones((1, 1, 1)), [1.0], 1, terminal=np.array([True]))
    with pytest.raises(ValueError, match="coverage is empty"):
        epic_distance(np.zeros(1), np.ones(1), absorbing)
