r"""Adversarial inverse RL (AIRL) and its reward-free reference, GAIL, on tabular MDPs.

**AIRL** ([AIRL]; THEORY §9.4) classifies single transitions :math:`(s, a, s')` as expert vs
policy with the structured discriminator

.. math::

    f_{\theta,\phi}(s,a,s') = g_\theta(s) + \gamma h_\phi(s') - h_\phi(s),\qquad
    D(s,a,s') = \frac{e^{f(s,a,s')}}{e^{f(s,a,s')} + \pi(a\mid s)}
              = \sigma\big(f(s,a,s') - \log\pi(a\mid s)\big),

with a state-only reward :math:`g` (a table ``(S,)``, or linear :math:`g = \Phi\theta` in state
features) and a shaping potential :math:`h` (a table ``(S,)``). The discriminator minimises the
log loss

.. math::

    \mathcal L(\theta,\phi) = -\mathbb E_{\text{expert}}[\log D]
                             - \mathbb E_{\pi}[\log(1 - D)],

both expectations over the normalised discounted transition occupancy
:math:`\propto\sum_t\gamma^t\Pr(s_t=s,a_t=a)P(s'\mid s,a)`; :math:`\log\pi` is held fixed.
The policy maximises :math:`\mathbb E_\pi\sum_t\gamma^t[\log D - \log(1-D)]
= \mathbb E_\pi\sum_t\gamma^t[f(s_t,a_t,s_{t+1}) - \log\pi(a_t\mid s_t)]`: entropy-regularised RL on
the reward :math:`f`. On a tabular MDP this step is done **exactly** by infinite-horizon soft value
iteration on :math:`f` (:func:`ebm_ppl.exact.infinite.soft_value_iteration`).

**Recovery** (THEORY §9.4, [AIRL] Thm C.1). With deterministic dynamics, a state-only true
reward :math:`r`, a state-only :math:`g` and decomposable dynamics (e.g. every state can stay), the
population optimum at :math:`\pi = \pi_E` has :math:`D \equiv 1/2`, so
:math:`f^* = \log\pi_E = r(s) + \gamma V^*(s') - V^*(s)` on every visited transition, whence
:math:`g^* = r + c` and :math:`h^* = V^*_{\text{soft}} + c/(1-\gamma)`. The shaping term removes the
potential-shaping ambiguity of THEORY §1.6; only the constant remains.

**State-action ablation** (``reward_form="state_action"``, [AIRL] §7): :math:`f = g(s,a)`, a
table ``(S, A)`` (or linear in ``(S, A, F)`` features), without shaping. Its population optimum
at :math:`\pi = \pi_E` is :math:`g^* = \log\pi_E = A^*(s,a)`, the soft advantage: a valid
reward under the training dynamics, entangled with them. :func:`transfer_experiment` learns both
forms (and GAN-GCL's reward) under one dynamics and scores them by EVD after re-optimising under
another (a different slip, or walls from :func:`blocked_cells_mdp`).

**GAIL** [GAIL] uses an unstructured logit table :math:`d(s,a)`, :math:`D = \sigma(d)`, and the same
exact entropy-regularised policy step on the reward :math:`\log D - \log(1-D) = d`. Its
discriminator is not a reward (at the optimum :math:`d = \log\rho_E/\rho_\pi`), so the only metric
reported for it is the expected value difference of its policy (:func:`policy_evd`).

Both trainers follow optax (DESIGN §3): ``init(rng_key, params=None) -> State`` and
``update(rng_key, state, batch) -> (State, Info)``, the batch being expert :class:`Transitions`.
They serve the stationary discounted causal (MCE) model (``discount`` in (0, 1); the MDP's horizon
is ignored). The dynamics are used densely (a sparse MDP is densified once).

References:
    THEORY.md §1.6, §9.2, §9.4; [AIRL] Fu, Luo & Levine (2018); [GAIL] Ho & Ermon (2016).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebm_ppl._validation import check_choice, check_finite, is_concrete
from ebm_ppl.exact.infinite import soft_value_iteration
from ebm_ppl.metrics import (
    epic_distance,
    expected_value_difference,
    hard_optimal_policy,
    policy_value,
)
from ebm_ppl.spaces.tabular import PAD, TabularMDP

__all__ = [
    "Transitions",
    "AdversarialTrainer",
    "AIRLState",
    "AIRLInfo",
    "GAILState",
    "GAILInfo",
    "transitions_from_trajectories",
    "discounted_occupancy",
    "enumerate_transitions",
    "sample_transitions",
    "shaped_reward",
    "airl_logits",
    "airl_discriminator_loss",
    "airl_policy",
    "gail_discriminator_loss",
    "gail_policy",
    "airl",
    "gail",
    "policy_evd",
    "transfer_evd",
    "REWARD_FORMS",
    "airl_reward",
    "airl_reward_table",
    "blocked_cells_mdp",
    "TRANSFER_METHODS",
    "TransferResult",
    "transfer_experiment",
    "train",
]


# ---------------------------------------------------------------------- data
class Transitions(NamedTuple):
    """A weighted batch of transitions :math:`(s, a, s')`.

    Attributes:
        states: ``(B,)`` int state indices :math:`s`.
        actions: ``(B,)`` int actions :math:`a`.
        next_states: ``(B,)`` int next states :math:`s'`.
        weights: ``(B,)`` non-negative weights (losses use ``weights / weights.sum()``; padding
            carries weight 0).
    """

    states: jax.Array
    actions: jax.Array
    next_states: jax.Array
    weights: jax.Array


def _check_discount(discount) -> float:
    if isinstance(discount, jax.core.Tracer) or not 0.0 < float(discount) < 1.0:
        raise ValueError(
            f"`discount` must be a static float in (0, 1) (infinite horizon); got {discount!r}."
        )
    return float(discount)


def _check_mdp(mdp) -> TabularMDP:
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"`mdp` must be a TabularMDP; got {type(mdp).__name__}.")
    return mdp.to_dense() if mdp.is_sparse else mdp


def transitions_from_trajectories(observed, *, discount: float = 1.0, dtype=None) -> Transitions:
    r"""Flatten observed trajectories ``(N, T + 1, 2)`` into weighted transitions.

    Step :math:`t` of every trajectory that takes an action becomes :math:`(s_t, a_t, s_{t+1})`
    with weight :math:`\gamma^t` (the discounted occupancy); steps after termination and the final
    row get weight 0 (their indices are clipped to 0, so they are valid but inert).

    Args:
        observed: ``(N, T + 1, 2)`` or ``(T + 1, 2)`` int observed arrays (``-1`` padding).
        discount: :math:`\gamma \in (0, 1]` for the weights.
        dtype: floating dtype of the weights (default: JAX's default float).

    Returns:
        :class:`Transitions` with ``B = N * T`` entries.
    """
    observed = jnp.asarray(observed)
    if observed.ndim == 2:
        observed = observed[None]
    if observed.ndim != 3 or observed.shape[-1] != 2 or observed.shape[1] < 2:
        raise ValueError(
            f"`observed` must have shape (N, T + 1, 2) with T >= 1; got shape {observed.shape}."
        )
    if not jnp.issubdtype(observed.dtype, jnp.integer):
        raise ValueError(f"`observed` must hold integers; got dtype {observed.dtype}.")
    if not 0.0 < float(discount) <= 1.0:
        raise ValueError(f"`discount` must lie in (0, 1]; got {discount!r}.")
    dtype = jnp.result_type(float) if dtype is None else dtype
    horizon = observed.shape[1] - 1
    states, actions = observed[:, :-1, 0], observed[:, :-1, 1]
    next_states = observed[:, 1:, 0]
    valid = (actions != PAD) & (states != PAD) & (next_states != PAD)
    weights = jnp.asarray(discount, dtype) ** jnp.arange(horizon, dtype=dtype)
    weights = jnp.where(valid, weights[None, :], 0).astype(dtype)
    clip = lambda x: jnp.where(valid, x, 0).reshape(-1).astype(jnp.int32)
    return Transitions(clip(states), clip(actions), clip(next_states), weights.reshape(-1))


def discounted_occupancy(mdp: TabularMDP, log_policy, *, discount: float) -> jax.Array:
    r"""Discounted state-action occupancy of a stationary policy, ``(S, A)``.

    .. math::

        \rho_\pi(s,a) = \sum_{t\ge0}\gamma^t\Pr(s_t=s)\,\pi(a\mid s),\qquad
        d = (I - \gamma M_\pi^\top)^{-1}\rho_0,\quad M_\pi(s,s') = \sum_a\pi(a\mid s)P(s'\mid s,a),

    solved exactly (a dense linear solve); terminal states take no action and pass no mass on.
    Its total mass is :math:`\le 1/(1-\gamma)` (equal without terminal states).

    Args:
        mdp: the MDP (densified if sparse).
        log_policy: ``(S, A)`` stationary :math:`\log\pi`.
        discount: :math:`\gamma\in(0,1)`.
    """
    discount = _check_discount(discount)
    mdp = _check_mdp(mdp)
    policy = jnp.exp(jnp.asarray(log_policy)) * (~mdp.terminal)[:, None]
    dtype = jnp.result_type(policy, mdp.dtype)
    policy = policy.astype(dtype)
    transitions = mdp.transitions.astype(dtype)
    state_map = jnp.einsum("sa,sat->st", policy, transitions)
    eye = jnp.eye(mdp.num_states, dtype=dtype)
    state = jnp.linalg.solve(eye - discount * state_map.T, mdp.initial_dist.astype(dtype))
    return state[:, None] * policy


def enumerate_transitions(mdp: TabularMDP, log_policy, *, discount: float) -> Transitions:
    r"""Every :math:`(s, a, s')` with its exact population weight (the population objective).

    Weights are :math:`\rho_\pi(s,a)P(s'\mid s,a)/\sum\rho_\pi` (:func:`discounted_occupancy`), so a
    loss over these transitions is the exact expectation under the policy's normalised discounted
    transition occupancy. ``B = S * A * S``; impossible transitions carry weight 0.
    """
    mdp = _check_mdp(mdp)
    occupancy = discounted_occupancy(mdp, log_policy, discount=discount)
    weights = occupancy[:, :, None] * mdp.transitions.astype(occupancy.dtype)
    weights = weights / jnp.sum(weights)
    s, a, t = jnp.meshgrid(
        jnp.arange(mdp.num_states),
        jnp.arange(mdp.num_actions),
        jnp.arange(mdp.num_states),
        indexing="ij",
    )
    flat = lambda x: x.reshape(-1).astype(jnp.int32)
    return Transitions(flat(s), flat(a), flat(t), weights.reshape(-1))


def sample_transitions(
    rng_key, mdp: TabularMDP, log_policy, num_samples: int, *, discount: float
) -> Transitions:
    """Draw ``num_samples`` i.i.d. transitions from the normalised discounted occupancy.

    Exact independent draws (no rollout correlation) from the law of
    :func:`enumerate_transitions`; each gets weight 1.
    """
    population = enumerate_transitions(mdp, log_policy, discount=discount)
    logits = jnp.log(population.weights)  # -inf on impossible transitions: never drawn
    index = jax.random.categorical(rng_key, logits, shape=(int(num_samples),))
    ones = jnp.ones((int(num_samples),), population.weights.dtype)
    return Transitions(
        population.states[index], population.actions[index], population.next_states[index], ones
    )


# ---------------------------------------------------------------------- AIRL discriminator
REWARD_FORMS = ("state_only", "state_action")
r"""AIRL's reward forms: ``"state_only"`` :math:`g(s) + \gamma h(s') - h(s)` ([AIRL] eq. (4)) and
``"state_action"`` :math:`g(s,a)` without shaping (the [AIRL] §7 state-action ablation)."""


def _state_reward(params, features):
    if features is None:
        return params["g"]
    return features @ params["g"]


def airl_reward_table(params, *, features=None) -> jax.Array:
    r"""The learned reward :math:`g` as a table: ``(S,)`` (state-only) or ``(S, A)`` (state-action).

    This is the reward to re-optimise under new dynamics (:func:`transfer_evd`); the shaping
    potential :math:`h` is left out ([AIRL] §5: :math:`h` absorbs the training dynamics).

    Args:
        params: ``{"g": ...}`` as in :func:`airl_reward`.
        features: optional ``(S, F)`` (state-only) or ``(S, A, F)`` (state-action) features of a
            linear :math:`g = \Phi\theta`.
    """
    return _state_reward(params, features)


def shaped_reward(params, states, next_states, *, discount: float, features=None) -> jax.Array:
    r"""AIRL's :math:`f(s,a,s') = g(s) + \gamma h(s') - h(s)` ([AIRL] eq. (4)).

    Args:
        params: ``{"g": (S,) or (F,), "h": (S,)}``; ``g`` is a table, or weights of
            :math:`g = \Phi\theta` when ``features`` ``(S, F)`` is given.
        states: int array of :math:`s`.
        next_states: int array of :math:`s'` (same shape).
        discount: :math:`\gamma`.
        features: optional ``(S, F)`` state features.
    """
    g = _state_reward(params, features)
    h = params["h"]
    return g[states] + discount * h[next_states] - h[states]


def airl_reward(
    params,
    states,
    actions,
    next_states,
    *,
    discount: float,
    features=None,
    reward_form: str = "state_only",
) -> jax.Array:
    r"""The discriminator's reward :math:`f(s,a,s')` in either form.

    .. math::

        f(s,a,s') = \begin{cases}
            g(s) + \gamma h(s') - h(s) & \text{``state_only'' ([AIRL] eq. (4))},\\
            g(s,a) & \text{``state_action'' (no shaping; the [AIRL] ablation)}.
        \end{cases}

    At the population optimum (:math:`\pi = \pi_E`, :math:`D \equiv 1/2`) both give
    :math:`f^* = \log\pi_E(a\mid s)` on visited transitions. The state-only form splits it into
    :math:`g^* = r + c` and :math:`h^* = V^* + c'` under deterministic, decomposable dynamics
    ([AIRL] Thm C.1); the state-action form keeps :math:`g^* = \log\pi_E = A^*(s,a)`, the soft
    advantage, which is entangled with the training dynamics (THEORY §9.4).

    Args:
        params: ``{"g": (S,) or (F,), "h": (S,)}`` (state-only) or ``{"g": (S, A) or (F,)}``
            (state-action; no ``"h"``).
        states, actions, next_states: int arrays of one shape.
        discount: :math:`\gamma` (used by the shaping term only).
        features: optional ``(S, F)`` (state-only) or ``(S, A, F)`` (state-action) features.
        reward_form: one of :data:`REWARD_FORMS`.
    """
    check_choice("reward_form", reward_form, REWARD_FORMS)
    if reward_form == "state_only":
        return shaped_reward(params, states, next_states, discount=discount, features=features)
    return _state_reward(params, features)[states, actions]


def airl_logits(
    params,
    transitions: Transitions,
    log_policy,
    *,
    discount,
    features=None,
    reward_form: str = "state_only",
):
    r"""Discriminator logits :math:`f(s,a,s') - \log\pi(a\mid s)`, so :math:`D = \sigma(\cdot)`."""
    f = airl_reward(
        params,
        transitions.states,
        transitions.actions,
        transitions.next_states,
        discount=discount,
        features=features,
        reward_form=reward_form,
    )
    return f - log_policy[transitions.states, transitions.actions]


def _log_loss(expert_logits, expert_weights, policy_logits, policy_weights):
    expert_term = jnp.sum(expert_weights * jax.nn.log_sigmoid(expert_logits))
    policy_term = jnp.sum(policy_weights * jax.nn.log_sigmoid(-policy_logits))
    return -expert_term / jnp.sum(expert_weights) - policy_term / jnp.sum(policy_weights)


def airl_discriminator_loss(
    params,
    expert: Transitions,
    policy: Transitions,
    log_policy,
    *,
    discount,
    features=None,
    reward_form: str = "state_only",
) -> jax.Array:
    r"""AIRL log loss :math:`-\mathbb E_E[\log D] - \mathbb E_\pi[\log(1-D)]`, weighted means.

    ``log_policy`` (``(S, A)``) is treated as a constant (``stop_gradient``). Convex in the
    parameters (linear logits in a logistic loss); the state-only form is flat along
    :math:`g \to g + (1-\gamma)c, h \to h + c`.
    """
    log_policy = jax.lax.stop_gradient(log_policy)
    kwargs = dict(discount=discount, features=features, reward_form=reward_form)
    expert_logits = airl_logits(params, expert, log_policy, **kwargs)
    policy_logits = airl_logits(params, policy, log_policy, **kwargs)
    return _log_loss(expert_logits, expert.weights, policy_logits, policy.weights)


def airl_policy(
    mdp: TabularMDP, params, *, discount: float, features=None, reward_form: str = "state_only"
):
    r"""Exact entropy-regularised policy step: soft value iteration on the reward :math:`f`.

    Maximises :math:`\mathbb E_\pi\sum_t\gamma^t[f - \log\pi]`, i.e. the AIRL policy objective
    with reward :math:`\log D - \log(1-D)`. Returns
    :class:`~ebm_ppl.exact.infinite.StationarySoftValues` (its ``values`` are for :math:`f`, i.e.
    :math:`V_g - h` for the state-only form without terminal states).
    """
    num_states, num_actions = mdp.num_states, mdp.num_actions
    states = jnp.arange(num_states)[:, None, None]
    actions = jnp.arange(num_actions)[None, :, None]
    next_states = jnp.arange(num_states)[None, None, :]
    f = airl_reward(
        params,
        states,
        actions,
        next_states,
        discount=discount,
        features=features,
        reward_form=reward_form,
    )
    f = jnp.broadcast_to(f, (num_states, num_actions, num_states))
    return soft_value_iteration(mdp, f, discount=discount)


# ---------------------------------------------------------------------- GAIL discriminator
def gail_discriminator_loss(params, expert: Transitions, policy: Transitions) -> jax.Array:
    r"""GAIL log loss with :math:`D(s,a) = \sigma(d(s,a))`, ``params = {"logits": (S, A)}``."""
    d = params["logits"]
    expert_logits = d[expert.states, expert.actions]
    policy_logits = d[policy.states, policy.actions]
    return _log_loss(expert_logits, expert.weights, policy_logits, policy.weights)


def gail_policy(mdp: TabularMDP, params, *, discount: float):
    r"""Exact entropy-regularised policy step on GAIL's reward :math:`\log D - \log(1-D) = d`."""
    return soft_value_iteration(mdp, params["logits"], discount=discount)


