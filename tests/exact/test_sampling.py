"""Exact tier: trajectory log-probabilities and exact samplers (THEORY §1.4, DESIGN §5).

* Normalisation: the exact log-probabilities of every model, summed over all enumerated
  trajectories, give 1 (with and without terminal states, every reward shape).
* Frequencies: 10^5 exact draws per model against enumerated probabilities, with a pooled
  chi-square (cells pooled to expected count >= 5, alpha = 1e-3, scipy.stats.chi2). Draws are
  independent (one key split per trajectory), so the chi-square rule of DESIGN §5 applies. Seeds are
  fixed, so each test is deterministic; at alpha = 1e-3 a correct sampler fails about 1 in 1000
  seeds.
* ``validate_trajectories`` errors name the demonstration and the step.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.exact.enumerate import enumerate_trajectories, enumerated_log_probs
from ebm_ppl.exact.sampling import policy_rollout, sample_trajectories
from ebm_ppl.exact.tabular import log_partition
from ebm_ppl.exact.trajectory import (
    causal_log_prob,
    log_base_measure,
    sum_log_policy,
    trajectory_return,
)
from ebm_ppl.spaces.tabular import Trajectories, validate_trajectories
from tests.exact.conftest import (
    ALPHA,
    FAST_COMPILE,
    REF_THETA,
    REWARD_SHAPES,
    enum_returns,
    enumerate_all,
    family_cases,
    frequency_test,
    get_case,
    get_enum,
    get_mdp,
    policy_log_probs,
    reference_case,
    reference_features,
    trajectory_log_probs,
    values_bundle,
)

NUM_DRAWS = 100_000
PAD_TO = 1024  # enumerations are padded to one size so the vmapped functions compile once
MODELS = ("causal", "trajectory", "trajectory_global")


def assert_rel(actual, desired, rtol=1e-10, atol=0.0, err_msg=""):
    np.testing.assert_allclose(
        np.asarray(actual, np.float64),
        np.asarray(desired, np.float64),
        rtol=rtol,
        atol=atol,
        err_msg=err_msg,
    )


def _padded(observed):
    observed = np.asarray(observed)
    assert observed.shape[0] <= PAD_TO
    pad = np.repeat(observed[:1], PAD_TO - observed.shape[0], axis=0)
    return np.concatenate([observed, pad]), observed.shape[0]


sample = jax.jit(
    sample_trajectories,
    static_argnames=("model", "num_samples", "discount"),
    compiler_options=FAST_COMPILE,
)
rollout = jax.jit(policy_rollout, static_argnames=("num_samples",), compiler_options=FAST_COMPILE)


@partial(jax.jit, static_argnames=("discount",), compiler_options=FAST_COMPILE)
def _causal_log_prob(mdp, reward, observed, discount=1.0):
    return causal_log_prob(mdp, reward, observed, discount)


@partial(jax.jit, static_argnames=("model",), compiler_options=FAST_COMPILE)
def _trajectory_level_log_prob(mdp, reward, observed, model):
    """log b(tau) + R(tau) - log Z from the per-trajectory pieces of ``exact.trajectory``."""
    if model == "trajectory":
        log_z = log_partition(mdp, reward, model="trajectory", s0=jnp.arange(mdp.num_states))
        log_z = log_z[jnp.maximum(observed[:, 0, 0], 0)]
    else:
        log_z = log_partition(mdp, reward, model="trajectory_global")
    pieces = jax.vmap(lambda obs: log_base_measure(mdp, obs) + trajectory_return(mdp, reward, obs))
    return pieces(observed) - log_z


@partial(jax.jit, compiler_options=FAST_COMPILE)
def _per_trajectory_pieces(mdp, reward, log_policy, observed):
    return jax.vmap(
        lambda obs: (
            log_base_measure(mdp, obs),
            trajectory_return(mdp, reward, obs),
            trajectory_return(mdp, reward, obs, 0.9),
            sum_log_policy(log_policy, obs),
        )
    )(observed)


# ====================================================================== normalisation
@pytest.mark.parametrize("shape", REWARD_SHAPES)
@pytest.mark.parametrize("name", family_cases(0))
def test_log_probs_sum_to_one(name, shape):
    """sum_tau exp(log p(tau)) = 1 over every feasible trajectory, for the causal model
    (``causal_log_prob``, gamma in {1, 0.9}) and the trajectory-level ones (``enumerated_log_probs``
    and log_base_measure + trajectory_return - log_partition). Cases: deterministic and stochastic,
    with and without a masked terminal state, some with a start state of probability 0."""
    case, enum = get_case(name), get_enum(name)
    mdp = get_mdp(name)
    reward = case.reward(shape)
    sel = case.initial_dist[enum.starts] > 0
    observed, count = _padded(enum.observed[sel])

    for discount in (1.0, 0.9):
        log_p = np.asarray(_causal_log_prob(mdp, reward, observed, discount))[:count]
        assert_rel(np.exp(log_p).sum(), 1.0, 1e-12)
        log_policy = values_bundle(mdp, reward, "causal", discount)["log_policy"]
        assert_rel(log_p, policy_log_probs(enum, log_policy, case.initial_dist)[sel], atol=1e-12)
    for model in ("trajectory", "trajectory_global"):
        _, lib_log_p, _ = enumerated_log_probs(mdp, reward, model)
        assert_rel(np.exp(lib_log_p).sum(), 1.0, 1e-12, err_msg=model)
        log_p = np.asarray(_trajectory_level_log_prob(mdp, reward, observed, model))[:count]
        assert_rel(np.exp(log_p).sum(), 1.0, 1e-12, err_msg=model)
        assert_rel(
            log_p, trajectory_log_probs(enum, reward, case.initial_dist, model)[sel], atol=1e-12
        )

    # the per-trajectory pieces against the independent oracle
    log_policy = values_bundle(mdp, reward, "causal", 1.0)["log_policy"]
    base, ret, ret_disc, slp = (
        np.asarray(x)[:count] for x in _per_trajectory_pieces(mdp, reward, log_policy, observed)
    )
    assert_rel(base, enum.log_base(case.initial_dist)[sel], atol=1e-13)
    assert_rel(ret, enum_returns(enum, reward)[sel], atol=1e-13)
    assert_rel(ret_disc, enum_returns(enum, reward, 0.9)[sel], atol=1e-13)
    assert_rel(base + slp, policy_log_probs(enum, log_policy, case.initial_dist)[sel], atol=1e-12)


@pytest.mark.parametrize("name", family_cases(0))
def test_trajectories_array_round_trip(name):
    case, enum = get_case(name), get_enum(name)
    mdp = get_mdp(name)
    observed = enum.observed[case.initial_dist[enum.starts] > 0]
    checked, trajectories = validate_trajectories(mdp, observed)
    assert checked.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(trajectories.to_array()), observed)
    np.testing.assert_array_equal(
        np.asarray(Trajectories.from_array(observed).to_array()), observed
    )
    expected_lengths = np.sum(observed[:, :-1, 1] >= 0, axis=1)
    np.testing.assert_array_equal(np.asarray(trajectories.lengths), expected_lengths)
    if case.has_terminal:
        assert expected_lengths.min() < case.horizon  # some trajectories terminate early
    assert trajectories.horizon == case.horizon
    # library enumeration is valid too
    validate_trajectories(mdp, enumerate_trajectories(mdp).observed)


# ====================================================================== exact sampling frequencies
def _reference(stochastic: bool, form: str = "dense"):
    case = reference_case(stochastic)
    phi = reference_features()
    return case, case.mdp(form), phi @ REF_THETA


def _assert_frequencies(draws, mdp, enum_observed, probs, *, drop_last_state, label):
    draws = np.asarray(draws)
    assert draws.shape == (NUM_DRAWS, mdp.horizon + 1, 2)
    validate_trajectories(mdp, draws)  # every draw is a feasible trajectory
    p_value, stat, dof, cells, unknown = frequency_test(
        draws, enum_observed, probs, base=8, drop_last_state=drop_last_state
    )
    assert unknown == 0, label
    assert dof >= 10, (label, dof)  # enough cells survive pooling for the test to have power
    assert p_value > ALPHA, (
        f"{label}: chi2 = {stat:.1f} on {dof} dof over {cells} cells, p = {p_value:.2e}"
    )


def _model_probs(case, mdp, reward, model):
    enum = enumerate_all(case.transitions, case.terminal, case.horizon)
    sel = case.initial_dist[enum.starts] > 0
    if model == "causal":
        log_policy = values_bundle(mdp, reward, "causal", 1.0)["log_policy"]
        log_p = policy_log_probs(enum, log_policy, case.initial_dist)
    else:
        log_p = trajectory_log_probs(enum, reward, case.initial_dist, model)
    probs = np.exp(log_p[sel])
    assert_rel(probs.sum(), 1.0, 1e-12)
    return enum.observed[sel], probs


@pytest.mark.parametrize(
    "model,form,seed",
    [
        ("causal", "dense", 0),
        ("trajectory", "dense", 1),
        ("trajectory_global", "dense", 2),
        ("trajectory_global", "sparse", 3),
    ],
)
def test_exact_samples_match_enumeration_stochastic_reference(model, form, seed):
    """THEORY §1.4 stochastic MDP: frequencies of the 216 sequences (s0, a0, s1, a1, s2, a2), the
    final state s_3 marginalised, under each model's exact sampler."""
    case, mdp, reward = _reference(stochastic=True, form=form)
    enum_observed, probs = _model_probs(case, mdp, reward, model)
    cells = np.unique(enum_observed[:, :-1].reshape(len(enum_observed), -1), axis=0)
    assert cells.shape[0] == 216
    draws = sample(jax.random.key(seed), mdp, reward, model=model, num_samples=NUM_DRAWS)
    _assert_frequencies(
        draws, mdp, enum_observed, probs, drop_last_state=True, label=f"{model}/{form}"
    )


