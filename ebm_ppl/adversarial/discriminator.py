r"""The GAN-GCL discriminator of [FCAL] and its losses (THEORY §3.1–§3.2, §3.5, §4, §5.1).

The discriminator replaces the unknown data density by :math:`\tilde p_\theta = e^{-c_\theta}/Z`
with :math:`\zeta = \log Z` a **free** parameter, and knows the generator density :math:`q`:

.. math::

    \ell_{\theta,\zeta}(\tau) = -c_\theta(\tau) - \zeta - \log\big(\nu\,q(\tau)\big),
    \qquad D = \sigma(\ell),\qquad \nu = N_g / N_d .

The :math:`\log\nu` term is the NCE correction for unequal batches (THEORY §3.2, §10.1); with
:math:`\nu = 1` this is exactly [FCAL]. For tabular trajectories :math:`c = -R_\theta(\tau)` (the
return under the energy model) and :math:`q` is a policy rollout, so the dynamics
:math:`b(\tau)` cancel and only :math:`\sum_t\log\pi_t(a_t\mid s_t)` enters (THEORY §4):
``log_q`` is always the **dynamics-free** ``log_prob_policy``. On :math:`\mathbb R^d` (model
``"ebm"``) :math:`c = E_\theta(x)` and :math:`q` is any density (THEORY §5.1; note the sign
erratum of [FCAL] §4: the logit is :math:`-E - \log q - \zeta`).

:math:`\zeta` is a scalar for the global model (``"trajectory_global"``, and ``"ebm"``) and a
table over start states ``(S,)`` for the :math:`s_0`-conditional model (``"trajectory"``), read
at each trajectory's :math:`s_0`.

Discriminator loss, the log loss **normalised by** :math:`N_d` (THEORY §3.2):

.. math::

    \hat{\mathcal L}_D(\theta,\zeta) = \frac1{N_d}\Big[\sum_{\mathcal D}\mathrm{softplus}(-\ell)
    + \sum_{\mathcal G}\mathrm{softplus}(\ell)\Big].

Generator losses on generated samples (expectations under :math:`q`; THEORY §3.5):

* ``"logodds"`` ([FCAL]): :math:`\mathbb E_q[\log(1-D) - \log D] = \mathbb E_q[-\ell]
  = \mathrm{KL}(q\,\|\,p_\theta) + \zeta - \log Z(\theta) + \log\nu` — the sampler loss plus a
  constant in :math:`q` (fact 3); it equals the KL only when :math:`\zeta = \log Z(\theta)` and
  :math:`\nu = 1`;
* ``"minimax"``: :math:`\mathbb E_q[\log(1-D)] = -\mathbb E_q[\mathrm{softplus}(\ell)]` (FCE's
  generator objective: JSD-like, **not** the KL);
* ``"non_saturating"``: :math:`-\mathbb E_q[\log D] = \mathbb E_q[\mathrm{softplus}(-\ell)]`
  (not the KL either).

All functions are pure, jit/vmap-safe and keep the input dtype.

References: THEORY §3 (facts), §4 (cancellation), §5.1–5.2 (EBM version, NCE), §10 (errata).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl._validation import check_choice, is_concrete
from ebm_ppl.exact.sampling import policy_rollout
from ebm_ppl.exact.trajectory import sum_log_policy, trajectory_return

__all__ = [
    "ZETA_MODELS",
    "GENERATOR_LOSSES",
    "discriminator_logits",
    "gather_zeta",
    "trajectory_logits",
    "log_loss",
    "discriminator_loss",
    "ebm_discriminator_loss",
    "generator_loss",
    "trajectory_returns",
    "policy_log_probs",
    "init_zeta",
    "rollouts",
]

ZETA_MODELS = ("trajectory", "trajectory_global")
"""The ``model`` values of :func:`init_zeta`: one :math:`\\zeta` per start state, or one scalar."""

GENERATOR_LOSSES = ("logodds", "minimax", "non_saturating")
"""The ``kind`` values of :func:`generator_loss`."""


# ----------------------------------------------------------------------------- validation
def _check_nu(nu) -> None:
    if is_concrete(nu) and not bool(np.all(np.asarray(nu) > 0)):
        raise ValueError(f"`nu` must be > 0 (nu = N_g / N_d); got {nu!r}.")


def _check_batch(name: str, value, length: int | None = None) -> jax.Array:
    value = jnp.asarray(value)
    if value.ndim != 1 or (length is not None and value.shape[0] != length):
        want = "(B,)" if length is None else f"({length},)"
        raise ValueError(f"`{name}` must have shape {want}; got shape {value.shape}.")
    return value


def _default_nu(nu, num_data: int, num_gen: int):
    if nu is None:
        if num_data < 1:
            raise ValueError("the discriminator needs at least one data point; got N_d = 0.")
        return num_gen / num_data
    _check_nu(nu)
    return nu


# ----------------------------------------------------------------------------- logits
def discriminator_logits(returns, log_q, zeta, nu=1.0) -> jax.Array:
    r""":math:`\ell = R - \zeta - \log\nu - \log q` (:math:`R = -c`, or :math:`-E` on R^d).

    Args:
        returns: ``(B,)`` :math:`-c_\theta` (trajectory returns, or minus energies).
        log_q: ``(B,)`` generator log-density; for trajectories the dynamics-free
            :math:`\sum_t\log\pi_t(a_t|s_t)` (THEORY §4).
        zeta: :math:`\zeta`, a scalar or ``(B,)`` (already gathered per point).
        nu: :math:`\nu = N_g/N_d > 0`.

    Returns:
        ``(B,)`` logits; :math:`D = \sigma(\ell)`.
    """
    _check_nu(nu)
    returns = jnp.asarray(returns)
    dtype = jnp.result_type(returns, log_q)
    log_nu = jnp.log(jnp.asarray(nu, dtype))
    return returns - jnp.asarray(zeta, dtype) - log_nu - jnp.asarray(log_q, dtype)


def init_zeta(mdp, model: str = "trajectory", dtype=None) -> jax.Array:
    """Zero :math:`\\zeta`: an ``(S,)`` table for ``"trajectory"``, a scalar otherwise."""
    check_choice("model", model, ZETA_MODELS)
    dtype = mdp.dtype if dtype is None else dtype
    return jnp.zeros((mdp.num_states,) if model == "trajectory" else (), dtype)


def gather_zeta(zeta, trajectories) -> jax.Array:
    """:math:`\\zeta` per trajectory: ``zeta[s_0]`` for an ``(S,)`` table, the scalar otherwise."""
    zeta = jnp.asarray(zeta)
    if zeta.ndim == 0:
        return zeta
    if zeta.ndim != 1:
        raise ValueError(f"`zeta` must be a scalar or an (S,) table; got shape {zeta.shape}.")
    return zeta[jnp.asarray(trajectories)[:, 0, 0]]


def trajectory_returns(mdp, reward, trajectories) -> jax.Array:
    """:math:`R(\\tau) = -c(\\tau)` for a batch ``(B, T + 1, 2)`` of observed arrays."""
    trajectories = jnp.asarray(trajectories, jnp.int32)
    return jax.vmap(lambda obs: trajectory_return(mdp, reward, obs))(trajectories)


def policy_log_probs(log_policy, trajectories) -> jax.Array:
    """:math:`\\sum_t\\log\\pi_t(a_t|s_t)` (``log_prob_policy``) for a batch of trajectories."""
    trajectories = jnp.asarray(trajectories, jnp.int32)
    return jax.vmap(lambda obs: sum_log_policy(log_policy, obs))(trajectories)


def trajectory_logits(mdp, reward, log_policy, trajectories, zeta, nu=1.0) -> jax.Array:
    r"""Logits :math:`\ell(\tau) = R(\tau) - \zeta(s_0) - \log\nu - \sum_t\log\pi_t(a_t|s_t)`.

    Args:
        mdp: the tabular MDP.
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)`` reward :math:`r_\theta`.
        log_policy: ``(T, S, A)`` generator log-policy.
        trajectories: ``(B, T + 1, 2)`` observed arrays.
        zeta: scalar (global model) or ``(S,)`` table (start-state model).
        nu: :math:`\nu`.
    """
    returns = trajectory_returns(mdp, reward, trajectories)
    log_q = policy_log_probs(log_policy, trajectories)
    return discriminator_logits(returns, log_q, gather_zeta(zeta, trajectories), nu)


# ----------------------------------------------------------------------------- losses
def log_loss(logits_data, logits_samples, mask_data=None, mask_samples=None) -> jax.Array:
    r""":math:`\frac1{N_d}[\sum_{\mathcal D}\mathrm{softplus}(-\ell)+\sum_{\mathcal G}
    \mathrm{softplus}(\ell)]`, the discriminator's log loss normalised by :math:`N_d`.

    ``N_d`` is the leading axis of ``logits_data`` (trajectories); per-step logits ``(N, T)``
    (AIRL) are summed over steps, and the optional boolean masks (shaped like the logits) keep
    only the entries that are decisions."""
    logits_data = jnp.asarray(logits_data)
    num_data = logits_data.shape[0]
    data_terms = jax.nn.softplus(-logits_data)
    sample_terms = jax.nn.softplus(logits_samples)
    if mask_data is not None:
        data_terms = jnp.where(mask_data, data_terms, 0.0)
    if mask_samples is not None:
        sample_terms = jnp.where(mask_samples, sample_terms, 0.0)
    return (jnp.sum(data_terms) + jnp.sum(sample_terms)) / num_data


def discriminator_loss(
    problem,
    params,
    zeta,
    demos,
    samples,
    q_log_prob_samples,
    q_log_prob_demos,
    nu=None,
) -> jax.Array:
    r"""GAN-GCL discriminator loss :math:`\hat{\mathcal L}_D(\theta,\zeta)` on trajectories.

    .. math::

        \hat{\mathcal L}_D = \frac1{N_d}\Big[\sum_{\mathcal D}\mathrm{softplus}(-\ell)
        + \sum_{\mathcal G}\mathrm{softplus}(\ell)\Big],\quad
        \ell = R_\theta(\tau) - \zeta(s_0) - \log\nu - \sum_t\log\pi_t(a_t|s_t).

    Differentiable in ``params`` and ``zeta``. At the optimal :math:`\zeta^*` its
    :math:`\theta`-gradient is the GCL cost gradient with the mixture held constant (fact 2),
    and :math:`\partial_{\zeta(s)}` vanishes iff :math:`\sum_{\mathcal M(s)}D = N_d(s)` (fact 1).

    Args:
        problem: a tabular :class:`~ebm_ppl.problems.Problem` (``mdp``, ``energy_model``).
        params: parameters of ``problem.energy_model``.
        zeta: scalar (``"trajectory_global"``) or ``(S,)`` table (``"trajectory"``).
        demos: ``(N_d, T + 1, 2)`` demonstrations :math:`\mathcal D`.
        samples: ``(N_g, T + 1, 2)`` generator draws :math:`\mathcal G`.
        q_log_prob_samples: ``(N_g,)`` dynamics-free generator log-probabilities of ``samples``.
        q_log_prob_demos: ``(N_d,)`` the same at ``demos``.
        nu: :math:`\nu`; default :math:`N_g/N_d`.

    Returns:
        Scalar loss.
    """
    demos, samples = jnp.asarray(demos), jnp.asarray(samples)
    num_data, num_gen = demos.shape[0], samples.shape[0]
    q_log_prob_demos = _check_batch("q_log_prob_demos", q_log_prob_demos, num_data)
    q_log_prob_samples = _check_batch("q_log_prob_samples", q_log_prob_samples, num_gen)
    nu = _default_nu(nu, num_data, num_gen)
    reward = problem.energy_model.reward(params)
    mdp = problem.mdp
    logits_d = discriminator_logits(
        trajectory_returns(mdp, reward, demos), q_log_prob_demos, gather_zeta(zeta, demos), nu
    )
    logits_g = discriminator_logits(
        trajectory_returns(mdp, reward, samples),
        q_log_prob_samples,
        gather_zeta(zeta, samples),
        nu,
    )
    return log_loss(logits_d, logits_g)


def ebm_discriminator_loss(
    zeta, energy_data, energy_samples, log_q_data, log_q_samples, nu=None
) -> jax.Array:
    r"""The same loss on :math:`\mathbb R^d` from energies and generator log-densities.

    :math:`\ell(x) = -E_\theta(x) - \zeta - \log\nu - \log q(x)` (THEORY §5.1, sign erratum
    fixed) for any density :math:`q`; normalised by :math:`N_d`.

    Args:
        zeta: scalar :math:`\zeta`.
        energy_data: ``(N_d,)`` :math:`E_\theta` at the data.
        energy_samples: ``(N_g,)`` :math:`E_\theta` at the generator draws.
        log_q_data: ``(N_d,)`` :math:`\log q` at the data.
        log_q_samples: ``(N_g,)`` :math:`\log q` at the draws.
        nu: default :math:`N_g/N_d`.
    """
    energy_data = _check_batch("energy_data", energy_data)
    energy_samples = _check_batch("energy_samples", energy_samples)
    log_q_data = _check_batch("log_q_data", log_q_data, energy_data.shape[0])
    log_q_samples = _check_batch("log_q_samples", log_q_samples, energy_samples.shape[0])
    if jnp.ndim(zeta) != 0:
        raise ValueError(f"`zeta` must be a scalar on R^d; got shape {jnp.shape(zeta)}.")
    nu = _default_nu(nu, energy_data.shape[0], energy_samples.shape[0])
    logits_d = discriminator_logits(-energy_data, log_q_data, zeta, nu)
    logits_g = discriminator_logits(-energy_samples, log_q_samples, zeta, nu)
    return log_loss(logits_d, logits_g)


def generator_loss(logits_samples, kind: str = "logodds", weights=None) -> jax.Array:
    r"""Generator loss from the discriminator logits at generated points (to be minimised).

    * ``"logodds"``: :math:`\mathbb E_q[\log(1-D)-\log D] = \mathbb E_q[-\ell]`
      :math:`= \mathrm{KL}(q\|p_\theta) + \zeta - \log Z(\theta) + \log\nu` (fact 3, exact in
      expectation; pointwise :math:`-\ell = c + \zeta + \log(\nu q)`);
    * ``"minimax"``: :math:`\mathbb E_q[\log(1-D)] = -\mathbb E_q[\mathrm{softplus}(\ell)]`;
    * ``"non_saturating"``: :math:`-\mathbb E_q[\log D] = \mathbb E_q[\mathrm{softplus}(-\ell)]`.

    Args:
        logits_samples: ``(N,)`` logits :math:`\ell` at points drawn from :math:`q` (or every
            point of an enumeration, with ``weights``).
        kind: one of :data:`GENERATOR_LOSSES`.
        weights: optional ``(N,)`` probabilities (e.g. :math:`q(\tau)` over an enumeration):
            an exact expectation instead of the sample mean.

    Returns:
        Scalar. The value carries gradients only through the logits; for the gradient in the
        generator's parameters of a Monte Carlo estimate use a score-function or
        reparameterised estimator, or the exact ELBO of :mod:`ebm_ppl.adversarial.trainers`.
    """
    check_choice("kind", kind, GENERATOR_LOSSES)
    logits = jnp.asarray(logits_samples)
    if kind == "logodds":
        terms = -logits
    elif kind == "minimax":
        terms = -jax.nn.softplus(logits)
    else:
        terms = jax.nn.softplus(-logits)
    if weights is None:
        return jnp.mean(terms)
    weights = jnp.asarray(weights, terms.dtype)
    return jnp.sum(jnp.where(weights > 0, weights * terms, 0))


# ----------------------------------------------------------------------------- generator draws
def rollouts(rng_key, mdp, log_policy, num_samples: int, starts=None) -> jax.Array:
    r"""Generator draws: :func:`~ebm_ppl.exact.sampling.policy_rollout` with fixed start states.

    ``starts`` (optional ``(num_samples,)``), e.g. ``jnp.repeat(demos[:, 0, 0], nu)``, gives
    :math:`\nu` rollouts from each demonstration's :math:`s_0`, so that :math:`N_g(s) = \nu N_d(s)`
    for every start state (the per-start-state version of facts 1–2). Otherwise
    :math:`s_0\sim\rho_0`.
    """
    return policy_rollout(rng_key, mdp, log_policy, num_samples, starts=starts)