# ---------------------------------------------------------------------- trainers
class AdversarialTrainer(NamedTuple):
    """An optax-style trainer: ``init(rng_key, params=None)``, ``update(rng_key, state, batch)``."""

    init: Callable
    update: Callable


class AIRLState(NamedTuple):
    """AIRL trainer state.

    Attributes:
        params: ``{"g": ..., "h": (S,)}`` (state-only) or ``{"g": ...}`` (state-action)
            discriminator parameters.
        opt_state: the optimiser state.
        log_policy: ``(S, A)`` current policy :math:`\\log\\pi`.
        step: number of updates done.
    """

    params: dict
    opt_state: optax.OptState
    log_policy: jax.Array
    step: jax.Array


class AIRLInfo(NamedTuple):
    """Per-update diagnostics of AIRL.

    Attributes:
        discriminator_loss: log loss before the discriminator step(s).
        policy_objective: :math:`\\mathbb E_{\\rho_0}[V^{\\text{soft}}_f]` of the new policy (the
            entropy-regularised return on :math:`f`).
        expert_mean_d: weighted mean :math:`D` on the expert batch (after the step).
        reward: learned reward :math:`g` after the step: ``(S,)`` (state-only) or ``(S, A)``
            (state-action), see :func:`airl_reward_table`.
        potential: ``(S,)`` learned shaping potential :math:`h` after the step (zeros for the
            state-action form, which has no shaping).
    """

    discriminator_loss: jax.Array
    policy_objective: jax.Array
    expert_mean_d: jax.Array
    reward: jax.Array
    potential: jax.Array


