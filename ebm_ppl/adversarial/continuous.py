r"""GAN-GCL, GCL, AIRL and the generator's ELBO on continuous-state problems (THEORY §3, §4,
§6, §9.4).

The continuous counterpart of :mod:`~ebm_ppl.adversarial.trainers`: the generator is a
time-indexed policy over continuous states from :mod:`ebm_ppl.policies.gaussian` (Gaussian for
continuous actions, softmax for discrete ones), rolled out in the problem's **deterministic**
dynamics from the demonstrations' start states. The discriminator, its loss, :math:`\zeta^*` and
the mixture estimate are those of :mod:`~ebm_ppl.adversarial.discriminator` and
:mod:`~ebm_ppl.adversarial.facts` (one implementation each):

.. math::

    \ell_{\theta,\zeta}(\tau) = R_\theta(\tau) - \zeta(x_0) - \log\nu
    - \sum_t\log\pi_t(u_t\mid x_t),\qquad D = \sigma(\ell),

where only the policy's log-probability of the actions enters: the dynamics cancel (THEORY §4),
and :math:`\zeta` is a table over the start states (the :math:`x_0`-conditional model,
``"trajectory"``, DESIGN §3). Serves the trajectory-level model conditional on :math:`x_0`
with deterministic dynamics, where it equals the causal one.

**Problems.** Two kinds are adapted (:func:`demonstrations` converts their demonstrations):

* :class:`~ebm_ppl.continuous.LinearGaussianProblem` with :math:`\Sigma_w = 0`
  (:math:`R_\theta = -c_\theta`, quadratic; Gaussian policies with ``action_dim = m``). The start
  table is the distinct demonstration starts (one row for a fixed start).
* :class:`~ebm_ppl.envs.classic_control.ActionSequenceProblem` with discrete actions, e.g.
  MountainCar (:math:`R_\theta = -E_\theta`; softmax policies; the start table is
  ``problem.start_states``; after the goal the actions are ``-1`` and add nothing, THEORY §0.4).
  The energy model needs ``transition(state, action)``.
* The pendulum (:mod:`models.pendulum`: torques in the box :math:`[-\bar u, \bar u]^T` with a
  uniform base measure) with **squashed** Gaussian policies (``linear_gaussian(2, 1,
  bound=2.0)``: :math:`u = \bar u\tanh z`, so the generator's support is the box, where
  :math:`p_\theta > 0`); :math:`R_\theta = -E_\theta - T\log 2\bar u`, the log density
  w.r.t. Lebesgue measure up to :math:`\log Z`, matching the policy's Lebesgue log-density.

**Generator step** (:func:`generator_elbo`, :func:`fit_generator`): maximise the Monte Carlo ELBO

.. math::

    \mathrm{ELBO}(\pi; x_0) = \mathbb E_{\pi}\Big[R_\theta(\tau) - \sum_t\log\pi_t(u_t\mid x_t)
    \Big] = \log Z_\theta(x_0) - \mathrm{KL}(q\,\|\,p_\theta(\cdot\mid x_0)) \le \log Z_\theta(x_0)

(THEORY §6; by fact 3 the [FCAL] log-odds generator loss is :math:`-\mathrm{ELBO} + \zeta +
\log\nu`, the same gradient), averaged over the start table with the data's start frequencies.
Gradient estimators:

* ``"reparam"`` (Gaussian policies): pathwise through :math:`u = \mu + L\varepsilon` and the
  dynamics, with the score term of :math:`\log q` dropped ("sticking the landing"; its mean is
  zero), so at :math:`q = p_\theta` every draw has :math:`R - \log q = \log Z` and the gradient
  vanishes exactly (zero variance);
* ``"score"`` (softmax policies; any policy): :math:`\nabla\mathrm{ELBO} = \mathbb E[(f - b)\,
  \nabla\log q]`, :math:`f = R - \log q`, with the leave-one-out baseline :math:`b` over the
  draws from the same start (unbiased; needs two draws per start).

Both are unbiased for :math:`\nabla\mathrm{ELBO}`; the reported ELBO is the Monte Carlo mean, an
unbiased estimate of the bound.

**Trainers** (optax style, :class:`~ebm_ppl.adversarial.trainers.Trainer`): :func:`gan_gcl` (a
discriminator step on :math:`(\theta, \zeta)`, then generator steps) and :func:`gcl` (a cost step
on the GCL objective at the fixed point :math:`\zeta^*` of the mixture, fact 1, then generator
steps). :func:`airl` factorises GAN-GCL's discriminator over steps: per-step logits with
a time-indexed quadratic shaping :math:`h_t` whose :math:`h_0(x_0)` plays :math:`\zeta`
(:func:`airl_logits`). :func:`gan_zeta` fits the generator at :math:`\theta` and returns the
discriminator's :math:`\zeta^*` as a :class:`~ebm_ppl.logz.base.LogZResult`.
:func:`check_equivalence` states facts 1 and 2 on a pooled sample.

Usage::

    problem = lqr.make_problem(num_demos=200)
    policy = linear_gaussian(2, 1)
    trainer = gan_gcl(problem, policy, nu=2)
    state = trainer.init(jax.random.key(0))
    state, infos = train(jax.random.key(1), trainer, state, demonstrations(problem), 500)

References: [FCAL] §2–§3; [AIRL]; THEORY §3 (facts), §4 (cancellation), §6 (ELBO), §8.1 (LQR),
§9.4 (AIRL).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebm_ppl._validation import check_choice, is_concrete
from ebm_ppl.adversarial.discriminator import discriminator_logits, log_loss
from ebm_ppl.adversarial.facts import Equivalence, gcl_cost_loss, pooled_facts, solve_zeta
from ebm_ppl.adversarial.trainers import Trainer
from ebm_ppl.continuous import LinearGaussianProblem
from ebm_ppl.envs.classic_control import (
    ActionSequenceProblem,
    MountainCarParams,
    PendulumParams,
    mountaincar_terminated,
    pendulum_step,
)
from ebm_ppl.logz.base import LogZEstimator, LogZResult
from ebm_ppl.logz.importance import _mixture_one
from ebm_ppl.policies.gaussian import Policy
from ebm_ppl.spaces.linear_gaussian import validate_trajectories
from ebm_ppl.spaces.tabular import PAD

__all__ = [
    "ESTIMATORS",
    "AIRLInfo",
    "AIRLState",
    "Demonstrations",
    "ELBOEstimate",
    "GANGCLInfo",
    "GANGCLState",
    "GCLInfo",
    "GCLState",
    "airl",
    "airl_logits",
    "check_equivalence",
    "demonstrations",
    "fit_generator",
    "gan_gcl",
    "gan_zeta",
    "gcl",
    "generator_elbo",
    "returns",
    "rollouts",
    "shaping_features",
    "step_rewards",
    "train",
]

ESTIMATORS = ("auto", "reparam", "score")
"""Generator gradient estimators: ``"auto"`` is ``"reparam"`` for Gaussian policies and
``"score"`` for softmax ones."""

sg = jax.lax.stop_gradient

_MOUNTAINCAR_ACTIONS = 3  # push left, none, right (Gymnasium's MountainCar-v0)

_DEFAULT_OPTIMIZER = optax.adam(0.05)
"""The default optimiser (one object, so that compiled generator fits are reused)."""


# ----------------------------------------------------------------------------- data types
class Demonstrations(NamedTuple):
    """Continuous trajectories with their start-state groups (a batch for the discriminator).

    Attributes:
        states: ``(N, T + 1, n)`` :math:`x_0..x_T`.
        actions: ``(N, T, m)`` floats, or ``(N, T)`` int32 (``-1`` after termination).
        groups: ``(N,)`` int32, the row of ``start_states`` each trajectory starts from (the
            entry of the :math:`\\zeta` table it uses).
        start_states: ``(G, n)`` the start table.
    """

    states: Any
    actions: Any
    groups: Any
    start_states: Any


class ELBOEstimate(NamedTuple):
    """Output of :func:`generator_elbo`.

    Attributes:
        surrogate: scalar to **minimise**: its gradient in the policy parameters is an unbiased
            estimate of :math:`-\\nabla\\mathrm{ELBO}` (its value is not the ELBO).
        elbo: Monte Carlo ELBO :math:`\\sum_g w_g\\,\\overline{f}_g` (no gradient), unbiased for
            the bound.
        stderr: its standard error :math:`(\\sum_g w_g^2\\widehat{\\mathrm{var}}_g(f)/K)^{1/2}`.
        per_start: ``(G,)`` per-start means :math:`\\overline{f}_g` (lower bounds on
            :math:`\\log Z(x_0^g)` in expectation).
    """

    surrogate: Any
    elbo: Any
    stderr: Any
    per_start: Any


class GANGCLState(NamedTuple):
    """GAN-GCL state: cost parameters, :math:`\\zeta` ``(G,)``, generator parameters, optimiser
    states, step counter."""

    params: Any
    zeta: Any
    policy_params: Any
    cost_opt_state: Any
    policy_opt_state: Any
    step: Any


class GANGCLInfo(NamedTuple):
    """Per-update diagnostics of :func:`gan_gcl`.

    Attributes:
        discriminator_loss: :math:`\\hat{\\mathcal L}_D` before the step.
        elbo: Monte Carlo ELBO of the generator's last step (under the new :math:`\\theta`).
        elbo_stderr: its standard error.
        zeta: :math:`\\zeta` ``(G,)`` after the step.
        mean_d_data: mean :math:`D` on the demonstrations (before the step).
        mean_d_samples: mean :math:`D` on the generated batch (before the step).
        params: the cost parameters after the step (for iterate averaging).
    """

    discriminator_loss: Any
    elbo: Any
    elbo_stderr: Any
    zeta: Any
    mean_d_data: Any
    mean_d_samples: Any
    params: Any


class GCLState(NamedTuple):
    """GCL state: cost parameters, generator parameters, optimiser states, step counter."""

    params: Any
    policy_params: Any
    cost_opt_state: Any
    policy_opt_state: Any
    step: Any


class GCLInfo(NamedTuple):
    """Per-update diagnostics of :func:`gcl`: the cost objective (before the step), the
    generator's Monte Carlo ELBO and its SE, :math:`\\zeta^* = \\log\\hat Z` ``(G,)``, and the
    cost parameters after the step."""

    cost_loss: Any
    elbo: Any
    elbo_stderr: Any
    log_z: Any
    params: Any


# ----------------------------------------------------------------------------- problem adapters
class _Task(NamedTuple):
    """Static description of a problem kind (hashable: functions of the problem pytree)."""

    kind: str  # the policy kind it needs
    returns: Callable  # (problem, params, states, actions) -> (B,)
    step: Callable  # problem -> step_fn(x, u)
    terminated: Callable | None  # problem -> terminated(x), or None


def _lqr_returns(problem, params, states, actions):
    return -problem.energy_model.cost(params, states, actions)


def _lqr_step(problem):
    system = problem.system

    def step(x, u):
        return system.transition @ x + system.control_matrix @ u

    return step


def _sequence_returns(problem, params, states, actions):
    energy = jax.vmap(problem.energy_model.energy, in_axes=(None, 0, 0))
    return -energy(params, actions, states[:, 0])


def _sequence_step(problem):
    return problem.energy_model.transition


def _sequence_terminated(problem):
    dynamics = problem.energy_model.dynamics
    return lambda x: mountaincar_terminated(x, dynamics)


def _pendulum_step_rewards(problem, params, states, actions):
    """:math:`-w\\cdot\\phi(x_t, u_t) - \\log 2\\bar u` from the known states (no rollout)."""
    model = problem.energy_model
    features = model.features_of_states(states[:, :-1], actions[..., 0])  # (N, T, 3)
    log_base = jnp.log(2 * jnp.asarray(model.dynamics.max_torque, features.dtype))
    return -(features @ model.weights(params).astype(features.dtype)) - log_base


def _pendulum_returns(problem, params, states, actions):
    """:math:`-E_\\theta(u; x_0) - T\\log 2\\bar u`: the log density of :math:`p_\\theta` w.r.t.
    Lebesgue measure on the box up to :math:`\\log Z` (the generator's log-probabilities are
    Lebesgue densities too)."""
    return jnp.sum(_pendulum_step_rewards(problem, params, states, actions), axis=-1)


def _pendulum_step(problem):
    dynamics = problem.energy_model.dynamics

    def step(x, u):
        return pendulum_step(x, u[0], dynamics)

    return step


_LQR = _Task("gaussian", _lqr_returns, _lqr_step, None)
_PENDULUM = _Task("gaussian", _pendulum_returns, _pendulum_step, None)
_SEQUENCE = _Task("softmax", _sequence_returns, _sequence_step, None)
_MOUNTAINCAR = _Task("softmax", _sequence_returns, _sequence_step, _sequence_terminated)


def _task(problem) -> _Task:
    if isinstance(problem, LinearGaussianProblem):
        noise = problem.system.noise_cov
        if is_concrete(noise) and not problem.system.is_deterministic():
            raise ValueError(
                "`problem.system` must be deterministic (noise_cov = 0): the continuous trainers "
                "roll the generator out with deterministic dynamics; got a nonzero noise_cov."
            )
        return _LQR
    if isinstance(problem, ActionSequenceProblem):
        model = problem.energy_model
        if isinstance(getattr(model, "dynamics", None), PendulumParams):
            return _PENDULUM
        if not hasattr(model, "transition"):
            raise TypeError(
                "`problem.energy_model` must have `transition(state, action)` (one deterministic "
                f"step); {type(model).__name__} has not."
            )
        dynamics = getattr(model, "dynamics", None)
        return _MOUNTAINCAR if isinstance(dynamics, MountainCarParams) else _SEQUENCE
    raise TypeError(
        "`problem` must be a LinearGaussianProblem or an ActionSequenceProblem; got "
        f"{type(problem).__name__}."
    )


def _horizon(problem) -> int:
    if isinstance(problem, LinearGaussianProblem):
        return problem.system.horizon
    return problem.horizon


def _state_dim(problem) -> int:
    if isinstance(problem, LinearGaussianProblem):
        return problem.system.state_dim
    return int(problem.start_states.shape[-1])


def _check_policy(policy, problem, task: _Task) -> Policy:
    if not isinstance(policy, Policy):
        raise TypeError(
            f"`policy` must be a Policy (ebm_ppl.policies.gaussian); got {type(policy).__name__}."
        )
    if policy.kind != task.kind:
        raise ValueError(
            f"`policy` must be a {task.kind} policy for {type(problem).__name__}; got a "
            f"{policy.kind} policy."
        )
    if policy.state_dim != _state_dim(problem):
        raise ValueError(
            f"`policy` has state_dim {policy.state_dim}; the problem's states have "
            f"{_state_dim(problem)} coordinates."
        )
    if isinstance(problem, LinearGaussianProblem) and policy.action_dim != (
        problem.system.control_dim
    ):
        raise ValueError(
            f"`policy` has action_dim {policy.action_dim}; the system has m = "
            f"{problem.system.control_dim} controls."
        )
    bound = policy.bound
    if task is _PENDULUM:
        torque = float(problem.energy_model.dynamics.max_torque)
        if policy.action_dim != 1 or bound is None or not np.isclose(bound, torque):
            raise ValueError(
                f"`policy` must be a squashed Gaussian policy with one action and bound = "
                f"{torque} (the torque box: p_theta is 0 outside it), e.g. linear_gaussian(2, 1, "
                f"bound={torque}); got action_dim {policy.action_dim}, bound {bound}."
            )
    elif isinstance(problem, LinearGaussianProblem) and bound is not None:
        raise ValueError(
            "`policy` must be unbounded for an LQR problem (p_theta has mass on all of R^m); got "
            f"a squashed policy with bound {bound}."
        )
    if isinstance(problem, ActionSequenceProblem):
        model = problem.energy_model
        mountaincar = isinstance(getattr(model, "dynamics", None), MountainCarParams)
        num_actions = getattr(model, "num_actions", _MOUNTAINCAR_ACTIONS if mountaincar else None)
        if num_actions is not None and policy.action_dim != num_actions:
            raise ValueError(
                f"`policy` has {policy.action_dim} actions; the problem has {num_actions}."
            )
    return policy


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _resolve_estimator(estimator: str, policy: Policy, num_samples: int) -> str:
    check_choice("estimator", estimator, ESTIMATORS)
    if estimator == "auto":
        estimator = "reparam" if policy.kind == "gaussian" else "score"
    if estimator == "reparam" and policy.kind != "gaussian":
        raise ValueError(
            "`estimator` 'reparam' needs a Gaussian policy (softmax draws are not "
            "differentiable); got a softmax policy."
        )
    if estimator == "score" and num_samples < 2:
        raise ValueError(
            "the score-function estimator's leave-one-out baseline needs `generator_samples` >= 2 "
            f"draws per start state; got {num_samples}."
        )
    return estimator


def _replay(step_fn, terminated, x0, actions):
    """States of one action sequence (frozen from the first terminal state on)."""

    def body(carry, action):
        state, done = carry
        if terminated is not None:
            done = done | jnp.asarray(terminated(state), bool)
        playable = jnp.where(action == PAD, 0, action) if action.ndim == 0 else action
        following = jnp.asarray(step_fn(state, playable), state.dtype)
        following = jnp.where(done, state, following)
        return (following, done), state

    (last, _), states = jax.lax.scan(body, (x0, jnp.zeros((), bool)), actions)
    return jnp.concatenate([states, last[None]], axis=0)


def demonstrations(problem, demos=None) -> Demonstrations:
    """The demonstrations of ``problem`` as a :class:`Demonstrations` batch (host-side).

    * :class:`~ebm_ppl.continuous.LinearGaussianProblem`: ``demos`` (default ``problem.demos``)
      are :class:`~ebm_ppl.spaces.linear_gaussian.GaussianTrajectories` ``(N, T + 1, n)`` /
      ``(N, T, m)``; the start table is their distinct :math:`x_0` (sorted).
    * :class:`~ebm_ppl.envs.classic_control.ActionSequenceProblem`: ``demos`` (default
      ``problem.demos``) are actions ``(S, M, T)`` (``-1`` after the goal); the states are
      replayed through the dynamics and the start table is ``problem.start_states``.

    Raises:
        ValueError: naming ``demos`` when there are none or the shapes are wrong.
    """
    task = _task(problem)
    horizon = _horizon(problem)
    demos = problem.demos if demos is None else demos
    if demos is None:
        raise ValueError(f"`demos` is None and problem {problem.name!r} has no demonstrations.")
    if isinstance(problem, LinearGaussianProblem):
        demos = validate_trajectories(problem.system, demos, name="demos")
        states, actions = jnp.asarray(demos.states), jnp.asarray(demos.controls)
        if states.ndim != 3:
            raise ValueError(f"`demos` must have one batch axis (N, T + 1, n); got {states.shape}.")
        starts, groups = np.unique(np.asarray(states[:, 0]), axis=0, return_inverse=True)
        return Demonstrations(
            states=states,
            actions=actions,
            groups=jnp.asarray(groups.reshape(-1), jnp.int32),
            start_states=jnp.asarray(starts, states.dtype),
        )
    actions = jnp.asarray(demos)
    start_states = jnp.asarray(problem.start_states)
    num_starts = start_states.shape[0]
    torques = task is _PENDULUM
    if (
        actions.ndim != 3
        or actions.shape[0] != num_starts
        or actions.shape[2] != horizon
        or jnp.issubdtype(actions.dtype, jnp.integer) == torques
    ):
        kind = "float torques" if torques else "integer actions"
        raise ValueError(
            f"`demos` must be {kind} of shape (S, M, T) = ({num_starts}, M, {horizon}); "
            f"got {actions.dtype} {actions.shape}."
        )
    per_start = actions.shape[1]
    if torques:  # Gaussian policies take actions (..., T, m) with m = 1
        actions = actions.reshape(-1, horizon, 1).astype(start_states.dtype)
    else:
        actions = actions.reshape(-1, horizon).astype(jnp.int32)
    groups = jnp.repeat(jnp.arange(num_starts, dtype=jnp.int32), per_start)
    x0 = start_states[groups]
    terminated = None if task.terminated is None else task.terminated(problem)
    replay = jax.jit(jax.vmap(lambda x, a: _replay(task.step(problem), terminated, x, a)))
    return Demonstrations(
        states=replay(x0, actions), actions=actions, groups=groups, start_states=start_states
    )


def _check_demos(demos, policy: Policy, horizon: int) -> Demonstrations:
    if not isinstance(demos, Demonstrations):
        raise TypeError(
            "`batch` must be Demonstrations (from `demonstrations(problem)`); got "
            f"{type(demos).__name__}."
        )
    states = jnp.asarray(demos.states)
    n = policy.state_dim
    if states.ndim != 3 or states.shape[1:] != (horizon + 1, n) or states.shape[0] < 1:
        raise ValueError(
            f"`batch.states` must have shape (N, T + 1, n) = (N, {horizon + 1}, {n}) with N >= 1; "
            f"got {states.shape}."
        )
    actions = jnp.asarray(demos.actions)
    if actions.shape[:2] != (states.shape[0], horizon):
        raise ValueError(
            f"`batch.actions` must have shape (N, T, ...) = ({states.shape[0]}, {horizon}, ...); "
            f"got {actions.shape}."
        )
    if jnp.shape(demos.groups) != states.shape[:1]:
        raise ValueError(
            f"`batch.groups` must have shape (N,) = ({states.shape[0]},); got "
            f"{jnp.shape(demos.groups)}."
        )
    return demos


# ----------------------------------------------------------------------------- returns, draws
def returns(problem, params, trajectories) -> jax.Array:
    r""":math:`R_\theta(\tau) = -c_\theta(\tau)` (or :math:`-E_\theta`) of a batch
    (:class:`Demonstrations` or :class:`~ebm_ppl.policies.gaussian.Rollout`), shape ``(N,)``."""
    task = _task(problem)
    return task.returns(problem, params, trajectories.states, trajectories.actions)


def _draw(rng_key, problem, task, policy, policy_params, x0, horizon):
    terminated = None if task.terminated is None else task.terminated(problem)
    if policy.kind == "softmax":
        return policy.rollout(
            rng_key, policy_params, x0, task.step(problem), horizon, terminated=terminated
        )
    return policy.rollout(rng_key, policy_params, x0, task.step(problem), horizon)


def _samples(rng_key, problem, task, policy, policy_params, demos, nu):
    x0 = jnp.repeat(jnp.asarray(demos.states)[:, 0], nu, axis=0)
    draws = _draw(rng_key, problem, task, policy, policy_params, x0, _horizon(problem))
    return Demonstrations(
        states=draws.states,
        actions=draws.actions,
        groups=jnp.repeat(jnp.asarray(demos.groups), nu),
        start_states=demos.start_states,
    )


def rollouts(rng_key, problem, policy: Policy, policy_params, demos: Demonstrations, nu: int = 1):
    r"""Generator draws for the discriminator: :math:`\nu` rollouts from each demonstration's start
    (so :math:`N_g(x_0) = \nu N_d(x_0)`, the per-start form of facts 1–2).

    Returns:
        :class:`Demonstrations` of the draws (``groups`` repeated, the same start table).
    """
    task = _task(problem)
    policy = _check_policy(policy, problem, task)
    nu = _check_int("nu", nu)
    demos = _check_demos(demos, policy, _horizon(problem))
    return _samples(rng_key, problem, task, policy, policy_params, demos, nu)


# ----------------------------------------------------------------------------- generator
def _elbo(rng_key, problem, task, policy, params, policy_params, starts, weights, k, estimator):
    """:class:`ELBOEstimate` from ``k`` draws per start (pure; see :func:`generator_elbo`)."""
    horizon = _horizon(problem)
    num_starts = starts.shape[0]
    x0 = jnp.repeat(starts, k, axis=0)
    params = sg(params)
    draws = _draw(rng_key, problem, task, policy, policy_params, x0, horizon)
    reward = task.returns(problem, params, draws.states, draws.actions)
    if estimator == "reparam":
        # pathwise through the draws; the score term of log q dropped (sticking the landing)
        log_q = policy.trajectory_log_prob(sg(policy_params), draws.states, draws.actions)
        values = (reward - log_q).reshape(num_starts, k)
        surrogate = -jnp.sum(weights * jnp.mean(values, axis=1))
        values = sg(values)
    else:
        log_q = policy.trajectory_log_prob(policy_params, sg(draws.states), sg(draws.actions))
        values = sg(reward - log_q).reshape(num_starts, k)
        baseline = (jnp.sum(values, axis=1, keepdims=True) - values) / (k - 1)  # leave-one-out
        score = (values - baseline) * log_q.reshape(num_starts, k)
        surrogate = -jnp.sum(weights * jnp.mean(score, axis=1))
    per_start = jnp.mean(values, axis=1)
    variance = jnp.var(values, axis=1, ddof=1) if k > 1 else jnp.full((num_starts,), jnp.nan)
    return ELBOEstimate(
        surrogate=surrogate,
        elbo=jnp.sum(weights * per_start),
        stderr=jnp.sqrt(jnp.sum(weights**2 * variance) / k),
        per_start=per_start,
    )


_elbo_jit = jax.jit(_elbo, static_argnums=(2, 3, 8, 9))


def _generator_steps(
    problem,
    task,
    policy,
    optimizer,
    params,
    policy_params,
    opt_state,
    keys,
    starts,
    weights,
    k,
    estimator,
):
    """``len(keys)`` optax steps on the ELBO surrogate; returns every step's estimate."""

    def objective(pp, key):
        estimate = _elbo(key, problem, task, policy, params, pp, starts, weights, k, estimator)
        return estimate.surrogate, estimate

    def body(carry, key):
        pp, state = carry
        grads, estimate = jax.grad(objective, has_aux=True)(pp, key)
        updates, state = optimizer.update(grads, state, pp)
        return (optax.apply_updates(pp, updates), state), estimate

    (policy_params, opt_state), estimates = jax.lax.scan(body, (policy_params, opt_state), keys)
    return policy_params, opt_state, estimates


