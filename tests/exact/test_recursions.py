"""Exact tier: the soft backward recursions of ``ebm_ppl.exact.tabular`` (THEORY §1.3–§1.5, §8.2).

Oracles (``tests/exact/conftest.py``): brute-force enumeration of every feasible trajectory of 24
seeded random MDPs (S <= 4, A <= 3, T <= 5; deterministic and stochastic, some with an absorbing
masked terminal state, some with a start state of probability 0), the THEORY §1.4 reference values,
central finite differences, and an independent NumPy port of the ``imitation`` library's
``mce_partition_fh`` / ``mce_occupancy_measures``. Everything runs in float64
(``tests/conftest.py``) except the float32 conformance check. Tests loop over the cases of a shape
family (``for_each_case``) so that each jitted bundle compiles once per family.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.exact.enumerate import enumerate_trajectories, enumerated_log_probs, returns
from ebm_ppl.exact.sampling import sample_trajectories
from ebm_ppl.exact.tabular import (
    feature_expectations,
    initial_values,
    log_partition,
    occupancy_measures,
    soft_bellman,
)
from ebm_ppl.spaces.tabular import TabularMDP
from tests.exact.conftest import (
    CASE_NAMES,
    FAMILY_IDS,
    FAST_COMPILE,
    REF_THETA,
    REWARD_SHAPES,
    brute_log_z_global,
    brute_log_z_per_start,
    contract_counts,
    enum_returns,
    enumerate_all,
    family_cases,
    for_each_case,
    get_case,
    get_enum,
    get_mdp,
    grad_bundle,
    logsumexp_np,
    normaliser,
    policy_log_probs,
    policy_log_terms,
    reference_case,
    reference_features,
    state_occupancy,
    trajectory_log_probs,
    values_bundle,
)

RTOL = 1e-10
DET_CASES = [n for n in CASE_NAMES if not get_case(n).stochastic]
STOCH_CASES = [n for n in CASE_NAMES if get_case(n).stochastic]
NO_TERMINAL_CASES = [n for n in CASE_NAMES if not get_case(n).has_terminal]
MODELS = ("causal", "trajectory", "trajectory_global")
MODEL_DISCOUNTS = [
    ("causal", 1.0),
    ("causal", 0.9),
    ("trajectory", 1.0),
    ("trajectory_global", 1.0),
]
FAMILIES = pytest.mark.parametrize("family", range(len(FAMILY_IDS)), ids=FAMILY_IDS)
# dense vs sparse (compile-heavy: each sparse shape signature compiles every bundle): every case of
# the (2, 3, 5) family, whose deterministic and stochastic cases share one sparse signature
# (U = M = S = 2). The sparse form of every case of every family is also checked against
# enumeration in test_trajectory_log_z_matches_enumeration.
SPARSE_CASES = family_cases(2)


def assert_rel(actual, desired, rtol=RTOL, atol=0.0, err_msg=""):
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        np.asarray(desired, dtype=np.float64),
        rtol=rtol,
        atol=atol,
        err_msg=err_msg,
    )


def column(model: str) -> str:
    return "causal" if model == "causal" else "trajectory"


def model_log_probs(name: str, reward, model: str, discount: float = 1.0) -> np.ndarray:
    """Joint log-probabilities (rho_0 included) of every enumerated trajectory under ``model``;
    for "trajectory" the rho_0-mixture of the s_0-conditional laws."""
    case, enum = get_case(name), get_enum(name)
    if model == "causal":
        log_policy = values_bundle(get_mdp(name), reward, "causal", discount)["log_policy"]
        return policy_log_probs(enum, log_policy, case.initial_dist)
    return trajectory_log_probs(enum, reward, case.initial_dist, model)


# ====================================================================== the oracle itself
@FAMILIES
def test_library_enumeration_matches_independent_enumerator(family):
    """``enumerate_trajectories`` / ``returns`` (the library's NumPy oracle) agree with the
    conftest enumerator, which filters the full product of sequences (not expanding prefixes)."""
    for_each_case(family_cases(family), _check_library_enumeration)


def _check_library_enumeration(name):
    case, enum = get_case(name), get_enum(name)
    lib = enumerate_trajectories(get_mdp(name))
    sel = case.initial_dist[enum.starts] > 0
    mine = enum.observed[sel]
    lib_obs = np.asarray(lib.observed, np.int64)
    assert lib_obs.shape == mine.shape
    order_lib = np.lexsort(lib_obs.reshape(len(lib_obs), -1).T[::-1])
    order_mine = np.lexsort(mine.reshape(len(mine), -1).T[::-1])
    np.testing.assert_array_equal(lib_obs[order_lib], mine[order_mine])
    assert_rel(lib.log_base[order_lib], enum.log_base(case.initial_dist)[sel][order_mine], 1e-13)
    for shape in REWARD_SHAPES:
        reward = case.reward(shape)
        # log Z of the library's oracle
        brute = brute_log_z_per_start(enum, reward, case.num_states)
        starts = np.flatnonzero(case.initial_dist > 0)
        _, lib_log_p, lib_z = enumerated_log_probs(get_mdp(name), reward, "trajectory", lib)
        assert_rel(np.asarray(lib_z)[starts], brute[starts], atol=1e-12)
        assert_rel(np.exp(lib_log_p).sum(), 1.0, 1e-12)
        _, _, lib_zg = enumerated_log_probs(get_mdp(name), reward, "trajectory_global", lib)
        assert_rel(lib_zg, brute_log_z_global(enum, reward, case.initial_dist), atol=1e-12)
        assert_rel(
            returns(lib_obs, reward, case.terminal)[order_lib],
            enum_returns(enum, reward)[sel][order_mine],
            1e-13,
            atol=1e-13,
        )


# ====================================================================== log Z vs enumeration
@pytest.mark.parametrize("shape", REWARD_SHAPES)
@pytest.mark.parametrize("form", ["dense", "sparse"])
@FAMILIES
def test_trajectory_log_z_matches_enumeration(family, form, shape):
    """W_0(s_0) = log sum_{tau: s_0} b(tau | s_0) e^{R(tau)} for every s_0 (conditional model) and
    log sum_tau b(tau) e^{R(tau)} (global), THEORY §1.1-§1.4, relative 1e-10."""
    for_each_case(family_cases(family), partial(_check_log_z, form=form, shape=shape))


def _check_log_z(name, form, shape):
    case, enum = get_case(name), get_enum(name)
    reward = case.reward(shape)
    brute = brute_log_z_per_start(enum, reward, case.num_states)
    brute_global = brute_log_z_global(enum, reward, case.initial_dist)
    out = values_bundle(get_mdp(name, form), reward, "trajectory", 1.0)
    for key in ("v0", "log_z"):
        assert_rel(out[key], brute, atol=1e-12, err_msg=key)
    assert_rel(out["values"][0], brute, atol=1e-12)
    assert_rel(out["log_z_global"], brute_global, atol=1e-12)


@pytest.mark.parametrize("name", [family_cases(i)[4] for i in range(3)])
def test_log_partition_default_start_states(name):
    """Eager ``log_partition``: ``s0=None`` means every state with rho_0 > 0, in index order."""
    case = get_case(name)
    reward = case.reward("sa")
    mdp = get_mdp(name)
    brute = brute_log_z_per_start(get_enum(name), reward, case.num_states)
    starts = np.flatnonzero(case.initial_dist > 0)
    if name == family_cases(0)[4]:
        assert starts.size < case.num_states  # a start state with rho_0 = 0 is skipped
    assert_rel(log_partition(mdp, reward, model="trajectory"), brute[starts], atol=1e-12)
    last = case.num_states - 1
    assert_rel(
        log_partition(mdp, reward, model="trajectory", s0=[last, 0]), brute[[last, 0]], atol=1e-12
    )
    assert_rel(log_partition(mdp, reward, model="trajectory", s0=1), brute[[1]], atol=1e-12)
    with pytest.raises(ValueError, match="`s0`"):
        log_partition(mdp, reward, model="trajectory", s0=[case.num_states])


# ====================================================================== maximum causal entropy
@pytest.mark.parametrize("shape", REWARD_SHAPES)
@FAMILIES
def test_causal_policy_maximises_entropy_regularised_return(family, shape):
    """J(pi | s0) = E_pi[sum_t r - log pi_t | s0] equals V_0(s0) at the recursion's policy and is
    strictly smaller at 20 perturbed policies (THEORY §1.3), all by enumeration. The gap is exactly
    E_{pi'}[sum_t KL(pi'_t || pi_t)(s_t) | s0] (soft performance-difference identity)."""
    for_each_case(family_cases(family), partial(_check_max_causal_entropy, shape=shape))


def _check_max_causal_entropy(name, shape):
    case, enum = get_case(name), get_enum(name)
    reward = case.reward(shape)
    solution = values_bundle(get_mdp(name), reward, "causal", 1.0)
    log_policy, v0 = np.asarray(solution["log_policy"]), np.asarray(solution["v0"])
    assert_rel(solution["values"][0], v0, 1e-12, atol=1e-14)
    total = enum_returns(enum, reward)
    per_start = np.stack([enum.starts == s for s in range(case.num_states)])  # (S, M)

    def objective(lp):
        log_terms = policy_log_terms(enum, lp)
        q = np.exp(enum.log_dyn + log_terms)  # law conditional on s0
        return per_start @ (q * (total - log_terms)), q

    j_opt, q_opt = objective(log_policy)
    assert_rel(per_start @ q_opt, 1.0, 1e-12)
    assert_rel(j_opt, v0, atol=1e-12)

    rng = np.random.default_rng(7)
    live = ~case.terminal
    states, actions = enum.observed[:, :-1, 0], enum.observed[:, :-1, 1]
    steps = np.broadcast_to(np.arange(case.horizon), states.shape)
    for _ in range(20):
        bumped = log_policy + 0.5 * rng.normal(size=log_policy.shape)
        bumped = bumped - logsumexp_np(bumped, axis=-1)[..., None]
        j_new, q_new = objective(bumped)
        # strictly smaller at every start state that takes a decision; equal (0) at terminal ones
        assert np.all(v0[live] - j_new[live] > 1e-9), (v0, j_new)
        assert_rel(j_new[~live], v0[~live], atol=1e-14)
        kl = np.sum(np.exp(bumped) * (bumped - log_policy), axis=-1)  # (T, S)
        kl_path = np.sum(np.where(actions >= 0, kl[steps, np.maximum(states, 0)], 0.0), axis=1)
        assert_rel(v0 - j_new, per_start @ (q_new * kl_path), 1e-8, atol=1e-12)


# ====================================================================== THEORY §1.4 reference
def _within_printed(values, printed):
    """Agreement to the printed digits: |value - printed| <= half a unit in the last place."""
    values = np.atleast_1d(np.asarray(values, dtype=np.float64))
    assert values.shape == (len(printed),)
    for value, text in zip(values, printed, strict=True):
        decimals = len(text.split(".")[1])
        assert abs(value - float(text)) <= 0.5 * 10.0 ** (-decimals) + 1e-14, (value, text)


@pytest.mark.parametrize("form", ["dense", "sparse"])
def test_reference_values_deterministic(form):
    case = reference_case(stochastic=False)
    phi = reference_features()
    mdp = case.mdp(form, features=phi)
    reward = phi @ REF_THETA
    v0 = values_bundle(mdp, reward, "causal", 1.0)["v0"]
    _within_printed(v0, ["2.2614156559", "2.2614156559", "3.0142338370"])
    # equal to brute force log sum_{tau: s0} e^{R(tau)}, and to the trajectory-level W_0
    enum = enumerate_all(case.transitions, case.terminal, case.horizon)
    assert_rel(v0, brute_log_z_per_start(enum, reward, 3), 1e-12)
    assert_rel(enum.log_dyn, 0.0, atol=0)  # deterministic: b(tau | s0) = 1
    traj = values_bundle(mdp, reward, "trajectory", 1.0)
    assert_rel(traj["v0"], v0, 1e-12)
    _within_printed(
        log_partition(mdp, reward, model="trajectory"),
        ["2.2614156559", "2.2614156559", "3.0142338370"],
    )
    _within_printed(traj["log_z_global"], ["2.4640257547"])
    _within_printed(log_partition(mdp, reward, model="trajectory_global"), ["2.4640257547"])
    _within_printed(feature_expectations(mdp, reward, model="causal"), ["1.06013064", "1.12032267"])
    # all three models' feature expectations coincide under deterministic dynamics (THEORY §1.5)
    assert_rel(
        feature_expectations(mdp, reward, model="trajectory"), [1.06013064, 1.12032267], 1e-8
    )


@pytest.mark.parametrize("form", ["dense", "sparse"])
def test_reference_values_stochastic(form):
    case = reference_case(stochastic=True)
    phi = reference_features()
    mdp = case.mdp(form, features=phi)
    reward = phi @ REF_THETA
    _within_printed(
        values_bundle(mdp, reward, "causal", 1.0)["v0"], ["2.19638394", "2.25003280", "2.97562922"]
    )
    traj = values_bundle(mdp, reward, "trajectory", 1.0)
    _within_printed(traj["v0"], ["2.27741846", "2.33483891", "3.05837783"])
    _within_printed(
        log_partition(mdp, reward, model="trajectory"), ["2.27741846", "2.33483891", "3.05837783"]
    )
    _within_printed(traj["log_z_global"], ["2.5041105313"])
    _within_printed(log_partition(mdp, reward, model="trajectory_global"), ["2.5041105313"])
    _within_printed(feature_expectations(mdp, reward, model="causal"), ["0.99281910", "1.14182858"])
    enum = enumerate_all(case.transitions, case.terminal, case.horizon)
    assert_rel(traj["v0"], brute_log_z_per_start(enum, reward, 3), 1e-12)
    assert_rel(traj["log_z_global"], brute_log_z_global(enum, reward, case.initial_dist), 1e-12)


# ====================================================================== gradients (THEORY §1.5)
def _linear_features(case, shape: str, num_features: int = 3) -> np.ndarray:
    rng = np.random.default_rng(99 + REWARD_SHAPES.index(shape))
    size = {
        "s": (case.num_states,),
        "sa": (case.num_states, case.num_actions),
        "sas": (case.num_states, case.num_actions, case.num_states),
    }[shape]
    return rng.normal(size=size + (num_features,))


FD_STEP = 1e-5


@partial(jax.jit, static_argnames=("model", "discount"), compiler_options=FAST_COMPILE)
def _theta_bundle(mdp, phi, theta, model, discount):
    """log-normaliser of the linear reward phi @ theta: its Jacobian through ``initial_values``
    (custom VJP) and, for the global model, through ``log_partition``; and its values at
    theta +- FD_STEP e_i for central differences. For "trajectory" the objective is W_0 (S,).
    (Custom VJP vs reverse mode through ``soft_bellman`` is compared on reward tables, for every
    case, in test_occupancy_and_reward_gradient_match_enumeration.)"""

    def objective(th, path):
        reward = jnp.tensordot(phi, th, axes=1)
        if path == "log_partition":
            return log_partition(mdp, reward, model="trajectory_global")
        if model == "trajectory":
            return initial_values(mdp, reward, model="trajectory")
        return normaliser(mdp, reward, model, discount, "lean")

    paths = ["lean"] + (["log_partition"] if model == "trajectory_global" else [])
    jac = {p: jax.jacrev(objective)(theta, p) for p in paths}
    shifts = FD_STEP * jnp.eye(theta.shape[0], dtype=theta.dtype)
    plus = jax.vmap(lambda th: objective(th, "lean"))(theta + shifts)
    minus = jax.vmap(lambda th: objective(th, "lean"))(theta - shifts)
    fd = jnp.moveaxis((plus - minus) / (2 * FD_STEP), 0, -1)
    return jac, fd


@pytest.mark.parametrize("model,discount", MODEL_DISCOUNTS)
@pytest.mark.parametrize("shape", REWARD_SHAPES)
def test_gradient_is_feature_expectation(shape, model, discount):
    """grad_theta log Z = E_p[Phi] for linear rewards (THEORY §1.5), three ways: central finite
    differences (step 1e-5, relative 1e-7), enumeration of the model's own law (tilted transitions
    for the trajectory-level models, true ones for the causal model, start states re-weighted for
    the global one), and, for the global model, ``log_partition`` vs ``initial_values`` (1e-12).
    Cases: the (3, 2, 3) family (the shape of the §1.4 MDP)."""
    for_each_case(
        family_cases(0), partial(_check_theta_gradient, shape=shape, model=model, discount=discount)
    )


def _check_theta_gradient(name, shape, model, discount):
    case, enum = get_case(name), get_enum(name)
    phi = _linear_features(case, shape)
    theta = np.random.default_rng(5).normal(size=phi.shape[-1])
    reward = phi @ theta
    jac, fd = _theta_bundle(get_mdp(name), phi, theta, model, discount)
    jac = {k: np.asarray(v) for k, v in jac.items()}
    for path, value in jac.items():
        assert_rel(value, jac["lean"], 1e-12, atol=1e-13, err_msg=path)
    assert_rel(jac["lean"], fd, 1e-7, atol=1e-9)

    phi_full = np.broadcast_to(
        phi.reshape(phi.shape[:-1] + (1,) * (4 - phi.ndim) + phi.shape[-1:]),
        (case.num_states, case.num_actions, case.num_states, phi.shape[-1]),
    )
    path_features = np.einsum(
        "mtsan,sanf,t->mf", enum.step_counts, phi_full, discount ** np.arange(case.horizon)
    )
    if model == "trajectory":  # one conditional law per start state, rho_0 = 0 ones included
        log_cond = enum.log_dyn + enum_returns(enum, reward)
        log_cond -= brute_log_z_per_start(enum, reward, case.num_states)[enum.starts]
        per_start = np.stack([enum.starts == s for s in range(case.num_states)])
        expected = (per_start * np.exp(log_cond)) @ path_features
    else:
        expected = np.exp(model_log_probs(name, reward, model, discount)) @ path_features
    assert_rel(jac["lean"], expected, 1e-10, atol=1e-12)


@pytest.mark.parametrize("model,discount", MODEL_DISCOUNTS)
@pytest.mark.parametrize(
    "family,shape",
    # (S,) rewards take the (S, A) code path after broadcasting: one family suffices for them
    [(0, "s")] + [(f, shape) for f in range(len(FAMILY_IDS)) for shape in ("sa", "sas")],
    ids=lambda v: FAMILY_IDS[v] if isinstance(v, int) else v,
)
def test_occupancy_and_reward_gradient_match_enumeration(family, shape, model, discount):
    """``occupancy_measures`` equals the enumerated visitation of the model's trajectory law
    (D_t with terminated mass kept on its terminal state, discounted sums, state-action totals),
    and the reward-table gradient of the log-normaliser equals the enumerated expected counts,
    through ``initial_values`` (custom VJP) and through ``soft_bellman`` (reverse mode)."""
    check = partial(_check_occupancy, shape=shape, model=model, discount=discount)
    for_each_case(family_cases(family), check)


def _check_occupancy(name, shape, model, discount):
    case, enum = get_case(name), get_enum(name)
    reward = case.reward(shape)
    out = grad_bundle(get_mdp(name), reward, model, discount)
    probs = np.exp(model_log_probs(name, reward, model, discount))
    assert_rel(probs.sum(), 1.0, 1e-12)
    weights = discount ** np.arange(case.horizon)
    counts = np.einsum("m,mtsan,t->san", probs, enum.step_counts, weights)
    for path in ("grad_lean", "grad_auto"):
        assert_rel(out[path], contract_counts(counts, shape), 1e-10, atol=1e-13, err_msg=path)
    assert_rel(out["state_action"], counts.sum(-1), 1e-10, atol=1e-13, err_msg="state_action")
    d_t = state_occupancy(enum, probs, case.num_states)
    assert_rel(out["state"], d_t, 1e-10, atol=1e-13, err_msg="state")
    assert_rel(
        out["discounted_state"], (discount ** np.arange(case.horizon + 1)) @ d_t, 1e-10, atol=1e-13
    )


@pytest.mark.parametrize("model", ["causal", "trajectory", "trajectory_global"])
def test_feature_expectations_with_mdp_features(model):
    """``feature_expectations`` with (S, F) and (S, A, F) ``mdp.features`` equals the enumerated
    E[Phi] on the §1.4 stochastic MDP (trajectory: the rho_0-mixture of the conditional laws)."""
    case = reference_case(stochastic=True)
    enum = enumerate_all(case.transitions, case.terminal, case.horizon)
    rng = np.random.default_rng(3)
    reward = rng.normal(size=(3, 2))
    for phi in (rng.normal(size=(3, 4)), rng.normal(size=(3, 2, 4))):
        mdp = case.mdp("dense", features=phi)
        phi_sa = np.broadcast_to(phi[:, None, :] if phi.ndim == 2 else phi, (3, 2, 4))
        path_features = np.einsum("msan,saf->mf", enum.counts, phi_sa)
        if model == "causal":
            log_policy = values_bundle(mdp, reward, "causal", 1.0)["log_policy"]
            log_p = policy_log_probs(enum, log_policy, case.initial_dist)
        else:
            log_p = trajectory_log_probs(enum, reward, case.initial_dist, model)
        assert_rel(
            feature_expectations(mdp, reward, model=model), np.exp(log_p) @ path_features, 1e-10
        )
    with pytest.raises(ValueError, match="features"):
        feature_expectations(case.mdp("dense"), reward)


# ====================================================================== causal vs trajectory-level
@pytest.mark.parametrize("shape", REWARD_SHAPES)
@FAMILIES
def test_deterministic_dynamics_causal_equals_trajectory(family, shape):
    """Under deterministic dynamics (gamma = 1) the causal and s_0-conditional models coincide:
    values, Q, policies and occupancies (THEORY §1.3)."""
    names = [n for n in family_cases(family) if n in DET_CASES]
    for_each_case(names, partial(_check_deterministic, shape=shape))


def _check_deterministic(name, shape):
    mdp = get_mdp(name)
    reward = get_case(name).reward(shape)
    causal = values_bundle(mdp, reward, "causal", 1.0)
    traj = values_bundle(mdp, reward, "trajectory", 1.0)
    for key in ("values", "q_values", "log_policy", "v0"):
        assert_rel(traj[key], causal[key], 1e-12, atol=1e-13, err_msg=key)
    assert_rel(traj["log_z"], causal["v0"], 1e-12, atol=1e-13)
    occ_c, occ_t = (
        grad_bundle(mdp, reward, "causal", 1.0),
        grad_bundle(mdp, reward, "trajectory", 1.0),
    )
    for key, value in occ_c.items():
        assert_rel(occ_t[key], value, 1e-12, atol=1e-13, err_msg=key)


@pytest.mark.parametrize("shape", REWARD_SHAPES)
@FAMILIES
def test_stochastic_dynamics_trajectory_value_dominates(family, shape):
    """W_t >= V_t everywhere under stochastic dynamics (Jensen, THEORY §1.3), strictly somewhere."""
    names = [n for n in family_cases(family) if n in STOCH_CASES]
    for_each_case(names, partial(_check_jensen, shape=shape))


def _check_jensen(name, shape):
    mdp = get_mdp(name)
    reward = get_case(name).reward(shape)
    v = np.asarray(values_bundle(mdp, reward, "causal", 1.0)["values"])
    w = np.asarray(values_bundle(mdp, reward, "trajectory", 1.0)["values"])
    assert np.all(w - v >= -1e-12 * np.maximum(1, np.abs(v)))
    assert np.max(w[0] - v[0]) > 1e-6


# ====================================================================== dense vs sparse
@pytest.mark.parametrize("model,discount", MODEL_DISCOUNTS)
@pytest.mark.parametrize("shape", REWARD_SHAPES)
def test_dense_and_sparse_agree(shape, model, discount):
    """Values, Q, policies, occupancies and both reward gradients agree across the dense form,
    ``to_sparse()`` and ``from_sparse`` with padded, shuffled successor lists (relative 1e-12)."""
    for_each_case(
        SPARSE_CASES, partial(_check_dense_sparse, shape=shape, model=model, discount=discount)
    )


def _check_dense_sparse(name, shape, model, discount):
    reward = get_case(name).reward(shape)

    def everything(form):
        mdp = get_mdp(name, form)
        out = dict(values_bundle(mdp, reward, column(model), discount))
        out.update(grad_bundle(mdp, reward, model, discount))
        return out

    dense = everything("dense")
    for form in ("sparse", "sparse_raw"):
        out = everything(form)
        assert out.keys() == dense.keys()
        for key, value in dense.items():
            assert_rel(out[key], value, 1e-12, atol=1e-13, err_msg=f"{form}: {key}")


def test_sparse_round_trip():
    for_each_case(SPARSE_CASES, _check_round_trip)


def _check_round_trip(name):
    case = get_case(name)
    for form in ("sparse", "sparse_raw"):
        mdp = get_mdp(name, form)
        assert mdp.is_sparse
        assert_rel(mdp.to_dense().transitions, case.transitions, 0, atol=1e-15)
        assert_rel(mdp.initial_dist, case.initial_dist, 0, atol=0)
        np.testing.assert_array_equal(np.asarray(mdp.terminal), case.terminal)
        dense = get_mdp(name).to_dense()
        assert dense is get_mdp(name)  # already dense


# ====================================================================== imitation conventions
def _imitation_mce_partition_fh(transitions, reward, horizon, discount):
    """NumPy port of imitation's ``mce_partition_fh``: V (H, S), Q (H, S, A), pi (H, S, A) for a
    state-only reward broadcast over actions; gamma multiplies the continuation value."""
    num_states, num_actions, _ = transitions.shape
    values = np.full((horizon, num_states), -np.inf)
    q_values = np.zeros((horizon, num_states, num_actions))
    broad = reward[:, None]
    q_values[horizon - 1] = broad
    values[horizon - 1] = logsumexp_np(q_values[horizon - 1], axis=1)
    for t in reversed(range(horizon - 1)):
        next_values_s_a = transitions @ values[t + 1]
        q_values[t] = broad + discount * next_values_s_a
        values[t] = logsumexp_np(q_values[t], axis=1)
    policy = np.exp(q_values - values[:, :, None])
    return values, q_values, policy


def _imitation_mce_occupancy_measures(transitions, initial_dist, policy, horizon, discount):
    """NumPy port of imitation's ``mce_occupancy_measures``: D (H + 1, S) and Dcum (S,)."""
    num_actions = transitions.shape[1]
    occupancy = np.zeros((horizon + 1, transitions.shape[0]))
    occupancy[0] = initial_dist
    for t in range(horizon):
        for a in range(num_actions):
            occupancy[t + 1] += (occupancy[t] * policy[t, :, a]) @ transitions[:, a, :]
    return occupancy, (discount ** np.arange(horizon + 1)) @ occupancy


