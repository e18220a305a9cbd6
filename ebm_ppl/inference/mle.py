r"""Exact MaxEnt IRL fitting: maximum likelihood or MAP of reward parameters with optax.

The objective is the exact mean negative log-likelihood of the demonstrations,

.. math::

    \mathcal L(\theta) = -\frac1N\sum_{i=1}^N \log p_\theta(\tau_i)
    \;\big[-\tfrac1N\log p(\theta)\ \text{for MAP}\big],

under the problem's model (``causal``: :math:`\sum_t\log\pi_t`; trajectory-level:
:math:`R(\tau) - \log Z`), computed by the backward recursions of :mod:`ebm_ppl.exact`. For linear
rewards and deterministic dynamics it is convex (THEORY §1.5). Optimisation runs in one jitted
``lax.scan`` (L-BFGS with a zoom line search by default).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import optax

from ebm_ppl.likelihood.problem import trajectory_distribution
from ebm_ppl.spaces.tabular import validate_trajectories

__all__ = ["FitResult", "fit_reward", "minimize", "negative_log_likelihood"]


class FitResult(NamedTuple):
    """Output of :func:`fit_reward`.

    Attributes:
        params: the fitted parameters.
        losses: ``(num_steps,)`` objective after each step.
        grad_norm: final gradient norm.
    """

    params: dict
    losses: jax.Array
    grad_norm: jax.Array


def negative_log_likelihood(
    problem, params, demos, *, model: str | None = None, map_estimate=False
):
    """Mean exact negative log-likelihood (plus ``-log prior / N`` when ``map_estimate``)."""
    if jnp.ndim(demos) != 3:
        raise ValueError(
            f"`demos` must be a batch of shape (N, T + 1, 2); got shape {jnp.shape(demos)}."
        )
    distribution = trajectory_distribution(problem, params, model=model)
    loss = -jnp.mean(distribution.log_prob(demos))
    if map_estimate:
        with numpyro.handlers.trace() as tr, numpyro.handlers.seed(rng_seed=0):
            with numpyro.handlers.substitute(data=params):
                problem.energy_model.prior()
        log_prior = sum(
            jnp.sum(site["fn"].log_prob(site["value"]))
            for site in tr.values()
            if site["type"] == "sample"
        )
        loss = loss - log_prior / demos.shape[0]
    return loss


def fit_reward(
    problem,
    *,
    demos=None,
    model: str | None = None,
    map_estimate: bool = False,
    optimizer: optax.GradientTransformationExtraArgs | None = None,
    num_steps: int = 100,
    init_params=None,
) -> FitResult:
    """Fit reward parameters by exact maximum likelihood (or MAP) with optax.

    Args:
        problem: the problem (its ``mdp``, ``energy_model``, ``model`` and ``discount``).
        demos: observed arrays ``(N, T + 1, 2)``; default ``problem.demos``. Validated against the
            MDP (a transition of probability 0 names the demo and the step).
        model: overrides ``problem.model``.
        map_estimate: add the energy model's log-prior (MAP instead of MLE).
        optimizer: an optax optimiser (hashable: it is a static ``jit`` argument, so reuse one
            object to reuse the compilation); default ``optax.lbfgs()``.
        num_steps: optimisation steps, run in one jitted ``lax.scan``.
        init_params: starting parameters; default ``energy_model.init_params()``.

    Returns:
        :class:`FitResult`.
    """
    demos = problem.demos if demos is None else demos
    if demos is None:
        raise ValueError("`demos` is None and the problem has no demonstrations.")
    if int(num_steps) < 1:
        raise ValueError(f"`num_steps` must be >= 1; got {num_steps!r}.")
    demos, _ = validate_trajectories(problem.mdp, demos, name="demos")
    params = problem.energy_model.init_params() if init_params is None else init_params
    params, losses, grad_norm = _optimise(
        params, problem, demos, optimizer, int(num_steps), model, bool(map_estimate)
    )
    return FitResult(params=params, losses=losses, grad_norm=grad_norm)


@partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _optimise(params, problem, demos, optimizer, num_steps, model, map_estimate):
    """One compiled optimisation per (shapes, optimiser, settings); problems are jit arguments."""
    line_search = optimizer is None
    optimizer = optax.lbfgs() if line_search else optax.with_extra_args_support(optimizer)

    def objective(params):
        return negative_log_likelihood(
            problem, params, demos, model=model, map_estimate=map_estimate
        )

    params, losses = minimize(objective, params, optimizer, num_steps, line_search=line_search)
    return params, losses, optax.tree.norm(jax.grad(objective)(params))


def minimize(objective, params, optimizer, num_steps: int, *, line_search: bool):
    """``num_steps`` optax steps on ``objective`` in one ``lax.scan`` (traceable; jit the caller).

    L-BFGS (``line_search=True``) keeps the last value and gradient in its state; other
    optimisers (wrapped by ``optax.with_extra_args_support``) get a fresh pair each step.

    Returns:
        ``(params, losses)``, the losses before each step.
    """
    value_and_grad = (
        optax.value_and_grad_from_state(objective)
        if line_search
        else lambda params, state: jax.value_and_grad(objective)(params)
    )

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = optimizer.update(
            grad, state, params, value=value, grad=grad, value_fn=objective
        )
        return (optax.apply_updates(params, updates), state), value

    init = (params, optimizer.init(params))
    (params, _), losses = jax.lax.scan(step, init, None, length=num_steps)
    return params, losses
