"""Shared oracles for the exact tier (THEORY §1, §8.2; DESIGN §5).

The oracles are NumPy and written independently of ``ebm_ppl.exact``: a brute-force enumerator
that lists every feasible trajectory by filtering the full product of state and action sequences
(not by prefix expansion, as the library does), per-trajectory transition counts, and a pooled
chi-square. The random MDPs are a fixed list of seeded cases in three (S, A, T) shape families, so
that tests are reproducible and the jitted bundles of library calls (end of this file) compile once
per family. Test modules import from here as ``tests.exact.conftest``.

Conventions are the library's (``ebm_ppl.spaces.tabular``): ``T`` decisions, states
``s_0..s_T``, observed arrays ``(T + 1, 2)`` with ``-1`` after termination; terminal states are
absorbing and masked (no reward, no entropy term, no dynamics factor once reached).
"""

from __future__ import annotations

import dataclasses
import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import chi2

from ebm_ppl.exact.tabular import initial_values, log_partition, occupancy_measures, soft_bellman
from ebm_ppl.spaces.tabular import TabularMDP

ALPHA = 1e-3
MIN_EXPECTED = 5.0
REWARD_SHAPES = ("s", "sa", "sas")


# ---------------------------------------------------------------------- random MDP cases
@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    transitions: np.ndarray  # (S, A, S)
    initial_dist: np.ndarray  # (S,)
    terminal: np.ndarray  # (S,) bool
    horizon: int
    stochastic: bool

    @property
    def num_states(self) -> int:
        return self.transitions.shape[0]

    @property
    def num_actions(self) -> int:
        return self.transitions.shape[1]

    @property
    def has_terminal(self) -> bool:
        return bool(self.terminal.any())

    def mdp(self, form: str = "dense", *, features=None, dtype=np.float64) -> TabularMDP:
        return build_mdp(
            self.transitions.astype(dtype),
            self.initial_dist.astype(dtype),
            self.horizon,
            form,
            terminal=self.terminal if self.has_terminal else None,
            features=features,
        )

    def reward(self, shape: str, seed: int = 0, scale: float = 1.0) -> np.ndarray:
        return random_reward(self, shape, seed, scale)


def build_mdp(transitions, initial_dist, horizon, form="dense", *, terminal=None, features=None):
    """A :class:`TabularMDP` in ``form`` ("dense", "sparse": ``to_sparse()``, "sparse_raw":
    ``from_sparse`` with padded successor lists of width S, padding included)."""
    transitions = np.asarray(transitions)
    if form == "dense":
        return TabularMDP.from_dense(
            transitions, initial_dist, horizon, features=features, terminal=terminal
        )
    if form == "sparse":
        return TabularMDP.from_dense(
            transitions, initial_dist, horizon, features=features, terminal=terminal
        ).to_sparse()
    if form == "sparse_raw":
        # Every s' listed (zero-probability entries act as padding), in a shuffled order.
        num_states, num_actions, _ = transitions.shape
        rng = np.random.default_rng(1234)
        succ = np.stack(
            [
                np.stack([rng.permutation(num_states) for _ in range(num_actions)])
                for _ in range(num_states)
            ]
        )
        probs = np.take_along_axis(transitions, succ, axis=-1)
        return TabularMDP.from_sparse(
            succ, probs, initial_dist, horizon, features=features, terminal=terminal
        )
    raise ValueError(form)