def _trainer_generator_steps(prob, task, policy, optimizer, params, state, key, demos, dtype, cfg):
    """The generator steps of a trainer's update (``cfg = (policy_steps, k, estimator)``), from
    ``state.policy_params`` / ``state.policy_opt_state``, weighted by the batch's start counts."""
    policy_steps, k, estimator = cfg
    return _generator_steps(
        prob,
        task,
        policy,
        optimizer,
        params,
        state.policy_params,
        state.policy_opt_state,
        jax.random.split(key, policy_steps),
        jnp.asarray(demos.start_states, dtype),
        _start_weights(demos, dtype),
        k,
        estimator,
    )


def _check_starts(starts, state_dim: int, weights):
    starts = jnp.asarray(starts)
    if starts.ndim == 1:
        starts = starts[None]
    if starts.ndim != 2 or starts.shape[-1] != state_dim:
        raise ValueError(
            f"`starts` must have shape (G, n) or (n,) with n = {state_dim}; got {starts.shape}."
        )
    if not jnp.issubdtype(starts.dtype, jnp.floating):
        starts = starts.astype(jnp.result_type(float))
    if weights is None:
        weights = jnp.full((starts.shape[0],), 1.0 / starts.shape[0], starts.dtype)
    weights = jnp.asarray(weights, starts.dtype)
    if weights.shape != starts.shape[:1]:
        raise ValueError(
            f"`weights` must have shape (G,) = ({starts.shape[0]},); got {weights.shape}."
        )
    if is_concrete(weights) and not (
        np.all(np.asarray(weights) >= 0) and abs(float(np.sum(weights)) - 1) < 1e-6
    ):
        raise ValueError(
            f"`weights` must be probabilities summing to 1; got {np.asarray(weights)}."
        )
    return starts, weights