@pytest.mark.parametrize("model", MODELS)
def test_exact_samples_match_enumeration_deterministic_reference(model):
    """THEORY §1.4 deterministic MDP (24 feasible trajectories); all three models."""
    case, mdp, reward = _reference(stochastic=False)
    enum_observed, probs = _model_probs(case, mdp, reward, model)
    assert enum_observed.shape[0] == 24
    seed = 10 + MODELS.index(model)
    draws = sample(jax.random.key(seed), mdp, reward, model=model, num_samples=NUM_DRAWS)
    _assert_frequencies(draws, mdp, enum_observed, probs, drop_last_state=False, label=model)


@pytest.mark.parametrize("model", MODELS)
def test_exact_samples_match_enumeration_terminal_and_next_state_reward(model):
    """A stochastic MDP with a masked terminal state, a start state of probability 0 and an
    (S, A, S) reward (the tilt includes r(s, a, s')); full trajectories as cells."""
    name = "S3A2T3-stoch-term-7"
    case = get_case(name)
    assert case.has_terminal and (case.initial_dist == 0).any()
    mdp = get_mdp(name)
    reward = case.reward("sas", scale=1.5)
    enum_observed, probs = _model_probs(case, mdp, reward, model)
    seed = 20 + MODELS.index(model)
    draws = sample(jax.random.key(seed), mdp, reward, model=model, num_samples=NUM_DRAWS)
    _assert_frequencies(draws, mdp, enum_observed, probs, drop_last_state=False, label=model)
    assert (np.asarray(draws)[:, -1, 0] == -1).any()  # some draws terminated early