def _make_case(name, seed, num_states, num_actions, horizon, stochastic, with_terminal):
    """A seeded random MDP whose sparse form has the family's fixed shapes.

    Every non-terminal state can reach the "hub" (the terminal state if any, else state 0) and, when
    stochastic, every state (union over actions); deterministic states reach min(A, S) distinct
    states. So ``to_sparse()`` gives ``U = S`` (stochastic) or ``U = min(A, S)`` (deterministic)
    merged successors and ``M = S`` predecessors for every case of a family, and jitted functions
    compile once per family and form instead of once per case.
    """
    rng = np.random.default_rng(seed)
    transitions = np.zeros((num_states, num_actions, num_states))
    hub = num_states - 1 if with_terminal else 0
    width = min(num_actions, num_states)
    for s in range(num_states):
        if stochastic:
            for a in range(num_actions):
                k = rng.integers(1, num_states + 1)
                support = rng.choice(num_states, size=k, replace=False)
                transitions[s, a, support] = rng.dirichlet(np.ones(k))
            for t in np.flatnonzero(transitions[s].sum(0) == 0):  # cover every state
                a = rng.integers(num_actions)
                transitions[s, a, t] = rng.uniform(0.05, 0.5)
                transitions[s, a] /= transitions[s, a].sum()
            if np.all((transitions[s] > 0).sum(-1) == 1):  # at least one truly random action
                a = rng.integers(num_actions)
                t = (np.argmax(transitions[s, a]) + 1) % num_states
                transitions[s, a, t] = 0.5
                transitions[s, a] /= transitions[s, a].sum()
        else:
            others = rng.permutation(np.setdiff1d(np.arange(num_states), [hub]))
            targets = np.concatenate([[hub], others])[:width]
            targets = np.concatenate([targets, rng.choice(targets, num_actions - width)])
            transitions[s, np.arange(num_actions), rng.permutation(targets)] = 1.0
    terminal = np.zeros(num_states, dtype=bool)
    if with_terminal:
        terminal[hub] = True
        transitions[hub] = 0.0
        transitions[hub, :, hub] = 1.0
    rho = rng.dirichlet(np.ones(num_states))
    if seed % 3 == 1 and num_states >= 3:
        rho[1] = 0.0  # a start state with rho_0 = 0
    if with_terminal and seed % 2 == 0:
        rho[hub] = 0.0
    rho = rho / rho.sum()
    return Case(name, transitions, rho, terminal, horizon, stochastic)


# (S, A, T) families; (3, 2, 3) is the shape of the THEORY §1.4 reference MDP.
FAMILIES = [(3, 2, 3), (4, 3, 4), (2, 3, 5)]
VARIANTS = [
    ("det", False),
    ("det", True),
    ("stoch", False),
    ("stoch", True),
    ("stoch", False),
    ("stoch", True),
    ("stoch", False),
    ("stoch", True),
]


def _case_specs():
    specs = []
    seed = 0
    for s, a, t in FAMILIES:
        for i, (kind, term) in enumerate(VARIANTS):
            name = f"S{s}A{a}T{t}-{kind}{'-term' if term else ''}-{i}"
            specs.append((name, seed, s, a, t, kind == "stoch", term))
            seed += 1
    return specs


CASE_SPECS = _case_specs()
CASE_NAMES = [spec[0] for spec in CASE_SPECS]
_SPEC_BY_NAME = {spec[0]: spec for spec in CASE_SPECS}


def family_cases(index: int) -> list[str]:
    """Case names of shape family ``FAMILIES[index]``."""
    return [spec[0] for spec in CASE_SPECS if spec[2:5] == FAMILIES[index]]


@functools.cache
def get_case(name: str) -> Case:
    return _make_case(*_SPEC_BY_NAME[name])


@functools.cache
def get_mdp(name: str, form: str = "dense") -> TabularMDP:
    return get_case(name).mdp(form)


def random_reward(case: Case, shape: str, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(10_000 + 17 * seed + REWARD_SHAPES.index(shape))
    size = {
        "s": (case.num_states,),
        "sa": (case.num_states, case.num_actions),
        "sas": (case.num_states, case.num_actions, case.num_states),
    }[shape]
    return scale * rng.normal(size=size)


# ---------------------------------------------------------------------- the §1.4 reference MDP
REF_THETA = np.array([1.0, -0.5])
REF_RHO = np.array([0.5, 0.3, 0.2])
REF_HORIZON = 3


def reference_features() -> np.ndarray:
    """phi(s, a) = (1[s = 2], 1[a = 1]), shape (3, 2, 2)."""
    phi = np.zeros((3, 2, 2))
    phi[2, :, 0] = 1.0
    phi[:, 1, 1] = 1.0
    return phi


def reference_transitions(stochastic: bool) -> np.ndarray:
    det = np.zeros((3, 2, 3))
    for s in range(3):
        for a in range(2):
            det[s, a, (s + a + 1) % 3] = 1.0
    return 0.1 + 0.7 * det if stochastic else det


def reference_case(stochastic: bool) -> Case:
    return Case(
        f"ref-{'stoch' if stochastic else 'det'}",
        reference_transitions(stochastic),
        REF_RHO.copy(),
        np.zeros(3, dtype=bool),
        REF_HORIZON,
        stochastic,
    )


# ---------------------------------------------------------------------- brute-force enumeration
@dataclasses.dataclass(frozen=True)
class Enum:
    """Every feasible trajectory from every start state (``rho_0`` not applied).

    Attributes:
        observed: ``(M, T + 1, 2)`` observed arrays.
        log_dyn: ``(M,)`` :math:`\\sum_{t<L}\\log P(s_{t+1}|s_t,a_t)` (no ``rho_0``).
        counts: ``(M, S, A, S)`` number of taken transitions ``(s, a, s')`` (live steps only).
        step_counts: ``(M, T, S, A, S)`` the same, per time step.
        starts: ``(M,)`` start states.
    """

    observed: np.ndarray
    log_dyn: np.ndarray
    counts: np.ndarray
    step_counts: np.ndarray
    starts: np.ndarray

    def log_base(self, initial_dist) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(initial_dist, dtype=np.float64))[self.starts] + self.log_dyn