@pytest.mark.parametrize("discount", [1.0, 0.9])
@FAMILIES
def test_causal_matches_imitation_conventions(family, discount):
    """``soft_bellman`` / ``occupancy_measures`` (causal, no terminal states) reproduce imitation's
    ``mce_partition_fh`` (V = values[:-1], Q, pi) and ``mce_occupancy_measures`` (D, Dcum)."""
    names = [n for n in family_cases(family) if n in NO_TERMINAL_CASES]
    for_each_case(names, partial(_check_imitation, discount=discount))


def _check_imitation(name, discount):
    case = get_case(name)
    reward = case.reward("s")
    v, q, pi = _imitation_mce_partition_fh(case.transitions, reward, case.horizon, discount)
    d, dcum = _imitation_mce_occupancy_measures(
        case.transitions, case.initial_dist, pi, case.horizon, discount
    )
    forms = ["dense", "sparse"] if name in SPARSE_CASES else ["dense"]
    for form in forms:
        mdp = get_mdp(name, form)
        sol = values_bundle(mdp, reward, "causal", discount)
        occ = grad_bundle(mdp, reward, "causal", discount)
        assert sol["values"].shape == (case.horizon + 1, case.num_states)
        assert_rel(sol["values"][:-1], v, 1e-12, err_msg=form)
        assert_rel(sol["values"][-1], 0.0, atol=0)
        assert_rel(sol["q_values"], q, 1e-12, err_msg=form)
        assert_rel(np.exp(sol["log_policy"]), pi, 1e-12, atol=1e-15, err_msg=form)
        assert occ["state"].shape == d.shape
        assert_rel(occ["state"], d, 1e-12, atol=1e-15, err_msg=form)
        assert_rel(occ["discounted_state"], dcum, 1e-12, err_msg=form)


