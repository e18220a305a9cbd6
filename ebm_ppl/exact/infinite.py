r"""Infinite-horizon discounted causal soft value iteration, differentiated implicitly.

The stationary soft Bellman fixed point (THEORY §0.4, §1.3) for :math:`\gamma < 1`:

.. math::

    V(s) = \log\sum_a \exp\Big(\bar r(s,a) + \gamma\sum_{s'}P(s'\mid s,a)V(s')\Big),

terminal states masked to :math:`V = 0`. It is a :math:`\gamma`-contraction in the sup norm, so
iterating from 0 until :math:`\|V_{k+1}-V_k\|_\infty \le` ``tol`` stops within
:math:`\gamma\,` ``tol`` :math:`/(1-\gamma)` of the fixed point. The ``while_loop`` has no reverse
mode; the gradient comes from the implicit function theorem instead (a ``custom_vjp``): for a
cotangent :math:`g` on :math:`V`, solve :math:`u = g + \gamma P_\pi^\top u` (the discounted
occupancy started from :math:`g`, another contraction, iterated to ``tol``) and return
:math:`\partial/\partial\bar r(s,a) = u(s)\pi(a\mid s)`. No gradient flows to the dynamics.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ebm_ppl.exact.tabular import _expect, _prepare, _probs, _push, _soft_max, _zero_cotangent
from ebm_ppl.spaces.tabular import TabularMDP

__all__ = ["StationarySoftValues", "soft_value_iteration"]


class StationarySoftValues(NamedTuple):
    """Stationary soft-optimal values and policy.

    Attributes:
        values: ``(S,)`` :math:`V`.
        q_values: ``(S, A)`` :math:`Q = \\bar r + \\gamma P V`.
        log_policy: ``(S, A)`` :math:`\\log\\pi = Q - V`.
        num_iterations: value-iteration sweeps used.
    """

    values: jax.Array
    q_values: jax.Array
    log_policy: jax.Array
    num_iterations: jax.Array


def _bellman(mdp, r_sa, discount, values):
    q_values = r_sa + discount * _expect(mdp, _probs(mdp), values)
    new_values, log_policy = _soft_max(mdp, q_values)
    return new_values, q_values, log_policy


def _iterate(fn, start, tol, max_iterations):
    def cond(carry):
        _, delta, count = carry
        return (delta > tol) & (count < max_iterations)

    def body(carry):
        current, _, count = carry
        new = fn(current)
        return new, jnp.max(jnp.abs(new - current)), count + 1

    init = (start, jnp.asarray(jnp.inf, start.dtype), jnp.zeros((), jnp.int32))
    return jax.lax.while_loop(cond, body, init)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fixed_point(config, mdp, r_sa):
    discount, tol, max_iterations = config
    start = jnp.zeros((mdp.num_states,), r_sa.dtype)
    values, _, count = _iterate(
        lambda v: _bellman(mdp, r_sa, discount, v)[0], start, tol, max_iterations
    )
    return values, count


def _fixed_point_fwd(config, mdp, r_sa):
    values, count = _fixed_point(config, mdp, r_sa)
    return (values, count), (mdp, r_sa, values)


def _fixed_point_bwd(config, residuals, cotangents):
    discount, tol, max_iterations = config
    mdp, r_sa, values = residuals
    g, _ = cotangents
    _, _, log_policy = _bellman(mdp, r_sa, discount, values)
    policy = jnp.exp(log_policy) * (~mdp.terminal)[:, None]
    adjoint, _, _ = _iterate(
        lambda u: g + discount * _push(mdp, u[:, None] * policy, _probs(mdp)),
        g,
        tol,
        max_iterations,
    )
    return jax.tree.map(_zero_cotangent, mdp), adjoint[:, None] * policy


_fixed_point.defvjp(_fixed_point_fwd, _fixed_point_bwd)


def soft_value_iteration(
    mdp: TabularMDP,
    reward,
    *,
    discount: float,
    tol: float | None = None,
    max_iterations: int = 100_000,
) -> StationarySoftValues:
    """Solve the infinite-horizon discounted soft Bellman equation (``mdp.horizon`` is ignored).

    Args:
        mdp: the MDP (dense or sparse).
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        discount: :math:`\\gamma \\in (0, 1)`.
        tol: stopping tolerance on :math:`\\|V_{k+1}-V_k\\|_\\infty` (default: ``1e-12`` in
            float64, ``1e-5`` in float32); the fixed-point error is at most
            :math:`\\gamma\\,\\mathrm{tol}/(1-\\gamma)`.
        max_iterations: cap on sweeps; check ``num_iterations`` against it.

    Returns:
        :class:`StationarySoftValues`, differentiable in ``reward`` by implicit differentiation.
    """
    if isinstance(discount, jax.core.Tracer) or not 0.0 < float(discount) < 1.0:
        raise ValueError(
            "`discount` must be a static float in (0, 1) for the infinite horizon; "
            f"got {discount!r}."
        )
    r_sa, _ = _prepare(mdp, reward, "causal")
    if tol is None:
        tol = 1e-12 if r_sa.dtype == jnp.float64 else 1e-5
    if not float(tol) > 0:
        raise ValueError(f"`tol` must be > 0; got {tol!r}.")
    config = (float(discount), float(tol), int(max_iterations))
    values, count = _fixed_point(config, mdp, r_sa)
    _, q_values, log_policy = _bellman(mdp, r_sa, float(discount), values)
    return StationarySoftValues(
        values=values, q_values=q_values, log_policy=log_policy, num_iterations=count
    )