def enumerate_all(transitions, terminal, horizon) -> Enum:
    """Enumerate by filtering the full product ``S^(T+1) A^T`` of sequences.

    Each raw sequence is canonicalised (after the first terminal state at step ``k``: ``a_k`` and
    later actions become -1, ``s_{k+1}`` and later states -1), sequences of probability 0 dropped,
    duplicates removed.
    """
    transitions = np.asarray(transitions, dtype=np.float64)
    terminal = np.asarray(terminal, dtype=bool)
    num_states, num_actions, _ = transitions.shape
    grids = np.indices((num_states,) * (horizon + 1) + (num_actions,) * horizon)
    grids = grids.reshape(2 * horizon + 1, -1).T
    states = grids[:, : horizon + 1].copy()
    actions = grids[:, horizon + 1 :].copy()
    # canonicalise termination
    is_term = terminal[states[:, :horizon]]
    stopped = np.cumsum(is_term, axis=1) > 0  # stopped[t]: s_t (or an earlier state) is terminal
    actions[stopped] = -1
    after = np.zeros_like(states, dtype=bool)
    after[:, 1:] = stopped
    states[after] = -1
    rows = np.unique(np.concatenate([states, actions], axis=1), axis=0)
    states, actions = rows[:, : horizon + 1], rows[:, horizon + 1 :]
    live = actions >= 0
    s, a, s_next = (
        np.maximum(states[:, :-1], 0),
        np.maximum(actions, 0),
        np.maximum(states[:, 1:], 0),
    )
    probs = np.where(live, transitions[s, a, s_next], 1.0)
    keep = np.all(probs > 0, axis=1)
    states, actions, live, probs = states[keep], actions[keep], live[keep], probs[keep]
    s, a, s_next = s[keep], a[keep], s_next[keep]
    log_dyn = np.sum(np.log(probs), axis=1)
    num = states.shape[0]
    step_counts = np.zeros((num, horizon, num_states, num_actions, num_states))
    idx_m, idx_t = np.nonzero(live)
    step_counts[idx_m, idx_t, s[idx_m, idx_t], a[idx_m, idx_t], s_next[idx_m, idx_t]] = 1.0
    observed = np.stack([states, np.concatenate([actions, np.full((num, 1), -1)], axis=1)], axis=-1)
    return Enum(observed, log_dyn, step_counts.sum(1), step_counts, states[:, 0])


@functools.cache
def get_enum(name: str) -> Enum:
    case = get_case(name)
    return enumerate_all(case.transitions, case.terminal, case.horizon)


def expand_reward(reward, num_states, num_actions) -> np.ndarray:
    """Any reward shape as an ``(S, A, S)`` table."""
    reward = np.asarray(reward, dtype=np.float64)
    shape = (num_states, num_actions, num_states)
    if reward.ndim == 1:
        return np.broadcast_to(reward[:, None, None], shape)
    if reward.ndim == 2:
        return np.broadcast_to(reward[:, :, None], shape)
    return reward


def enum_returns(enum: Enum, reward, discount: float = 1.0) -> np.ndarray:
    """:math:`R(\\tau)=\\sum_t\\gamma^t r_t` for every enumerated trajectory."""
    _, horizon, num_states, num_actions, _ = enum.step_counts.shape
    table = expand_reward(reward, num_states, num_actions)
    weights = discount ** np.arange(horizon)
    return np.einsum("mtsan,san,t->m", enum.step_counts, table, weights)


def contract_counts(tensor: np.ndarray, shape: str) -> np.ndarray:
    """Sum ``(..., S, A, S)`` counts down to the gradient layout of a reward of ``shape``."""
    if shape == "s":
        return tensor.sum((-1, -2))
    if shape == "sa":
        return tensor.sum(-1)
    return tensor


def logsumexp_np(x, axis=None):
    x = np.asarray(x, dtype=np.float64)
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def brute_log_z_per_start(enum: Enum, reward, num_states) -> np.ndarray:
    """:math:`\\log Z(s_0)=\\log\\sum_{\\tau:s_0}b(\\tau|s_0)e^{R(\\tau)}` for every state."""
    weights = enum.log_dyn + enum_returns(enum, reward)
    return np.array([logsumexp_np(weights[enum.starts == s]) for s in range(num_states)])


