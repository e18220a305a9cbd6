r"""GAN-GCL and GCL trainers on tabular problems (optax-style; THEORY §2, §3, §6; DESIGN §3).

Both trainers share the generator: a time-indexed softmax policy
:math:`\pi_t(a|s) = \mathrm{softmax}(\text{logits}_t(s,\cdot))`, logits ``(T, S, A)``, whose
rollouts :math:`q = b\prod_t\pi_t` are the negatives/proposal. The generator step maximises the
**exact** ELBO on :math:`\log Z`,

.. math::

    \mathrm{ELBO}(q) = \mathbb E_q\Big[R_\theta(\tau) - \sum_t\log\pi_t(a_t|s_t)\Big]
    = \sum_t\sum_s d_t(s)\sum_a\pi_t(a|s)\big[\bar r_\theta(s,a) - \log\pi_t(a|s)\big]
    \le \log Z(\theta),

computed by a forward occupancy recursion (:func:`generator_elbo`), so its gradient is exact (no
score-function noise). By fact 3 the [FCAL] log-odds generator loss is
:math:`\mathbb E_q[-\ell] = -\mathrm{ELBO}(q) + \mathbb E_{\rho_0}\zeta + \log\nu`: the same
gradient in :math:`q` (THEORY §3.5, §6).

* :func:`gan_gcl` ([FCAL] §3): a discriminator step on :math:`(\theta,\zeta)` minimising the log
  loss of :mod:`~ebm_ppl.adversarial.discriminator` (normalised by :math:`N_d`, :math:`\log\nu`
  in the logit), then generator steps. :math:`\zeta` is exposed in the state and the info: an
  ``(S,)`` table for ``model="trajectory"`` (:math:`\nu` rollouts from each demonstration's
  :math:`s_0`), a scalar for ``"trajectory_global"`` (rollouts from :math:`\rho_0`).
* :func:`gcl` ([GCL]/[FCAL] §2.3.2): a cost step on
  :math:`\frac1{N_d}\sum_{\mathcal D}c_\theta + \sum_s\frac{N_d(s)}{N_d}\log\hat Z(s)` with the
  mixture :math:`\tilde\mu` (:math:`\tilde p = p_\theta` at the fixed point :math:`\zeta^*`,
  stop-gradient), then generator steps. By fact 2 its cost gradient equals GAN-GCL's
  discriminator gradient at :math:`\zeta = \zeta^*`.

Both serve the trajectory-level models with deterministic or stochastic dynamics (with
stochastic dynamics the learned per-step reward is misspecified, THEORY §4) and need
:math:`\gamma = 1`.

Usage::

    trainer = gan_gcl(problem, nu=2)
    state = trainer.init(jax.random.key(0))
    for key in jax.random.split(jax.random.key(1), 200):
        state, info = trainer.update(key, state, problem.demos)
    reward_epic(problem, state.params)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ebm_ppl._validation import check_choice
from ebm_ppl.adversarial.discriminator import (
    ZETA_MODELS,
    discriminator_logits,
    discriminator_loss,
    gather_zeta,
    init_zeta,
    policy_log_probs,
    rollouts,
    trajectory_returns,
)
from ebm_ppl.adversarial.facts import gcl_cost_loss, solve_zeta
from ebm_ppl.exact.tabular import reward_table
from ebm_ppl.logz.base import LogZEstimator
from ebm_ppl.logz.importance import gcl_mixture
from ebm_ppl.metrics import epic_distance
from ebm_ppl.policies import PolicyRollout

__all__ = [
    "Trainer",
    "GANGCLState",
    "GANGCLInfo",
    "GCLState",
    "GCLInfo",
    "generator_elbo",
    "gan_gcl",
    "gcl",
    "gan_zeta",
    "reward_epic",
]


class Trainer(NamedTuple):
    """An optax-style trainer.

    ``init(rng_key, params=None) -> State``; ``update(rng_key, state, batch) -> (State, Info)``.
    """

    init: Callable
    update: Callable


class GANGCLState(NamedTuple):
    """GAN-GCL state: cost parameters, :math:`\\zeta`, generator logits, optimiser states."""

    params: Any
    zeta: jax.Array
    policy_logits: jax.Array
    cost_opt_state: Any
    policy_opt_state: Any
    step: jax.Array


class GANGCLInfo(NamedTuple):
    """Per-update diagnostics.

    Attributes:
        discriminator_loss: :math:`\\hat{\\mathcal L}_D` before the step.
        generator_loss: exact log-odds loss after the step,
            :math:`-\\mathrm{ELBO} + \\mathbb E_{\\rho_0}\\zeta + \\log\\nu`.
        elbo: exact ELBO of the generator after its step (a lower bound on log Z).
        zeta: :math:`\\zeta` after the step (scalar or ``(S,)``).
        mean_d_data: mean :math:`D` on the demonstrations (before the step).
        mean_d_samples: mean :math:`D` on the generated batch (before the step).
    """

    discriminator_loss: jax.Array
    generator_loss: jax.Array
    elbo: jax.Array
    zeta: jax.Array
    mean_d_data: jax.Array
    mean_d_samples: jax.Array


class GCLState(NamedTuple):
    """GCL state: cost parameters, generator logits, optimiser states."""

    params: Any
    policy_logits: jax.Array
    cost_opt_state: Any
    policy_opt_state: Any
    step: jax.Array


class GCLInfo(NamedTuple):
    """Per-update diagnostics: the cost objective (before the step), the generator's exact ELBO
    (after its step) and the fixed point :math:`\\zeta^* = \\log\\hat Z` used in the mixture."""

    cost_loss: jax.Array
    elbo: jax.Array
    log_z: jax.Array


# ----------------------------------------------------------------------------- generator
def generator_elbo(mdp, reward, log_policy) -> jax.Array:
    r"""Exact :math:`\mathbb E_q[R(\tau) - \sum_t\log\pi_t(a_t|s_t)]` for :math:`s_0\sim\rho_0`.

    Forward recursion :math:`d_0 = \rho_0`,
    :math:`d_{t+1}(s') = \sum_{s,a}d_t(s)\pi_t(a|s)P(s'|s,a)` (terminal states keep their mass
    and add neither reward nor entropy). A lower bound on :math:`\log Z` of the global model and,
    averaged over :math:`\rho_0`, on :math:`\mathbb E_{\rho_0}\log Z(s_0)` (THEORY §6); tight iff
    :math:`q = p_\theta`. Differentiable in ``reward`` and ``log_policy``.

    Args:
        mdp: a dense tabular MDP (sparse ones are densified).
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        log_policy: ``(T, S, A)``.
    """
    if mdp.is_sparse:
        mdp = mdp.to_dense()
    log_policy = jnp.asarray(log_policy)
    r_sa, r_next = reward_table(mdp, reward)
    transitions = mdp.transitions.astype(r_sa.dtype)
    if r_next is not None:
        r_sa = r_sa + jnp.sum(transitions * r_next, axis=-1)
    live = ~mdp.terminal
    dtype = jnp.result_type(r_sa, log_policy)

    def step(mass, log_pi):
        pi = jnp.exp(log_pi)
        sa = jnp.where(live[:, None], mass[:, None] * pi, 0)
        value = jnp.sum(sa * (r_sa - log_pi))
        nxt = jnp.einsum("sa,sat->t", sa, transitions) + jnp.where(live, 0, mass)
        return nxt, value

    start = mdp.initial_dist.astype(dtype)
    _, values = jax.lax.scan(step, start, log_policy.astype(dtype))
    return jnp.sum(values)


def _policy_steps(mdp, reward, logits, opt_state, optimizer, num_steps):
    def loss(z):
        return -generator_elbo(mdp, reward, jax.nn.log_softmax(z, axis=-1))

    def body(carry, _):
        z, s = carry
        grads = jax.grad(loss)(z)
        updates, s = optimizer.update(grads, s, z)
        return (optax.apply_updates(z, updates), s), None

    (logits, opt_state), _ = jax.lax.scan(body, (logits, opt_state), None, length=num_steps)
    return logits, opt_state, -loss(logits)


# ----------------------------------------------------------------------------- helpers
def _check_problem(problem, nu, model, policy_steps):
    check_choice("model", model, ZETA_MODELS)
    if not hasattr(problem, "mdp"):
        raise TypeError(f"the trainers need a tabular Problem; got {type(problem).__name__}.")
    if float(problem.discount) != 1.0:
        raise ValueError(
            "the trainers use trajectory-level models, which need `discount` = 1 (THEORY §0.4); "
            f"got {problem.discount!r}."
        )
    if not isinstance(nu, int) or nu < 1:
        raise ValueError(f"`nu` must be an int >= 1 (rollouts per demonstration); got {nu!r}.")
    if not isinstance(policy_steps, int) or policy_steps < 1:
        raise ValueError(f"`policy_steps` must be an int >= 1; got {policy_steps!r}.")
    if problem.mdp.is_sparse:
        problem = problem.replace(mdp=problem.mdp.to_dense())
    return problem


def _check_batch(problem, batch):
    batch = problem.demos if batch is None else batch
    if batch is None:
        raise ValueError("`batch` must hold demonstrations (N, T + 1, 2); got None.")
    batch = jnp.asarray(batch, jnp.int32)
    expected = (problem.mdp.horizon + 1, 2)
    if batch.ndim != 3 or batch.shape[1:] != expected or batch.shape[0] < 1:
        raise ValueError(
            f"`batch` must have shape (N, T + 1, 2) = (N, {expected[0]}, 2) with N >= 1; "
            f"got {batch.shape}."
        )
    return batch


def _draw(rng_key, mdp, log_policy, demos, nu, model):
    num = nu * demos.shape[0]
    starts = jnp.repeat(demos[:, 0, 0], nu) if model == "trajectory" else None
    return rollouts(rng_key, mdp, log_policy, num, starts=starts)


def _init_common(problem, params, cost_optimizer, policy_optimizer):
    mdp = problem.mdp
    params = problem.energy_model.init_params() if params is None else params
    dtype = problem.energy_model.reward(params).dtype
    logits = jnp.zeros((mdp.horizon, mdp.num_states, mdp.num_actions), dtype)
    return params, logits, policy_optimizer.init(logits)


def reward_epic(problem, params) -> jax.Array:
    """EPIC distance (THEORY §9.1) between the learned reward and ``problem.true_reward()``."""
    return epic_distance(
        problem.energy_model.reward(params),
        problem.true_reward(),
        problem.mdp,
        discount=problem.discount,
    )


# ----------------------------------------------------------------------------- GAN-GCL
def gan_gcl(
    problem,
    *,
    nu: int = 1,
    model: str = "trajectory",
    cost_optimizer: optax.GradientTransformation | None = None,
    policy_optimizer: optax.GradientTransformation | None = None,
    policy_steps: int = 1,
) -> Trainer:
    r"""GAN-GCL trainer ([FCAL] §3; THEORY §3).

    Each ``update``: draw :math:`N_g = \nu N_d` rollouts of the current generator; one optax step
    on :math:`(\theta,\zeta)` of the discriminator loss
    :math:`\hat{\mathcal L}_D` (normalised by :math:`N_d`, :math:`\log\nu` in the logit, only
    :math:`\sum\log\pi` of the generator: the dynamics cancel, THEORY §4); then
    ``policy_steps`` optax steps of the generator on :math:`-\mathrm{ELBO}` (exact; equal in
    :math:`q`-gradient to the log-odds loss, fact 3). The learned reward is a consistent NCE
    estimate when the cost class is well specified (THEORY §3.6, §5.2); :math:`\zeta` is a fixed
    point estimate of :math:`\log Z`, not unbiased (THEORY §3.3).

    Args:
        problem: tabular Problem with ``energy_model.reward(params)`` (no free output bias:
            :math:`\zeta` plays it, THEORY §3.6) and ``discount == 1``.
        nu: generated trajectories per demonstration (int >= 1).
        model: ``"trajectory"`` (``(S,)`` :math:`\zeta`, rollouts from the demonstrations'
            start states) or ``"trajectory_global"`` (scalar :math:`\zeta`, starts from
            :math:`\rho_0`).
        cost_optimizer: optax transformation for :math:`(\theta,\zeta)`; default ``adam(0.05)``.
        policy_optimizer: optax transformation for the logits; default ``adam(0.1)``.
        policy_steps: generator steps per update.

    Returns:
        :class:`Trainer` with ``init(rng_key, params=None, zeta=None) -> GANGCLState``
        (default :math:`\zeta` = the exact ELBO of the initial uniform generator) and
        ``update(rng_key, state, batch=None) -> (GANGCLState, GANGCLInfo)`` (``batch`` defaults
        to ``problem.demos``; jit-compiled, the problem travels as an argument).
    """
    problem = _check_problem(problem, nu, model, policy_steps)
    cost_opt = optax.adam(0.05) if cost_optimizer is None else cost_optimizer
    policy_opt = optax.adam(0.1) if policy_optimizer is None else policy_optimizer

    def init(rng_key, params=None, zeta=None) -> GANGCLState:
        del rng_key  # deterministic initialisation; kept for the optax-style signature
        params, logits, policy_state = _init_common(problem, params, cost_opt, policy_opt)
        if zeta is None:
            # start zeta at the initial generator's exact ELBO (a lower bound on log Z): from 0
            # it would need ~T log|A| / learning-rate steps, and while sum D != N_d the
            # discriminator's theta-gradient is biased (fact 2 holds only at zeta*)
            reward = problem.energy_model.reward(params)
            elbo = generator_elbo(problem.mdp, reward, jax.nn.log_softmax(logits, axis=-1))
            zeta = init_zeta(problem.mdp, model, logits.dtype) + elbo
        zeta = jnp.asarray(zeta, logits.dtype)
        if zeta.shape != init_zeta(problem.mdp, model).shape:
            raise ValueError(
                f"`zeta` must have shape {init_zeta(problem.mdp, model).shape} for "
                f"model={model!r}; got {zeta.shape}."
            )
        return GANGCLState(
            params=params,
            zeta=zeta,
            policy_logits=logits,
            cost_opt_state=cost_opt.init((params, zeta)),
            policy_opt_state=policy_state,
            step=jnp.zeros((), jnp.int32),
        )

    @jax.jit
    def _update(prob, rng_key, state, demos):
        mdp = prob.mdp
        log_policy = jax.nn.log_softmax(state.policy_logits, axis=-1)
        samples = _draw(rng_key, mdp, log_policy, demos, nu, model)
        lq_d = policy_log_probs(log_policy, demos)
        lq_s = policy_log_probs(log_policy, samples)

        def loss(pz):
            return discriminator_loss(prob, pz[0], pz[1], demos, samples, lq_s, lq_d, nu)

        pz = (state.params, state.zeta)
        d_loss, grads = jax.value_and_grad(loss)(pz)
        reward = prob.energy_model.reward(state.params)
        d_data = jax.nn.sigmoid(
            discriminator_logits(
                trajectory_returns(mdp, reward, demos), lq_d, gather_zeta(state.zeta, demos), nu
            )
        )
        d_samp = jax.nn.sigmoid(
            discriminator_logits(
                trajectory_returns(mdp, reward, samples),
                lq_s,
                gather_zeta(state.zeta, samples),
                nu,
            )
        )
        updates, cost_state = cost_opt.update(grads, state.cost_opt_state, pz)
        params, zeta = optax.apply_updates(pz, updates)
        logits, policy_state, elbo = _policy_steps(
            mdp,
            prob.energy_model.reward(params),
            state.policy_logits,
            state.policy_opt_state,
            policy_opt,
            policy_steps,
        )
        rho = mdp.initial_dist.astype(elbo.dtype)
        mean_zeta = jnp.sum(rho * zeta) if model == "trajectory" else zeta
        new = GANGCLState(
            params=params,
            zeta=zeta,
            policy_logits=logits,
            cost_opt_state=cost_state,
            policy_opt_state=policy_state,
            step=state.step + 1,
        )
        info = GANGCLInfo(
            discriminator_loss=d_loss,
            generator_loss=-elbo + mean_zeta + jnp.log(jnp.asarray(nu, elbo.dtype)),
            elbo=elbo,
            zeta=zeta,
            mean_d_data=jnp.mean(d_data),
            mean_d_samples=jnp.mean(d_samp),
        )
        return new, info

    def update(rng_key, state, batch=None):
        return _update(problem, rng_key, state, _check_batch(problem, batch))

    return Trainer(init=init, update=update)


# ----------------------------------------------------------------------------- GCL
def gcl(
    problem,
    *,
    nu: int = 1,
    model: str = "trajectory",
    cost_optimizer: optax.GradientTransformation | None = None,
    policy_optimizer: optax.GradientTransformation | None = None,
    policy_steps: int = 1,
) -> Trainer:
    r"""Guided cost learning with the mixture proposal ([GCL], [FCAL] §2.3.2; THEORY §2).

    Each ``update``: draw :math:`\nu N_d` rollouts; solve the fixed point :math:`\zeta^*(s)` of
    the mixture estimate (fact 1, :func:`~ebm_ppl.adversarial.facts.solve_zeta`); one optax step
    on :math:`\theta` of
    :math:`\frac1{N_d}\sum_{\mathcal D}c_\theta + \sum_s\frac{N_d(s)}{N_d}\log\hat Z(s)` with the
    mixture density held constant (stop-gradient); then generator steps on the exact ELBO.
    :math:`\log\hat Z` is biased low (Jensen, THEORY §6), so the cost gradient is that of an IWAE-
    like surrogate, not of the exact NLL.

    Args and returns as :func:`gan_gcl` (no :math:`\zeta` in the state; ``GCLInfo.log_z`` reports
    :math:`\zeta^*`).
    """
    problem = _check_problem(problem, nu, model, policy_steps)
    cost_opt = optax.adam(0.05) if cost_optimizer is None else cost_optimizer
    policy_opt = optax.adam(0.1) if policy_optimizer is None else policy_optimizer

    def init(rng_key, params=None) -> GCLState:
        del rng_key
        params, logits, policy_state = _init_common(problem, params, cost_opt, policy_opt)
        return GCLState(
            params=params,
            policy_logits=logits,
            cost_opt_state=cost_opt.init(params),
            policy_opt_state=policy_state,
            step=jnp.zeros((), jnp.int32),
        )

    @jax.jit
    def _update(prob, rng_key, state, demos):
        mdp = prob.mdp
        log_policy = jax.nn.log_softmax(state.policy_logits, axis=-1)
        samples = _draw(rng_key, mdp, log_policy, demos, nu, model)
        pooled = jnp.concatenate([demos, samples])
        is_data = jnp.arange(pooled.shape[0]) < demos.shape[0]
        log_q = policy_log_probs(log_policy, pooled)
        groups, num_groups = None, None
        if model == "trajectory":
            groups, num_groups = pooled[:, 0, 0], mdp.num_states

        def returns_fn(p):
            return trajectory_returns(mdp, prob.energy_model.reward(p), pooled)

        offsets = returns_fn(state.params) - jnp.log(jnp.asarray(nu, log_q.dtype)) - log_q
        zeta = solve_zeta(offsets, is_data, groups, num_groups)

        def loss(p):
            return gcl_cost_loss(returns_fn(p), log_q, is_data, zeta, nu, groups, num_groups)

        c_loss, grads = jax.value_and_grad(loss)(state.params)
        updates, cost_state = cost_opt.update(grads, state.cost_opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        logits, policy_state, elbo = _policy_steps(
            mdp,
            prob.energy_model.reward(params),
            state.policy_logits,
            state.policy_opt_state,
            policy_opt,
            policy_steps,
        )
        new = GCLState(
            params=params,
            policy_logits=logits,
            cost_opt_state=cost_state,
            policy_opt_state=policy_state,
            step=state.step + 1,
        )
        return new, GCLInfo(cost_loss=c_loss, elbo=elbo, log_z=zeta)

    def update(rng_key, state, batch=None):
        return _update(problem, rng_key, state, _check_batch(problem, batch))

    return Trainer(init=init, update=update)


# ----------------------------------------------------------------------------- ζ as an estimator
def gan_zeta(
    num_samples: int,
    *,
    model: str = "trajectory",
    generator_steps: int = 200,
    policy_optimizer: optax.GradientTransformation | None = None,
    nu: float | None = None,
) -> LogZEstimator:
    r"""GAN-GCL's :math:`\zeta` as a log-partition estimator (the adversarial route; THEORY §3.3).

    At the given :math:`\theta`, run the GAN's generator step to convergence
    (``generator_steps`` optax steps on the exact ELBO from the uniform policy: the generator
    :math:`q\approx p_\theta`), draw ``num_samples`` rollouts of it, and return the discriminator's
    optimal :math:`\zeta^*` on the pooled sample of demonstrations and rollouts. By fact 1,
    :math:`\zeta^*` is the fixed point of the mixture importance estimate with
    :math:`\tilde p = p_\theta`, so the estimate is computed by
    :func:`~ebm_ppl.logz.gcl_mixture` with the fitted generator as proposal (one implementation of
    that root; ``tests/adversarial`` checks that it minimises the discriminator loss in
    :math:`\zeta`).

    Bias: :math:`\zeta^*` is **consistent for** :math:`\log Z(\theta)` **only where the
    demonstrations follow** :math:`p_\theta` (at the data's :math:`\theta`); elsewhere it converges
    to the :math:`Z^*(\theta)` of THEORY §2/§10.2, and it is biased low in finite samples (Jensen,
    THEORY §6). :math:`\zeta(s_0)` is undefined where no demonstration starts at :math:`s_0` (the
    discriminator has no data there); :func:`gcl_mixture` then falls back to plain importance
    sampling under the fitted generator. ``info`` is :class:`ebm_ppl.logz.importance.GCLInfo`.

    Args:
        num_samples: generator rollouts :math:`N_g` (per start state for ``"trajectory"``).
        model: ``"trajectory"`` (a :math:`\zeta` table over start states) or
            ``"trajectory_global"`` (scalar).
        generator_steps: ELBO steps of the generator at :math:`\theta` (int >= 1).
        policy_optimizer: optax transformation for the generator logits; default ``adam(0.1)``.
        nu: as in :func:`~ebm_ppl.logz.gcl_mixture` (default :math:`N_g/N_d`).
    """
    check_choice("model", model, ZETA_MODELS)
    if isinstance(generator_steps, bool) or not isinstance(generator_steps, int):
        raise ValueError(f"`generator_steps` must be an int >= 1; got {generator_steps!r}.")
    if generator_steps < 1:
        raise ValueError(f"`generator_steps` must be an int >= 1; got {generator_steps!r}.")
    policy_opt = optax.adam(0.1) if policy_optimizer is None else policy_optimizer

    def generator(problem, params):  # gcl_mixture has checked that the problem is tabular
        mdp = problem.mdp.to_dense() if problem.mdp.is_sparse else problem.mdp
        reward = problem.energy_model.reward(params)
        logits = jnp.zeros((mdp.horizon, mdp.num_states, mdp.num_actions), reward.dtype)
        logits, _, _ = _policy_steps(
            mdp, reward, logits, policy_opt.init(logits), policy_opt, generator_steps
        )
        return PolicyRollout(problem.mdp, jax.nn.log_softmax(logits, axis=-1))

    mixture = gcl_mixture(num_samples, proposal=generator, data_density="model", nu=nu, model=model)
    return LogZEstimator(name=f"gan_zeta[{model}]", models=(model,), run=mixture.run)
