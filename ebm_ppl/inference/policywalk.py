r"""PolicyWalk: grid Metropolis–Hastings for Bayesian IRL (Ramachandran & Amir 2007; THEORY §7.5).

Target, over the flattened energy-model parameters :math:`\theta\in\mathbb R^D` (the leaves of
``energy_model.init_params()`` raveled by ``jax.flatten_util.ravel_pytree``):

.. math::

    \log\tilde\pi(\theta\mid\mathcal D) = \log p(\theta) + \log 1[\theta\in\mathrm{box}]
    + \sum_{i,t}\log\pi_{R_\theta}(a^i_t\mid s^i_t),
    \qquad \pi_R(a\mid s) = \mathrm{softmax}_a\big(\alpha Q_R(s,\cdot)\big),

with :math:`R_\theta` = ``energy_model.reward(unravel(θ))``, :math:`p` the energy model's prior
density (``numpyro.infer.util.log_density`` of ``energy_model.prior``), :math:`\alpha` a fixed
rationality and :math:`\gamma` = ``problem.birl_discount``. The sum runs over the non-padded steps
of the demonstrations. The dynamics factor of the BIRL likelihood does not depend on
:math:`\theta` and is left out (it cancels in every MH ratio). ``q="hard"`` uses the paper's
hard optimal :math:`Q^*_R`; ``q="soft"`` the soft (causal) Q of
:class:`~ebm_ppl.likelihood.birl.BoltzmannTrajectories` with ``q="soft"``.

**The chain** (grid MH with step :math:`\delta`, THEORY §7.5): from :math:`\theta`, pick one
coordinate uniformly and move it by :math:`\pm\delta` (a uniform random neighbour among the
:math:`2D` grid neighbours; the proposal is symmetric), and accept with probability
:math:`\min(1, \tilde\pi(\tilde\theta)/\tilde\pi(\theta))`. The chain lives on the grid
:math:`\theta_0 + \delta\mathbb Z^D` through its start :math:`\theta_0`, and targets the prior
density times the likelihood **restricted to that grid** (normalised over grid points inside the
box), the paper's discretised posterior; it is exact for that discrete target. A proposal
outside the optional box ``bounds=(low, high)`` has prior 0 and is rejected.

For ``q="hard"`` the state keeps the greedy optimal policy :math:`\pi` of the current reward, and
:math:`Q^*_{\tilde R}` is computed by policy iteration **warm-started from** :math:`\pi`: its first
evaluation is :math:`Q^\pi(\cdot,\cdot,\tilde R)`, and it stops there when :math:`\pi` is still
optimal for :math:`\tilde R`, or goes on from :math:`\pi` otherwise, exactly the paper's "if
:math:`\pi` is no longer optimal for :math:`\tilde R`, run policy iteration from :math:`\pi`".
The new policy is kept only when the proposal is accepted. The target does not depend on the
warm start (:math:`Q^*` is unique), so the chain is an ordinary MH chain.

BlackJAX-style kernel: :func:`init` and :func:`step` with :class:`PolicyWalkState` /
:class:`PolicyWalkInfo`; :func:`birl_log_posterior` builds the target; :func:`sample_policywalk`
runs vmapped chains in ``lax.scan`` and returns :class:`~ebm_ppl.inference.base.PosteriorDraws`.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import log_density

from ebm_ppl._validation import check_choice, is_concrete
from ebm_ppl.exact.hard import policy_iteration
from ebm_ppl.exact.trajectory import steps
from ebm_ppl.inference.base import PosteriorDraws
from ebm_ppl.likelihood.birl import Q_KINDS, BoltzmannTrajectories, _check_rationality
from ebm_ppl.spaces.tabular import validate_trajectories

__all__ = [
    "PolicyWalkState",
    "PolicyWalkInfo",
    "birl_log_posterior",
    "init",
    "step",
    "sample_policywalk",
]


class PolicyWalkState(NamedTuple):
    """State of one PolicyWalk chain.

    Attributes:
        position: ``(D,)`` flattened parameters :math:`\\theta` (a grid point).
        log_posterior: ``()`` unnormalised log posterior at ``position`` (``-inf`` outside the
            box).
        policy: ``(S,)`` int32 greedy optimal policy of the reward at ``position`` (``q="hard"``:
            the warm start of the next policy iteration; ``q="soft"``: the argmax of the soft
            policy, for information only).
    """

    position: jax.Array
    log_posterior: jax.Array
    policy: jax.Array


class PolicyWalkInfo(NamedTuple):
    """Per-step information.

    Attributes:
        acceptance_rate: ``()`` MH acceptance probability :math:`\\min(1, e^{\\Delta\\log\\pi})`
            of the proposal.
        is_accepted: ``()`` bool, whether the proposal was accepted.
        policy_iterations: ``()`` int32 policy evaluations spent on the proposal (``q="hard"``;
            1 when the current policy stayed optimal), or soft value-iteration sweeps
            (``q="soft"``).
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    policy_iterations: jax.Array