class GAILState(NamedTuple):
    """GAIL trainer state (``params = {"logits": (S, A)}``)."""

    params: dict
    opt_state: optax.OptState
    log_policy: jax.Array
    step: jax.Array


class GAILInfo(NamedTuple):
    """Per-update diagnostics of GAIL (its discriminator is not a reward: report EVD only)."""

    discriminator_loss: jax.Array
    policy_objective: jax.Array
    expert_mean_d: jax.Array


def _check_trainer_args(mdp, discount, discriminator_steps, policy_batch_size):
    discount = _check_discount(discount)
    mdp = _check_mdp(mdp)
    if int(discriminator_steps) < 1:
        raise ValueError(f"`discriminator_steps` must be >= 1; got {discriminator_steps!r}.")
    if policy_batch_size is not None and int(policy_batch_size) < 1:
        raise ValueError(
            f"`policy_batch_size` must be None (exact) or >= 1; got {policy_batch_size!r}."
        )
    return mdp, discount


def _check_batch(batch, num_states, num_actions):
    if not isinstance(batch, Transitions):
        raise TypeError(f"`batch` must be Transitions; got {type(batch).__name__}.")
    if is_concrete(batch):
        arrays = [np.asarray(x) for x in batch]
        if len({x.shape for x in arrays}) != 1 or arrays[0].ndim != 1:
            raise ValueError(
                f"`batch` fields must be 1-D of one length; got shapes {[x.shape for x in arrays]}."
            )
        for name, x, bound in zip(
            ("states", "actions", "next_states"),
            arrays[:3],
            (num_states, num_actions, num_states),
            strict=True,
        ):
            if x.size and (x.min() < 0 or x.max() >= bound):
                raise ValueError(
                    f"`batch.{name}` must lie in [0, {bound}); got {x.min()}..{x.max()}."
                )
        check_finite("batch.weights", arrays[3])
        if (arrays[3] < 0).any() or not arrays[3].sum() > 0:
            raise ValueError("`batch.weights` must be >= 0 with a positive sum.")