# ====================================================================== float32 conformance
@pytest.mark.parametrize("form", ["dense", "sparse"])
def test_float32_inputs_give_float32_outputs(form):
    """DESIGN §4: no hard-coded dtype. A float32 MDP and reward give float32, finite outputs close
    to the float64 answer (x64 stays on: only the inputs are float32)."""
    name = next(n for n in family_cases(0) if "stoch-term" in n)
    case = get_case(name)
    features = np.ones((case.num_states, 2), np.float32)
    mdp32 = case.mdp(form, dtype=np.float32, features=features)
    assert mdp32.dtype == jnp.float32 and mdp32.initial_dist.dtype == jnp.float32
    reward64 = case.reward("sas")
    reward32 = reward64.astype(np.float32)
    sol = values_bundle(mdp32, reward32, "trajectory", 1.0)
    ref = values_bundle(get_mdp(name, form), reward64, "trajectory", 1.0)
    outputs = {f"trajectory/{k}": v for k, v in sol.items()}
    for key, value in ref.items():
        assert_rel(sol[key], value, 1e-5, atol=1e-5, err_msg=key)
    if form == "dense":
        causal = values_bundle(mdp32, reward32, "causal", 0.9)
        outputs.update({f"causal/{k}": v for k, v in causal.items()})
        grads = grad_bundle(mdp32, reward32, "trajectory_global", 1.0)
        outputs.update({f"global/{k}": v for k, v in grads.items()})
        outputs["features"] = feature_expectations(mdp32, reward32, model="causal")
    for key, value in outputs.items():
        assert value.dtype == jnp.float32, (key, value.dtype)
        assert np.all(np.isfinite(np.asarray(value))), key
    draws = sample_trajectories(
        jax.random.key(0), mdp32, reward32, model="trajectory", num_samples=8
    )
    assert draws.dtype == jnp.int32 and draws.shape == (8, case.horizon + 1, 2)