# ---------------------------------------------------------------------- target
def _demo_counts(mdp, demos) -> jax.Array:
    """``(S, A)`` number of taken steps ``(s, a)`` in the demonstrations (padding excluded)."""
    states, actions, _, mask = jax.vmap(steps)(jnp.asarray(demos, dtype=jnp.int32))
    counts = jnp.zeros((mdp.num_states, mdp.num_actions), mdp.dtype)
    return counts.at[states, actions].add(mask.astype(mdp.dtype))


def _box(bounds, size: int, dtype):
    """``(low, high)`` as ``(D,)`` arrays (``-inf``/``inf`` without bounds)."""
    if bounds is None:
        return jnp.full((size,), -jnp.inf, dtype), jnp.full((size,), jnp.inf, dtype)
    try:
        low, high = bounds
    except (TypeError, ValueError):
        raise ValueError(
            f"`bounds` must be a pair (low, high) of scalars or (D,) = ({size},) arrays; "
            f"got {bounds!r}."
        ) from None
    try:
        low = jnp.broadcast_to(jnp.asarray(low, dtype), (size,))
        high = jnp.broadcast_to(jnp.asarray(high, dtype), (size,))
    except (TypeError, ValueError):
        raise ValueError(
            f"`bounds` must be a pair (low, high) of scalars or (D,) = ({size},) arrays; got "
            f"shapes {jnp.shape(low)} and {jnp.shape(high)}."
        ) from None
    return low, high


def _slack(bound: jax.Array) -> jax.Array:
    """Round-off allowance at a box face: ``sqrt(eps) * max(1, |bound|)`` (0 at infinite faces)."""
    scale = jnp.where(jnp.isfinite(bound), jnp.maximum(1, jnp.abs(bound)), 0)
    return jnp.sqrt(jnp.finfo(bound.dtype).eps) * scale


def _inside(position, low, high) -> jax.Array:
    return jnp.all((position >= low - _slack(low)) & (position <= high + _slack(high)))