@pytest.mark.parametrize("stationary", [False, True])
def test_policy_rollout_matches_enumeration(stationary):
    """``policy_rollout`` of a random policy: q(tau) = b(tau) prod_t pi_t(a_t | s_t) (enumerated).
    Time-indexed policy on the §1.4 stochastic MDP; stationary (S, A) one on a terminal case."""
    rng = np.random.default_rng(31 + stationary)
    if stationary:
        name = "S3A2T3-stoch-term-3"
        case, mdp = get_case(name), get_mdp(name)
        log_policy = rng.normal(size=(case.num_states, case.num_actions))
    else:
        case, mdp, _ = _reference(stochastic=True)
        log_policy = rng.normal(size=(case.horizon, case.num_states, case.num_actions))
    log_policy = log_policy - np.log(np.exp(log_policy).sum(-1, keepdims=True))
    full = np.broadcast_to(log_policy, (case.horizon, case.num_states, case.num_actions))
    enum = enumerate_all(case.transitions, case.terminal, case.horizon)
    sel = case.initial_dist[enum.starts] > 0
    probs = np.exp(policy_log_probs(enum, full, case.initial_dist)[sel])
    assert_rel(probs.sum(), 1.0, 1e-12)
    draws = rollout(jax.random.key(40 + stationary), mdp, log_policy, NUM_DRAWS)
    _assert_frequencies(
        draws,
        mdp,
        enum.observed[sel],
        probs,
        drop_last_state=False,
        label=f"stationary={stationary}",
    )