def brute_log_z_global(enum: Enum, reward, initial_dist) -> float:
    return float(logsumexp_np(enum.log_base(initial_dist) + enum_returns(enum, reward)))


def trajectory_log_probs(enum: Enum, reward, initial_dist, model: str) -> np.ndarray:
    """Joint log-probabilities (including rho_0) of the trajectory-level models."""
    initial_dist = np.asarray(initial_dist, dtype=np.float64)
    weights = enum.log_base(initial_dist) + enum_returns(enum, reward)
    if model == "trajectory":
        log_z = brute_log_z_per_start(enum, reward, initial_dist.shape[0])
        return weights - log_z[enum.starts]
    if model == "trajectory_global":
        return weights - brute_log_z_global(enum, reward, initial_dist)
    raise ValueError(model)


def policy_log_terms(enum: Enum, log_policy) -> np.ndarray:
    """``(M,)`` :math:`\\sum_{t<L}\\log\\pi_t(a_t|s_t)` for a ``(T, S, A)`` log-policy."""
    log_policy = np.asarray(log_policy, dtype=np.float64)
    states, actions = enum.observed[:, :-1, 0], enum.observed[:, :-1, 1]
    live = actions >= 0
    steps = np.broadcast_to(np.arange(states.shape[1]), states.shape)
    terms = log_policy[steps, np.maximum(states, 0), np.maximum(actions, 0)]
    return np.sum(np.where(live, terms, 0.0), axis=1)


def policy_log_probs(enum: Enum, log_policy, initial_dist) -> np.ndarray:
    """Joint log-probabilities ``log b + sum log pi`` of a policy in the true dynamics."""
    return enum.log_base(initial_dist) + policy_log_terms(enum, log_policy)


def state_occupancy(enum: Enum, probs, num_states) -> np.ndarray:
    """``(T + 1, S)`` :math:`D_t(s)`; terminated paths keep their mass on the terminal state."""
    states = enum.observed[:, :, 0].copy()
    for t in range(1, states.shape[1]):
        states[:, t] = np.where(states[:, t] < 0, states[:, t - 1], states[:, t])
    out = np.zeros((states.shape[1], num_states))
    for t in range(states.shape[1]):
        np.add.at(out[t], states[:, t], probs)
    return out


# ---------------------------------------------------------------------- jitted library entry points
# Few, bundled entry points: XLA compile time (0.2-1 s per function and shape) dominates this
# tier, so each bundle compiles once per (shape family, form, static arguments, reward shape) and
# is reused by every test and case that needs it. Pass every argument positionally, discount
# included: jit keys its cache on how static arguments are passed, so an omitted default would
# compile a second copy.
#
# FAST_COMPILE lowers only the LLVM backend optimisation level of these test-side jits (the HLO, and
# so the arithmetic, is the library's): it cuts their compile time by about a third, and the tiny
# MDPs here run in microseconds either way. It is a per-function option, not a global flag.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@partial(jax.jit, static_argnames=("column", "discount"), compiler_options=FAST_COMPILE)
def values_bundle(mdp, reward, column, discount):
    """``soft_bellman`` and ``initial_values`` of one column; for ``"trajectory"`` also
    ``log_partition`` per start state (all states) and global."""
    solution = soft_bellman(mdp, reward, model=column, discount=discount)
    out = dict(
        values=solution.values,
        q_values=solution.q_values,
        log_policy=solution.log_policy,
        v0=initial_values(mdp, reward, model=column, discount=discount),
    )
    if column == "trajectory":
        out["log_z"] = log_partition(mdp, reward, model="trajectory", s0=jnp.arange(mdp.num_states))
        out["log_z_global"] = log_partition(mdp, reward, model="trajectory_global")
    return out


def normaliser(mdp, reward, model, discount, path):
    """E_rho0[V_0] (causal), E_rho0[W_0] (trajectory: the rho_0-mixture of the s_0-conditional
    models) or log Z (global), through ``initial_values`` ("lean", custom VJP) or ``soft_bellman``
    ("autodiff", reverse mode through the scan)."""
    column = "causal" if model == "causal" else "trajectory"
    if path == "lean":
        v0 = initial_values(mdp, reward, model=column, discount=discount)
    else:
        v0 = soft_bellman(mdp, reward, model=column, discount=discount).values[0]
    if model == "trajectory_global":
        return jax.scipy.special.logsumexp(jnp.log(mdp.initial_dist) + v0)
    return mdp.initial_dist @ v0