def generator_elbo(
    rng_key,
    problem,
    policy: Policy,
    params,
    policy_params,
    starts,
    *,
    num_samples: int = 64,
    weights=None,
    estimator: str = "auto",
) -> ELBOEstimate:
    r"""Monte Carlo ELBO of the generator and a surrogate for its gradient (module docstring).

    .. math::

        \mathrm{ELBO} = \sum_g w_g\,\mathbb E_{\pi}\Big[R_\theta(\tau) -
        \sum_t\log\pi_t(u_t\mid x_t)\ \Big|\ x_0 = x_0^g\Big]
        \le \sum_g w_g\log Z_\theta(x_0^g),

    with equality iff the policy is the soft-optimal one (THEORY §6). ``num_samples`` draws per
    start. The cost parameters get no gradient.

    Args:
        rng_key: JAX key.
        problem: a deterministic :class:`~ebm_ppl.continuous.LinearGaussianProblem` or an
            :class:`~ebm_ppl.envs.classic_control.ActionSequenceProblem`.
        policy: a :class:`~ebm_ppl.policies.gaussian.Policy` matching the problem.
        params: cost parameters :math:`\theta`.
        policy_params: the policy's parameters (differentiate ``surrogate`` in these).
        starts: ``(G, n)`` start states (or one ``(n,)``).
        num_samples: draws per start (>= 2 for ``"score"``).
        weights: ``(G,)`` probabilities over the starts (default uniform).
        estimator: one of :data:`ESTIMATORS`.

    Returns:
        :class:`ELBOEstimate`.
    """
    task = _task(problem)
    policy = _check_policy(policy, problem, task)
    num_samples = _check_int("num_samples", num_samples)
    estimator = _resolve_estimator(estimator, policy, num_samples)
    starts, weights = _check_starts(starts, policy.state_dim, weights)
    return _elbo_jit(
        rng_key,
        problem,
        task,
        policy,
        params,
        policy_params,
        starts,
        weights,
        num_samples,
        estimator,
    )