def _policy_batch(rng_key, mdp, log_policy, discount, policy_batch_size):
    if policy_batch_size is None:
        return enumerate_transitions(mdp, log_policy, discount=discount)
    return sample_transitions(rng_key, mdp, log_policy, policy_batch_size, discount=discount)


def _discriminator_steps(loss_fn, optimizer, params, opt_state, num_steps):
    def step(carry, _):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), None, length=num_steps)
    return params, opt_state, losses[0]


def airl(
    mdp: TabularMDP,
    *,
    discount: float,
    optimizer: optax.GradientTransformation | None = None,
    features=None,
    discriminator_steps: int = 1,
    policy_batch_size: int | None = None,
    reward_form: str = "state_only",
) -> AdversarialTrainer:
    r"""AIRL trainer (THEORY §9.4) with an exact tabular policy step.

    Each ``update(rng_key, state, expert_batch)``:

    1. policy transitions: the exact population (``policy_batch_size=None``: the loss is the
       expectation under :math:`\pi`'s discounted transition occupancy) or ``policy_batch_size``
       i.i.d. draws from it under ``rng_key``;
    2. ``discriminator_steps`` optimiser steps on :func:`airl_discriminator_loss` (``log_policy``
       fixed);
    3. the policy becomes soft-optimal for :math:`f` (:func:`airl_policy`), which maximises the
       entropy-regularised return on :math:`\log D - \log(1-D)` exactly.

    ``reward_form`` picks the discriminator (:func:`airl_reward`): ``"state_only"`` (default),
    :math:`f = g(s) + \gamma h(s') - h(s)`, the disentangled reward of [AIRL] §5; or
    ``"state_action"``, :math:`f = g(s,a)` without shaping, the [AIRL] ablation, whose optimum is
    the soft advantage :math:`A^*(s,a)` of the training dynamics (a valid reward there, but not
    one that transfers; compare them with :func:`transfer_experiment`).

    ``init(rng_key, params=None)`` starts from ``g = 0`` (and ``h = 0``): the uniform policy,
    unless ``params`` is given. Serves the stationary discounted causal model only; the expert
    batch should be weighted as a discounted occupancy (:func:`transitions_from_trajectories`
    with ``discount``) for the population theory to apply.

    Args:
        mdp: the training MDP (densified if sparse).
        discount: :math:`\gamma\in(0,1)`, also the shaping discount.
        optimizer: discriminator optimiser (default ``optax.adam(0.05)``).
        features: optional features of a linear :math:`g = \Phi\theta`: ``(S, F)`` for
            ``"state_only"``, ``(S, A, F)`` for ``"state_action"``; default a table (``(S,)`` or
            ``(S, A)``).
        discriminator_steps: optimiser steps per update.
        policy_batch_size: ``None`` for the exact policy expectation, else a sample size.
        reward_form: one of :data:`REWARD_FORMS`.

    Returns:
        :class:`AdversarialTrainer` with ``init -> AIRLState`` and
        ``update -> (AIRLState, AIRLInfo)``.
    """
    mdp, discount = _check_trainer_args(mdp, discount, discriminator_steps, policy_batch_size)
    check_choice("reward_form", reward_form, REWARD_FORMS)
    optimizer = optax.adam(0.05) if optimizer is None else optimizer
    num_steps = int(discriminator_steps)
    dtype = mdp.dtype
    state_only = reward_form == "state_only"
    table_shape = (mdp.num_states,) if state_only else (mdp.num_states, mdp.num_actions)
    if features is not None:
        features = jnp.asarray(features, dtype)
        if features.ndim != len(table_shape) + 1 or features.shape[:-1] != table_shape:
            expected = "(S, F)" if state_only else "(S, A, F)"
            raise ValueError(
                f"`features` must have shape {expected} = {table_shape + ('F',)} for "
                f"reward_form={reward_form!r}; got {features.shape}."
            )
        check_finite("features", features)
    settings = dict(discount=discount, features=features, reward_form=reward_form)

    def init(rng_key, params=None) -> AIRLState:
        del rng_key  # deterministic initialisation; kept for the optax-style signature
        if params is None:
            g_shape = table_shape if features is None else features.shape[-1:]
            params = {"g": jnp.zeros(g_shape, dtype)}
            if state_only:
                params["h"] = jnp.zeros((mdp.num_states,), dtype)
        solution = airl_policy(mdp, params, **settings)
        return AIRLState(
            params=params,
            opt_state=optimizer.init(params),
            log_policy=solution.log_policy,
            step=jnp.zeros((), jnp.int32),
        )

    @jax.jit
    def _update(rng_key, state, batch):
        policy_batch = _policy_batch(rng_key, mdp, state.log_policy, discount, policy_batch_size)

        def loss_fn(params):
            return airl_discriminator_loss(
                params, batch, policy_batch, state.log_policy, **settings
            )

        params, opt_state, loss = _discriminator_steps(
            loss_fn, optimizer, state.params, state.opt_state, num_steps
        )
        logits = airl_logits(params, batch, state.log_policy, **settings)
        mean_d = jnp.sum(batch.weights * jax.nn.sigmoid(logits)) / jnp.sum(batch.weights)
        solution = airl_policy(mdp, params, **settings)
        new_state = AIRLState(
            params=params,
            opt_state=opt_state,
            log_policy=solution.log_policy,
            step=state.step + 1,
        )
        info = AIRLInfo(
            discriminator_loss=loss,
            policy_objective=jnp.dot(mdp.initial_dist, solution.values),
            expert_mean_d=mean_d,
            reward=_state_reward(params, features),
            potential=params["h"] if state_only else jnp.zeros((mdp.num_states,), dtype),
        )
        return new_state, info

    def update(rng_key, state: AIRLState, batch: Transitions):
        _check_batch(batch, mdp.num_states, mdp.num_actions)
        return _update(rng_key, state, batch)

    return AdversarialTrainer(init=init, update=update)


