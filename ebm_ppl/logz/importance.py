r"""Importance-sampling estimators of :math:`\log Z` and the variational bounds (THEORY §2, §6, §7).

Every estimator here draws from a proposal :math:`q` that does not depend on the parameters
(or is treated as a constant: its draws and its density carry no gradient) and weighs each draw by

.. math::

    \log w(x) = \log\tilde p_\theta(x) - \log q(x),

with :math:`\tilde p_\theta = e^{-E_\theta}` on :math:`\mathbb R^d` (model ``"ebm"``), and for
tabular trajectories (THEORY §4: the dynamics :math:`b(\tau)` cancel)

.. math::

    \log w(\tau) = R_\theta(\tau) - \log\frac{q(\tau)}{b(\tau)}
                 = R_\theta(\tau) - \sum_t \log\pi(a_t\mid s_t)
    \quad\text{(policy proposals).}

Models (DESIGN §3), chosen by each factory's ``model=``:

* ``"trajectory"``: :math:`Z(s_0) = \sum_\tau b(\tau\mid s_0)e^{R(\tau)} =
  \mathbb E_{q(\cdot\mid s_0)}[e^{R - \sum\log\pi}]`, one estimate per requested start state, each
  from its own ``num_samples`` rollouts started at :math:`s_0` (shape ``(n,)``). The proposal must
  be a policy rollout (a distribution with a ``log_policy`` attribute, law :math:`b\prod\pi`).
* ``"trajectory_global"``: :math:`Z = \sum_{s_0}\rho_0(s_0)Z(s_0) =
  \mathbb E_{s_0\sim\rho_0}\mathbb E_{q(\cdot\mid s_0)}[e^{R-\sum\log\pi}]`, i.e. the plain
  estimate over rollouts whose start is drawn from :math:`\rho_0` (shape ``()``). Any trajectory
  distribution may serve as proposal: :math:`\log q - \log b` is its ``log_prob_policy``.
* ``"ebm"``: :math:`Z = \int e^{-E_\theta(x)}dx = \mathbb E_q[e^{-E_\theta}/q]` on
  :math:`\mathbb R^d`, for problems with ``energy_model.energy(params, x)`` and ``dim`` (any
  problem without an ``mdp``). The proposal is a NumPyro distribution with event shape ``(d,)``.

A ``proposal`` is ``None`` (the uniform random policy; a standard normal on :math:`\mathbb R^d`),
a NumPyro distribution, or a callable ``proposal(problem, params) -> distribution`` (build it from
the problem's arrays this way under ``jit``, so they stay arguments, not constants).

Gradients: :math:`\nabla_\theta\log\hat Z = \sum_k\bar w_k\nabla_\theta\log\tilde p_\theta(x_k)`
with self-normalised :math:`\bar w`, the importance estimate of :math:`\mathbb E_{p_\theta}
[\nabla\log\tilde p_\theta]` = the feature expectation for linear rewards (THEORY §1.5, §2);
:func:`self_normalized_expectation` computes the same thing for any values.

References: THEORY §2 (IS and the GCL mixture), §4 (cancellation of the dynamics), §6 (ELBO, IWAE,
EUBO, Jensen bias), §7.4 (plug-in bias), §7.6 (PSIS); DESIGN §3 (interface), §5 (tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import logsumexp

from ebm_ppl._validation import check_choice
from ebm_ppl.exact.tabular import reward_table, safe_log, soft_bellman, start_states
from ebm_ppl.exact.trajectory import log_base_measure, sum_log_policy, trajectory_return
from ebm_ppl.logz.base import LogZEstimator, LogZResult
from ebm_ppl.logz.psis import khat_threshold, pareto_khat, psis_smooth, psis_tail_length
from ebm_ppl.spaces.tabular import PAD

__all__ = [
    "MODELS",
    "WeightedSample",
    "ImportanceInfo",
    "PSISInfo",
    "GCLInfo",
    "BoundInfo",
    "draw_weighted",
    "self_normalized_expectation",
    "importance",
    "psis",
    "gcl_mixture",
    "iwae",
    "iwae_estimate",
    "elbo",
    "eubo",
]

MODELS = ("trajectory", "trajectory_global", "ebm")
"""The ``model`` values the estimators of this module accept (``"ebm"``: an energy on R^d)."""

_FIXED_POINT_ITERATIONS = 60

sg = jax.lax.stop_gradient


# ---------------------------------------------------------------------------- info tuples
class ImportanceInfo(NamedTuple):
    """Diagnostics of :func:`importance`, one entry per estimate (shape of ``log_z``).

    Attributes:
        ess: Kish effective sample size :math:`1/\\sum_k\\bar w_k^2`.
        khat: PSIS :math:`\\hat k` of the weights (NaN when fewer than 25 draws, or where the
            GPD fit is undefined, see :mod:`ebm_ppl.logz.psis`).
        max_log_weight: the largest log weight.
    """

    ess: Any
    khat: Any
    max_log_weight: Any


class PSISInfo(NamedTuple):
    """Diagnostics of :func:`psis`.

    Attributes:
        ess: effective sample size of the smoothed weights.
        khat: PSIS :math:`\\hat k`.
        khat_threshold: :math:`\\min(1 - 1/\\log_{10}S, 0.7)` (same shape as ``khat``).
        ok: ``khat < khat_threshold`` (False where :math:`\\hat k` is NaN).
        max_log_weight: the largest raw log weight.
    """

    ess: Any
    khat: Any
    khat_threshold: Any
    ok: Any
    max_log_weight: Any


class GCLInfo(NamedTuple):
    """Diagnostics of :func:`gcl_mixture`.

    Attributes:
        ess: effective sample size of the pooled mixture weights :math:`e^{R}/\\tilde\\mu`.
        khat: PSIS :math:`\\hat k` of the mixture weights of the ``num_samples`` proposal draws
            (i.i.d.; NaN below 25 draws).
        num_data: :math:`N_d`, the demonstrations in the pooled sample of each estimate.
        residual: :math:`\\log\\sum_{\\mathcal M}u_i(\\hat\\zeta)` of the fixed-point equation
            (0 to rounding; exactly 0 for a separate data density).
        max_log_weight: the largest pooled log weight.
    """

    ess: Any
    khat: Any
    num_data: Any
    residual: Any
    max_log_weight: Any


class BoundInfo(NamedTuple):
    """Diagnostics of :func:`iwae`, :func:`elbo` and :func:`eubo` (over all draws).

    Attributes:
        ess: effective sample size of all the weights (EUBO: of the weights at the exact draws).
        khat: PSIS :math:`\\hat k` of all the weights (NaN below 25 draws).
        max_log_weight: the largest log weight.
    """

    ess: Any
    khat: Any
    max_log_weight: Any


class WeightedSample(NamedTuple):
    """Draws and their log weights (see :func:`draw_weighted`).

    Attributes:
        samples: ``(n, K, T + 1, 2)`` (``"trajectory"``), ``(K, T + 1, 2)``
            (``"trajectory_global"``) or ``(K, d)`` (``"ebm"``); no gradient.
        log_weights: ``(n, K)`` or ``(K,)``: :math:`\\log\\tilde p_\\theta - \\log q` (dynamics
            cancelled); differentiable in ``params`` through :math:`\\log\\tilde p_\\theta` only.
    """

    samples: Any
    log_weights: Any


# ---------------------------------------------------------------------------- small helpers
def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _check_proposal(proposal) -> None:
    if proposal is None or isinstance(proposal, dist.Distribution) or callable(proposal):
        return
    raise TypeError(
        "`proposal` must be None, a NumPyro distribution, or a callable "
        f"(problem, params) -> distribution; got {type(proposal).__name__}."
    )


def _is_density_problem(problem) -> bool:
    return not hasattr(problem, "mdp")


def _check_problem(problem, model: str, s0) -> None:
    """The problem kind must fit ``model``; ``s0`` only for the per-start-state model."""
    if model == "ebm":
        if not _is_density_problem(problem):
            raise ValueError(
                "model='ebm' needs an R^d problem (with `energy_model.energy(params, x)` and "
                "`dim`); got a tabular problem (it has an `mdp`): use model='trajectory' or "
                "'trajectory_global'."
            )
        if not hasattr(problem, "dim") or not hasattr(problem.energy_model, "energy"):
            raise TypeError(
                "an R^d problem must have `dim` and `energy_model.energy(params, x)`; got "
                f"{type(problem).__name__}."
            )
    elif _is_density_problem(problem):
        raise ValueError(
            f"model={model!r} needs a tabular problem with an `mdp`; got "
            f"{type(problem).__name__} without one: use model='ebm' for R^d problems."
        )
    if model != "trajectory" and s0 is not None:
        raise ValueError(
            f"`s0` must be None for model={model!r} (one global Z); got {s0!r}. Per-start-state "
            "estimates need model='trajectory'."
        )


def _float_dtype(tree):
    leaves = [
        leaf
        for leaf in jax.tree.leaves(tree)
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)
    ]
    return jnp.result_type(*leaves) if leaves else jnp.result_type(float)


def _map_events(fn, values, event_ndim: int):
    """Apply a per-event ``fn`` over all leading axes of ``values``."""
    batch = values.shape[: values.ndim - event_ndim]
    flat = values.reshape((-1,) + values.shape[values.ndim - event_ndim :])
    out = jax.vmap(fn)(flat)
    return out.reshape(batch + out.shape[1:])


def _log_mean_exp(log_weights, axis: int = -1):
    return logsumexp(log_weights, axis=axis) - math.log(log_weights.shape[axis])


def _ess(log_weights):
    normalised = jax.nn.softmax(log_weights, axis=-1)
    return 1.0 / jnp.sum(normalised**2, axis=-1)


def _delta_stderr(log_weights):
    r"""Delta-method SE of :math:`\log\hat Z`, :math:`\mathrm{sd}(w)/(\sqrt K\,\bar w)` (log space).

    With :math:`\bar w_k` normalised, :math:`\widehat{\mathrm{var}}(w)/\bar w^2 =
    (K\sum\bar w_k^2 - 1)K/(K-1)`, so :math:`\mathrm{SE}^2 = (K\sum\bar w_k^2 - 1)/(K-1)`
    (sample sd with ``K - 1``). NaN for ``K = 1``.
    """
    num = log_weights.shape[-1]
    if num < 2:
        return jnp.full(log_weights.shape[:-1], jnp.nan, log_weights.dtype)
    normalised = jax.nn.softmax(log_weights, axis=-1)
    ratio = num * jnp.sum(normalised**2, axis=-1)
    return jnp.sqrt(jnp.maximum(ratio - 1.0, 0.0) / (num - 1))


def _khat_or_nan(log_weights):
    """PSIS :math:`\\hat k` over the last axis; NaN when the tail would be under 5 draws."""
    log_weights = sg(log_weights)
    if psis_tail_length(log_weights.shape[-1]) < 5:
        return jnp.full(log_weights.shape[:-1], jnp.nan, log_weights.dtype)
    return pareto_khat(log_weights)


def _counted(value):
    return jnp.asarray(value)


def _per_draw(problem) -> int:
    """Energy evaluations per draw: ``T`` per-step rewards for a trajectory, one per point."""
    return 1 if _is_density_problem(problem) else problem.mdp.horizon


def _evaluations(problem, model, s0, num_samples) -> int:
    return _num_targets(problem, model, s0) * num_samples * _per_draw(problem)


def self_normalized_expectation(log_weights, values):
    r"""Self-normalised importance estimate :math:`\sum_k\bar w_k f(x_k)`,
    :math:`\bar w = \operatorname{softmax}(\log w)`.

    Consistent (not unbiased: :math:`O(1/K)` bias) for :math:`\mathbb E_{p}[f]` where
    :math:`w\propto p/q`. With :math:`f = \nabla_\theta\log\tilde p_\theta` it is the gradient of
    the importance-sampling :math:`\log\hat Z` (THEORY §2): for a linear reward, the feature
    expectation of THEORY §1.5.

    Args:
        log_weights: ``(..., K)`` log weights (any normalisation).
        values: ``(..., K, *event)`` values of :math:`f` at the draws.

    Returns:
        ``(..., *event)``.
    """
    log_weights = jnp.asarray(log_weights)
    values = jnp.asarray(values)
    if values.shape[: log_weights.ndim] != log_weights.shape:
        raise ValueError(
            "`values` must have shape log_weights.shape + event = "
            f"{log_weights.shape} + (...); got {values.shape}."
        )
    normalised = jax.nn.softmax(log_weights, axis=-1)
    extra = values.ndim - log_weights.ndim
    normalised = normalised.reshape(normalised.shape + (1,) * extra)
    return jnp.sum(normalised * values, axis=log_weights.ndim - 1)


# ---------------------------------------------------------------------------- proposals
class _Proposal(NamedTuple):
    """A resolved proposal: a policy table (fast path) or a generic distribution."""

    log_policy: Any  # (T, S, A) or None
    distribution: Any  # NumPyro distribution or None

    def log_free(self, problem, samples):
        """:math:`\\log q - \\log b` at ``samples`` (tabular) or :math:`\\log q` (R^d), no grad."""
        if _is_density_problem(problem):
            return sg(self.distribution.log_prob(samples))
        if self.log_policy is not None:
            return sg(_map_events(lambda obs: sum_log_policy(self.log_policy, obs), samples, 2))
        return sg(self.distribution.log_prob_policy(samples))


def _smooth(proposal) -> bool:
    """A fixed proposal (not a function of ``params``) makes ``log_z`` smooth with the key fixed."""
    return proposal is None or isinstance(proposal, dist.Distribution)


def _resolve(proposal, problem, params, model: str) -> _Proposal:
    if proposal is not None and not isinstance(proposal, dist.Distribution):
        proposal = proposal(problem, params)
        if not isinstance(proposal, dist.Distribution):
            raise TypeError(
                "a callable `proposal` must return a NumPyro distribution; got "
                f"{type(proposal).__name__}."
            )
    if model == "ebm":
        dim = int(problem.dim)
        if proposal is None:
            dtype = _float_dtype(params)
            proposal = dist.Normal(jnp.zeros((dim,), dtype), jnp.ones((dim,), dtype)).to_event(1)
        if tuple(proposal.event_shape) != (dim,) or tuple(proposal.batch_shape) != ():
            raise ValueError(
                f"`proposal` must have event shape (d,) = ({dim},) and no batch shape; got "
                f"event shape {tuple(proposal.event_shape)}, batch shape "
                f"{tuple(proposal.batch_shape)}."
            )
        return _Proposal(None, proposal)
    mdp = problem.mdp
    shape = (mdp.horizon, mdp.num_states, mdp.num_actions)
    if proposal is None:
        dtype = _float_dtype(problem.energy_model.reward(params))
        return _Proposal(jnp.full(shape, -math.log(mdp.num_actions), dtype), None)
    if hasattr(proposal, "log_policy"):
        log_policy = jnp.asarray(proposal.log_policy)
        if log_policy.shape[-2:] == shape[1:] and log_policy.ndim == 2:
            log_policy = jnp.broadcast_to(log_policy, shape)
        if log_policy.shape != shape:
            raise ValueError(
                f"`proposal.log_policy` must have shape (T, S, A) = {shape}; got "
                f"{log_policy.shape}."
            )
        return _Proposal(log_policy, None)
    if model == "trajectory":
        raise TypeError(
            "model='trajectory' rolls the proposal out from each start state, so it must be a "
            "policy rollout (a distribution with a `log_policy` attribute, e.g. PolicyRollout); "
            f"got {type(proposal).__name__}."
        )
    if not hasattr(proposal, "log_prob_policy"):
        raise TypeError(
            "a tabular proposal must be a trajectory distribution with `log_prob_policy` "
            f"(log q - log b); got {type(proposal).__name__}."
        )
    return _Proposal(None, proposal)


def _pick(weights, uniform):
    """Inverse-CDF draw from unnormalised ``weights (..., C)`` with ``uniform (...)`` in (0, 1].

    Returns the first index whose cumulative weight reaches ``uniform * total``; an index of
    weight 0 is never returned (the threshold is > 0 and ties resolve to the first index that
    raised the sum).
    """
    cdf = jnp.cumsum(weights, axis=-1)
    below = cdf < (uniform * cdf[..., -1])[..., None]
    return jnp.minimum(jnp.sum(below, axis=-1), weights.shape[-1] - 1)


def _sample_paths(rng_key, mdp, log_policy, start_logits, num_samples: int, next_weights):
    """Trajectories through ``mdp`` as observed arrays ``(n, K, T + 1, 2)``.

    The same law as :func:`ebm_ppl.exact.sampling.rollout` (same encoding, same masking after
    termination), drawn by inverse CDF from **one** block of uniforms instead of per-step key
    splits: that compiles several times faster under ``vmap`` and runs faster.

    Args:
        rng_key: JAX key.
        mdp: the MDP.
        log_policy: ``(T, S, A)`` log action probabilities (any normalisation).
        start_logits: ``(n, S)`` unnormalised log start-state law of each of ``n`` targets.
        num_samples: ``K`` trajectories per target.
        next_weights: ``(t, states, actions) -> (weights (..., C), candidates (..., C))``,
            unnormalised next-state probabilities over candidate states.
    """
    horizon = mdp.horizon
    count = start_logits.shape[0]
    dtype = log_policy.dtype
    uniform = 1.0 - jax.random.uniform(rng_key, (2 * horizon + 1, count, num_samples), dtype)
    top = jnp.max(start_logits, axis=-1, keepdims=True)
    start_weights = jnp.exp(start_logits - top)[:, None, :]
    first = _pick(jnp.broadcast_to(start_weights, (count, num_samples, mdp.num_states)), uniform[0])

    def step(carry, inputs):
        state, done = carry
        t, u_action, u_next = inputs
        stops = done | mdp.terminal[state]
        action = _pick(jnp.exp(log_policy[t, state]), u_action)
        weights, candidates = next_weights(t, state, action)
        chosen = _pick(weights, u_next)
        following = jnp.take_along_axis(candidates, chosen[..., None], axis=-1)[..., 0]
        row = jnp.stack([jnp.where(done, PAD, state), jnp.where(stops, PAD, action)], axis=-1)
        return (jnp.where(stops, state, following), stops), row

    init = (first, jnp.zeros((count, num_samples), bool))
    inputs = (jnp.arange(horizon), uniform[1 : horizon + 1], uniform[horizon + 1 :])
    (last, done), rows = jax.lax.scan(step, init, inputs)
    final = jnp.stack([jnp.where(done, PAD, last), jnp.full_like(last, PAD)], axis=-1)
    paths = jnp.concatenate([rows, final[None]], axis=0)
    return jnp.moveaxis(paths, 0, 2).astype(jnp.int32)


def _true_next(mdp):
    """Next-state weights of the true dynamics, ``(t, s, a) -> (P(.|s, a), candidates)``."""

    def fn(t, state, action):
        del t
        if mdp.is_sparse:
            weights = jnp.moveaxis(mdp.next_probs[:, state, action], 0, -1)
            return weights, jnp.moveaxis(mdp.next_states[:, state], 0, -1)
        weights = mdp.transitions[state, action]
        return weights, jnp.broadcast_to(jnp.arange(mdp.num_states), weights.shape)

    return fn


def _tilted_next(mdp, reward, values):
    r"""Trajectory-level next-state weights :math:`\propto P e^{r(s,a,s') + W_{t+1}(s')}`."""
    _, r_next = reward_table(mdp, reward)
    true = _true_next(mdp)

    def fn(t, state, action):
        weights, candidates = true(t, state, action)
        logits = safe_log(weights) + values[t + 1][candidates]
        if r_next is not None:
            if mdp.is_sparse:
                extra = jnp.moveaxis(r_next[:, state, action], 0, -1)
            else:
                extra = r_next[state, action]
            logits = logits + extra
        top = jnp.max(logits, axis=-1, keepdims=True)
        return jnp.exp(logits - top), candidates

    return fn


def _start_logits(mdp, starts, dtype):
    """``(n, S)`` one-hot log start laws (0 at each start state, -inf elsewhere)."""
    hit = jnp.arange(mdp.num_states)[None, :] == starts[:, None]
    return jnp.where(hit, jnp.zeros((), dtype), -jnp.inf)


def _log_target(problem, params, samples):
    """:math:`\\log\\tilde p_\\theta` at ``samples``: :math:`R(\\tau)` or :math:`-E(x)`."""
    if _is_density_problem(problem):
        energy = problem.energy_model.energy
        return -_map_events(lambda x: energy(params, x), samples, 1)
    mdp = problem.mdp
    reward = problem.energy_model.reward(params)
    return _map_events(lambda obs: trajectory_return(mdp, reward, obs), samples, 2)


def _draws(rng_key, problem, params, num_samples: int, proposal, model: str, s0):
    """``(samples, log_target, log_proposal, resolved proposal)``; samples carry no gradient."""
    resolved = _resolve(proposal, problem, params, model)
    if model == "ebm":
        draws = resolved.distribution.sample(rng_key, (num_samples,))
        samples = sg(draws.astype(_float_dtype(params)))
    elif resolved.log_policy is not None:
        mdp, log_policy = problem.mdp, resolved.log_policy
        if model == "trajectory":
            logits = _start_logits(mdp, start_states(mdp, s0), log_policy.dtype)
        else:
            logits = safe_log(mdp.initial_dist).astype(log_policy.dtype)[None]
        samples = _sample_paths(rng_key, mdp, log_policy, logits, num_samples, _true_next(mdp))
        if model == "trajectory_global":
            samples = samples[0]
    else:
        samples = resolved.distribution.sample(rng_key, (num_samples,))
    log_target = _log_target(problem, params, samples)
    log_proposal = resolved.log_free(problem, samples).astype(log_target.dtype)
    return samples, log_target, log_proposal, resolved


def draw_weighted(
    rng_key,
    problem,
    params,
    num_samples: int,
    *,
    proposal=None,
    model: str = "trajectory",
    s0=None,
) -> WeightedSample:
    """Draw ``num_samples`` from the proposal (per start state for ``"trajectory"``) and weigh them.

    This is the sampling step every estimator of this module runs first (same key, same draws),
    exposed for diagnostics, gradients and tests.

    Args:
        rng_key: JAX key.
        problem: a tabular ``Problem`` or an R^d problem.
        params: parameters of ``problem.energy_model``.
        num_samples: draws :math:`K` (per start state for ``"trajectory"``).
        proposal: see the module docstring.
        model: ``"trajectory"``, ``"trajectory_global"`` or ``"ebm"``.
        s0: start states (``"trajectory"`` only; default every state with :math:`\\rho_0 > 0`).

    Returns:
        :class:`WeightedSample`.
    """
    check_choice("model", model, MODELS)
    num_samples = _check_int("num_samples", num_samples, 1)
    _check_proposal(proposal)
    _check_problem(problem, model, s0)
    samples, log_target, log_proposal, _ = _draws(
        rng_key, problem, params, num_samples, proposal, model, s0
    )
    return WeightedSample(samples=samples, log_weights=log_target - log_proposal)


def _num_targets(problem, model, s0) -> int:
    return start_states(problem.mdp, s0).shape[0] if model == "trajectory" else 1


# ---------------------------------------------------------------------------- plain IS and PSIS
def importance(num_samples: int, *, proposal=None, model: str = "trajectory") -> LogZEstimator:
    r"""Plain importance sampling, :math:`\hat Z = \frac1K\sum_k w_k` with :math:`w=\tilde p/q`.

    .. math::

        \log\hat Z = \operatorname{logsumexp}_k(\log w_k) - \log K,\qquad
        \mathrm{SE}(\log\hat Z) \approx \frac{\mathrm{sd}(w)}{\sqrt K\,\bar w}
        = \sqrt{\frac{K\sum_k\bar w_k^2 - 1}{K - 1}}.

    Bias: :math:`\hat Z` is **unbiased in Z** (whenever :math:`q > 0` where :math:`\tilde p > 0`);
    :math:`\log\hat Z` is consistent and biased **low** by about
    :math:`\chi^2(p_\theta\|q)/(2K)` (Jensen, THEORY §6). Serves ``"trajectory"``,
    ``"trajectory_global"`` and ``"ebm"`` (see the module docstring for each formula).

    ``stderr`` is the delta-method SE above; NaN when ``num_samples == 1``. The gradient in
    ``params`` is the self-normalised estimate :math:`\sum_k\bar w_k\nabla\log\tilde p_\theta(x_k)`
    (the proposal is a constant). ``info`` is :class:`ImportanceInfo`.

    Args:
        num_samples: :math:`K \ge 1` draws (per start state for ``"trajectory"``).
        proposal: ``None`` (uniform random policy / standard normal), a NumPyro distribution, or
            ``proposal(problem, params) -> distribution``.
        model: ``"trajectory"``, ``"trajectory_global"`` or ``"ebm"``.
    """
    num_samples = _check_int("num_samples", num_samples, 1)
    check_choice("model", model, MODELS)
    _check_proposal(proposal)

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        del data
        _check_problem(problem, model, s0)
        _, log_target, log_proposal, _ = _draws(
            rng_key, problem, params, num_samples, proposal, model, s0
        )
        log_weights = log_target - log_proposal
        info = ImportanceInfo(
            ess=sg(_ess(log_weights)),
            khat=_khat_or_nan(log_weights),
            max_log_weight=sg(jnp.max(log_weights, axis=-1)),
        )
        return LogZResult(
            log_z=_log_mean_exp(log_weights),
            stderr=sg(_delta_stderr(log_weights)),
            num_energy_evals=_counted(_evaluations(problem, model, s0, num_samples)),
            info=info,
        )

    return LogZEstimator(
        name=f"importance[{model}]", models=(model,), run=run, smooth=_smooth(proposal)
    )


def psis(
    num_samples: int, *, proposal=None, model: str = "trajectory", r_eff: float = 1.0
) -> LogZEstimator:
    r"""Pareto-smoothed importance sampling (THEORY §7.6): IS with the tail weights smoothed.

    The :math:`M` largest weights are replaced by the quantiles of a generalized Pareto fit
    (:func:`ebm_ppl.logz.psis.psis_smooth`, ArviZ's algorithm in JAX) and

    .. math::

        \log\hat Z_{\text{PSIS}} = \operatorname{logsumexp}_k(\log\tilde w_k) - \log K

    (the **unnormalised** sum of the smoothed weights :math:`\tilde w`). :math:`\hat k` is reported
    with the threshold :math:`\min(1 - 1/\log_{10}K, 0.7)` (:func:`khat_threshold`); trust the
    estimate only where ``info.ok``.

    Bias: smoothing trades a small bias for variance, so :math:`\hat Z_{\text{PSIS}}` is **not**
    unbiased, but it is **consistent** (the smoothed tail vanishes as :math:`K\to\infty` when the
    weights have a finite mean); :math:`\log\hat Z` is biased low like plain IS (Jensen). Serves
    ``"trajectory"``, ``"trajectory_global"`` and ``"ebm"``.

    ``stderr``: the delta-method SE of plain IS applied to the smoothed weights (approximate: the
    smoothed weights are not independent); never NaN structurally. Gradient: the PSIS
    self-normalised estimate :math:`\sum_k\bar{\tilde w}_k\nabla\log\tilde p_\theta(x_k)` (the
    smoothing weights held constant), a surrogate, **not** the derivative of the returned value
    (which moves with the Pareto fit); so ``smooth`` is False. ``info`` is :class:`PSISInfo`.

    Args:
        num_samples: :math:`K \ge 25` (the tail needs at least 5 draws).
        proposal: as in :func:`importance`.
        model: ``"trajectory"``, ``"trajectory_global"`` or ``"ebm"``.
        r_eff: relative efficiency of the draws (1: independent), for the tail length.
    """
    num_samples = _check_int("num_samples", num_samples, 25)
    check_choice("model", model, MODELS)
    _check_proposal(proposal)
    if psis_tail_length(num_samples, r_eff) < 5:
        raise ValueError(
            f"`num_samples` * `r_eff` must be >= 25 for a PSIS tail of 5 draws; got "
            f"num_samples={num_samples}, r_eff={r_eff}."
        )
    threshold = khat_threshold(num_samples)

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        del data
        _check_problem(problem, model, s0)
        _, log_target, log_proposal, _ = _draws(
            rng_key, problem, params, num_samples, proposal, model, s0
        )
        log_weights = log_target - log_proposal
        smoothed, khat = psis_smooth(sg(log_weights), r_eff=r_eff)
        value = _log_mean_exp(smoothed)
        normalised = jax.nn.softmax(smoothed, axis=-1)
        # value of the smoothed estimate, gradient of its self-normalised score estimate
        log_z = value + jnp.sum(normalised * (log_weights - sg(log_weights)), axis=-1)
        limit = jnp.full(khat.shape, threshold, khat.dtype)
        info = PSISInfo(
            ess=_ess(smoothed),
            khat=khat,
            khat_threshold=limit,
            ok=khat < limit,
            max_log_weight=sg(jnp.max(log_weights, axis=-1)),
        )
        return LogZResult(
            log_z=log_z,
            stderr=_delta_stderr(smoothed),
            num_energy_evals=_counted(_evaluations(problem, model, s0, num_samples)),
            info=info,
        )

    return LogZEstimator(name=f"psis[{model}]", models=(model,), run=run)


# ---------------------------------------------------------------------------- GCL mixture
def _stratum_variance_sum(values, mask):
    """:math:`n\\,\\widehat{\\mathrm{var}}` (sample variance, ``n - 1``) over the masked entries:
    0 for an empty stratum, NaN for a single entry."""
    count = jnp.sum(mask)
    safe = jnp.maximum(count, 1).astype(values.dtype)
    mean = jnp.sum(jnp.where(mask, values, 0)) / safe
    squares = jnp.sum(jnp.where(mask, (values - mean) ** 2, 0))
    unbiased = count * squares / jnp.maximum(count - 1, 1).astype(values.dtype)
    return jnp.where(count == 0, 0.0, jnp.where(count == 1, jnp.nan, unbiased))


def _solve_fixed_point(log_target, log_proposal, mask, log_num_data, log_num_gen):
    r"""Root :math:`\zeta^*` of :math:`h(\zeta)=\log\sum_i u_i(\zeta)=0`, with
    :math:`u_i = e^{R_i-\zeta}/(N_d e^{R_i-\zeta} + N_g q_i)` over the masked pooled sample.

    :math:`h` decreases strictly (:math:`h' = -\sum_i u_i(1 - N_d u_i)/\sum_i u_i\in[-1, 0)`), and
    the root lies in :math:`[\min_i a_i, \max_i a_i]`, :math:`a_i = R_i - \log q_i`: safeguarded
    Newton in log space (a Newton step when it stays in the bracket, else bisection).
    """
    dtype = log_target.dtype
    plain = log_target - log_proposal
    finite = mask & jnp.isfinite(plain)
    lower = jnp.min(jnp.where(finite, plain, jnp.inf))
    upper = jnp.max(jnp.where(finite, plain, -jnp.inf))
    count = jnp.maximum(jnp.sum(finite), 1).astype(dtype)
    start = jnp.clip(logsumexp(jnp.where(finite, plain, -jnp.inf)) - jnp.log(count), lower, upper)

    def h_and_slope(zeta):
        shifted = log_target - zeta
        log_u = shifted - jnp.logaddexp(log_num_data + shifted, log_num_gen + log_proposal)
        log_u = jnp.where(mask, log_u, -jnp.inf)
        h = logsumexp(log_u)
        share = jnp.exp(log_u - h)
        accepted = jnp.exp(log_num_data + log_u)  # D_i = N_d u_i
        return h, -jnp.sum(jnp.where(mask, share * (1 - accepted), 0))

    def body(_, state):
        zeta, lo, hi = state
        h, slope = h_and_slope(zeta)
        lo = jnp.where(h > 0, zeta, lo)
        hi = jnp.where(h < 0, zeta, hi)
        newton = zeta - h / slope
        inside = (newton > lo) & (newton < hi) & jnp.isfinite(newton)
        step = jnp.where(inside, newton, 0.5 * (lo + hi))
        return jnp.where(h == 0, zeta, step), lo, hi

    zeta, _, _ = jax.lax.fori_loop(0, _FIXED_POINT_ITERATIONS, body, (start, lower, upper))
    return zeta


def _mixture_one(target, data_mask, gen, fixed_point: bool):
    """GCL mixture estimate for one target from the pooled demonstration and proposal terms.

    ``target`` / ``gen`` hold ``(log_target, log_proposal, log_data_density)`` of the
    demonstrations (shared) and of this target's proposal draws.
    """
    r_d, c_d, d_d = target
    r_g, c_g, d_g = gen
    dtype = r_g.dtype
    num_gen = r_g.shape[0]
    num_data = jnp.sum(data_mask)
    log_num_data = jnp.log(num_data.astype(dtype))  # -inf without demonstrations
    log_num_gen = math.log(num_gen)
    log_total = jnp.log((num_data + num_gen).astype(dtype))
    log_target = jnp.concatenate([r_d, r_g])
    log_proposal = jnp.concatenate([c_d, c_g])
    mask = jnp.concatenate([data_mask, jnp.ones((num_gen,), bool)])
    is_data = jnp.concatenate([jnp.ones(r_d.shape, bool), jnp.zeros((num_gen,), bool)])
    if fixed_point:
        zeta = _solve_fixed_point(sg(log_target), log_proposal, mask, log_num_data, log_num_gen)
        log_density = sg(log_target) - zeta
    else:
        log_density = jnp.concatenate([d_d, d_g])
    # log(mu~ / b) = log((N_d p~ + N_g q) / |M|) - log b, a constant (no gradient, [FCAL] §2.3.2)
    log_mixture = sg(
        jnp.logaddexp(log_num_data + log_density, log_num_gen + log_proposal) - log_total
    )
    log_w = jnp.where(mask, log_target - log_mixture, -jnp.inf)
    log_z = logsumexp(log_w) - log_total
    # standard error: estimating equation F = sum_i u_i - 1, u_i = w_i / (|M| Z^)
    log_u = sg(log_w - log_z - log_total)
    u = jnp.exp(log_u)
    if fixed_point:
        slope = jnp.sum(jnp.where(mask, u * (1 - jnp.exp(log_num_data + log_u)), 0))
        residual = sg(log_z) - zeta  # h(zeta*) = log sum_i u_i(zeta*)
    else:
        slope = jnp.sum(jnp.where(mask, u, 0))
        residual = jnp.zeros((), dtype)
    variance = _stratum_variance_sum(u, mask & is_data) + _stratum_variance_sum(u, ~is_data)
    stderr = jnp.sqrt(variance) / slope
    info = GCLInfo(
        ess=1.0 / jnp.sum(jnp.where(mask, jax.nn.softmax(sg(log_w)) ** 2, 0)),
        khat=_khat_or_nan(log_w[r_d.shape[0] :]),
        num_data=num_data,
        residual=residual,
        max_log_weight=sg(jnp.max(log_w)),
    )
    return log_z, stderr, info


def gcl_mixture(
    num_samples: int,
    *,
    proposal=None,
    data_density: str | Callable = "model",
    nu: float | None = None,
    model: str = "trajectory",
) -> LogZEstimator:
    r"""Guided-cost-learning mixture estimator over demonstrations and proposal draws (THEORY §2).

    Pool the :math:`N_d` demonstrations :math:`\mathcal D` (``data``, default ``problem.demos`` /
    ``problem.data``) with :math:`N_g` = ``num_samples`` proposal draws :math:`\mathcal G`,
    :math:`\mathcal M = \mathcal D\cup\mathcal G`, :math:`\nu = N_g/N_d`, and use the empirical
    mixture as importance density (THEORY §3.2; the :math:`\nu\ne1` correction of §10.1):

    .. math::

        \tilde\mu(x) = \frac{N_d\,\tilde p(x) + N_g\,q(x)}{N_d + N_g}
                     = \frac{\tilde p(x) + \nu\,q(x)}{1 + \nu},\qquad
        \hat Z = \frac1{|\mathcal M|}\sum_{x\in\mathcal M}\frac{e^{-E_\theta(x)}}{\tilde\mu(x)}.

    For trajectories the dynamics cancel (:math:`\tilde\mu/b` needs only :math:`\tilde p/b` and
    :math:`\prod\pi`). ``data_density`` picks :math:`\tilde p`:

    * ``"model"``: :math:`\tilde p = p_\theta = e^{-E_\theta}/Z`, so :math:`Z` sits on both sides:
      :math:`\hat Z` is the **fixed point** :math:`\zeta^* = \log\hat Z` of
      :math:`\sum_{\mathcal M} e^{R_i - \zeta}/(N_d e^{R_i-\zeta} + N_g q_i) = 1`, equivalently
      the logistic intercept condition
      :math:`\sum_{\mathcal M}\sigma(R_i - \zeta - \log(\nu q_i)) = N_d` of the GAN
      discriminator (THEORY §3.3, fact 1), solved by safeguarded Newton in log space.
      Bias: a fixed point, **consistent for Z(θ) only at the data's θ** (:math:`p_\theta = p`);
      elsewhere it converges to :math:`Z^*(\theta)\ne Z(\theta)` (THEORY §2, §10.2).
    * a callable ``log p~(x)``: a separate density of the data, called on a batch of observed
      trajectory arrays ``(B, T + 1, 2)`` (full log-probability under counting measure including
      :math:`\log\rho_0` and the dynamics, like ``TrajectoryDistribution.log_prob``) or of points
      ``(B, d)``, returning ``(B,)``. Then :math:`\hat Z` is explicit and **unbiased in Z exactly
      when** :math:`\tilde p` is the true law of the demonstrations, biased otherwise (THEORY §2).
      For ``"trajectory"`` its start-state marginal must be :math:`\rho_0` (so that
      :math:`\tilde p(\tau\mid s_0)/b(\tau\mid s_0) = \tilde p(\tau)/b(\tau)`).

    Either way :math:`\log\hat Z` is biased low (Jensen, THEORY §6(c)). For ``"trajectory"`` each
    start state :math:`s_0` pools the demonstrations that start there (:math:`N_d(s_0)` of them,
    so :math:`\nu` varies with :math:`s_0`) with ``num_samples`` rollouts from :math:`s_0`; with
    no demonstration there it is plain IS.

    Gradient: :math:`\tilde\mu` is a constant (stop-gradient, [FCAL] §2.3.2, THEORY §3.4 (ii)), so
    :math:`\nabla\log\hat Z = \sum_{\mathcal M}\bar w\,\nabla\log\tilde p_\theta` (the GCL cost
    gradient), which is **not** :math:`d\zeta^*/d\theta` of the fixed point. ``stderr``: the
    sandwich SE of the estimating equation :math:`F(\zeta)=\sum_{\mathcal M}u_i - 1` with
    stratified (data / draws) sample variances,
    :math:`\mathrm{SE}^2 = \sum_{s}n_s\widehat{\mathrm{var}}_s(u)/F'(\zeta)^2`; NaN when a
    target has exactly one demonstration (or ``num_samples == 1``). ``info`` is :class:`GCLInfo`.

    Args:
        num_samples: proposal draws :math:`N_g` (per start state for ``"trajectory"``).
        proposal: as in :func:`importance`; it must cover the demonstrations (:math:`q > 0`).
        data_density: ``"model"`` or a callable log density (see above).
        nu: ``None`` (default): :math:`\nu = N_g/N_d` from all the demonstrations. A number:
            use only the first :math:`N_d = N_g/\nu` demonstrations (an integer, at most how many
            there are); ``nu=1`` is [FCAL]'s equal batches.
        model: ``"trajectory"``, ``"trajectory_global"`` or ``"ebm"``.
    """
    num_samples = _check_int("num_samples", num_samples, 1)
    check_choice("model", model, MODELS)
    _check_proposal(proposal)
    fixed_point = isinstance(data_density, str)
    if fixed_point:
        check_choice("data_density", data_density, ("model",))
    elif not callable(data_density):
        raise TypeError(
            "`data_density` must be 'model' or a callable log density; got "
            f"{type(data_density).__name__}."
        )
    if nu is not None and not float(nu) > 0:
        raise ValueError(f"`nu` must be None or > 0; got {nu!r}.")

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        _check_problem(problem, model, s0)
        demos = _demonstrations(problem, data, model)
        if nu is not None:
            demos = demos[: _num_used(num_samples, nu, demos.shape[0])]
        samples, r_g, c_g, resolved = _draws(
            rng_key, problem, params, num_samples, proposal, model, s0
        )
        if model == "ebm":
            demos = demos.astype(r_g.dtype)
        r_d = _log_target(problem, params, demos)
        c_d = resolved.log_free(problem, demos).astype(r_g.dtype)
        if fixed_point:
            d_d, d_g = jnp.zeros_like(r_d), jnp.zeros_like(r_g)
        else:  # evaluated in the model's dtype, like everything else
            d_d = _log_data_density(data_density, problem, demos).astype(r_g.dtype)
            d_g = _log_data_density(data_density, problem, samples).astype(r_g.dtype)
        if model == "trajectory":
            starts = start_states(problem.mdp, s0)
            masks = demos[:, 0, 0][None, :] == starts[:, None]
            log_z, stderr, info = jax.vmap(
                lambda m, gen: _mixture_one((r_d, c_d, d_d), m, gen, fixed_point)
            )(masks, (r_g, c_g, d_g))
        else:
            mask = jnp.ones((demos.shape[0],), bool)
            log_z, stderr, info = _mixture_one((r_d, c_d, d_d), mask, (r_g, c_g, d_g), fixed_point)
        evals = _evaluations(problem, model, s0, num_samples) + demos.shape[0] * _per_draw(problem)
        return LogZResult(log_z=log_z, stderr=stderr, num_energy_evals=_counted(evals), info=info)

    kind = "model" if fixed_point else "density"
    return LogZEstimator(name=f"gcl_mixture[{model},{kind}]", models=(model,), run=run)


def _demonstrations(problem, data, model: str):
    if data is None:
        data = getattr(problem, "data" if model == "ebm" else "demos", None)
    if data is None:
        raise ValueError(
            "gcl_mixture needs demonstrations: pass `data=` to run, or use a problem whose "
            f"`{'data' if model == 'ebm' else 'demos'}` is set; got None."
        )
    data = jnp.asarray(data)
    if model == "ebm":
        expected = (None, int(problem.dim))
        text = f"(N, d) = (N, {problem.dim})"
    else:
        expected = (None, problem.mdp.horizon + 1, 2)
        text = f"(N, T + 1, 2) = (N, {problem.mdp.horizon + 1}, 2)"
    if data.ndim != len(expected) or any(
        e is not None and e != s for e, s in zip(expected, data.shape, strict=True)
    ):
        raise ValueError(f"`data` must have shape {text}; got shape {data.shape}.")
    if data.shape[0] < 1:
        raise ValueError("`data` must hold at least one demonstration; got 0.")
    return data


def _num_used(num_samples: int, nu: float, available: int) -> int:
    wanted = num_samples / float(nu)
    count = int(round(wanted))
    if abs(wanted - count) > 1e-9 * max(wanted, 1.0) or not 1 <= count <= available:
        raise ValueError(
            f"`nu` = {nu!r} asks for N_d = num_samples / nu = {wanted:g} demonstrations; it must "
            f"be an integer in [1, {available}] (the demonstrations given)."
        )
    return count


def _log_data_density(density, problem, values):
    """:math:`\\log\\tilde p - \\log b` (tabular) or :math:`\\log\\tilde p` (R^d), no gradient."""
    event_ndim = 1 if _is_density_problem(problem) else 2
    batch = values.shape[: values.ndim - event_ndim]
    flat = values.reshape((-1,) + values.shape[values.ndim - event_ndim :])
    log_p = jnp.asarray(density(flat)).reshape(batch)
    if event_ndim == 2:
        log_p = log_p - _map_events(lambda obs: log_base_measure(problem.mdp, obs), values, 2)
    return sg(log_p)


# ---------------------------------------------------------------------------- bounds
def iwae(
    num_samples: int, num_particles: int, *, proposal=None, model: str = "trajectory"
) -> LogZEstimator:
    r"""Importance-weighted bound :math:`\mathcal L_K` averaged over ``num_samples / K`` groups.

    .. math::

        \mathcal L_K = \mathbb E_{x_{1:K}\sim q}\Big[\log\frac1K\sum_{k=1}^K w_k\Big],\qquad
        \widehat{\mathcal L}_K = \frac1G\sum_{g=1}^G\log\frac1K\sum_{k\in g}w_k,\quad
        G = \text{num\_samples}/K.

    Bias: a **lower bound** on :math:`\log Z`: :math:`\mathbb E\widehat{\mathcal L}_K =
    \mathcal L_K\le\mathcal L_{K+1}\le\log Z` ([IWAE] Thm 1, THEORY §6); the estimate is unbiased
    for the bound :math:`\mathcal L_K`, not for :math:`\log Z`. ``K = 1`` is the ELBO. Serves
    ``"trajectory"``, ``"trajectory_global"`` and ``"ebm"``.

    ``stderr``: the SE of the average over groups, :math:`\mathrm{sd}_g/\sqrt G`, an error bar for
    :math:`\mathcal L_K` (not for :math:`\log Z`); NaN when there is one group. ``info`` is
    :class:`BoundInfo`.

    Args:
        num_samples: total draws, a multiple of ``num_particles``.
        num_particles: :math:`K \ge 1`.
        proposal: as in :func:`importance`.
        model: ``"trajectory"``, ``"trajectory_global"`` or ``"ebm"``.
    """
    return _iwae(num_samples, num_particles, proposal, model, f"iwae{num_particles}")


def elbo(num_samples: int, *, proposal=None, model: str = "trajectory") -> LogZEstimator:
    r"""Evidence lower bound :math:`\mathbb E_q[\log w]=\mathbb E_q[\log\tilde p_\theta-\log q]`.

    Bias: a **lower bound**, :math:`\log Z - \mathrm{KL}(q\|p_\theta)` (THEORY §6); the estimate
    (the mean of ``num_samples`` log weights) is unbiased for the bound. This is :func:`iwae` with
    ``K = 1``; ``stderr`` is :math:`\mathrm{sd}(\log w)/\sqrt{\text{num\_samples}}`, NaN for one
    draw. Serves ``"trajectory"``, ``"trajectory_global"`` and ``"ebm"``.
    """
    return _iwae(num_samples, 1, proposal, model, "elbo")


def _iwae(num_samples, num_particles, proposal, model, name) -> LogZEstimator:
    num_samples = _check_int("num_samples", num_samples, 1)
    num_particles = _check_int("num_particles", num_particles, 1)
    check_choice("model", model, MODELS)
    _check_proposal(proposal)
    if num_samples % num_particles:
        raise ValueError(
            f"`num_samples` must be a multiple of `num_particles` = {num_particles}; got "
            f"{num_samples}."
        )

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        del data
        _check_problem(problem, model, s0)
        _, log_target, log_proposal, _ = _draws(
            rng_key, problem, params, num_samples, proposal, model, s0
        )
        log_weights = log_target - log_proposal
        estimate, stderr = iwae_estimate(log_weights, num_particles)
        return LogZResult(
            log_z=estimate,
            stderr=stderr,
            num_energy_evals=_counted(_evaluations(problem, model, s0, num_samples)),
            info=_bound_info(log_weights),
        )

    return LogZEstimator(
        name=f"{name}[{model}]", models=(model,), run=run, smooth=_smooth(proposal)
    )


def iwae_estimate(log_weights, num_particles: int):
    r"""The IWAE average of given log weights: groups of ``K`` consecutive draws over the last axis.

    .. math::

        \widehat{\mathcal L}_K = \frac1G\sum_{g=1}^G\log\frac1K\sum_{k\in g}w_k,\qquad
        \mathrm{SE} = \mathrm{sd}_g\big(\log\tfrac1K\textstyle\sum_{k\in g}w_k\big)/\sqrt G.

    Pointwise (by concavity of log), :math:`\widehat{\mathcal L}_{2K}(w_{1:2K})\ge
    \tfrac12[\widehat{\mathcal L}_K(w_{1:K}) + \widehat{\mathcal L}_K(w_{K+1:2K})]`, the
    finite-sample form of :math:`\mathcal L_K\le\mathcal L_{2K}` (THEORY §6).

    Args:
        log_weights: ``(..., G * K)``.
        num_particles: ``K``.

    Returns:
        ``(estimate, stderr)`` of shape ``(...)``; ``stderr`` is NaN when ``G = 1``.
    """
    log_weights = jnp.asarray(log_weights)
    num_particles = _check_int("num_particles", num_particles, 1)
    total = log_weights.shape[-1]
    if total % num_particles:
        raise ValueError(
            f"`log_weights` must have a last axis that is a multiple of `num_particles` = "
            f"{num_particles}; got {total}."
        )
    groups = total // num_particles
    grouped = log_weights.reshape(log_weights.shape[:-1] + (groups, num_particles))
    per_group = _log_mean_exp(grouped)
    estimate = jnp.mean(per_group, axis=-1)
    if groups > 1:
        stderr = sg(jnp.std(per_group, axis=-1, ddof=1) / math.sqrt(groups))
    else:
        stderr = jnp.full(estimate.shape, jnp.nan, estimate.dtype)
    return estimate, stderr


def _bound_info(log_weights) -> BoundInfo:
    log_weights = sg(log_weights)
    return BoundInfo(
        ess=_ess(log_weights),
        khat=_khat_or_nan(log_weights),
        max_log_weight=jnp.max(log_weights, axis=-1),
    )


def eubo(
    num_samples: int,
    *,
    proposal=None,
    model: str = "trajectory",
    sampler: Callable | None = None,
) -> LogZEstimator:
    r"""Evidence upper bound :math:`\mathbb E_{p_\theta}[\log w]` from **exact** draws of
    :math:`p_\theta`.

    .. math::

        \mathrm{EUBO} = \mathbb E_{x\sim p_\theta}[\log\tilde p_\theta(x) - \log q(x)]
        = \log Z + \mathrm{KL}(p_\theta\|q)\ \ge\ \log Z,

    estimated by the mean of :math:`\log w` over ``num_samples`` exact draws (THEORY §6).
    Bias: an **upper bound** on :math:`\log Z`; the estimate is unbiased for the bound.

    Exact draws: tabular models sample the trajectory-level model of THEORY §1.4 (the law of
    :func:`ebm_ppl.exact.sampling.sample_trajectories`; for ``"trajectory"`` conditioned on each
    start state); ``"ebm"`` has no generic exact sampler, so
    it needs ``sampler(rng_key, problem, params, num_samples) -> (num_samples, d)`` and is refused
    without one. Serves ``"trajectory"``, ``"trajectory_global"`` and ``"ebm"`` (with ``sampler``).

    ``stderr``: :math:`\mathrm{sd}(\log w)/\sqrt{\text{num\_samples}}`, an error bar for the bound;
    NaN for one draw. ``info`` is :class:`BoundInfo` (weights at the exact draws).

    Args:
        num_samples: exact draws (per start state for ``"trajectory"``).
        proposal: the :math:`q` of the bound, as in :func:`importance`.
        model: ``"trajectory"``, ``"trajectory_global"`` or ``"ebm"``.
        sampler: exact sampler of :math:`p_\theta` (required for ``"ebm"``; tabular: optional
            override with the same signature returning observed arrays).

    Raises:
        ValueError: for ``model="ebm"`` without ``sampler``.
    """
    num_samples = _check_int("num_samples", num_samples, 1)
    check_choice("model", model, MODELS)
    _check_proposal(proposal)
    if model == "ebm" and sampler is None:
        raise ValueError(
            "eubo needs exact samples of p_theta; model='ebm' has no generic exact sampler: pass "
            "`sampler(rng_key, problem, params, num_samples) -> (num_samples, d)`; got None."
        )
    if sampler is not None and not callable(sampler):
        raise TypeError(f"`sampler` must be callable; got {type(sampler).__name__}.")
    if sampler is not None and model == "trajectory":
        raise ValueError(
            "a custom `sampler` serves model='trajectory_global' or 'ebm' only; model='trajectory' "
            "samples each start state exactly by itself; got a sampler with model='trajectory'."
        )

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        del data
        _check_problem(problem, model, s0)
        resolved = _resolve(proposal, problem, params, model)
        samples = sg(_exact_draws(rng_key, problem, params, num_samples, model, s0, sampler))
        log_target = _log_target(problem, params, samples)
        log_weights = log_target - resolved.log_free(problem, samples).astype(log_target.dtype)
        estimate = jnp.mean(log_weights, axis=-1)
        if num_samples > 1:
            stderr = sg(jnp.std(log_weights, axis=-1, ddof=1) / math.sqrt(num_samples))
        else:
            stderr = jnp.full(estimate.shape, jnp.nan, estimate.dtype)
        return LogZResult(
            log_z=estimate,
            stderr=stderr,
            num_energy_evals=_counted(_evaluations(problem, model, s0, num_samples)),
            info=_bound_info(log_weights),
        )

    return LogZEstimator(name=f"eubo[{model}]", models=(model,), run=run)


def _exact_draws(rng_key, problem, params, num_samples, model, s0, sampler):
    """Exact draws of :math:`p_\theta`: ``(n, K, T + 1, 2)``, ``(K, T + 1, 2)`` or ``(K, d)``."""
    if sampler is not None:
        return jnp.asarray(sampler(rng_key, problem, params, num_samples))
    mdp = problem.mdp
    reward = problem.energy_model.reward(params)
    # the trajectory-level column of THEORY §1.4: actions from exp(Q_t - W_t), next states
    # tilted by exp(W_{t+1}); start at s0 (conditional model) or from rho_0 exp(W_0) (global)
    solution = soft_bellman(mdp, sg(reward), model="trajectory")
    values = solution.values
    if model == "trajectory":
        logits = _start_logits(mdp, start_states(mdp, s0), values.dtype)
    else:
        logits = (safe_log(mdp.initial_dist) + values[0])[None]
    next_weights = _tilted_next(mdp, sg(reward), values)
    paths = _sample_paths(rng_key, mdp, solution.log_policy, logits, num_samples, next_weights)
    return paths if model == "trajectory" else paths[0]