def birl_log_posterior(problem, demos, *, q: str = "hard", rationality=1.0, bounds=None):
    """The PolicyWalk target as a function ``(position, policy) -> (log_posterior, policy, n)``.

    :math:`\\log p(\\theta) + \\log 1[\\theta\\in\\mathrm{box}] + \\sum_{i,t}\\log
    \\mathrm{softmax}(\\alpha Q_{R_\\theta}(s^i_t,\\cdot))[a^i_t]` (see the module docstring), up to
    the :math:`\\theta`-independent dynamics factor. Pure and jit/vmap-safe; ``problem`` and
    ``demos`` may be traced (build it inside the jitted function that receives them).

    Args:
        problem: the :class:`~ebm_ppl.problems.Problem` (its ``mdp``, ``energy_model`` and
            ``birl_discount`` are used).
        demos: ``(N, T + 1, 2)`` observed arrays (validated here when concrete).
        q: ``"hard"`` (the paper's :math:`Q^*`) or ``"soft"``.
        rationality: :math:`\\alpha > 0`.
        bounds: optional box ``(low, high)``, scalars or ``(D,)`` arrays.

    Returns:
        ``fn(position (D,), policy (S,) int or None) -> (log_posterior (), policy (S,) int32,
        num_iterations () int32)``; ``policy`` is the warm start of policy iteration
        (``q="hard"``; ``None``: a cold start) and the returned one is the greedy optimal policy
        at ``position``.
    """
    check_choice("q", q, Q_KINDS)
    mdp, energy_model = problem.mdp, problem.energy_model
    rationality = _check_rationality(rationality, mdp.dtype)
    discount = problem.birl_discount
    if is_concrete(demos):
        demos, _ = validate_trajectories(mdp, demos, name="demos")
    counts = _demo_counts(mdp, demos)
    flat, unravel = ravel_pytree(energy_model.init_params())
    low, high = _box(bounds, flat.shape[0], flat.dtype)

    def log_posterior_fn(position, policy=None):
        params = unravel(position)
        log_prior, _ = log_density(energy_model.prior, (), {}, params)
        reward = energy_model.reward(params)
        if q == "hard":
            solution = policy_iteration(mdp, reward, discount=discount, init_policy=policy)
            alpha = jnp.asarray(rationality, solution.q_values.dtype)
            log_policy = jax.nn.log_softmax(alpha * solution.q_values, axis=-1)
            new_policy, iterations = solution.policy, solution.num_iterations
        else:
            likelihood = BoltzmannTrajectories(
                mdp, reward, rationality=rationality, discount=discount, q="soft"
            )
            log_policy = likelihood.log_policy
            new_policy = jnp.argmax(log_policy, axis=-1).astype(jnp.int32)
            iterations = likelihood.num_iterations
        log_likelihood = jnp.sum(jnp.where(counts > 0, counts * log_policy, 0))
        value = jnp.where(_inside(position, low, high), log_prior + log_likelihood, -jnp.inf)
        return value.astype(position.dtype), new_policy, iterations.astype(jnp.int32)

    return log_posterior_fn


# ---------------------------------------------------------------------- kernel
def init(position, log_posterior_fn, policy=None) -> PolicyWalkState:
    """Initial state at ``position`` ``(D,)`` (a grid point), solving the MDP from scratch
    (or from the warm start ``policy``)."""
    position = jnp.asarray(position)
    log_posterior, policy, _ = log_posterior_fn(position, policy)
    return PolicyWalkState(position=position, log_posterior=log_posterior, policy=policy)


def step(rng_key, state: PolicyWalkState, log_posterior_fn, step_size):
    """One PolicyWalk transition: a uniform random grid neighbour, then an MH accept/reject.

    Args:
        rng_key: JAX key.
        state: the current :class:`PolicyWalkState`.
        log_posterior_fn: from :func:`birl_log_posterior`.
        step_size: grid step :math:`\\delta > 0`.

    Returns:
        ``(PolicyWalkState, PolicyWalkInfo)``.
    """
    key_coord, key_sign, key_accept = jax.random.split(rng_key, 3)
    position = state.position
    coordinate = jax.random.randint(key_coord, (), 0, position.shape[0])
    sign = jnp.where(jax.random.bernoulli(key_sign), 1, -1).astype(position.dtype)
    delta = jnp.asarray(step_size, position.dtype)
    proposal = position.at[coordinate].add(sign * delta)
    log_posterior, policy, iterations = log_posterior_fn(proposal, state.policy)
    log_posterior = jnp.where(jnp.isnan(log_posterior), -jnp.inf, log_posterior)
    log_ratio = jnp.where(
        jnp.isneginf(log_posterior), -jnp.inf, log_posterior - state.log_posterior
    )
    accept = jnp.log(jax.random.uniform(key_accept, (), position.dtype)) < log_ratio
    new_state = PolicyWalkState(
        position=jnp.where(accept, proposal, position),
        log_posterior=jnp.where(accept, log_posterior, state.log_posterior),
        policy=jnp.where(accept, policy, state.policy),
    )
    info = PolicyWalkInfo(
        acceptance_rate=jnp.exp(jnp.minimum(log_ratio, 0)),
        is_accepted=accept,
        policy_iterations=iterations,
    )
    return new_state, info