def gail(
    mdp: TabularMDP,
    *,
    discount: float,
    optimizer: optax.GradientTransformation | None = None,
    discriminator_steps: int = 1,
    policy_batch_size: int | None = None,
) -> AdversarialTrainer:
    r"""GAIL trainer [GAIL]: unstructured :math:`D(s,a) = \sigma(d(s,a))`, exact policy step.

    Same loop as :func:`airl` with :func:`gail_discriminator_loss` and the policy soft-optimal
    for the reward :math:`\log D - \log(1-D) = d(s,a)`. A reward-free reference: its
    discriminator is a density ratio, not a reward; report :func:`policy_evd` of
    ``state.log_policy`` only.

    Args:
        mdp: the MDP (densified if sparse).
        discount: :math:`\gamma\in(0,1)`.
        optimizer: discriminator optimiser (default ``optax.adam(0.05)``).
        discriminator_steps: optimiser steps per update.
        policy_batch_size: ``None`` for the exact policy expectation, else a sample size.

    Returns:
        :class:`AdversarialTrainer` with ``init -> GAILState`` and
        ``update -> (GAILState, GAILInfo)``.
    """
    mdp, discount = _check_trainer_args(mdp, discount, discriminator_steps, policy_batch_size)
    optimizer = optax.adam(0.05) if optimizer is None else optimizer
    num_steps = int(discriminator_steps)

    def init(rng_key, params=None) -> GAILState:
        del rng_key
        if params is None:
            params = {"logits": jnp.zeros((mdp.num_states, mdp.num_actions), mdp.dtype)}
        solution = gail_policy(mdp, params, discount=discount)
        return GAILState(
            params=params,
            opt_state=optimizer.init(params),
            log_policy=solution.log_policy,
            step=jnp.zeros((), jnp.int32),
        )

    @jax.jit
    def _update(rng_key, state, batch):
        policy_batch = _policy_batch(rng_key, mdp, state.log_policy, discount, policy_batch_size)
        loss_fn = lambda params: gail_discriminator_loss(params, batch, policy_batch)
        params, opt_state, loss = _discriminator_steps(
            loss_fn, optimizer, state.params, state.opt_state, num_steps
        )
        logits = params["logits"][batch.states, batch.actions]
        mean_d = jnp.sum(batch.weights * jax.nn.sigmoid(logits)) / jnp.sum(batch.weights)
        solution = gail_policy(mdp, params, discount=discount)
        new_state = GAILState(
            params=params,
            opt_state=opt_state,
            log_policy=solution.log_policy,
            step=state.step + 1,
        )
        info = GAILInfo(
            discriminator_loss=loss,
            policy_objective=jnp.dot(mdp.initial_dist, solution.values),
            expert_mean_d=mean_d,
        )
        return new_state, info

    def update(rng_key, state: GAILState, batch: Transitions):
        _check_batch(batch, mdp.num_states, mdp.num_actions)
        return _update(rng_key, state, batch)

    return AdversarialTrainer(init=init, update=update)