def test_samplers_are_deterministic_given_the_key():
    case, mdp, reward = _reference(stochastic=True)
    first = sample(jax.random.key(5), mdp, reward, model="trajectory", num_samples=64)
    second = sample(jax.random.key(5), mdp, reward, model="trajectory", num_samples=64)
    other = sample(jax.random.key(6), mdp, reward, model="trajectory", num_samples=64)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


# ====================================================================== validate_trajectories
def _valid_batch():
    """Three valid demos on the deterministic §1.4 MDP (s' = (s + a + 1) mod 3)."""
    demos = []
    for s0, acts in [(0, (0, 1, 0)), (1, (1, 1, 0)), (2, (0, 0, 1))]:
        rows, s = [], s0
        for a in acts:
            rows.append((s, a))
            s = (s + a + 1) % 3
        rows.append((s, -1))
        demos.append(rows)
    return np.array(demos)


def _terminal_mdp():
    name = "S3A2T3-det-term-1"  # state 2 is terminal
    case = get_case(name)
    assert case.terminal[2] and case.initial_dist[0] > 0
    return case, get_mdp(name)


def _terminal_demo(case):
    """A demo from state 0 that reaches the terminal state 2 and is padded after it."""
    enum = get_enum(case.name)
    sel = (
        (enum.observed[:, 0, 0] == 0)
        & (enum.observed[:, -1, 0] == -1)
        & (enum.observed[:, 1, 0] != -1)
    )
    return enum.observed[sel][0].copy()


def test_validate_trajectories_accepts_valid_demos():
    _, mdp, _ = _reference(stochastic=False)
    demos = _valid_batch()
    checked, trajectories = validate_trajectories(mdp, demos)
    np.testing.assert_array_equal(np.asarray(checked), demos)
    np.testing.assert_array_equal(np.asarray(trajectories.lengths), [3, 3, 3])
    checked_one, _ = validate_trajectories(mdp, demos[0])  # one (T + 1, 2) demo
    assert checked_one.shape == (1, 4, 2)
    validate_trajectories(mdp, demos.astype(np.float64))  # integral floats are accepted
    case, term_mdp = _terminal_mdp()
    demo = _terminal_demo(case)
    _, trajectories = validate_trajectories(term_mdp, demo)
    assert int(trajectories.lengths[0]) < case.horizon