def fit_generator(
    rng_key,
    problem,
    policy: Policy,
    params,
    policy_params,
    starts,
    *,
    num_steps: int = 500,
    num_samples: int = 64,
    weights=None,
    optimizer: optax.GradientTransformation | None = None,
    estimator: str = "auto",
):
    r"""Fit the generator to :math:`p_\theta(\cdot\mid x_0)` by ``num_steps`` optax steps on the
    ELBO (:func:`generator_elbo`; reverse KL, mode-seeking, THEORY §3.5), in one ``lax.scan``.

    Args:
        rng_key: JAX key (one fresh batch per step).
        problem, policy, params, policy_params, starts, num_samples, weights, estimator: as in
            :func:`generator_elbo`.
        num_steps: optimiser steps (int >= 1).
        optimizer: optax transformation; default ``adam(0.05)``.

    Returns:
        ``(policy_params, estimates)``: the fitted parameters and the :class:`ELBOEstimate` of
        every step (arrays with a leading ``(num_steps,)`` axis).
    """
    task = _task(problem)
    policy = _check_policy(policy, problem, task)
    num_steps = _check_int("num_steps", num_steps)
    num_samples = _check_int("num_samples", num_samples)
    estimator = _resolve_estimator(estimator, policy, num_samples)
    starts, weights = _check_starts(starts, policy.state_dim, weights)
    optimizer = _DEFAULT_OPTIMIZER if optimizer is None else optimizer
    return _fit(
        problem,
        params,
        policy_params,
        rng_key,
        starts,
        weights,
        task,
        policy,
        optimizer,
        num_steps,
        num_samples,
        estimator,
    )


@functools.partial(jax.jit, static_argnums=(6, 7, 8, 9, 10, 11))
def _fit(
    problem,
    params,
    policy_params,
    rng_key,
    starts,
    weights,
    task,
    policy,
    optimizer,
    num_steps,
    num_samples,
    estimator,
):
    keys = jax.random.split(rng_key, num_steps)
    policy_params, _, estimates = _generator_steps(
        problem,
        task,
        policy,
        optimizer,
        params,
        policy_params,
        optimizer.init(policy_params),
        keys,
        starts,
        weights,
        num_samples,
        estimator,
    )
    return policy_params, estimates


# ----------------------------------------------------------------------------- trainers
def _start_weights(demos: Demonstrations, dtype):
    num_groups = demos.start_states.shape[0]
    counts = jnp.zeros((num_groups,), dtype).at[demos.groups].add(1.0)
    return counts / jnp.sum(counts)


def _log_q(policy, policy_params, trajectories):
    return sg(policy.trajectory_log_prob(policy_params, trajectories.states, trajectories.actions))


def _common(problem, policy, nu, policy_steps, generator_samples, estimator):
    task = _task(problem)
    policy = _check_policy(policy, problem, task)
    if float(getattr(problem, "discount", 1.0)) != 1.0:
        raise ValueError(
            "the trainers use the trajectory-level model, which needs `discount` = 1 "
            f"(THEORY §0.4); got {problem.discount!r}."
        )
    nu = _check_int("nu", nu)
    policy_steps = _check_int("policy_steps", policy_steps)
    generator_samples = _check_int("generator_samples", generator_samples)
    estimator = _resolve_estimator(estimator, policy, generator_samples)
    default = demonstrations(problem) if problem.demos is not None else None
    return task, policy, nu, policy_steps, generator_samples, estimator, default


def _batch(batch, default, policy, horizon):
    batch = default if batch is None else batch
    if batch is None:
        raise ValueError("`batch` must hold Demonstrations; got None and the problem has none.")
    return _check_demos(batch, policy, horizon)


