r"""Sequential Monte Carlo over time for tabular trajectory-level :math:`\log Z` (THEORY §1.1–§1.2).

The trajectory-level partition function started at :math:`s_0` is

.. math::

    Z(s_0) = \sum_\tau b(\tau\mid s_0)\,e^{R(\tau)},\qquad
    R(\tau) = \sum_{t<L} r(s_t, a_t, s_{t+1}),

with :math:`b(\tau\mid s_0) = \prod_{t<L} P(s_{t+1}\mid s_t, a_t)` and :math:`L` the number of
decisions before an absorbing terminal state. Particles are rolled forward with a proposal
policy :math:`\pi_t` **in the true dynamics**, so :math:`P` cancels from the weights (THEORY §4)
and the incremental log-weight of step :math:`t` is

.. math::

    \log w_t = r(s_t, a_t, s_{t+1}) - \log\pi_t(a_t\mid s_t)
    \quad(0 \text{ once the particle sits in a terminal state}).

With normalised weights :math:`\bar W_{t-1}` (after the optional resampling at the start of step
:math:`t`) the estimate is the standard product of the per-step weight means,

.. math::

    \log\hat Z = \sum_{t=0}^{T-1}\log\sum_i \bar W^i_{t-1}\,w^i_t .

**Bias.** :math:`\hat Z` is unbiased in :math:`Z` for any proposal whose support covers the
target's, with resampling never, always, or adaptively (when the ESS falls below
``ess_threshold * N``: the decision depends only on the past, and multinomial and systematic
resampling both keep each particle's expected number of copies at :math:`N\bar W^i`).
:math:`\log\hat Z` is biased low (Jensen, THEORY §6). One run has no error estimate: ``stderr``
is NaN; use the spread over runs. Resampling makes the estimate piecewise constant in the reward,
so it is not a smooth surrogate for NUTS (THEORY §7.4); with ``resample="never"`` and a fixed
proposal (``None`` or an array) the draws do not depend on the parameters and the estimator is
marked ``smooth``.

Models: ``"trajectory"`` (all particles start at :math:`s_0`; one run per requested start state,
vmapped, ``log_z`` of shape ``(n,)``) and ``"trajectory_global"`` (particles start from
:math:`\rho_0`, whose factor then cancels: :math:`Z = \sum_{s_0}\rho_0(s_0)Z(s_0)`, ``log_z``
of shape ``()``). The causal model is normalised and has no :math:`Z`.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ebm_ppl._validation import check_choice, is_concrete
from ebm_ppl.exact.tabular import reward_table, safe_log, start_states
from ebm_ppl.logz.base import LogZEstimator, LogZResult
from ebm_ppl.spaces.tabular import TabularMDP

__all__ = ["ParticleSMCInfo", "particle_smc"]

MODELS = ("trajectory", "trajectory_global")
RESAMPLE = ("adaptive", "always", "never")
SCHEMES = ("systematic", "multinomial")


class ParticleSMCInfo(NamedTuple):
    """Info of :func:`particle_smc`.

    Attributes:
        ess: effective sample size :math:`(\\sum_i W^i)^2/\\sum_i (W^i)^2` of the weights after
            each step's reweighting, in particles; ``(n, T)`` (``"trajectory"``) or ``(T,)``.
        num_resampling: number of resampling events; ``(n,)`` or ``()``.
    """

    ess: jax.Array
    num_resampling: jax.Array


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1; got {value!r}.")
    return int(value)


def _log_ess(log_weights):
    return 2 * logsumexp(log_weights) - logsumexp(2 * log_weights)


def _last_positive(probs):
    """Index of the last positive entry of each row of ``probs`` ``(..., K)``."""
    width = probs.shape[-1]
    return width - 1 - jnp.argmax(jnp.flip(probs > 0, axis=-1), axis=-1)


def _inverse_cdf(probs, u):
    """Index ``i`` with ``F(i-1) <= u F(K-1) < F(i)`` for each row of ``probs`` ``(N, K)``.

    Inverse-CDF draws from unnormalised probabilities, one uniform ``u`` ``(N,)`` each: cheaper to
    compile than Gumbel-max, and exact up to rounding. Zero-probability entries are never chosen
    (a product ``u F(K-1)`` that rounds up to ``F(K-1)`` falls back to the last positive entry).
    """
    cdf = jnp.cumsum(probs, axis=-1)
    target = u * cdf[:, -1]
    index = jnp.sum(cdf <= target[:, None], axis=-1)
    return jnp.minimum(index, _last_positive(probs)).astype(jnp.int32)


def _resample_indices(u, log_weights, scheme: str):
    """Ancestor indices ``(N,)`` from normalised ``log_weights``, given uniforms ``u`` ``(N,)``.

    Both schemes give each particle :math:`N\\bar W^i` copies in expectation (unbiased); the
    systematic one uses only ``u[0]`` (one uniform for all) and has lower variance.
    """
    num = log_weights.shape[0]
    weights = jnp.exp(log_weights - jnp.max(log_weights))
    cdf = jnp.cumsum(weights)
    cdf = cdf / cdf[-1]
    if scheme == "systematic":
        positions = (u[0] + jnp.arange(num, dtype=cdf.dtype)) / num
    else:
        positions = u
    index = jnp.searchsorted(cdf, positions, side="right", method="sort")
    return jnp.minimum(index, _last_positive(weights)).astype(jnp.int32)


def _step_sampler(mdp: TabularMDP, r_next):
    """``(u, states, actions) -> (next_states, r_next values)`` in the true dynamics."""

    def sample(u, states, actions):
        if mdp.is_sparse:
            slot = _inverse_cdf(mdp.next_probs[:, states, actions].T, u)  # over (N, U)
            nxt = mdp.next_states[slot, states]
            extra = None if r_next is None else r_next[slot, states, actions]
        else:
            nxt = _inverse_cdf(mdp.transitions[states, actions], u)  # over (N, S)
            extra = None if r_next is None else r_next[states, actions, nxt]
        return nxt.astype(jnp.int32), extra

    return sample


@partial(jax.jit, static_argnames=("resample", "scheme", "ess_threshold"))
def _run_particles(
    rng_key, mdp, r_sa, r_next, log_policy, init_states, resample, scheme, ess_threshold
):
    """One particle system started at ``init_states`` ``(N,)``.

    Returns:
        ``(log_z (), ess (T,), num_resampling ())``.
    """
    num = init_states.shape[0]
    dtype = r_sa.dtype
    step_sampler = _step_sampler(mdp, r_next)
    uniform = jnp.full((num,), -jnp.log(jnp.asarray(num, dtype)), dtype)

    def step(carry, inputs):
        states, log_w, log_z, count = carry
        t, u = inputs
        if resample == "never":
            do = jnp.zeros((), bool)
        elif resample == "always":
            do = t > 0
        else:
            do = (t > 0) & (_log_ess(log_w) < jnp.log(ess_threshold * num))
        if resample != "never":
            ancestors = jnp.where(
                do, _resample_indices(u[2], log_w, scheme), jnp.arange(num, dtype=jnp.int32)
            )
            states = states[ancestors]
            log_w = jnp.where(do, uniform, log_w[ancestors])
        live = ~mdp.terminal[states]
        step_policy = log_policy[t, states]  # (N, A)
        actions = _inverse_cdf(jnp.exp(step_policy), u[0])
        nxt, extra = step_sampler(u[1], states, actions)
        chosen = jnp.take_along_axis(step_policy, actions[:, None], axis=1)[:, 0]
        increment = r_sa[states, actions] - chosen
        if extra is not None:
            increment = increment + extra
        increment = jnp.where(live, increment, 0)
        states = jnp.where(live, nxt, states)
        total = logsumexp(log_w + increment)
        log_w = log_w + increment - total
        carry = (states, log_w, log_z + total, count + do.astype(jnp.int32))
        return carry, jnp.exp(_log_ess(log_w))

    horizon = log_policy.shape[0]
    init = (init_states, uniform, jnp.zeros((), dtype), jnp.zeros((), jnp.int32))
    # all the step's randomness from one call: uniforms (T, 3, N) for action, next state and
    # resampling (one threefry kernel to compile instead of several)
    draws = jax.random.uniform(rng_key, (horizon, 3, num), dtype)
    (_, _, log_z, count), ess = jax.lax.scan(step, init, (jnp.arange(horizon), draws))
    return log_z, ess, count


def _proposal_log_policy(proposal, problem, params, mdp: TabularMDP, dtype):
    """The proposal as a ``(T, S, A)`` log-policy in ``dtype`` (validated when concrete)."""
    shape = (mdp.horizon, mdp.num_states, mdp.num_actions)
    if proposal is None:
        return jnp.full(shape, -jnp.log(jnp.asarray(mdp.num_actions, dtype)), dtype)
    log_policy = proposal(problem, params) if callable(proposal) else proposal
    log_policy = jnp.asarray(log_policy)
    if log_policy.shape == shape[1:]:
        log_policy = jnp.broadcast_to(log_policy, shape)
    if log_policy.shape != shape:
        raise ValueError(
            f"`proposal` must be a log-policy of shape (T, S, A) = {shape} or (S, A) = "
            f"{shape[1:]}; got shape {log_policy.shape}."
        )
    log_policy = log_policy.astype(dtype)
    if is_concrete(log_policy):
        array = np.asarray(log_policy, dtype=np.float64)
        if np.isnan(array).any() or np.isposinf(array).any():
            raise ValueError("`proposal` must hold log-probabilities (no NaN or +inf).")
        with np.errstate(divide="ignore"):
            totals = np.logaddexp.reduce(array, axis=-1)
        atol = 1e-4 if log_policy.dtype == jnp.float32 else 1e-8
        bad = np.abs(totals) > atol
        if bad.any():
            t, s = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"`proposal` must be normalised over actions; at step {t}, state {s} the "
                f"probabilities sum to {np.exp(totals[t, s])!r}."
            )
    return log_policy


def particle_smc(
    num_particles: int,
    *,
    proposal=None,
    model: str = "trajectory",
    resample: str = "adaptive",
    ess_threshold: float = 0.5,
    scheme: str = "systematic",
) -> LogZEstimator:
    """Particle SMC over time for the trajectory-level :math:`\\log Z` (module docstring).

    Bias: unbiased in :math:`Z` (any resampling rule here); :math:`\\log\\hat Z` biased low by
    about half its variance. ``stderr`` is NaN (one run has no error estimate). Serves
    ``"trajectory"`` and ``"trajectory_global"``.

    Args:
        num_particles: particles ``N`` per start state (``"trajectory"``) or in total.
        proposal: the proposal policy: ``None`` (uniform random policy), a ``(T, S, A)`` or
            stationary ``(S, A)`` log-policy array, or a callable ``(problem, params) ->`` such
            an array (e.g. the causal soft-optimal policy of the current reward). It must give
            positive probability to every action the target can take, and is cast to the reward's
            dtype.
        model: ``"trajectory"`` or ``"trajectory_global"``.
        resample: ``"adaptive"`` (when the ESS falls below ``ess_threshold * N``), ``"always"``
            (before every step after the first) or ``"never"`` (sequential importance sampling).
        ess_threshold: the adaptive threshold as a fraction of ``N``, in ``(0, 1]``.
        scheme: ``"systematic"`` or ``"multinomial"`` resampling.

    Returns:
        A :class:`~ebm_ppl.logz.base.LogZEstimator` whose ``run(rng_key, problem, params, *,
        data=None, s0=None)`` returns ``log_z`` ``(n,)`` or ``()``, ``stderr`` NaN of the same
        shape, ``num_energy_evals`` = ``N * T`` (times ``n`` start states) and
        :class:`ParticleSMCInfo`.

    Raises:
        ValueError: bad settings; at ``run``, a ``proposal`` of the wrong shape or not
            normalised, or ``s0`` given for ``"trajectory_global"``.
        TypeError: a problem without a tabular MDP.
    """
    num = _positive_int("num_particles", num_particles)
    check_choice("model", model, MODELS)
    check_choice("resample", resample, RESAMPLE)
    check_choice("scheme", scheme, SCHEMES)
    if not 0 < float(ess_threshold) <= 1:
        raise ValueError(f"`ess_threshold` must lie in (0, 1]; got {ess_threshold!r}.")
    if proposal is not None and not callable(proposal):
        proposal = jnp.asarray(proposal)
    settings = dict(resample=resample, scheme=scheme, ess_threshold=float(ess_threshold))

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        del data
        mdp = getattr(problem, "mdp", None)
        if not isinstance(mdp, TabularMDP):
            raise TypeError(
                f"particle_smc needs a problem with a tabular `mdp`; got {type(problem).__name__}."
            )
        if model == "trajectory_global" and s0 is not None:
            raise ValueError("`s0` must be None for model='trajectory_global' (one global Z).")
        r_sa, r_next = reward_table(mdp, problem.energy_model.reward(params))
        log_policy = _proposal_log_policy(proposal, problem, params, mdp, r_sa.dtype)
        core = partial(_run_particles, mdp=mdp, r_sa=r_sa, r_next=r_next, log_policy=log_policy)
        if model == "trajectory":
            starts = start_states(mdp, s0)
            keys = jax.random.split(rng_key, starts.shape[0])
            log_z, ess, count = jax.vmap(
                lambda key, s: core(key, init_states=jnp.full((num,), s, jnp.int32), **settings)
            )(keys, starts)
            num_runs = starts.shape[0]
        else:
            key_start, key_run = jax.random.split(rng_key)
            init_states = jax.random.categorical(
                key_start, safe_log(mdp.initial_dist), shape=(num,)
            ).astype(jnp.int32)
            log_z, ess, count = core(key_run, init_states=init_states, **settings)
            num_runs = 1
        return LogZResult(
            log_z=log_z,
            stderr=jnp.full_like(log_z, jnp.nan),
            num_energy_evals=jnp.asarray(num * mdp.horizon * num_runs),
            info=ParticleSMCInfo(ess=ess, num_resampling=count),
        )

    # with the key fixed and no resampling, the draws do not depend on params when the proposal
    # is fixed, and log Z_hat is a smooth function of the reward (sequential importance sampling)
    smooth = resample == "never" and not callable(proposal)
    return LogZEstimator(name=f"particle_smc[{model}]", models=(model,), run=run, smooth=smooth)