def _bad(mutate):
    demos = _valid_batch()
    mutate(demos)
    return demos


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        # a transition of probability 0: demo 2, step 1 ((s1, a1) -> s2 impossible)
        (
            lambda d: d[2, 2].__setitem__(0, (d[2, 2, 0] + 1) % 3),
            r"`demos`\[2\] step 1: transition .* probability 0",
        ),
        (
            lambda d: d[1, 1].__setitem__(0, (d[1, 1, 0] + 2) % 3),
            r"`demos`\[1\] step 0: transition .* probability 0",
        ),
        (lambda d: d[0, 1].__setitem__(1, 2), r"`demos`\[0\] step 1: action 2 out of range"),
        (lambda d: d[2, 0].__setitem__(1, -1), r"`demos`\[2\] step 0: action -1 out of range"),
        (lambda d: d[1, 2].__setitem__(0, 3), r"`demos`\[1\] step 2: state 3 out of range"),
        (lambda d: d[0, 0].__setitem__(0, -1), r"`demos`\[0\] step 0: state -1 out of range"),
        (lambda d: d[2, 3].__setitem__(1, 0), r"`demos`\[2\] step 3: action must be -1"),
    ],
    ids=[
        "zero-prob-step1",
        "zero-prob-step0",
        "action-too-big",
        "action-negative",
        "state-too-big",
        "state-negative",
        "last-row-action",
    ],
)
def test_validate_trajectories_names_demo_and_step(mutate, pattern):
    _, mdp, _ = _reference(stochastic=False)
    with pytest.raises(ValueError, match=pattern):
        validate_trajectories(mdp, _bad(mutate))


def test_validate_trajectories_padding_and_start_errors():
    case, mdp = _terminal_mdp()
    demo = _terminal_demo(case)
    stop = int(np.sum(demo[:-1, 1] >= 0))  # step of the terminal state
    assert demo[stop, 0] == 2 and stop < case.horizon
    batch = np.stack([_terminal_demo(case)] * 3)
    # an action taken at the terminal state
    bad = batch.copy()
    bad[1, stop, 1] = 0
    with pytest.raises(ValueError, match=rf"`demos`\[1\] step {stop}: action must be -1"):
        validate_trajectories(mdp, bad)
    # a state after termination
    bad = batch.copy()
    bad[2, stop + 1, 0] = 0
    with pytest.raises(ValueError, match=rf"`demos`\[2\] step {stop + 1}: rows after termination"):
        validate_trajectories(mdp, bad)
    # padding in the middle of a live trajectory
    _, ref_mdp, _ = _reference(stochastic=False)
    bad = _valid_batch()
    bad[0, 2] = (-1, -1)
    with pytest.raises(ValueError, match=r"`demos`\[0\] step 2"):
        validate_trajectories(ref_mdp, bad)
    # a start state with rho_0 = 0 (state 1 of this case)
    zero_start = np.flatnonzero(case.initial_dist == 0)
    if zero_start.size:
        bad = batch.copy()
        bad[0, 0, 0] = zero_start[0]
        with pytest.raises(ValueError, match=r"`demos`\[0\] step 0"):
            validate_trajectories(mdp, bad)
    # wrong shapes and dtypes; the argument name is the caller's
    with pytest.raises(ValueError, match=r"`expert` must have shape \(N, T \+ 1, 2\)"):
        validate_trajectories(ref_mdp, _valid_batch()[:, :-1], name="expert")
    with pytest.raises(ValueError, match="`demos` must be an integer array"):
        validate_trajectories(ref_mdp, _valid_batch() + 0.5)


@pytest.mark.parametrize("model", ["causal", "trajectory", "trajectory_global"])
def test_samples_given_start_states_follow_the_conditional_law(model):
    """`s0=`: one draw per given start state from p(tau | s0) (the exchange algorithm's auxiliary
    data); the two trajectory-level models share this conditional."""
    case, mdp, reward = _reference(stochastic=True, form="dense")
    enum_observed, probs = _model_probs(case, mdp, reward, model)
    start = int(enum_observed[np.argmax(probs), 0, 0])
    keep = enum_observed[:, 0, 0] == start
    conditional = probs[keep] / probs[keep].sum()
    s0 = np.full(NUM_DRAWS, start)
    draws = sample_trajectories(jax.random.key(21), mdp, reward, model=model, s0=s0)
    assert draws.shape[0] == NUM_DRAWS and (np.asarray(draws)[:, 0, 0] == start).all()
    _assert_frequencies(
        draws, mdp, enum_observed[keep], conditional, drop_last_state=True, label=f"s0/{model}"
    )