def gan_gcl(
    problem,
    policy: Policy,
    *,
    nu: int = 1,
    cost_optimizer: optax.GradientTransformation | None = None,
    policy_optimizer: optax.GradientTransformation | None = None,
    policy_steps: int = 1,
    generator_samples: int = 64,
    estimator: str = "auto",
) -> Trainer:
    r"""GAN-GCL on a continuous-state problem ([FCAL] §3; THEORY §3, §4).

    Each ``update``: :math:`\nu` rollouts of the current generator from each demonstration's
    start; one optax step on :math:`(\theta, \zeta)` of the discriminator's log loss
    :math:`\hat{\mathcal L}_D` (:func:`~ebm_ppl.adversarial.discriminator.log_loss`, normalised by
    :math:`N_d`, :math:`\log\nu` in the logit, only :math:`\sum_t\log\pi_t` of the generator);
    then ``policy_steps`` generator steps on the Monte Carlo ELBO under the new :math:`\theta`
    (``generator_samples`` draws per start, weighted by the data's start frequencies). The cost
    estimate is consistent (NCE) for a well-specified cost class (THEORY §3.6, §5.2);
    :math:`\zeta` is a stochastic-approximation estimate of the fixed point of fact 1, consistent
    for :math:`\log Z(\theta)` only where the data follow :math:`p_\theta` (or the generator is
    exact, which makes :math:`D` constant).

    Args:
        problem: a deterministic LQR problem or an action-sequence problem with demonstrations.
        policy: the generator family (Gaussian for LQR, softmax for discrete actions).
        nu: generated trajectories per demonstration (int >= 1).
        cost_optimizer: optax transformation for :math:`(\theta, \zeta)`; default ``adam(0.05)``.
        policy_optimizer: for the generator; default ``adam(0.05)``.
        policy_steps: generator steps per update.
        generator_samples: draws per start state in each generator step.
        estimator: one of :data:`ESTIMATORS`.

    Returns:
        :class:`~ebm_ppl.adversarial.trainers.Trainer`:
        ``init(rng_key, params=None, *, zeta=None, policy_params=None, batch=None) ->
        GANGCLState`` (default :math:`\zeta` = the initial generator's per-start Monte Carlo ELBO,
        a lower bound) and ``update(rng_key, state, batch=None) -> (GANGCLState, GANGCLInfo)``
        with ``batch`` :class:`Demonstrations` (default the problem's), jit-compiled with the
        problem as an argument.
    """
    task, policy, nu, policy_steps, k, estimator, default = _common(
        problem, policy, nu, policy_steps, generator_samples, estimator
    )
    cfg = (policy_steps, k, estimator)
    cost_opt = _DEFAULT_OPTIMIZER if cost_optimizer is None else cost_optimizer
    policy_opt = _DEFAULT_OPTIMIZER if policy_optimizer is None else policy_optimizer
    horizon = _horizon(problem)

    def init(rng_key, params=None, *, zeta=None, policy_params=None, batch=None) -> GANGCLState:
        demos = _batch(batch, default, policy, horizon)
        key_policy, key_elbo = jax.random.split(rng_key)
        params = problem.energy_model.init_params() if params is None else params
        dtype = jnp.result_type(*jax.tree.leaves(params))
        if policy_params is None:
            policy_params = policy.init_params(key_policy, horizon, dtype)
        num_groups = demos.start_states.shape[0]
        if zeta is None:
            # a lower bound on log Z(x0) under the initial generator: from 0, zeta would need
            # many steps, and the theta-gradient is biased while sum D != N_d (fact 2)
            weights = jnp.full((num_groups,), 1.0 / num_groups, dtype)
            zeta = _elbo_jit(
                key_elbo,
                problem,
                task,
                policy,
                params,
                policy_params,
                jnp.asarray(demos.start_states, dtype),
                weights,
                k,
                estimator,
            ).per_start
        zeta = jnp.asarray(zeta, dtype)
        if zeta.shape != (num_groups,):
            raise ValueError(
                f"`zeta` must have shape (G,) = ({num_groups},) (one entry per start state); got "
                f"{zeta.shape}."
            )
        return GANGCLState(
            params=params,
            zeta=zeta,
            policy_params=policy_params,
            cost_opt_state=cost_opt.init((params, zeta)),
            policy_opt_state=policy_opt.init(policy_params),
            step=jnp.zeros((), jnp.int32),
        )

    @jax.jit
    def _update(prob, rng_key, state, demos):
        key_draw, key_policy = jax.random.split(rng_key)
        samples = _samples(key_draw, prob, task, policy, sg(state.policy_params), demos, nu)
        lq_d = _log_q(policy, state.policy_params, demos)
        lq_s = _log_q(policy, state.policy_params, samples)

        def loss(pz):
            params, zeta = pz
            logits_d = discriminator_logits(
                task.returns(prob, params, demos.states, demos.actions),
                lq_d,
                zeta[demos.groups],
                nu,
            )
            logits_s = discriminator_logits(
                task.returns(prob, params, samples.states, samples.actions),
                lq_s,
                zeta[samples.groups],
                nu,
            )
            return log_loss(logits_d, logits_s), (logits_d, logits_s)

        pz = (state.params, state.zeta)
        (d_loss, (logits_d, logits_s)), grads = jax.value_and_grad(loss, has_aux=True)(pz)
        updates, cost_state = cost_opt.update(grads, state.cost_opt_state, pz)
        params, zeta = optax.apply_updates(pz, updates)
        policy_params, policy_state, estimates = _trainer_generator_steps(
            prob, task, policy, policy_opt, params, state, key_policy, demos, lq_d.dtype, cfg
        )
        new = GANGCLState(
            params=params,
            zeta=zeta,
            policy_params=policy_params,
            cost_opt_state=cost_state,
            policy_opt_state=policy_state,
            step=state.step + 1,
        )
        info = GANGCLInfo(
            discriminator_loss=d_loss,
            elbo=estimates.elbo[-1],
            elbo_stderr=estimates.stderr[-1],
            zeta=zeta,
            mean_d_data=jnp.mean(jax.nn.sigmoid(logits_d)),
            mean_d_samples=jnp.mean(jax.nn.sigmoid(logits_s)),
            params=params,
        )
        return new, info

    def update(rng_key, state, batch=None):
        demos = _batch(batch, default, policy, horizon)
        if jnp.shape(demos.start_states)[0] != jnp.shape(state.zeta)[0]:
            raise ValueError(
                f"`batch` has {jnp.shape(demos.start_states)[0]} start states; `state.zeta` has "
                f"{jnp.shape(state.zeta)[0]} entries (use the batch given to `init`)."
            )
        return _update(problem, rng_key, state, demos)

    return Trainer(init=init, update=update)


