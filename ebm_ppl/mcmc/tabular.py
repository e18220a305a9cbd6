r"""Metropolis-within-Gibbs over action sequences for deterministic tabular MDPs (THEORY §1.1).

With deterministic dynamics :math:`s_{t+1} = f(s_t, a_t)` and a fixed start :math:`s_0`, a
trajectory is its action sequence :math:`a_{0:T-1}\in\{0..A-1\}^T` (a bijection), and the
:math:`s_0`-conditional trajectory-level model (= maximum causal entropy here, THEORY §1.3) is

.. math::

    p_\theta(\tau\mid s_0) = \frac{e^{R_\theta(\tau)}}{Z(s_0)},\qquad
    E_\theta(\tau) = c_\theta(\tau) = -R_\theta(\tau).

:func:`gibbs_kernel` updates one coordinate :math:`a_t` at a time: propose :math:`a_t'` uniformly
among the other :math:`A-1` actions, recompute the states :math:`s_{t+1:T}` from the actions,
accept with :math:`\min\{1, e^{R(\tau') - R(\tau)}\}`. The proposal is symmetric on action
sequences, so each coordinate update leaves :math:`p_\theta(\cdot\mid s_0)` invariant;
``scan="systematic"`` makes one kernel step a sweep :math:`t = 0..T-1` (the product of the
coordinate kernels), ``scan="random"`` one update at a uniformly drawn :math:`t` (their average,
reversible). The start state never changes. Positions are observed arrays ``(T + 1, 2)``
(DESIGN §3), so demonstrations are valid starting points and every function of
:mod:`ebm_ppl.mcmc.chains` (CD-k, PCD) applies with ``energy_fn = trajectory_energy(...)``.

:func:`transition_matrix` enumerates the :math:`A^T` action sequences from one start and builds
the kernel's exact transition matrix, so :func:`expected_cd_gradient` gives the **exact**
expectation of the CD-:math:`k` estimate (THEORY §1.5; its gap to the exact
:math:`\nabla\log Z(s_0)` is the CD bias). Keep :math:`A^T` to a few thousand.

Only MDPs with deterministic dynamics and no terminal states are accepted (with absorbing states
the actions after termination would be free coordinates and the map to trajectories not
one-to-one); both are checked and named in the error.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl._validation import check_choice, is_concrete
from ebm_ppl.exact.trajectory import trajectory_return
from ebm_ppl.mcmc.chains import Kernel, energy_gradients
from ebm_ppl.spaces.tabular import PAD, TabularMDP

__all__ = [
    "SCANS",
    "GibbsState",
    "GibbsInfo",
    "TransitionMatrix",
    "next_state_table",
    "rollout",
    "gibbs_kernel",
    "trajectory_energy",
    "transition_matrix",
    "expected_cd_gradient",
]

SCANS = ("systematic", "random")
"""Scan orders of :func:`gibbs_kernel`."""

MAX_SEQUENCES = 20_000
"""Largest :math:`A^T` that :func:`transition_matrix` enumerates."""


class GibbsState(NamedTuple):
    """Kernel state (BlackJAX convention).

    Attributes:
        position: ``(T + 1, 2)`` int32 observed array (row ``t`` = ``(s_t, a_t)``, row ``T`` =
            ``(s_T, -1)``).
        logdensity: ``()`` :math:`-E_\\theta(\\tau) = R_\\theta(\\tau)` (up to the kernel's
            ``logdensity_fn``).
    """

    position: jax.Array
    logdensity: jax.Array


class GibbsInfo(NamedTuple):
    """Per-step diagnostics.

    Attributes:
        acceptance_rate: ``()`` mean MH acceptance probability over the coordinate updates of
            the step.
        num_accepted: ``()`` int32, number of accepted coordinate updates.
    """

    acceptance_rate: jax.Array
    num_accepted: jax.Array


class TransitionMatrix(NamedTuple):
    """Exact kernel on the trajectories from one start.

    Attributes:
        trajectories: ``(M, T + 1, 2)`` every trajectory from ``s0`` (``M = A^T``), action
            sequences in lexicographic order.
        matrix: ``(M, M)`` row-stochastic :math:`K[i, j] = P(\\tau_i\\to\\tau_j)` of one
            kernel step.
        target: ``(M,)`` :math:`p_\\theta(\\tau\\mid s_0)` (``target @ matrix == target``).
    """

    trajectories: jax.Array
    matrix: jax.Array
    target: jax.Array


# ----------------------------------------------------------------------------- dynamics
def next_state_table(mdp: TabularMDP) -> jax.Array:
    """``(S, A)`` int32 :math:`f(s, a)` of a deterministic MDP without terminal states.

    Raises:
        TypeError: if ``mdp`` is not a :class:`~ebm_ppl.spaces.tabular.TabularMDP`.
        ValueError: if a transition is not deterministic or a state is terminal.
    """
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"`mdp` must be a TabularMDP; got {type(mdp).__name__}.")
    dense = mdp.to_dense() if mdp.is_sparse else mdp
    transitions = dense.transitions
    if is_concrete(transitions, mdp.terminal):
        probs = np.asarray(transitions)
        peak = probs.max(axis=-1)
        if not np.all(np.isclose(peak, 1.0)):
            s, a = (int(i) for i in np.argwhere(~np.isclose(peak, 1.0))[0])
            raise ValueError(
                "`mdp` must have deterministic dynamics (one successor of probability 1 per "
                f"(s, a)); got max_s' P(s'|s={s}, a={a}) = {peak[s, a]!r}."
            )
        if np.asarray(mdp.terminal).any():
            raise ValueError(
                "`mdp` must have no terminal states for the action-sequence kernel; got "
                f"terminal states {np.flatnonzero(np.asarray(mdp.terminal)).tolist()}."
            )
    return jnp.argmax(transitions, axis=-1).astype(jnp.int32)


def rollout(next_states: jax.Array, s0, actions) -> jax.Array:
    """The observed array ``(T + 1, 2)`` of actions ``(T,)`` from ``s0`` (deterministic)."""
    actions = jnp.asarray(actions, jnp.int32)

    def step(state, action):
        return next_states[state, action], state

    last, states = jax.lax.scan(step, jnp.asarray(s0, jnp.int32), actions, unroll=True)
    states = jnp.concatenate([states, last[None]])
    return jnp.stack([states, jnp.concatenate([actions, jnp.full((1,), PAD, jnp.int32)])], -1)


# ----------------------------------------------------------------------------- energy
def trajectory_energy(energy_model, mdp: TabularMDP):
    r"""``energy_fn(params, observed) = -R_\theta(\tau)`` for one observed array ``(T + 1, 2)``.

    ``energy_model.reward(params)`` gives a reward table ``(S,)``, ``(S, A)`` or ``(S, A, S)``
    (:mod:`ebm_ppl.energy.tabular`). The MDP is closed over (a compile-time constant: fine for
    the tiny problems this kernel serves).
    """
    if not callable(getattr(energy_model, "reward", None)):
        raise TypeError(
            "`energy_model` must have a `reward(params)` method (ebm_ppl.energy.tabular); got "
            f"{type(energy_model).__name__}."
        )
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"`mdp` must be a TabularMDP; got {type(mdp).__name__}.")

    def energy_fn(params, observed):
        return -trajectory_return(mdp, energy_model.reward(params), observed)

    return energy_fn


# ----------------------------------------------------------------------------- kernel
def _coordinate_update(next_states, num_actions, logdensity_fn):
    """One MH update of ``a_t``: returns ``(state, acceptance probability, accepted)``."""

    def update(rng_key, state, t):
        key_action, key_accept = jax.random.split(rng_key)
        position = state.position
        actions = position[:-1, 1]
        shift = jax.random.randint(key_action, (), 1, num_actions, jnp.int32)
        proposal_actions = actions.at[t].set((actions[t] + shift) % num_actions)
        proposal = rollout(next_states, position[0, 0], proposal_actions)
        logdensity = logdensity_fn(proposal)
        log_ratio = logdensity - state.logdensity
        p_accept = jnp.exp(jnp.minimum(log_ratio, 0.0))
        p_accept = jnp.where(jnp.isnan(p_accept), 0.0, p_accept)
        accepted = jax.random.uniform(key_accept, (), p_accept.dtype) < p_accept
        new_state = GibbsState(
            position=jnp.where(accepted, proposal, position),
            logdensity=jnp.where(accepted, logdensity, state.logdensity),
        )
        return new_state, p_accept, accepted

    return update


def gibbs_kernel(mdp: TabularMDP, *, scan: str = "systematic") -> Kernel:
    r"""Metropolis-within-Gibbs over action sequences (module docstring), as a
    :class:`~ebm_ppl.mcmc.chains.Kernel`.

    Targets :math:`\propto e^{\text{logdensity}(\tau)}` over the trajectories from the
    position's start state; with ``logdensity = -trajectory_energy(...)`` that is
    :math:`p_\theta(\tau\mid s_0)`. With one action the chain is constant (acceptance 1).

    Args:
        mdp: deterministic dynamics, no terminal states (dense or sparse).
        scan: ``"systematic"`` (a step is a sweep over the ``T`` actions) or ``"random"`` (a
            step updates one uniformly drawn action).

    Returns:
        A :class:`~ebm_ppl.mcmc.chains.Kernel` named ``"gibbs_mh"`` with state
        :class:`GibbsState` and info :class:`GibbsInfo`.

    Raises:
        ValueError: naming the argument (non-deterministic ``mdp``, terminal states, bad
            ``scan``).
    """
    check_choice("scan", scan, SCANS)
    next_states = next_state_table(mdp)
    num_actions, horizon = mdp.num_actions, mdp.horizon

    def init(position, logdensity_fn) -> GibbsState:
        position = jnp.asarray(position, jnp.int32)
        return GibbsState(position=position, logdensity=logdensity_fn(position))

    def step(rng_key, state, logdensity_fn):
        if num_actions == 1:
            one = jnp.ones((), jnp.result_type(state.logdensity))
            return state, GibbsInfo(acceptance_rate=one, num_accepted=jnp.zeros((), jnp.int32))
        update = _coordinate_update(next_states, num_actions, logdensity_fn)
        if scan == "random":
            key_t, key_update = jax.random.split(rng_key)
            t = jax.random.randint(key_t, (), 0, horizon, jnp.int32)
            state, p_accept, accepted = update(key_update, state, t)
            return state, GibbsInfo(
                acceptance_rate=p_accept, num_accepted=accepted.astype(jnp.int32)
            )

        def body(state, inputs):
            key, t = inputs
            state, p_accept, accepted = update(key, state, t)
            return state, (p_accept, accepted)

        keys = jax.random.split(rng_key, horizon)
        state, (p_accept, accepted) = jax.lax.scan(body, state, (keys, jnp.arange(horizon)))
        return state, GibbsInfo(
            acceptance_rate=jnp.mean(p_accept), num_accepted=jnp.sum(accepted, dtype=jnp.int32)
        )

    return Kernel(name="gibbs_mh", init=init, step=step)


# ----------------------------------------------------------------------------- exact matrix
def _action_sequences(num_actions: int, horizon: int) -> np.ndarray:
    return np.asarray(list(itertools.product(range(num_actions), repeat=horizon)), np.int32)


def transition_matrix(
    mdp: TabularMDP, energy_fn, params, s0: int, *, scan: str = "systematic"
) -> TransitionMatrix:
    r"""The exact one-step transition matrix of :func:`gibbs_kernel` from start ``s0``.

    Coordinate kernel of step :math:`t`:
    :math:`K_t[i, j] = \frac{1}{A-1}\min\{1, e^{E(\tau_i) - E(\tau_j)}\}` for :math:`\tau_j`
    differing from :math:`\tau_i` only in :math:`a_t` (states recomputed), the rest on the
    diagonal. ``"systematic"``: :math:`K = K_0K_1\cdots K_{T-1}`; ``"random"``:
    :math:`K = \frac1T\sum_tK_t`.

    Args:
        mdp: deterministic dynamics, no terminal states; :math:`A^T\le` :data:`MAX_SEQUENCES`.
        energy_fn: ``energy_fn(params, observed)`` (e.g. :func:`trajectory_energy`).
        params: :math:`\theta`.
        s0: the start state (int).
        scan: as :func:`gibbs_kernel`.

    Returns:
        :class:`TransitionMatrix`.

    Raises:
        ValueError: naming the argument (too many sequences, bad ``s0``, non-deterministic
            ``mdp``, bad ``scan``).
    """
    check_choice("scan", scan, SCANS)
    next_states = next_state_table(mdp)
    num_actions, horizon = mdp.num_actions, mdp.horizon
    if isinstance(s0, bool) or not isinstance(s0, (int, np.integer)):
        raise ValueError(f"`s0` must be an int state index; got {s0!r}.")
    if not 0 <= s0 < mdp.num_states:
        raise ValueError(f"`s0` must lie in [0, {mdp.num_states}); got {s0}.")
    size = num_actions**horizon
    if size > MAX_SEQUENCES:
        raise ValueError(
            f"`mdp` has A^T = {num_actions}^{horizon} = {size} action sequences; "
            f"transition_matrix enumerates at most {MAX_SEQUENCES}."
        )
    sequences = _action_sequences(num_actions, horizon)
    trajectories = jax.vmap(lambda a: rollout(next_states, s0, a))(jnp.asarray(sequences))
    energy = jax.vmap(lambda x: energy_fn(params, x))(trajectories)
    index = np.arange(size)
    strides = num_actions ** np.arange(horizon - 1, -1, -1)
    dtype = energy.dtype
    matrices = []
    for t in range(horizon):  # T tiny matrices, built once (not a hot path)
        moves = np.zeros((size, size))
        if num_actions > 1:
            for shift in range(1, num_actions):
                new_action = (sequences[:, t] + shift) % num_actions
                j = index + (new_action - sequences[:, t]) * strides[t]
                moves[index, j] = 1.0 / (num_actions - 1)
        moves = jnp.asarray(moves, dtype)
        accept = jnp.exp(jnp.minimum(energy[:, None] - energy[None, :], 0.0))
        off = moves * accept
        matrices.append(off + jnp.diag(1.0 - off.sum(axis=1)))
    if scan == "random":
        matrix = sum(matrices) / horizon
    else:
        matrix = matrices[0]
        for k in matrices[1:]:
            matrix = matrix @ k
    target = jax.nn.softmax(-energy)
    return TransitionMatrix(trajectories=trajectories, matrix=matrix, target=target)


def _sequence_index(observed, num_actions: int) -> jax.Array:
    actions = jnp.asarray(observed)[..., :-1, 1]
    horizon = actions.shape[-1]
    strides = num_actions ** jnp.arange(horizon - 1, -1, -1)
    return jnp.sum(actions * strides, axis=-1)


def expected_cd_gradient(params, data, energy_fn, transition: TransitionMatrix, num_steps: int = 1):
    r"""Exact expectation of the CD-:math:`k` estimate of :math:`\nabla_\theta\log Z`.

    .. math::

        \mathbb E\big[\widehat{\nabla\log Z}_{\mathrm{CD}\text{-}k}\big]
        = -\frac1N\sum_i\sum_j (K^k)[\tau_i, \tau_j]\,\nabla_\theta E_\theta(\tau_j),

    the expectation over the kernel's randomness for fixed data (all from the start of
    ``transition``). Compare :math:`-\sum_j p_\theta(\tau_j)\nabla_\theta E_\theta(\tau_j) =
    \nabla_\theta\log Z(s_0)`: the difference is the CD-:math:`k` bias.

    Args:
        params: :math:`\theta` (the same as for ``transition``).
        data: ``(N, T + 1, 2)`` trajectories, all from the start of ``transition``.
        energy_fn: as for ``transition``.
        transition: from :func:`transition_matrix`.
        num_steps: :math:`k` (int >= 1).

    Returns:
        A pytree like ``params``.

    Raises:
        ValueError: naming ``data`` if a trajectory starts elsewhere or has the wrong shape.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"`num_steps` must be an int >= 1; got {num_steps!r}.")
    data = jnp.asarray(data, jnp.int32)
    expected = transition.trajectories.shape[1:]
    if data.ndim != 3 or data.shape[1:] != expected:
        raise ValueError(
            f"`data` must have shape (N, T + 1, 2) = (N, {expected[0]}, 2); got {data.shape}."
        )
    s0 = transition.trajectories[0, 0, 0]
    if is_concrete(data) and not bool(jnp.all(data[:, 0, 0] == s0)):
        raise ValueError(f"`data` must all start at s0 = {int(s0)} (the transition's start).")
    num_actions = int(jnp.max(transition.trajectories[..., :-1, 1])) + 1
    start = jnp.zeros(transition.matrix.shape[0], transition.matrix.dtype)
    start = start.at[_sequence_index(data, num_actions)].add(1.0 / data.shape[0])
    mass = start @ jnp.linalg.matrix_power(transition.matrix, num_steps)
    grads = energy_gradients(params, transition.trajectories, energy_fn)
    return jax.tree.map(lambda g: -jnp.tensordot(mass, g, axes=1), grads)