# ---------------------------------------------------------------------- metrics
def policy_evd(true_reward, log_policy, mdp: TabularMDP, *, discount: float = 1.0) -> jax.Array:
    r"""EVD of a given stationary policy (GAIL's metric; THEORY §9.2).

    :math:`\mathbb E_{\rho_0}[V^{\pi^*}_r - V^{\pi}_r]` over ``mdp``'s finite horizon ``T`` with
    :math:`\pi^*` hard-optimal for the true reward (:func:`~ebm_ppl.metrics.hard_optimal_policy`)
    and both values expected true returns; :math:`\ge 0`.

    Args:
        true_reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        log_policy: ``(S, A)`` stationary :math:`\log\pi`, or ``(T, S, A)`` time-indexed.
        mdp: the evaluation MDP.
        discount: :math:`\gamma\in(0,1]`.
    """
    policy = jnp.exp(jnp.asarray(log_policy))
    expert = hard_optimal_policy(mdp, true_reward, discount)
    v_expert = policy_value(mdp, true_reward, expert, discount)[0]
    v_policy = policy_value(mdp, true_reward, policy.astype(v_expert.dtype), discount)[0]
    return jnp.dot(mdp.initial_dist.astype(v_expert.dtype), v_expert - v_policy)


def transfer_evd(
    true_reward, learned_reward, transfer_mdp: TabularMDP, *, discount: float = 1.0
) -> jax.Array:
    r"""Hard EVD of a learned reward re-optimised under changed dynamics (THEORY §9.2, §9.4).

    The learned reward (e.g. AIRL's state-only :math:`g`, learned on the training MDP) is
    re-optimised on ``transfer_mdp`` (same states and actions, different dynamics, e.g. slip),
    and its hard-optimal policy is scored by the true reward against the true reward's own
    hard-optimal policy there: :func:`~ebm_ppl.metrics.expected_value_difference` with
    ``policy="hard"`` over ``transfer_mdp``'s horizon. :math:`\ge 0`; disentangled rewards keep it
    small, rewards entangled with the training dynamics (advantages) do not.
    """
    return expected_value_difference(
        true_reward, learned_reward, transfer_mdp, policy="hard", discount=discount
    )