def gcl(
    problem,
    policy: Policy,
    *,
    nu: int = 1,
    cost_optimizer: optax.GradientTransformation | None = None,
    policy_optimizer: optax.GradientTransformation | None = None,
    policy_steps: int = 1,
    generator_samples: int = 64,
    estimator: str = "auto",
) -> Trainer:
    r"""Guided cost learning with the mixture proposal on a continuous-state problem ([GCL],
    [FCAL] §2.3.2; THEORY §2, §3.4).

    Each ``update``: :math:`\nu` rollouts per demonstration; the fixed point :math:`\zeta^*(x_0)`
    of the mixture estimate (fact 1, :func:`~ebm_ppl.adversarial.facts.solve_zeta`); one optax
    step on :math:`\theta` of :func:`~ebm_ppl.adversarial.facts.gcl_cost_loss`,
    :math:`\frac1{N_d}\sum_{\mathcal D}c_\theta + \sum_g\frac{N_d(g)}{N_d}\log\hat Z(g)` with the
    mixture held constant (by fact 2 the same gradient as GAN-GCL's discriminator at
    :math:`\zeta^*`); then generator steps on the ELBO. :math:`\log\hat Z` is biased low
    (Jensen, THEORY §6).

    Args and returns as :func:`gan_gcl` (no :math:`\zeta` in the state; ``init(rng_key,
    params=None, *, policy_params=None, batch=None)``; ``GCLInfo.log_z`` reports
    :math:`\zeta^*`).
    """
    task, policy, nu, policy_steps, k, estimator, default = _common(
        problem, policy, nu, policy_steps, generator_samples, estimator
    )
    cfg = (policy_steps, k, estimator)
    cost_opt = _DEFAULT_OPTIMIZER if cost_optimizer is None else cost_optimizer
    policy_opt = _DEFAULT_OPTIMIZER if policy_optimizer is None else policy_optimizer
    horizon = _horizon(problem)

    def init(rng_key, params=None, *, policy_params=None, batch=None) -> GCLState:
        _batch(batch, default, policy, horizon)
        params = problem.energy_model.init_params() if params is None else params
        dtype = jnp.result_type(*jax.tree.leaves(params))
        if policy_params is None:
            policy_params = policy.init_params(rng_key, horizon, dtype)
        return GCLState(
            params=params,
            policy_params=policy_params,
            cost_opt_state=cost_opt.init(params),
            policy_opt_state=policy_opt.init(policy_params),
            step=jnp.zeros((), jnp.int32),
        )

    @jax.jit
    def _update(prob, rng_key, state, demos):
        key_draw, key_policy = jax.random.split(rng_key)
        samples = _samples(key_draw, prob, task, policy, sg(state.policy_params), demos, nu)
        log_q = jnp.concatenate(
            [
                _log_q(policy, state.policy_params, demos),
                _log_q(policy, state.policy_params, samples),
            ]
        )
        num_data = demos.groups.shape[0]
        is_data = jnp.arange(log_q.shape[0]) < num_data
        groups = jnp.concatenate([demos.groups, samples.groups])
        num_groups = demos.start_states.shape[0]

        def returns_fn(p):
            return jnp.concatenate(
                [
                    task.returns(prob, p, demos.states, demos.actions),
                    task.returns(prob, p, samples.states, samples.actions),
                ]
            )

        offsets = returns_fn(state.params) - jnp.log(jnp.asarray(nu, log_q.dtype)) - log_q
        zeta = solve_zeta(offsets, is_data, groups, num_groups)

        def loss(p):
            return gcl_cost_loss(returns_fn(p), log_q, is_data, zeta, nu, groups, num_groups)

        c_loss, grads = jax.value_and_grad(loss)(state.params)
        updates, cost_state = cost_opt.update(grads, state.cost_opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        policy_params, policy_state, estimates = _trainer_generator_steps(
            prob, task, policy, policy_opt, params, state, key_policy, demos, log_q.dtype, cfg
        )
        new = GCLState(
            params=params,
            policy_params=policy_params,
            cost_opt_state=cost_state,
            policy_opt_state=policy_state,
            step=state.step + 1,
        )
        info = GCLInfo(
            cost_loss=c_loss,
            elbo=estimates.elbo[-1],
            elbo_stderr=estimates.stderr[-1],
            log_z=zeta,
            params=params,
        )
        return new, info

    def update(rng_key, state, batch=None):
        return _update(problem, rng_key, state, _batch(batch, default, policy, horizon))

    return Trainer(init=init, update=update)


# ----------------------------------------------------------------------------- AIRL
class AIRLState(NamedTuple):
    """Continuous AIRL state: reward parameters :math:`\\theta`, shaping parameters ``(T, p)``
    (:func:`shaping_features`), generator parameters, optimiser states, step counter."""

    params: Any
    shaping: Any
    policy_params: Any
    disc_opt_state: Any
    policy_opt_state: Any
    step: Any


class AIRLInfo(NamedTuple):
    """Per-update diagnostics of :func:`airl`.

    Attributes:
        discriminator_loss: the per-step log loss before the step (normalised by :math:`N_d`).
        elbo: Monte Carlo ELBO of the generator's last step, and ``elbo_stderr`` its SE.
        log_z: ``(G,)`` :math:`h_0(x_0)` at the start table after the step (the soft value
            :math:`V_0 = \\log Z(x_0)` at the optimum).
        mean_d_data: mean :math:`D` over the demonstrations' transitions (before the step).
        mean_d_samples: mean :math:`D` over the generated transitions (before the step).
        params: :math:`\\theta` after the step (for iterate averaging).
    """

    discriminator_loss: Any
    elbo: Any
    elbo_stderr: Any
    log_z: Any
    mean_d_data: Any
    mean_d_samples: Any
    params: Any


def shaping_features(states) -> jax.Array:
    """:math:`\\psi(x) = (1, x, (x_ix_j)_{i\\le j})`, shape ``(..., p)`` with
    :math:`p = 1 + n + n(n+1)/2`: a full quadratic, the class of LQR's soft values."""
    states = jnp.asarray(states)
    n = states.shape[-1]
    rows, cols = np.triu_indices(n)
    squares = states[..., rows] * states[..., cols]
    return jnp.concatenate([jnp.ones_like(states[..., :1]), states, squares], axis=-1)


def _alive(task, actions):
    """``(N, T)``: the steps that are decisions (softmax: not PAD after termination)."""
    if task.kind == "softmax":
        return actions != PAD
    return jnp.ones(actions.shape[:2], bool)


def _lqr_step_rewards(problem, params, states, actions):
    cost = problem.cost_matrices(params)
    x, u = states[:, :-1], actions
    per_step = -0.5 * (
        jnp.einsum("nti,ij,ntj->nt", x, cost.state, x)
        + jnp.einsum("nti,ij,ntj->nt", u, cost.control, u)
    )
    terminal = -0.5 * jnp.einsum("ni,ij,nj->n", states[:, -1], cost.terminal, states[:, -1])
    return per_step.at[:, -1].add(terminal)  # the terminal reward joins the last decision


def _sequence_step_rewards(problem, params, states, actions):
    step_energy = problem.energy_model.step_energy  # 0 from the first terminal state on
    return -step_energy(params, states[:, :-1], actions, states[:, 1:])


def step_rewards(problem, params, trajectories) -> jax.Array:
    r"""Per-step rewards :math:`r_{\theta,t}`, ``(N, T)``, with :math:`\sum_t r_{\theta,t} =
    R_\theta(\tau)` (:func:`returns`): LQR :math:`-\tfrac12(x_t^\top Qx_t + u_t^\top Ru_t)`,
    the terminal :math:`-\tfrac12x_T^\top Q_fx_T` added to the last step; action-sequence problems
    :math:`-\theta\cdot\phi(x_t, a_t, x_{t+1})` from ``energy_model.step_energy`` (0 after
    termination); the pendulum :math:`-w\cdot\phi(x_t, u_t) - \log 2\bar u`."""
    task = _task(problem)
    return _step_rewards_fn(problem, task)(
        problem, params, jnp.asarray(trajectories.states), jnp.asarray(trajectories.actions)
    )


def _step_rewards_fn(problem, task):
    if task is _LQR:
        return _lqr_step_rewards
    if task is _PENDULUM:
        return _pendulum_step_rewards
    if not hasattr(problem.energy_model, "step_energy"):
        raise TypeError(
            "`problem.energy_model` must have `step_energy(params, state, action, next_state)` "
            f"for AIRL's per-step rewards; {type(problem.energy_model).__name__} has not."
        )
    return _sequence_step_rewards


def _airl_logits(task, rewards_fn, prob, params, shaping, step_log_q, trajectories, nu):
    states, actions = trajectories.states, trajectories.actions
    alive = _alive(task, actions)
    values = jnp.einsum("ntp,tp->nt", shaping_features(states[:, :-1]), shaping)
    # h_{t+1}(x_{t+1}); h_T = 0 and 0 at a terminal state (no decision follows)
    next_alive = jnp.concatenate([alive[:, 1:], jnp.zeros_like(alive[:, :1])], axis=1)
    next_values = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], axis=1)
    shaped = rewards_fn(prob, params, states, actions) + jnp.where(next_alive, next_values, 0.0)
    logits = shaped - values - step_log_q - jnp.log(jnp.asarray(nu, values.dtype))
    return logits, alive