# ---------------------------------------------------------------------- driver
def _prior_draws(rng_key, energy_model, num_chains: int):
    """``(C, D)`` flattened prior draws."""

    def one(key):
        params = numpyro.handlers.seed(energy_model.prior, key)()
        return ravel_pytree(params)[0]

    return jax.vmap(one)(jax.random.split(rng_key, num_chains))


@partial(jax.jit, static_argnames=("q", "num_chains"))
def _init_chains(
    rng_key, problem, demos, init_flat, step_size, rationality, low, high, *, q, num_chains
):
    """Start states of every chain: ``init_flat`` ``(C, D)``, or prior draws rounded to the grid
    :math:`\\delta\\mathbb Z^D` and clipped to the grid points inside the box."""
    fn = birl_log_posterior(problem, demos, q=q, rationality=rationality, bounds=(low, high))
    if init_flat is None:
        draws = _prior_draws(rng_key, problem.energy_model, num_chains).astype(low.dtype)
        delta = jnp.asarray(step_size, draws.dtype)
        first = jnp.ceil(low / delta - _slack(low / delta))
        last = jnp.floor(high / delta + _slack(high / delta))
        init_flat = jnp.clip(jnp.round(draws / delta), first, last) * delta
    return jax.vmap(lambda position: init(position, fn))(init_flat)


@partial(jax.jit, static_argnames=("q", "num_draws", "thinning", "record"))
def _advance(
    rng_key,
    states,
    start,
    problem,
    demos,
    step_size,
    rationality,
    low,
    high,
    *,
    q,
    num_draws,
    thinning,
    record,
):
    """Run ``num_draws * thinning`` steps of every chain; keep every ``thinning``-th state.

    The key of global step ``g`` is ``fold_in(rng_key, g)`` (``start`` is the global index of the
    first step), so a run split into chunks gives the same draws as one call.
    """
    fn = birl_log_posterior(problem, demos, q=q, rationality=rationality, bounds=(low, high))
    num_chains = states.position.shape[0]

    def one_step(carry, index):
        keys = jax.random.split(jax.random.fold_in(rng_key, index), num_chains)
        return jax.vmap(lambda key, state: step(key, state, fn, step_size))(keys, carry)

    def one_draw(carry, draw):
        indices = start + draw * thinning + jnp.arange(thinning)
        carry, infos = jax.lax.scan(one_step, carry, indices)
        if not record:
            return carry, None
        last = jax.tree.map(lambda x: x[-1], infos)
        return carry, (carry.position, carry.log_posterior, last.acceptance_rate)

    return jax.lax.scan(one_draw, states, jnp.arange(num_draws))


def _run_phase(run, states, start, num_draws, thinning, record, progress_bar, description):
    """Call ``run`` once, or in about 20 chunks behind a tqdm bar (one compile per chunk size)."""
    if not progress_bar:
        return run(states, start, num_draws, thinning, record)
    from tqdm.auto import tqdm

    chunk = max(1, math.ceil(num_draws / 20))
    outputs = []
    with tqdm(total=num_draws, desc=description) as bar:
        for begin in range(0, num_draws, chunk):
            size = min(chunk, num_draws - begin)
            states, out = run(states, start + begin * thinning, size, thinning, record)
            outputs.append(out)
            bar.update(size)
    if not record:
        return states, None
    return states, jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *outputs)


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _init_positions(init_position, template, num_chains: int, dtype):
    """``init_position`` (a params pytree, optionally with a leading chain axis) -> ``(C, D)``."""
    flat_template, _ = ravel_pytree(template)
    size = flat_template.shape[0]
    leaves, treedef = jax.tree.flatten(init_position)
    template_leaves, template_def = jax.tree.flatten(template)
    if treedef != template_def:
        raise ValueError(
            f"`init_position` must have the structure of `energy_model.init_params()` "
            f"({template_def}); got {treedef}."
        )
    shapes = [jnp.shape(leaf) for leaf in leaves]
    expected = [jnp.shape(leaf) for leaf in template_leaves]
    if shapes == expected:
        flat = ravel_pytree(init_position)[0].astype(dtype)
        return jnp.broadcast_to(flat, (num_chains, size))
    if shapes == [(num_chains, *shape) for shape in expected]:
        return jax.vmap(lambda p: ravel_pytree(p)[0])(init_position).astype(dtype)
    raise ValueError(
        f"`init_position` leaves must have shapes {expected} (shared by every chain) or "
        f"{[(num_chains, *s) for s in expected]} (one per chain); got {shapes}."
    )