# ---------------------------------------------------------------------- transfer experiment
def blocked_cells_mdp(mdp: TabularMDP, cells) -> TabularMDP:
    r"""The same MDP with walls: blocked cells cannot be entered and nobody starts there.

    .. math::

        P'(s'\mid s,a) = P(s'\mid s,a)\,[s'\notin B] + [s'=s]\sum_{b\in B}P(b\mid s,a),\qquad
        \rho_0'(s) \propto \rho_0(s)\,[s\notin B],

    i.e. a move that would land in a blocked cell leaves the agent where it was (like a move off
    the grid in ObjectWorld). Rows of blocked states are kept (they are unreachable). Features,
    terminal mask and horizon are unchanged; the result is dense. Used as the changed dynamics of
    :func:`transfer_experiment` (the "shifted maze" of [AIRL] §7.2 in tabular form).

    Args:
        mdp: the source MDP (densified if sparse).
        cells: int state indices of the blocked cells (any shape; duplicates allowed).

    Returns:
        A dense :class:`TabularMDP`.

    Raises:
        ValueError: if a cell index is out of range or no start state is left unblocked.
    """
    mdp = _check_mdp(mdp)
    cells = np.asarray(cells)
    if cells.size and not np.issubdtype(cells.dtype, np.integer):
        raise ValueError(f"`cells` must hold integer state indices; got dtype {cells.dtype}.")
    cells = cells.reshape(-1).astype(np.int64)
    if cells.size and (cells.min() < 0 or cells.max() >= mdp.num_states):
        raise ValueError(
            f"`cells` must hold state indices in [0, {mdp.num_states}); got "
            f"{cells.min()}..{cells.max()}."
        )
    blocked = np.zeros(mdp.num_states, bool)
    blocked[cells] = True
    initial = np.where(blocked, 0.0, np.asarray(mdp.initial_dist, np.float64))
    if not initial.sum() > 0:
        raise ValueError("`cells` block every start state (rho_0 has no mass left).")
    transitions = np.asarray(mdp.transitions, np.float64)
    into_blocked = transitions[:, :, blocked].sum(-1)
    transitions = transitions * ~blocked
    transitions[np.arange(mdp.num_states), :, np.arange(mdp.num_states)] += into_blocked
    dtype = mdp.dtype
    return TabularMDP.from_dense(
        jnp.asarray(transitions, dtype),
        jnp.asarray(initial / initial.sum(), dtype),
        mdp.horizon,
        features=mdp.features,
        terminal=mdp.terminal,
    )


TRANSFER_METHODS = ("true", "airl_state_only", "airl_state_action", "gan_gcl")
"""The rows of :func:`transfer_experiment` (extra rewards are appended after them)."""


class TransferResult(NamedTuple):
    """Output of :func:`transfer_experiment`; the last axis of every array follows ``methods``.

    Attributes:
        methods: ``M`` row names: :data:`TRANSFER_METHODS` then the ``extra_rewards`` keys.
        targets: ``K`` names of the target dynamics.
        source_evd: ``(M,)`` hard EVD under the training dynamics (the problem's MDP).
        target_evd: ``(K, M)`` hard EVD under each target dynamics (:func:`transfer_evd`).
        epic: ``(M,)`` EPIC distance to the true reward on the training MDP (problem discount).
        rewards: ``{name: reward}``: the ``(S,)`` or ``(S, A)`` tables that were re-optimised.
    """

    methods: tuple
    targets: tuple
    source_evd: jax.Array
    target_evd: jax.Array
    epic: jax.Array
    rewards: dict


def train(trainer, state, rng_keys, batch):
    r"""Run ``trainer.update`` once per key in one compiled ``lax.scan``.

    Works with any optax-style trainer whose ``update(rng_key, state, batch)`` is traceable
    (:func:`airl`, :func:`gail`, :func:`~ebm_ppl.adversarial.trainers.gan_gcl`,
    :func:`~ebm_ppl.adversarial.trainers.gcl`); the batch checks that need concrete values are
    skipped under the trace, so check a batch with one plain ``update`` first if it is untrusted.
    The program is compiled once per trainer object (it is a static argument) and shape.

    Args:
        trainer: the trainer (``init``, ``update``).
        state: its state.
        rng_keys: ``(num_steps,)`` keys, one per update.
        batch: the expert batch, the same for every update.

    Returns:
        ``(state, infos)``: the final state and the per-update infos stacked along axis 0.
    """
    return _train(trainer, state, rng_keys, batch)


@partial(jax.jit, static_argnums=0)
def _train(trainer, state, rng_keys, batch):
    return jax.lax.scan(lambda st, k: trainer.update(k, st, batch), state, rng_keys)