# ====================================================================== bad inputs
def _valid():
    case = get_case(family_cases(0)[2])
    return case.transitions, np.full(3, 1 / 3), 4


def _negative(transitions):
    out = np.zeros_like(transitions)
    out[..., 0], out[..., 1] = 1.5, -0.5
    return out


def _sparse(transitions):
    succ = np.broadcast_to(np.arange(transitions.shape[0]), transitions.shape).copy()
    return succ, transitions.copy()


@pytest.mark.parametrize(
    "build,argument",
    [
        (lambda P, rho, T: TabularMDP.from_dense(P, rho, 0), "horizon"),
        (lambda P, rho, T: TabularMDP.from_dense(P, rho, -2), "horizon"),
        (lambda P, rho, T: TabularMDP.from_dense(P, rho, 2.5), "horizon"),
        (lambda P, rho, T: TabularMDP.from_sparse(*_sparse(P), rho, 0), "horizon"),
        (lambda P, rho, T: TabularMDP.from_dense(P * 1.1, rho, T), "transitions"),
        (lambda P, rho, T: TabularMDP.from_dense(_negative(P), rho, T), "transitions"),
        (
            lambda P, rho, T: TabularMDP.from_dense(np.where(P > 0, np.nan, 0.0), rho, T),
            "transitions",
        ),
        (lambda P, rho, T: TabularMDP.from_dense(P[:, :, :2], rho, T), "transitions"),
        (lambda P, rho, T: TabularMDP.from_dense(P[0], rho, T), "transitions"),
        (lambda P, rho, T: TabularMDP.from_dense(P, rho[:2] / rho[:2].sum(), T), "initial_dist"),
        (lambda P, rho, T: TabularMDP.from_dense(P, rho * 2, T), "initial_dist"),
        (lambda P, rho, T: TabularMDP.from_dense(P, np.array([1.5, -0.5, 0.0]), T), "initial_dist"),
        (lambda P, rho, T: TabularMDP.from_dense(P, rho, T, features=np.ones((2, 3))), "features"),
        (
            lambda P, rho, T: TabularMDP.from_dense(P, rho, T, features=np.ones((3, 5, 3))),
            "features",
        ),
        (
            lambda P, rho, T: TabularMDP.from_dense(P, rho, T, features=np.full((3, 2), np.inf)),
            "features",
        ),
        (
            lambda P, rho, T: TabularMDP.from_dense(
                P, rho, T, terminal=np.array([False, False, True])
            ),
            "terminal",
        ),
        (
            lambda P, rho, T: TabularMDP.from_dense(P, rho, T, terminal=np.array([True, False])),
            "terminal",
        ),
        (
            lambda P, rho, T: TabularMDP.from_sparse(
                *_sparse(P), rho, T, terminal=np.array([False, True, False])
            ),
            "terminal",
        ),
        (
            lambda P, rho, T: TabularMDP.from_sparse(_sparse(P)[0], _sparse(P)[1] * 1.1, rho, T),
            "successor_probs",
        ),
        (
            lambda P, rho, T: TabularMDP.from_sparse(_sparse(P)[0], _negative(P), rho, T),
            "successor_probs",
        ),
        (
            lambda P, rho, T: TabularMDP.from_sparse(_sparse(P)[0] + 3, _sparse(P)[1], rho, T),
            "successors",
        ),
        (
            lambda P, rho, T: TabularMDP.from_sparse(_sparse(P)[0][..., :1], _sparse(P)[1], rho, T),
            "successors",
        ),
        (lambda P, rho, T: TabularMDP.from_sparse(*_sparse(P), rho * 2, T), "initial_dist"),
    ],
)
def test_bad_mdp_inputs_raise_value_error(build, argument):
    transitions, rho, horizon = _valid()
    with pytest.raises(ValueError, match=f"`{argument}`"):
        build(transitions, rho, horizon)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, r: soft_bellman(m, r, model="trajectory", discount=0.9),
        lambda m, r: soft_bellman(m, r, model="trajectory_global", discount=0.5),
        lambda m, r: initial_values(m, r, model="trajectory", discount=0.99),
        lambda m, r: occupancy_measures(m, r, model="trajectory", discount=0.9),
        lambda m, r: feature_expectations(m, r, model="trajectory_global", discount=0.9),
        lambda m, r: sample_trajectories(jax.random.key(0), m, r, model="trajectory", discount=0.9),
        lambda m, r: soft_bellman(m, r, model="causal", discount=0.0),
        lambda m, r: soft_bellman(m, r, model="causal", discount=1.5),
    ],
)
def test_bad_discount_raises(call):
    case = get_case(family_cases(0)[2])
    mdp = case.mdp("dense", features=np.ones((3, 1)))
    with pytest.raises(ValueError, match="`discount`"):
        call(mdp, np.zeros(3))