def sample_policywalk(
    rng_key,
    problem,
    demos=None,
    *,
    q: str = "hard",
    step_size: float = 0.1,
    num_chains: int = 4,
    num_samples: int = 1000,
    num_warmup: int = 500,
    thinning: int = 1,
    bounds=None,
    rationality: float = 1.0,
    init_position=None,
    progress_bar: bool = False,
) -> PosteriorDraws:
    """Run PolicyWalk chains on the BIRL posterior of ``problem`` (THEORY §7.5).

    ``num_chains`` chains run in parallel (``vmap``) for ``num_warmup + num_samples * thinning``
    steps in ``lax.scan``; the first ``num_warmup`` states are discarded (a burn-in: the grid and
    step are fixed, nothing adapts) and every ``thinning``-th state after that is kept. Each chain
    starts at a random grid point (a prior draw rounded to :math:`\\delta\\mathbb Z^D` and clipped
    to the grid points inside ``bounds``) unless ``init_position`` is given, in which case its
    grid is ``init_position`` :math:`+\\,\\delta\\mathbb Z^D`. The run is jitted with ``problem``
    and ``demos`` as arguments, so repeated runs with the same shapes and settings compile once.

    Args:
        rng_key: JAX key.
        problem: the :class:`~ebm_ppl.problems.Problem`; :math:`\\gamma` =
            ``problem.birl_discount``.
        demos: ``(N, T + 1, 2)`` observed arrays (default ``problem.demos``).
        q: ``"hard"`` (the paper's :math:`Q^*`, warm-started policy iteration) or ``"soft"``.
        step_size: grid step :math:`\\delta > 0`.
        num_chains: chains.
        num_samples: draws kept per chain.
        num_warmup: burn-in steps discarded per chain.
        thinning: keep every ``thinning``-th step.
        bounds: optional box ``(low, high)`` (scalars or ``(D,)`` arrays); proposals outside are
            rejected, and it must contain a grid point.
        rationality: fixed :math:`\\alpha > 0`.
        init_position: optional params pytree (the structure of ``energy_model.init_params()``),
            shared by every chain or with a leading ``num_chains`` axis; must lie in ``bounds``.
        progress_bar: show a tqdm bar (the run is then split into about 20 jitted chunks).

    Returns:
        :class:`~ebm_ppl.inference.base.PosteriorDraws` with ``positions[site]`` of shape
        ``(num_chains, num_samples, *site_shape)``, ``sample_stats`` ``"acceptance_rate"`` (of the
        transition that produced each kept draw) and ``"lp"`` (log prior + BIRL policy
        log-likelihood, without the :math:`\\theta`-independent dynamics factor), both
        ``(num_chains, num_samples)``, and ``info`` with ``method``, ``step_size``, ``q``,
        ``rationality``, ``discount``, ``bounds`` (``None`` or ``(low, high)`` as given, lists
        for arrays), ``num_warmup`` and ``thinning``.

    Raises:
        ValueError: bad settings (naming the argument), demos inconsistent with the MDP, an
            ``init_position`` outside ``bounds``, or a box with no grid point.
    """
    check_choice("q", q, Q_KINDS)
    num_chains = _positive_int("num_chains", num_chains)
    num_samples = _positive_int("num_samples", num_samples)
    num_warmup = _positive_int("num_warmup", num_warmup, minimum=0)
    thinning = _positive_int("thinning", thinning)
    if isinstance(step_size, bool) or not (np.isfinite(step_size) and float(step_size) > 0):
        raise ValueError(f"`step_size` must be a finite float > 0; got {step_size!r}.")
    if isinstance(rationality, bool) or not (np.isfinite(rationality) and float(rationality) > 0):
        raise ValueError(f"`rationality` must be a finite float > 0; got {rationality!r}.")
    demos = problem.demos if demos is None else demos
    if demos is None:
        raise ValueError("`demos` is None and the problem has no demonstrations.")
    demos, _ = validate_trajectories(problem.mdp, demos, name="demos")
    template = problem.energy_model.init_params()
    flat_template, unravel = ravel_pytree(template)
    dtype = flat_template.dtype
    size = flat_template.shape[0]
    low, high = _box(bounds, size, dtype)
    low_np, high_np = np.asarray(low), np.asarray(high)
    if np.isnan(low_np).any() or np.isnan(high_np).any() or not np.all(low_np < high_np):
        raise ValueError(f"`bounds` must satisfy low < high in every coordinate; got {bounds!r}.")
    init_flat = None
    if init_position is None:
        if not np.all(np.ceil(low_np / step_size - 1e-9) <= np.floor(high_np / step_size + 1e-9)):
            raise ValueError(
                f"`bounds` {bounds!r} contain no point of the grid step_size * Z^D "
                f"(step_size = {step_size}); widen them or pass `init_position`."
            )
    else:
        init_flat = _init_positions(init_position, template, num_chains, dtype)
        outside = ~np.asarray(jax.vmap(lambda p: _inside(p, low, high))(init_flat))
        if outside.any():
            raise ValueError(
                f"`init_position` must lie inside `bounds` {bounds!r}; chain "
                f"{int(np.argmax(outside))} starts at {np.asarray(init_flat[np.argmax(outside)])}."
            )

    key_init, key_steps = jax.random.split(rng_key)
    delta = jnp.asarray(step_size, dtype)
    alpha = jnp.asarray(rationality, dtype)
    states = _init_chains(
        key_init, problem, demos, init_flat, delta, alpha, low, high, q=q, num_chains=num_chains
    )

    def run(states, start, num_draws, thin, record):
        return _advance(
            key_steps,
            states,
            jnp.asarray(start, jnp.int32),
            problem,
            demos,
            delta,
            alpha,
            low,
            high,
            q=q,
            num_draws=num_draws,
            thinning=thin,
            record=record,
        )

    if num_warmup > 0:
        states, _ = _run_phase(run, states, 0, num_warmup, 1, False, progress_bar, "warmup")
    _, (positions, log_posterior, acceptance) = _run_phase(
        run, states, num_warmup, num_samples, thinning, True, progress_bar, "sample"
    )
    # scan stacks draws first: (draws, chains, ...) -> (chains, draws, ...)
    positions = jnp.swapaxes(positions, 0, 1)
    params = jax.vmap(jax.vmap(unravel))(positions)
    if bounds is None:
        bounds_info = None
    else:
        bounds_info = tuple(
            float(np.asarray(b)) if np.ndim(b) == 0 else np.asarray(b).tolist() for b in bounds
        )
    return PosteriorDraws(
        positions=dict(params),
        sample_stats={
            "acceptance_rate": jnp.swapaxes(acceptance, 0, 1),
            "lp": jnp.swapaxes(log_posterior, 0, 1),
        },
        info={
            "method": "policywalk",
            "step_size": float(step_size),
            "q": q,
            "rationality": float(rationality),
            "discount": float(problem.birl_discount),
            "bounds": bounds_info,
            "num_warmup": num_warmup,
            "thinning": thinning,
        },
    )
