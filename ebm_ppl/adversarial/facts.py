r"""The three facts linking GAN-GCL and guided cost learning, as checkable identities (THEORY §3).

Notation as in :mod:`ebm_ppl.adversarial.discriminator`: pooled sample
:math:`\mathcal M = \mathcal D\cup\mathcal G`, offsets :math:`a(\tau) = R_\theta(\tau) -
\log(\nu q(\tau))` (so :math:`\ell = a - \zeta`), and, per start state :math:`s` (one group for
the global model),

.. math::

    \tilde\mu(\tau) = \frac{N_d(s)e^{R(\tau)-\zeta(s)} + N_g(s)q(\tau)}{|\mathcal M(s)|},\qquad
    w = \frac{e^{R}}{\tilde\mu},\qquad
    \hat Z(s) = \frac1{|\mathcal M(s)|}\sum_{\mathcal M(s)} w .

1. **Fact 1** (THEORY §3.3). :math:`\partial_{\zeta(s)}\hat{\mathcal L}_D = 0\iff
   \sum_{\mathcal M(s)}D = N_d(s)`; the root :math:`\zeta^*(s)` is unique, and at it
   :math:`e^{\zeta^*(s)} = \hat Z(s)` — the GCL mixture importance estimate with
   :math:`\tilde p = p_\theta` (the fixed point of :func:`ebm_ppl.logz.gcl_mixture`). A
   **fixed point**, consistent for :math:`Z(\theta)` only at the data's :math:`\theta`.
2. **Fact 2** (THEORY §3.4). At :math:`\zeta^*`,
   :math:`\nabla_\theta\hat{\mathcal L}_D = \nabla_\theta\big[\frac1{N_d}\sum_{\mathcal D}c_\theta
   + \sum_s\frac{N_d(s)}{N_d}\log\frac1{|\mathcal M(s)|}\sum_{\mathcal M(s)}
   \frac{e^{-c_\theta}}{\mathrm{sg}(\tilde\mu)}\big]` (the GCL cost gradient, mixture held
   constant). Without the stop-gradient it fails (negative control).
3. **Fact 3** (THEORY §3.5). :math:`\mathbb E_q[-\ell] = \mathrm{KL}(q\|p_\theta) +
   \mathbb E_{\rho_0}[\zeta(s_0) - \log Z(s_0)] + \log\nu` — exact by enumeration.

For the start-state model (``model="trajectory"``), facts 1–2 hold per start state when
:math:`N_g(s) = \nu N_d(s)`: draw :math:`\nu` rollouts from each demonstration's start state
(:func:`~ebm_ppl.adversarial.discriminator.rollouts` with ``starts``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ebm_ppl._validation import check_choice
from ebm_ppl.adversarial.discriminator import (
    ZETA_MODELS,
    discriminator_logits,
    generator_loss,
    policy_log_probs,
    trajectory_returns,
)
from ebm_ppl.exact.enumerate import enumerate_trajectories, enumerated_log_probs

__all__ = [
    "Equivalence",
    "GeneratorIdentity",
    "solve_zeta",
    "mixture_log_z",
    "gcl_cost_loss",
    "pooled_facts",
    "check_equivalence",
    "check_equivalence_ebm",
    "generator_identity",
]

_NEWTON_ITERATIONS = 100
sg = jax.lax.stop_gradient


class Equivalence(NamedTuple):
    """Both sides of facts 1 and 2 (arrays over start states for the ``(S,)`` ζ table).

    Attributes:
        zeta: :math:`\\zeta^*` (scalar, or ``(G,)`` per group; 0 where a group has no data).
        sum_d: :math:`\\sum_{\\mathcal M(s)}D` at :math:`\\zeta^*` (fact 1, left side).
        num_data: :math:`N_d(s)` (fact 1, right side).
        log_z_mixture: :math:`\\log\\hat Z(s)`, the mixture IS estimate at :math:`\\zeta^*`
            (fact 1: equals ``zeta``).
        discriminator_grad: :math:`\\nabla_\\theta\\hat{\\mathcal L}_D(\\theta,\\zeta^*)`.
        cost_grad: the GCL cost gradient (stop-gradient on :math:`\\tilde\\mu` unless dropped).
        discriminator_loss: :math:`\\hat{\\mathcal L}_D(\\theta,\\zeta^*)`.
        cost_loss: the GCL cost objective (its value differs; only gradients agree).
    """

    zeta: jax.Array
    sum_d: jax.Array
    num_data: jax.Array
    log_z_mixture: jax.Array
    discriminator_grad: object
    cost_grad: object
    discriminator_loss: jax.Array
    cost_loss: jax.Array


class GeneratorIdentity(NamedTuple):
    """Fact 3 by enumeration: ``generator_loss == kl + zeta_term - log_z_term + log_nu``."""

    generator_loss: float
    kl: float
    zeta_term: float
    log_z_term: float
    log_nu: float

    @property
    def rhs(self) -> float:
        return self.kl + self.zeta_term - self.log_z_term + self.log_nu


# ----------------------------------------------------------------------------- ζ*
def _solve_one(offsets, data_mask, mask):
    r"""Root of :math:`h(\zeta) = \log\sum_{mask}\sigma(a_i-\zeta) - \log N_d` (safeguarded Newton
    in log space: :math:`h' = -\sum D(1-D)/\sum D`, bracket from :math:`\sigma` monotone)."""
    dtype = offsets.dtype
    num_data = jnp.sum(mask & data_mask).astype(dtype)
    num_all = jnp.sum(mask).astype(dtype)
    log_nd = jnp.log(num_data)
    log_ratio = jnp.log(num_all - num_data) - log_nd  # log(N_g / N_d)
    lower = jnp.min(jnp.where(mask, offsets, jnp.inf)) + log_ratio
    upper = jnp.max(jnp.where(mask, offsets, -jnp.inf)) + log_ratio

    def h_and_slope(zeta):
        log_d = jnp.where(mask, jax.nn.log_sigmoid(offsets - zeta), -jnp.inf)
        log_sum = logsumexp(log_d)
        log_dd = jnp.where(mask, log_d + jax.nn.log_sigmoid(zeta - offsets), -jnp.inf)
        return log_sum - log_nd, -jnp.exp(logsumexp(log_dd) - log_sum)

    def body(_, state):
        zeta, lo, hi = state
        h, slope = h_and_slope(zeta)
        lo = jnp.where(h > 0, zeta, lo)
        hi = jnp.where(h < 0, zeta, hi)
        newton = zeta - h / slope
        inside = (newton >= lo) & (newton <= hi) & jnp.isfinite(newton)
        step = jnp.where(inside, newton, 0.5 * (lo + hi))
        return jnp.where(h == 0, zeta, step), lo, hi

    start = 0.5 * (lower + upper)
    ok = (num_data > 0) & (num_all > num_data)
    start = jnp.where(ok, start, 0.0)
    zeta, _, _ = jax.lax.fori_loop(0, _NEWTON_ITERATIONS, body, (start, lower, upper))
    return jnp.where(ok, zeta, 0.0)


def solve_zeta(offsets, is_data, groups=None, num_groups: int | None = None) -> jax.Array:
    r"""The optimal discriminator parameter :math:`\zeta^*` exactly (fact 1).

    :math:`\hat{\mathcal L}_D` is convex in :math:`\zeta` with
    :math:`\partial_\zeta\hat{\mathcal L}_D = (N_d - \sum_{\mathcal M}D)/N_d`, and
    :math:`\sum D` decreases strictly, so the root is unique; it is found by safeguarded Newton on
    :math:`\log\sum D - \log N_d` (quadratic convergence, bracketed). No gradient flows.

    Args:
        offsets: ``(B,)`` pooled :math:`a = R - \log(\nu q)` (``logits + zeta``).
        is_data: ``(B,)`` bool, True for demonstrations.
        groups: optional ``(B,)`` int group (start state) of each point.
        num_groups: number of groups ``G`` (required with ``groups``).

    Returns:
        Scalar, or ``(G,)`` with 0 for groups without both data and samples (undefined there).
    """
    offsets = sg(jnp.asarray(offsets))
    is_data = jnp.asarray(is_data, bool)
    if offsets.ndim != 1 or is_data.shape != offsets.shape:
        raise ValueError(
            f"`offsets` and `is_data` must both have shape (B,); got {offsets.shape} and "
            f"{is_data.shape}."
        )
    if groups is None:
        return _solve_one(offsets, is_data, jnp.ones(offsets.shape, bool))
    if num_groups is None:
        raise ValueError("`num_groups` is required with `groups`.")
    masks = jnp.asarray(groups)[None, :] == jnp.arange(num_groups)[:, None]
    return jax.vmap(lambda m: _solve_one(offsets, is_data, m))(masks)


def _group_masks(groups, num_groups, size):
    if groups is None:
        return jnp.ones((1, size), bool)
    return jnp.asarray(groups)[None, :] == jnp.arange(num_groups)[:, None]


def mixture_log_z(returns, log_q, is_data, zeta, nu, groups=None, num_groups=None, stop=True):
    r"""Per-group :math:`\log\hat Z = \log\frac1{|\mathcal M|}\sum_{\mathcal M}e^{R}/\tilde\mu`.

    :math:`\tilde\mu = (N_d e^{R-\zeta} + N_g q)/|\mathcal M|` with the empirical counts of each
    group (THEORY §3.2, §10.1) and ``zeta`` held fixed; ``stop`` puts a stop-gradient on
    :math:`\tilde\mu` ([FCAL]: the IS density is a constant). Returns a scalar or ``(G,)``.
    """
    del nu  # the mixture uses the empirical counts; nu enters through the discriminator only
    returns = jnp.asarray(returns)
    dtype = returns.dtype
    masks = _group_masks(groups, num_groups, returns.shape[0])
    zeta_b = jnp.asarray(zeta, dtype)
    if groups is not None:
        zeta_b = zeta_b[jnp.asarray(groups)]

    def one(mask):
        # every log and logaddexp sees finite inputs off the group, so no NaN gradient leaks
        n_d = jnp.sum(mask & is_data)
        n_all = jnp.sum(mask)
        n_g = n_all - n_d
        log_count = lambda n: jnp.log(jnp.maximum(n, 1).astype(dtype))  # noqa: E731
        data_part = jnp.where(n_d > 0, log_count(n_d) + returns - zeta_b, -jnp.inf)
        gen_part = jnp.where(n_g > 0, log_count(n_g) + log_q, -jnp.inf)
        data_part = jnp.where(mask, data_part, 0.0)
        gen_part = jnp.where(mask, gen_part, 0.0)
        log_mu = jnp.logaddexp(data_part, gen_part) - log_count(n_all)
        log_mu = sg(log_mu) if stop else log_mu
        log_w = jnp.where(mask, returns - log_mu, jnp.where(n_all > 0, -jnp.inf, 0.0))
        return jnp.where(n_all > 0, logsumexp(log_w) - log_count(n_all), 0.0)

    out = jax.vmap(one)(masks)
    return out[0] if groups is None else out


def gcl_cost_loss(returns, log_q, is_data, zeta, nu, groups=None, num_groups=None, stop=True):
    r"""GCL cost objective :math:`\frac1{N_d}\sum_{\mathcal D}c + \sum_s\frac{N_d(s)}{N_d}
    \log\hat Z(s)` with the mixture :math:`\tilde\mu` at ``zeta`` (held constant if ``stop``)."""
    returns = jnp.asarray(returns)
    is_data = jnp.asarray(is_data, bool)
    num_data = jnp.sum(is_data).astype(returns.dtype)
    data_term = -jnp.sum(jnp.where(is_data, returns, 0)) / num_data
    log_z = mixture_log_z(returns, log_q, is_data, zeta, nu, groups, num_groups, stop)
    if groups is None:
        return data_term + log_z
    counts = jnp.sum(_group_masks(groups, num_groups, returns.shape[0]) & is_data, axis=1)
    weights = counts.astype(returns.dtype) / num_data
    return data_term + jnp.sum(jnp.where(counts > 0, weights * log_z, 0))


def pooled_facts(
    returns_fn, params, log_q, is_data, nu, groups=None, num_groups=None, stop_gradient=True
) -> Equivalence:
    r"""Facts 1–2 on a pooled sample for any cost model (tabular or R^d).

    Args:
        returns_fn: ``params -> (B,)`` :math:`-c_\theta` on the pooled sample.
        params: cost parameters (a pytree).
        log_q: ``(B,)`` generator log-density (dynamics-free for trajectories).
        is_data: ``(B,)`` bool.
        nu: :math:`\nu` in the logits.
        groups, num_groups: start-state groups for a :math:`\zeta` table (``None``: scalar).
        stop_gradient: ``False`` drops the stop-gradient on :math:`\tilde\mu` (negative control).
    """
    log_q = jnp.asarray(log_q)
    is_data = jnp.asarray(is_data, bool)
    returns = returns_fn(params)
    log_nu = jnp.log(jnp.asarray(nu, returns.dtype))
    offsets = returns - log_nu - log_q
    zeta = solve_zeta(offsets, is_data, groups, num_groups)
    zeta_b = zeta if groups is None else zeta[jnp.asarray(groups)]
    masks = _group_masks(groups, num_groups, returns.shape[0])
    d = jax.nn.sigmoid(offsets - zeta_b)
    sum_d = jnp.sum(jnp.where(masks, d[None], 0), axis=1)
    num_data = jnp.sum(masks & is_data[None], axis=1)
    if groups is None:
        sum_d, num_data = sum_d[0], num_data[0]

    def disc(p):
        logits = discriminator_logits(returns_fn(p), log_q, zeta_b, nu)
        terms = jnp.where(is_data, jax.nn.softplus(-logits), jax.nn.softplus(logits))
        return jnp.sum(terms) / jnp.sum(is_data).astype(logits.dtype)

    def cost(p):
        return gcl_cost_loss(
            returns_fn(p), log_q, is_data, zeta, nu, groups, num_groups, stop_gradient
        )

    d_loss, d_grad = jax.value_and_grad(disc)(params)
    c_loss, c_grad = jax.value_and_grad(cost)(params)
    log_z = mixture_log_z(returns, log_q, is_data, zeta, nu, groups, num_groups)
    return Equivalence(
        zeta=zeta,
        sum_d=sum_d,
        num_data=num_data,
        log_z_mixture=log_z,
        discriminator_grad=d_grad,
        cost_grad=c_grad,
        discriminator_loss=d_loss,
        cost_loss=c_loss,
    )


def check_equivalence(
    problem,
    params,
    demos,
    samples,
    log_policy,
    *,
    nu=None,
    model: str = "trajectory_global",
    stop_gradient: bool = True,
) -> Equivalence:
    r"""Facts 1 and 2 on tabular trajectories (both sides of each identity).

    Args:
        problem: a tabular Problem (``mdp``, ``energy_model``).
        params: energy-model parameters.
        demos: ``(N_d, T + 1, 2)``.
        samples: ``(N_g, T + 1, 2)`` rollouts of ``log_policy``; for ``model="trajectory"``
            exactly :math:`\nu` from each demonstration's start state.
        log_policy: ``(T, S, A)`` generator log-policy (only it enters: THEORY §4).
        nu: default :math:`N_g/N_d`.
        model: ``"trajectory_global"`` (scalar :math:`\zeta`) or ``"trajectory"`` (``(S,)``
            table; entries for start states without demonstrations are 0).
        stop_gradient: ``False`` for the negative control of fact 2.

    Returns:
        :class:`Equivalence`; fact 1: ``sum_d == num_data`` and ``log_z_mixture == zeta``;
        fact 2: ``discriminator_grad == cost_grad``.
    """
    check_choice("model", model, ZETA_MODELS)
    demos, samples = jnp.asarray(demos, jnp.int32), jnp.asarray(samples, jnp.int32)
    if demos.ndim != 3 or samples.ndim != 3 or demos.shape[1:] != samples.shape[1:]:
        raise ValueError(
            "`demos` and `samples` must have shape (N, T + 1, 2) with the same T; got "
            f"{demos.shape} and {samples.shape}."
        )
    nu = samples.shape[0] / demos.shape[0] if nu is None else nu
    pooled = jnp.concatenate([demos, samples])
    is_data = jnp.arange(pooled.shape[0]) < demos.shape[0]
    mdp = problem.mdp
    log_q = policy_log_probs(log_policy, pooled)

    def returns_fn(p):
        return trajectory_returns(mdp, problem.energy_model.reward(p), pooled)

    groups, num_groups = None, None
    if model == "trajectory":
        groups, num_groups = pooled[:, 0, 0], mdp.num_states
    return pooled_facts(returns_fn, params, log_q, is_data, nu, groups, num_groups, stop_gradient)


def check_equivalence_ebm(
    energy_fn, params, data, samples, log_q_data, log_q_samples, *, nu=None, stop_gradient=True
) -> Equivalence:
    r"""Facts 1 and 2 on :math:`\mathbb R^d` for ``energy_fn(params, x) -> (B,)`` and any
    generator density (its log-density given at the data and at the draws)."""
    data, samples = jnp.asarray(data), jnp.asarray(samples)
    nu = samples.shape[0] / data.shape[0] if nu is None else nu
    pooled = jnp.concatenate([data, samples])
    log_q = jnp.concatenate([jnp.asarray(log_q_data), jnp.asarray(log_q_samples)])
    is_data = jnp.arange(pooled.shape[0]) < data.shape[0]
    return pooled_facts(
        lambda p: -energy_fn(p, pooled), params, log_q, is_data, nu, stop_gradient=stop_gradient
    )


def generator_identity(
    mdp, reward, log_policy, zeta, *, nu: float = 1.0, model: str = "trajectory_global"
) -> GeneratorIdentity:
    r"""Fact 3 exactly, by enumerating every trajectory of a tiny MDP (THEORY §3.5, §8.2).

    Left: the log-odds generator loss :math:`\sum_\tau q(\tau)[-\ell(\tau)]` with
    :math:`q = b\prod\pi`. Right: :math:`\mathrm{KL}(q\|p_\theta) + \mathbb E_{\rho_0}\zeta(s_0)
    - \mathbb E_{\rho_0}\log Z(s_0) + \log\nu` (``"trajectory"``) or
    :math:`\mathrm{KL}(q\|p_\theta) + \zeta - \log Z + \log\nu` (``"trajectory_global"``), with
    :math:`p_\theta` and :math:`Z` by enumeration (NumPy, independent of the JAX recursions).
    """
    check_choice("model", model, ZETA_MODELS)
    enum = enumerate_trajectories(mdp)
    _, log_p, log_z = enumerated_log_probs(mdp, np.asarray(reward), model, enum)
    observed = jnp.asarray(enum.observed, jnp.int32)
    log_pi = np.asarray(policy_log_probs(log_policy, observed))
    log_q = enum.log_base + log_pi
    q = np.exp(log_q)
    logits = discriminator_logits(
        trajectory_returns(mdp, reward, observed),
        log_pi,
        jnp.asarray(zeta)[observed[:, 0, 0]] if jnp.ndim(zeta) else zeta,
        nu,
    )
    lhs = float(generator_loss(logits, "logodds", weights=q))
    kl = float(np.sum(np.where(q > 0, q * (log_q - log_p), 0.0)))
    rho = np.asarray(mdp.initial_dist, np.float64)
    if model == "trajectory":
        support = rho > 0
        zeta_term = float(np.sum(rho[support] * np.asarray(zeta)[support]))
        log_z_term = float(np.sum(rho[support] * log_z[support]))
    else:
        zeta_term, log_z_term = float(zeta), float(log_z)
    return GeneratorIdentity(lhs, kl, zeta_term, log_z_term, float(np.log(nu)))