def airl_logits(problem, params, shaping, policy: Policy, policy_params, trajectories, nu=1):
    r"""AIRL's per-step logits :math:`\ell_t = f_t - \log\pi_t(u_t\mid x_t) - \log\nu` with the
    time-indexed shaped reward

    .. math::

        f_t(x_t, u_t, x_{t+1}) = r_{\theta,t}(x_t, u_t, x_{t+1}) + h_{t+1}(x_{t+1}) - h_t(x_t),
        \qquad h_t(x) = \psi(x)^\top\eta_t,\quad h_T \equiv 0

    (:math:`h` is also 0 at a terminal state), so that along a trajectory with :math:`L`
    decisions :math:`\sum_t\ell_t = R_\theta(\tau) - h_0(x_0) - \log q(\tau) - L\log\nu`: AIRL is
    GAN-GCL's trajectory discriminator factorised over steps, with :math:`h_0` in the place of
    :math:`\zeta`. At the optimum with :math:`q = p_\theta`, :math:`f_t = \log\pi^*_t` and
    :math:`h_t = V_t` (the soft value; exactly representable for LQR).

    Args:
        problem: as :func:`gan_gcl`.
        params: :math:`\theta`.
        shaping: ``(T, p)`` :math:`\eta`.
        policy, policy_params: the generator (only its per-step log-probabilities enter).
        trajectories: :class:`Demonstrations` (or a rollout batch).
        nu: generated transitions per demonstrated one.

    Returns:
        ``(logits, alive)``, both ``(N, T)``; ``alive`` marks the decisions (the logits elsewhere
        are meaningless).
    """
    task = _task(problem)
    policy = _check_policy(policy, problem, task)
    horizon = _horizon(problem)
    trajectories = _check_demos(trajectories, policy, horizon)
    shaping = _check_shaping(shaping, horizon, _state_dim(problem))
    states, actions = jnp.asarray(trajectories.states), jnp.asarray(trajectories.actions)
    step_log_q = policy.step_log_probs(policy_params, states, actions)
    return _airl_logits(
        task,
        _step_rewards_fn(problem, task),
        problem,
        params,
        shaping,
        step_log_q,
        trajectories,
        nu,
    )


def _shaping_width(state_dim: int) -> int:
    return 1 + state_dim + state_dim * (state_dim + 1) // 2


def _check_shaping(shaping, horizon: int, state_dim: int) -> jax.Array:
    shaping = jnp.asarray(shaping)
    width = _shaping_width(state_dim)
    if shaping.shape != (horizon, width):
        raise ValueError(
            f"`shaping` must have shape (T, p) = ({horizon}, {width}) (shaping_features); got "
            f"{shaping.shape}."
        )
    return shaping


def _masked_mean(values, mask):
    return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def airl(
    problem,
    policy: Policy,
    *,
    nu: int = 1,
    discriminator_optimizer: optax.GradientTransformation | None = None,
    policy_optimizer: optax.GradientTransformation | None = None,
    policy_steps: int = 1,
    generator_samples: int = 64,
    estimator: str = "auto",
) -> Trainer:
    r"""Adversarial inverse RL ([AIRL]; THEORY §9.4) on a continuous-state problem, finite horizon.

    The discriminator classifies **transitions** :math:`(x_t, u_t, x_{t+1}, t)` of the
    demonstrations against :math:`\nu` rollouts per demonstration of the generator, with
    :math:`D = \sigma(\ell_t)` and the per-step logit of :func:`airl_logits`: the reward class is
    the problem's own (:math:`r_\theta`, state-action), the shaping :math:`h_t = \psi^\top\eta_t`
    a time-indexed quadratic (:func:`shaping_features`). Each ``update``: rollouts, one optax
    step on :math:`(\theta, \eta)` of the log loss over the decisions (normalised by
    :math:`N_d`), then ``policy_steps`` generator steps. The generator's AIRL reward
    :math:`\log D - \log(1 - D) = f_t - \log\pi_t` (with :math:`\nu = 1`) sums along a trajectory
    to :math:`R_\theta(\tau) - h_0(x_0) - \log q(\tau)`, so its step is the ELBO step of
    :func:`gan_gcl` at the new :math:`\theta` (the :math:`h_0` term does not depend on the policy).

    Consistent for :math:`\theta` where the reward class is well specified and the shaping class
    holds the soft values (LQR: both hold); the finite-horizon, time-indexed shaping is what makes
    :math:`h_t = V_t` exact (a stationary :math:`h` would be misspecified here).
    :math:`h_0(x_0)` estimates :math:`\log Z(x_0)` like GAN-GCL's :math:`\zeta`.

    Args:
        problem: a deterministic LQR problem, or an action-sequence problem whose energy model
            has ``step_energy`` (MountainCar).
        policy: the generator (Gaussian for LQR, softmax for discrete actions).
        nu: generated trajectories per demonstration.
        discriminator_optimizer: optax transformation for :math:`(\theta, \eta)`; default
            ``adam(0.05)``.
        policy_optimizer: for the generator; default ``adam(0.05)``.
        policy_steps: generator steps per update.
        generator_samples: draws per start state in each generator step.
        estimator: one of :data:`ESTIMATORS`.

    Returns:
        :class:`~ebm_ppl.adversarial.trainers.Trainer`: ``init(rng_key, params=None, *,
        shaping=None, policy_params=None, batch=None) -> AIRLState`` (default shaping 0) and
        ``update(rng_key, state, batch=None) -> (AIRLState, AIRLInfo)``.
    """
    task, policy, nu, policy_steps, k, estimator, default = _common(
        problem, policy, nu, policy_steps, generator_samples, estimator
    )
    cfg = (policy_steps, k, estimator)
    rewards_fn = _step_rewards_fn(problem, task)
    disc_opt = _DEFAULT_OPTIMIZER if discriminator_optimizer is None else discriminator_optimizer
    policy_opt = _DEFAULT_OPTIMIZER if policy_optimizer is None else policy_optimizer
    horizon = _horizon(problem)
    state_dim = _state_dim(problem)

    def init(rng_key, params=None, *, shaping=None, policy_params=None, batch=None) -> AIRLState:
        _batch(batch, default, policy, horizon)
        params = problem.energy_model.init_params() if params is None else params
        dtype = jnp.result_type(*jax.tree.leaves(params))
        if policy_params is None:
            policy_params = policy.init_params(rng_key, horizon, dtype)
        if shaping is None:
            shaping = jnp.zeros((horizon, _shaping_width(state_dim)), dtype)
        shaping = _check_shaping(shaping, horizon, state_dim)
        return AIRLState(
            params=params,
            shaping=shaping,
            policy_params=policy_params,
            disc_opt_state=disc_opt.init((params, shaping)),
            policy_opt_state=policy_opt.init(policy_params),
            step=jnp.zeros((), jnp.int32),
        )

    @jax.jit
    def _update(prob, rng_key, state, demos):
        key_draw, key_policy = jax.random.split(rng_key)
        policy_params = sg(state.policy_params)
        samples = _samples(key_draw, prob, task, policy, policy_params, demos, nu)
        lq_d = policy.step_log_probs(policy_params, demos.states, demos.actions)
        lq_s = policy.step_log_probs(policy_params, samples.states, samples.actions)

        def loss(ps):
            params, shaping = ps
            logits_d, alive_d = _airl_logits(
                task, rewards_fn, prob, params, shaping, lq_d, demos, nu
            )
            logits_s, alive_s = _airl_logits(
                task, rewards_fn, prob, params, shaping, lq_s, samples, nu
            )
            value = log_loss(logits_d, logits_s, alive_d, alive_s)
            return value, (logits_d, alive_d, logits_s, alive_s)

        ps = (state.params, state.shaping)
        (d_loss, (logits_d, alive_d, logits_s, alive_s)), grads = jax.value_and_grad(
            loss, has_aux=True
        )(ps)
        updates, disc_state = disc_opt.update(grads, state.disc_opt_state, ps)
        params, shaping = optax.apply_updates(ps, updates)
        policy_params, policy_state, estimates = _trainer_generator_steps(
            prob, task, policy, policy_opt, params, state, key_policy, demos, lq_d.dtype, cfg
        )
        new = AIRLState(
            params=params,
            shaping=shaping,
            policy_params=policy_params,
            disc_opt_state=disc_state,
            policy_opt_state=policy_state,
            step=state.step + 1,
        )
        info = AIRLInfo(
            discriminator_loss=d_loss,
            elbo=estimates.elbo[-1],
            elbo_stderr=estimates.stderr[-1],
            log_z=shaping_features(jnp.asarray(demos.start_states, lq_d.dtype)) @ shaping[0],
            mean_d_data=_masked_mean(jax.nn.sigmoid(logits_d), alive_d),
            mean_d_samples=_masked_mean(jax.nn.sigmoid(logits_s), alive_s),
            params=params,
        )
        return new, info

    def update(rng_key, state, batch=None):
        return _update(problem, rng_key, state, _batch(batch, default, policy, horizon))

    return Trainer(init=init, update=update)