@partial(jax.jit, static_argnames=("model", "discount"), compiler_options=FAST_COMPILE)
def grad_bundle(mdp, reward, model, discount):
    """``occupancy_measures`` and the reward gradient of the log-normaliser by both paths."""
    occupancy = occupancy_measures(mdp, reward, model=model, discount=discount)
    return dict(
        state=occupancy.state,
        state_action=occupancy.state_action,
        discounted_state=occupancy.discounted_state,
        grad_lean=jax.grad(normaliser, argnums=1)(mdp, reward, model, discount, "lean"),
        grad_auto=jax.grad(normaliser, argnums=1)(mdp, reward, model, discount, "autodiff"),
    )


# ---------------------------------------------------------------------- frequency tests
def pooled_chi_square(counts, probs, min_expected: float = MIN_EXPECTED):
    """Chi-square statistic, dof and p-value of one multinomial sample.

    All cells with expected count < ``min_expected`` are pooled into one cell; while that pool is
    still short it absorbs the smallest remaining cell. A draw in a cell of probability 0 fails the
    test outright (returned p-value 0).
    """
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    total = counts.sum()
    if np.any((probs <= 0) & (counts > 0)):
        return np.inf, 0, 0.0
    keep = probs > 0
    counts, expected = counts[keep], total * probs[keep] / probs[keep].sum()
    order = np.argsort(expected)
    counts, expected = counts[order], expected[order]
    cut = int(np.sum(expected < min_expected))
    while 0 < cut < expected.size and expected[:cut].sum() < min_expected:
        cut += 1
    if cut > 1:
        counts = np.concatenate([[counts[:cut].sum()], counts[cut:]])
        expected = np.concatenate([[expected[:cut].sum()], expected[cut:]])
    stat = float(np.sum((counts - expected) ** 2 / expected))
    dof = expected.size - 1
    return stat, dof, float(chi2.sf(stat, dof)) if dof > 0 else 1.0


def encode_rows(rows, base: int) -> np.ndarray:
    """Encode int rows ``(N, ...)`` with entries in ``[-1, base - 1)`` as one int64 each."""
    flat = np.asarray(rows, dtype=np.int64).reshape(len(rows), -1) + 1
    weights = base ** np.arange(flat.shape[1], dtype=np.int64)[::-1]
    return flat @ weights


def frequency_test(draws, enum_observed, probs, base: int, *, drop_last_state: bool = False):
    """Pooled chi-square of sampled trajectories against enumerated probabilities.

    Args:
        draws: ``(N, T + 1, 2)`` sampled observed arrays.
        enum_observed: ``(M, T + 1, 2)`` every feasible trajectory.
        probs: ``(M,)`` their probabilities (summing to 1).
        base: an int larger than every state and action index + 1.
        drop_last_state: marginalise the final state ``s_T`` (cells are the sequences
            ``s_0, a_0, ..., s_{T-1}, a_{T-1}``).

    Returns:
        ``(p_value, stat, dof, num_cells, num_unknown)``; ``num_unknown`` counts draws that are not
        feasible trajectories at all.
    """
    cut = -1 if drop_last_state else None
    enum_codes = encode_rows(np.asarray(enum_observed)[:, :cut], base)
    cells, inverse = np.unique(enum_codes, return_inverse=True)
    cell_probs = np.zeros(cells.size)
    np.add.at(cell_probs, inverse, probs)
    draw_codes = encode_rows(np.asarray(draws)[:, :cut], base)
    position = np.clip(np.searchsorted(cells, draw_codes), 0, cells.size - 1)
    known = cells[position] == draw_codes
    counts = np.bincount(position[known], minlength=cells.size)
    stat, dof, p_value = pooled_chi_square(counts, cell_probs)
    return p_value, stat, dof, cells.size, int((~known).sum())


FAMILY_IDS = [f"S{s}A{a}T{t}" for s, a, t in FAMILIES]


def for_each_case(names, check) -> None:
    """Run ``check(name)`` for every case and report every failing case at once.

    Tests loop over the cases of one shape family (instead of one pytest item per case) so that each
    jitted bundle compiles in one xdist worker rather than in both.
    """
    failures = []
    for name in names:
        try:
            check(name)
        except AssertionError as error:
            text = str(error)
            failures.append(f"[{name}] {text[:1500]}{' ...' if len(text) > 1500 else ''}")
    assert not failures, f"{len(failures)}/{len(names)} cases failed:\n" + "\n\n".join(failures)