def transfer_experiment(
    rng_key,
    problem,
    targets,
    *,
    discount: float = 0.9,
    airl_steps: int = 300,
    airl_optimizer: optax.GradientTransformation | None = None,
    gan_gcl_steps: int = 300,
    gan_gcl_options: dict | None = None,
    extra_rewards: dict | None = None,
) -> TransferResult:
    r"""Learn rewards under one dynamics, re-optimise them under another, and score (THEORY §9.4).

    "AIRL's reason to exist" ([AIRL] §5, §7.2): a reward that is *disentangled* from the
    training dynamics still induces the right behaviour after the dynamics change. On the
    problem's MDP (the source dynamics) and its demonstrations this learns

    * ``airl_state_only``: AIRL with a state table :math:`g(s)` and shaping
      :math:`\gamma h(s') - h(s)` (:func:`airl`, ``reward_form="state_only"``), trained on the
      demonstrations' transitions weighted :math:`\gamma^t`; the reward kept is :math:`g`;
    * ``airl_state_action``: the same with a state-action table :math:`g(s,a)` and no shaping
      (``reward_form="state_action"``); its optimum is the soft advantage :math:`A^*(s,a)` of the
      source dynamics, which is a valid reward there but entangled with them;
    * ``gan_gcl``: :func:`~ebm_ppl.adversarial.trainers.gan_gcl` on the trajectory model with the
      problem's energy model (needs ``problem.discount == 1``); the reward kept is
      ``problem.energy_model.reward(params)``;
    * ``true``: the true reward (the reference; its EVD is 0 by definition),

    plus any ``extra_rewards`` (e.g. the exact MLE). Each reward is then re-optimised (hard
    optimal, finite horizon) under each target MDP and scored with the true reward there:
    :func:`transfer_evd` over the target's horizon with ``problem.discount``. The same is
    reported under the source dynamics (``source_evd``), with EPIC against the truth.

    What the theory guarantees: every EVD is :math:`\ge 0` and the true reward's is 0 (hard
    optimal policies). That state-only AIRL transfers better than state-action AIRL is
    [AIRL]'s empirical claim; with finite demonstrations from a finite-horizon expert (the
    stationary AIRL model is then misspecified) it need not hold on every problem and target.

    Args:
        rng_key: key for GAN-GCL's rollouts (AIRL's exact policy step uses no randomness).
        problem: tabular Problem with ``true_params`` and ``demos`` ``(N, T + 1, 2)`` sampled under
            its MDP; ``discount == 1`` for GAN-GCL.
        targets: the changed dynamics, a :class:`TabularMDP` (named ``"target"``) or a mapping
            ``{name: TabularMDP}``; same states and actions as the problem (e.g. another
            ``slip``, or :func:`blocked_cells_mdp`). The rewards are learned once for all.
        discount: AIRL's :math:`\gamma\in(0,1)` (transition weights, shaping, policy step).
        airl_steps: updates of each AIRL trainer (int >= 1).
        airl_optimizer: AIRL's discriminator optimiser (default ``optax.adam(0.05)``).
        gan_gcl_steps: GAN-GCL updates (int >= 0; 0 leaves the ``gan_gcl`` row out).
        gan_gcl_options: keyword arguments of :func:`~ebm_ppl.adversarial.trainers.gan_gcl`
            (default ``{"nu": 2, "policy_steps": 5}``).
        extra_rewards: optional ``{name: reward}`` tables ``(S,)``, ``(S, A)`` or ``(S, A, S)``
            to score alongside.

    Returns:
        :class:`TransferResult`.
    """
    from ebm_ppl.adversarial.trainers import gan_gcl  # trainers imports nothing from here

    mdp = _check_mdp(problem.mdp)
    targets = {"target": targets} if isinstance(targets, TabularMDP) else dict(targets)
    if not targets:
        raise ValueError("`targets` must hold at least one TabularMDP; got an empty mapping.")
    for name, target in targets.items():
        target = _check_mdp(target)
        if (target.num_states, target.num_actions) != (mdp.num_states, mdp.num_actions):
            raise ValueError(
                f"`targets[{name!r}]` must have the problem's states and actions "
                f"(S, A) = {(mdp.num_states, mdp.num_actions)}; got "
                f"{(target.num_states, target.num_actions)}."
            )
        targets[name] = target
    for name, value, low in (("airl_steps", airl_steps, 1), ("gan_gcl_steps", gan_gcl_steps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}; got {value!r}.")
    if problem.demos is None or problem.true_params is None:
        raise ValueError("`problem` must carry `demos` and `true_params`; got None.")
    discount = _check_discount(discount)
    key_gan_init, key_gan = jax.random.split(rng_key)
    true_reward = problem.true_reward()
    rewards = {"true": true_reward}

    batch = transitions_from_trajectories(problem.demos, discount=discount, dtype=mdp.dtype)
    airl_keys = jax.random.split(jax.random.key(0), airl_steps)  # unused by the exact step
    for form in REWARD_FORMS:
        trainer = airl(mdp, discount=discount, optimizer=airl_optimizer, reward_form=form)
        state, _ = train(trainer, trainer.init(None), airl_keys, batch)
        rewards[f"airl_{form}"] = airl_reward_table(state.params)

    if gan_gcl_steps > 0:
        options = {"nu": 2, "policy_steps": 5} | dict(gan_gcl_options or {})
        trainer = gan_gcl(problem, **options)
        state = trainer.init(key_gan_init)
        demos = jnp.asarray(problem.demos, jnp.int32)
        state, _ = train(trainer, state, jax.random.split(key_gan, gan_gcl_steps), demos)
        rewards["gan_gcl"] = problem.energy_model.reward(state.params)

    for name, reward in dict(extra_rewards or {}).items():
        if name in rewards:
            raise ValueError(f"`extra_rewards` key {name!r} clashes with a built-in row.")
        rewards[name] = jnp.asarray(reward)

    gamma = float(problem.discount)
    score = lambda m, r: transfer_evd(true_reward, r, m, discount=gamma)  # noqa: E731
    methods = tuple(rewards)
    return TransferResult(
        methods=methods,
        targets=tuple(targets),
        source_evd=jnp.stack([score(mdp, rewards[m]) for m in methods]),
        target_evd=jnp.stack(
            [jnp.stack([score(target, rewards[m]) for m in methods]) for target in targets.values()]
        ),
        epic=jnp.stack([epic_distance(rewards[m], true_reward, mdp, gamma) for m in methods]),
        rewards=rewards,
    )