def train(
    rng_key,
    trainer: Trainer,
    state,
    batch: Demonstrations,
    num_steps: int,
    *,
    compiler_options: dict | None = None,
):
    """Run ``num_steps`` updates of a continuous trainer in one jitted ``lax.scan``.

    Args:
        rng_key: JAX key (split into one key per update).
        trainer: from :func:`gan_gcl`, :func:`gcl` or :func:`airl`.
        state: the trainer's state.
        batch: :class:`Demonstrations` (the same batch every update).
        num_steps: updates (int >= 1).
        compiler_options: passed to ``jax.jit`` (e.g. ``{"xla_backend_optimization_level": 0}``
            for short runs, where compiling dominates).

    Returns:
        ``(state, infos)``, the infos stacked along a leading ``(num_steps,)`` axis.
    """
    num_steps = _check_int("num_steps", num_steps)
    if not isinstance(batch, Demonstrations):
        raise TypeError(f"`batch` must be Demonstrations; got {type(batch).__name__}.")
    keys = jax.random.split(rng_key, num_steps)

    def run(state, keys, batch):
        return jax.lax.scan(lambda s, key: trainer.update(key, s, batch), state, keys)

    run = jax.jit(run, compiler_options=compiler_options)
    return run(state, keys, batch)


# ----------------------------------------------------------------------------- facts, ζ*
def check_equivalence(
    problem,
    params,
    policy: Policy,
    policy_params,
    demos: Demonstrations,
    samples: Demonstrations,
    *,
    nu=None,
    stop_gradient: bool = True,
) -> Equivalence:
    r"""Facts 1 and 2 (THEORY §3.3–§3.4) on a pooled continuous sample, per start state.

    :func:`~ebm_ppl.adversarial.facts.pooled_facts` with :math:`R_\theta` of the problem, the
    policy's dynamics-free :math:`\log q` and the start-state groups (a :math:`\zeta` table).
    ``samples`` must hold :math:`\nu` draws per demonstration start (:func:`rollouts`).

    Returns:
        :class:`~ebm_ppl.adversarial.facts.Equivalence`: fact 1, ``sum_d == num_data`` and
        ``log_z_mixture == zeta``; fact 2, ``discriminator_grad == cost_grad``.
    """
    task = _task(problem)
    policy = _check_policy(policy, problem, task)
    horizon = _horizon(problem)
    demos = _check_demos(demos, policy, horizon)
    samples = _check_demos(samples, policy, horizon)
    num_data, num_gen = demos.groups.shape[0], samples.groups.shape[0]
    nu = num_gen / num_data if nu is None else nu
    if is_concrete(nu) and not float(nu) > 0:
        raise ValueError(f"`nu` must be > 0; got {nu!r}.")
    return _facts(problem, params, policy_params, demos, samples, nu, task, policy, stop_gradient)


@functools.partial(jax.jit, static_argnums=(6, 7, 8))
def _facts(problem, params, policy_params, demos, samples, nu, task, policy, stop_gradient):
    num_data, num_gen = demos.groups.shape[0], samples.groups.shape[0]
    states = jnp.concatenate([demos.states, samples.states])
    actions = jnp.concatenate([jnp.asarray(demos.actions), jnp.asarray(samples.actions)])
    groups = jnp.concatenate([demos.groups, samples.groups])
    is_data = jnp.arange(num_data + num_gen) < num_data
    log_q = policy.trajectory_log_prob(policy_params, states, actions)
    return pooled_facts(
        lambda p: task.returns(problem, p, states, actions),
        params,
        log_q,
        is_data,
        nu,
        groups,
        demos.start_states.shape[0],
        stop_gradient,
    )


def gan_zeta(
    policy: Policy,
    num_samples: int,
    *,
    generator_steps: int = 500,
    generator_samples: int = 64,
    policy_optimizer: optax.GradientTransformation | None = None,
    estimator: str = "auto",
) -> LogZEstimator:
    r"""GAN-GCL's :math:`\zeta^*` on a continuous-state problem, as a log Z estimator.

    ``run(rng_key, problem, params, *, data=None, s0=None)``: fit the generator at
    :math:`\theta` from the start states (:func:`fit_generator`, ``generator_steps`` steps from
    the policy's initial parameters), draw ``num_samples`` rollouts from each start, and return
    the discriminator's optimal :math:`\zeta^*(x_0)` on the pooled sample of the demonstrations
    starting there and the draws: by fact 1 the fixed point of the mixture importance estimate
    with :math:`\tilde p = p_\theta`, computed (with its sandwich standard error and
    :class:`~ebm_ppl.logz.importance.GCLInfo`) by the same code as
    :func:`~ebm_ppl.logz.gcl_mixture`.

    Bias: consistent for :math:`\log Z_\theta(x_0)` where the demonstrations follow
    :math:`p_\theta` **or** the generator is exact (then :math:`D` is constant and
    :math:`\zeta^* = \log Z` for every sample); otherwise a fixed point (THEORY §2, §3.3), and
    biased low in finite samples (Jensen, THEORY §6). Where no demonstration starts, plain
    importance sampling under the fitted generator. Serves ``"trajectory"`` (conditional on
    :math:`x_0`).

    Args:
        policy: the generator family.
        num_samples: draws :math:`N_g` per start state (int >= 1).
        generator_steps: ELBO steps of the generator at :math:`\theta`.
        generator_samples: draws per start in each generator step.
        policy_optimizer: default ``adam(0.05)``.
        estimator: one of :data:`ESTIMATORS`.

    Returns:
        :class:`~ebm_ppl.logz.base.LogZEstimator`; ``log_z`` ``(G,)`` over ``s0`` (``(G, n)``;
        default the demonstrations' start table), ``num_energy_evals`` counts whole trajectories
        times ``T`` (fitting included). To jit or vmap ``run``, pass ``data=`` as
        :class:`Demonstrations` (the default conversion of ``problem.demos`` runs on the host).
    """
    if not isinstance(policy, Policy):
        raise TypeError(f"`policy` must be a Policy; got {type(policy).__name__}.")
    num_samples = _check_int("num_samples", num_samples)
    generator_steps = _check_int("generator_steps", generator_steps)
    generator_samples = _check_int("generator_samples", generator_samples)
    resolved = _resolve_estimator(estimator, policy, generator_samples)
    optimizer = _DEFAULT_OPTIMIZER if policy_optimizer is None else policy_optimizer

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        task = _task(problem)
        _check_policy(policy, problem, task)
        horizon = _horizon(problem)
        demos = data if isinstance(data, Demonstrations) else demonstrations(problem, data)
        demos = _check_demos(demos, policy, horizon)
        starts = demos.start_states if s0 is None else s0
        dtype = jnp.result_type(*jax.tree.leaves(params))
        starts, weights = _check_starts(jnp.asarray(starts, dtype), policy.state_dim, None)
        key_init, key_fit, key_draw = jax.random.split(rng_key, 3)
        policy_params = policy.init_params(key_init, horizon, dtype)
        policy_params, _ = _fit(
            problem,
            params,
            policy_params,
            key_fit,
            starts,
            weights,
            task,
            policy,
            optimizer,
            generator_steps,
            generator_samples,
            resolved,
        )
        log_z, stderr, info = _zeta_estimate(
            key_draw, problem, params, policy_params, demos, starts, task, policy, num_samples
        )
        trajectories = starts.shape[0] * (num_samples + generator_steps * generator_samples)
        evals = (trajectories + demos.groups.shape[0]) * horizon
        return LogZResult(
            log_z=log_z, stderr=stderr, num_energy_evals=jnp.asarray(evals), info=info
        )

    return LogZEstimator(name="gan_zeta[continuous]", models=("trajectory",), run=run)


@functools.partial(jax.jit, static_argnums=(6, 7, 8))
def _zeta_estimate(
    rng_key, problem, params, policy_params, demos, starts, task, policy, num_samples
):
    """Per start: the mixture fixed point zeta* (fact 1) with its sandwich SE and info."""
    num_starts = starts.shape[0]
    x0 = jnp.repeat(starts, num_samples, axis=0)
    draws = _draw(rng_key, problem, task, policy, policy_params, x0, _horizon(problem))
    r_g = task.returns(problem, params, draws.states, draws.actions)
    c_g = policy.trajectory_log_prob(policy_params, draws.states, draws.actions)
    r_d = task.returns(problem, params, demos.states, demos.actions).astype(r_g.dtype)
    c_d = policy.trajectory_log_prob(policy_params, demos.states, demos.actions).astype(r_g.dtype)
    masks = jnp.all(demos.states[None, :, 0] == starts[:, None], axis=-1)  # (G, N)
    zeros_d, zeros_g = jnp.zeros_like(r_d), jnp.zeros((num_samples,), r_g.dtype)
    return jax.vmap(
        lambda mask, r, c: _mixture_one((r_d, c_d, zeros_d), mask, (r, c, zeros_g), True)
    )(masks, r_g.reshape(num_starts, num_samples), c_g.reshape(num_starts, num_samples))