@pytest.mark.parametrize(
    "call",
    [
        lambda m, r: soft_bellman(m, r, model="maxent"),
        lambda m, r: initial_values(m, r, model="Causal"),
        lambda m, r: occupancy_measures(m, r, model="global"),
        lambda m, r: log_partition(m, r, model="causal"),
        lambda m, r: sample_trajectories(jax.random.key(0), m, r, model="birl"),
    ],
)
def test_unknown_model_raises(call):
    mdp = get_mdp(family_cases(0)[2])
    with pytest.raises(ValueError, match="`model`"):
        call(mdp, np.zeros(3))


@pytest.mark.parametrize("form", ["dense", "sparse"])
@pytest.mark.parametrize(
    "reward",
    [
        np.zeros(4),
        np.zeros((3, 3)),
        np.zeros((2, 2)),
        np.zeros((3, 2, 2)),
        np.zeros((3, 2, 3, 1)),
        np.zeros(()),
    ],
    ids=["S+1", "SxS", "2x2", "SxAx2", "4d", "scalar"],
)
def test_reward_of_wrong_shape_raises(form, reward):
    mdp = get_mdp(family_cases(0)[2], form)
    for fn in (
        lambda: soft_bellman(mdp, reward, model="causal"),
        lambda: initial_values(mdp, reward, model="trajectory"),
        lambda: log_partition(mdp, reward),
        lambda: occupancy_measures(mdp, reward),
    ):
        with pytest.raises(ValueError, match="`reward`"):
            fn()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape", REWARD_SHAPES)
def test_non_finite_reward_raises(shape, bad):
    name = family_cases(0)[2]
    mdp = get_mdp(name)
    reward = get_case(name).reward(shape).copy()
    reward.flat[1] = bad
    for model in MODELS:
        for fn in (soft_bellman, initial_values, occupancy_measures):
            with pytest.raises(ValueError, match="`reward`"):
                fn(mdp, reward, model=model)
    with pytest.raises(ValueError, match="`reward`"):
        log_partition(mdp, reward)


def test_with_horizon_rejects_horizon_below_one():
    mdp = get_mdp(family_cases(0)[2])
    with pytest.raises(ValueError, match="`horizon`"):
        mdp.with_horizon(0)
    assert mdp.with_horizon(2).horizon == 2
