r"""Exact MaxEnt answers for linear-Gaussian systems with quadratic costs (THEORY §8.1).

System and cost (:mod:`ebm_ppl.spaces.linear_gaussian`): :math:`x_{t+1} = Ax_t + Bu_t + w_t`,
:math:`w_t\sim\mathcal N(0,\Sigma_w)` (:math:`\Sigma_w \succeq 0`, zero allowed), reward
:math:`r_t = -\tfrac12x_t^\top Qx_t - \tfrac12u_t^\top Ru_t` for :math:`t < T` plus the terminal
:math:`-\tfrac12x_T^\top Q_fx_T`; base measure :math:`b(\tau)\,du` (Lebesgue on the controls).

Two models (DESIGN §3), both conditional on :math:`x_0`:

* ``"trajectory"`` (THEORY §1.2, §8.1a, §8.1c): :math:`p_\theta(\tau\mid x_0) =
  b(\tau)e^{-c(\tau)}/Z(x_0)`. :math:`\log Z(x_0)` comes two independent ways:

  - :func:`batch_gaussian`, the **batch Gaussian integral** over the stacked controls
    :math:`z = (u_0..u_{T-1})`; the noise is integrated out first (singular :math:`\Sigma_w`
    allowed: only its square root ``system.noise_factor`` enters, through Woodbury and Sylvester
    identities, see ``_tilt``). With :math:`X = (x_1..x_T) = Fx_0 + Gz + G_ww`,
    :math:`\Sigma_X = G_w(I_T\otimes\Sigma_w)G_w^\top`, :math:`\bar Q = \mathrm{blkdiag}(Q..Q,
    Q_f)` and :math:`\tilde Q = \bar Q(I + \Sigma_X\bar Q)^{-1}` (the Gaussian
    :math:`\log\mathbb E e^{-\frac12X^\top\bar QX}`),

    .. math::

        H = \bar R + G^\top\tilde QG,\quad g = G^\top\tilde QFx_0,\quad
        c_0 = \tfrac12x_0^\top Qx_0 + \tfrac12(Fx_0)^\top\tilde Q(Fx_0),

        \log Z(x_0) = -c_0 + \tfrac12g^\top H^{-1}g + \tfrac{Tm}2\log2\pi - \tfrac12\log\det H
        - \tfrac12\log\det(I + \Sigma_X\bar Q),

    and the control marginal is :math:`p_\theta(z\mid x_0) = \mathcal N(-H^{-1}g, H^{-1})`. With
    :math:`\Sigma_w = 0` this is THEORY §8.1a verbatim.
  - :func:`soft_riccati` with ``model="trajectory"``: the soft Riccati recursion with the
    Gaussian :math:`\log\mathbb Ee^{W}` backup of §8.1c.

* ``"causal"`` (maximum causal entropy, THEORY §1.3, §8.1b): normalised, no :math:`Z`;
  :func:`soft_riccati` with ``model="causal"`` gives the soft value :math:`V_0(x_0)` and the
  soft-optimal Gaussian policy.

The recursion (:func:`soft_riccati`), with :math:`V_{t+1}(x) = -\tfrac12x^\top P_{t+1}x +
v_{t+1}`, :math:`P_T = Q_f`, :math:`v_T = 0`, runs backwards with ``jax.lax.scan``:

.. math::

    \text{causal: } \tilde P = P_{t+1},\ \ \delta_t = -\tfrac12\mathrm{tr}(P_{t+1}\Sigma_w);\qquad
    \text{trajectory: } \tilde P = P_{t+1}(I + \Sigma_wP_{t+1})^{-1},\ \
    \delta_t = -\tfrac12\log\det(I + \Sigma_wP_{t+1}),

    M_{uu} = R + B^\top\tilde PB,\quad M_{ux} = B^\top\tilde PA,\quad M_{xx} = Q + A^\top\tilde PA,

    P_t = M_{xx} - M_{ux}^\top M_{uu}^{-1}M_{ux},\qquad
    v_t = v_{t+1} + \delta_t + \tfrac m2\log2\pi - \tfrac12\log\det M_{uu},

    \pi_t(u\mid x) = \mathcal N(-K_tx,\ M_{uu}^{-1}),\quad K_t = M_{uu}^{-1}M_{ux}.

Under the trajectory-level model the next state is tilted towards high value (THEORY §1.2):
:math:`p_\theta(x_{t+1}\mid x_t,u_t) = \mathcal N(S_t(Ax_t+Bu_t),\ S_t\Sigma_w)` with
:math:`S_t = (I + \Sigma_wP_{t+1})^{-1}`; under the causal model it is the true
:math:`\mathcal N(Ax_t + Bu_t, \Sigma_w)`. :class:`SoftRiccati` stores both conditionals, so
:func:`sample_trajectories`, :func:`moments` and :func:`policy_log_prob` serve both models.
:math:`W_0\ge V_0` (Jensen), with equality for deterministic dynamics (THEORY §1.3).

Everything is pure JAX (jit, vmap and grad through the cost matrices), computed in the dtype of
the inputs, with Cholesky factorisations of SPD matrices only (no LU, no eigendecomposition under
``jit``). Public functions validate concrete inputs eagerly and run a jitted core, compiled once
per shape and model (the noise is an array, so deterministic and noisy systems share it).

References: THEORY §1.2–§1.5, §8.1; DESIGN §3.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import block_diag, cho_solve, solve_triangular

from ebm_ppl._validation import check_choice
from ebm_ppl.spaces.linear_gaussian import (
    CostMatrices,
    GaussianTrajectories,
    LinearGaussianSystem,
    check_cost_matrices,
    quadratic_cost,
)

__all__ = [
    "MODELS",
    "BatchGaussian",
    "Moments",
    "SoftRiccati",
    "batch_gaussian",
    "initial_value",
    "log_likelihood",
    "log_partition",
    "moments",
    "policy_log_prob",
    "sample_controls",
    "sample_trajectories",
    "soft_riccati",
    "stacked_dynamics",
]

MODELS = ("causal", "trajectory")
"""The MaxEnt models served here (DESIGN §3); both are conditional on :math:`x_0`."""

_LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------- result types
class BatchGaussian(NamedTuple):
    """Output of :func:`batch_gaussian` for one start state.

    Attributes:
        log_z: ``()`` trajectory-level :math:`\\log Z(x_0)`.
        control_mean: ``(T, m)`` :math:`-H^{-1}g`, the mean of :math:`p_\\theta(z\\mid x_0)`.
        control_precision: ``(T m, T m)`` :math:`H` (stacked controls, time-major).
        control_cov: ``(T m, T m)`` :math:`H^{-1}`.
    """

    log_z: Any
    control_mean: Any
    control_precision: Any
    control_cov: Any


class SoftRiccati(NamedTuple):
    """Output of :func:`soft_riccati`: value functions, policy and next-state conditionals.

    Attributes:
        value_matrix: ``(T + 1, n, n)`` :math:`P_t` (:math:`P_T = Q_f`).
        value_offset: ``(T + 1,)`` :math:`v_t` (:math:`v_T = 0`); the value is
            :math:`-\\tfrac12x^\\top P_tx + v_t`.
        gain: ``(T, m, n)`` :math:`K_t`; the policy mean is :math:`-K_tx`.
        control_precision: ``(T, m, m)`` :math:`M_{uu}`.
        control_cov: ``(T, m, m)`` :math:`M_{uu}^{-1}`, the policy covariance.
        control_factor: ``(T, m, m)`` :math:`L_{uu}^{-\\top}` (upper triangular, with
            :math:`M_{uu} = L_{uu}L_{uu}^\\top`), so that :math:`\\text{factor}\\,
            \\text{factor}^\\top = M_{uu}^{-1}`.
        next_state_map: ``(T, n, n)`` :math:`S_t` (identity for the causal model).
        next_state_cov: ``(T, n, n)`` :math:`S_t\\Sigma_w` (:math:`\\Sigma_w` for causal).
        next_state_factor: ``(T, n, n)``, a square root of ``next_state_cov``.
    """

    value_matrix: Any
    value_offset: Any
    gain: Any
    control_precision: Any
    control_cov: Any
    control_factor: Any
    next_state_map: Any
    next_state_cov: Any
    next_state_factor: Any


class Moments(NamedTuple):
    """Per-step marginal moments of a model's trajectories (output of :func:`moments`).

    Attributes:
        state_mean: ``(T + 1, n)``.
        state_cov: ``(T + 1, n, n)``.
        control_mean: ``(T, m)``.
        control_cov: ``(T, m, m)``.
    """

    state_mean: Any
    state_cov: Any
    control_mean: Any
    control_cov: Any


# ---------------------------------------------------------------------------- helpers
def _symmetrize(matrix):
    return 0.5 * (matrix + jnp.swapaxes(matrix, -1, -2))


def _check_state(name: str, x0, system: LinearGaussianSystem, *, batch: bool = True):
    x0 = jnp.asarray(x0)
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        x0 = x0.astype(system.dtype)
    n = system.state_dim
    if x0.ndim < 1 or x0.shape[-1] != n or (not batch and x0.ndim != 1):
        expected = "(..., n)" if batch else "(n,)"
        raise ValueError(f"`{name}` must have shape {expected} with n = {n}; got {x0.shape}.")
    return x0


def _check_system(system) -> None:
    if not isinstance(system, LinearGaussianSystem):
        raise TypeError(f"`system` must be a LinearGaussianSystem; got {type(system).__name__}.")


def _check_solution(solution, system: LinearGaussianSystem) -> None:
    if not isinstance(solution, SoftRiccati):
        raise TypeError(
            f"`solution` must be a SoftRiccati (from soft_riccati); got {type(solution).__name__}."
        )
    expected = (system.horizon, system.control_dim, system.state_dim)
    if tuple(jnp.shape(solution.gain)) != expected:
        raise ValueError(
            f"`solution.gain` must have shape (T, m, n) = {expected} for this system; got "
            f"{tuple(jnp.shape(solution.gain))}."
        )


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return value


# ---------------------------------------------------------------------------- batch form
def stacked_dynamics(system: LinearGaussianSystem):
    """The stacked maps :math:`X = Fx_0 + Gz + G_ww` of THEORY §8.1a.

    :math:`X = (x_1..x_T)`, :math:`z = (u_0..u_{T-1})`, :math:`w = (w_0..w_{T-1})`, all
    time-major; :math:`F_t = A^t`, :math:`G_{tk} = A^{t-1-k}B` and :math:`(G_w)_{tk} = A^{t-1-k}`
    for :math:`k < t` (zero otherwise).

    Returns:
        ``(F, G, G_w)`` of shapes ``(T n, n)``, ``(T n, T m)``, ``(T n, T n)``.
    """
    _check_system(system)
    a, b = system.transition, system.control_matrix
    horizon, n, m = system.horizon, system.state_dim, system.control_dim

    def power(carry, _):
        return carry @ a, carry

    _, powers = jax.lax.scan(power, jnp.eye(n, dtype=a.dtype), None, length=horizon + 1)
    lag = jnp.arange(horizon)[:, None] - jnp.arange(horizon)[None, :]  # t - 1 - k, t = 1..T
    blocks = powers[jnp.clip(lag, 0, horizon)]  # (T, T, n, n): A^{t-1-k}
    causal = (lag >= 0)[:, :, None, None]
    noise_map = jnp.where(causal, blocks, 0.0)
    control_map = noise_map @ b
    stacked = lambda blocks, width: jnp.transpose(blocks, (0, 2, 1, 3)).reshape(
        horizon * n, horizon * width
    )
    return powers[1:].reshape(horizon * n, n), stacked(control_map, m), stacked(noise_map, n)


def batch_gaussian(system: LinearGaussianSystem, cost: CostMatrices, x0) -> BatchGaussian:
    """Trajectory-level :math:`\\log Z(x_0)` and :math:`p_\\theta(z\\mid x_0)` by one Gaussian
    integral over the stacked controls (module docstring; THEORY §8.1a, with the noise integrated
    out for :math:`\\Sigma_w\\ne0`).

    Exact (no estimator bias). Serves ``"trajectory"``; with :math:`\\Sigma_w = 0` it is also the
    causal :math:`V_0(x_0)` (the models coincide). Cost :math:`O((Tn)^3)`: meant for checks and
    short horizons; :func:`soft_riccati` is linear in ``T``.

    Args:
        system: the system (``horizon`` ``T``, state dim ``n``, control dim ``m``).
        cost: :class:`CostMatrices` (differentiable).
        x0: ``(n,)`` start state (vmap for several).

    Returns:
        :class:`BatchGaussian`.
    """
    _check_system(system)
    cost = check_cost_matrices(system, cost)
    x0 = _check_state("x0", x0, system, batch=False)
    return _batch_gaussian(system, cost, x0)


def _tilt(weights, factor):
    """Gaussian backup of :math:`e^{-\\frac12x^\\top Wx}` under noise :math:`LL^\\top`.

    With :math:`C = I + L^\\top WL = L_cL_c^\\top` and :math:`J = L_c^{-1}L^\\top`:
    :math:`W(I + LL^\\top W)^{-1} = W - (JW)^\\top(JW)` (Woodbury),
    :math:`\\log\\det(I + LL^\\top W) = \\log\\det C` (Sylvester),
    :math:`(I + LL^\\top W)^{-1} = I - J^\\top JW` and :math:`(I + LL^\\top W)^{-1}LL^\\top =
    J^\\top J`. Only a Cholesky factorisation of the SPD matrix :math:`C`.

    Returns:
        ``(tilted W, log det C, map (I + LL^T W)^{-1}, J^T)``; ``J^T J`` is the tilted noise
        covariance and ``J^T`` a square root of it.
    """
    eye = jnp.eye(factor.shape[-1], dtype=weights.dtype)
    chol = jnp.linalg.cholesky(_symmetrize(eye + factor.T @ weights @ factor))
    projected = solve_triangular(chol, factor.T, lower=True)  # J = L_c^{-1} L^T
    pushed = projected @ weights
    tilted = _symmetrize(weights - pushed.T @ pushed)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    next_map = jnp.eye(weights.shape[-1], dtype=weights.dtype) - projected.T @ pushed
    return tilted, logdet, next_map, projected.T


@jax.jit
def _batch_gaussian(system, cost, x0):
    horizon, m = system.horizon, system.control_dim
    dtype = jnp.result_type(system.dtype, cost.state.dtype, cost.control.dtype, x0.dtype)
    free, control_map, noise_map = stacked_dynamics(system)
    state_weights = block_diag(*([cost.state] * (horizon - 1) + [cost.terminal])).astype(dtype)
    control_weights = block_diag(*([cost.control] * horizon)).astype(dtype)
    # Sigma_X = L_X L_X^T with L_X = G_w (I_T x L_w); Q~ = Qbar (I + Sigma_X Qbar)^{-1}
    state_factor = noise_map @ block_diag(*([system.noise_factor] * horizon)).astype(dtype)
    tilted, noise_logdet, _, _ = _tilt(state_weights, state_factor)
    drift = free @ x0
    precision = _symmetrize(control_weights + control_map.T @ tilted @ control_map)
    linear = control_map.T @ tilted @ drift
    constant = 0.5 * x0 @ cost.state @ x0 + 0.5 * drift @ tilted @ drift
    chol = jnp.linalg.cholesky(precision)
    solved = cho_solve((chol, True), linear)
    log_z = (
        -constant
        + 0.5 * linear @ solved
        + 0.5 * horizon * m * _LOG_2PI
        - jnp.sum(jnp.log(jnp.diagonal(chol)))
        - 0.5 * noise_logdet
    )
    cov = cho_solve((chol, True), jnp.eye(horizon * m, dtype=dtype))
    return BatchGaussian(
        log_z=log_z,
        control_mean=(-solved).reshape(horizon, m),
        control_precision=precision,
        control_cov=_symmetrize(cov),
    )


def sample_controls(rng_key, batch: BatchGaussian, num_samples: int) -> jax.Array:
    """Exact draws of the stacked controls :math:`z\\sim\\mathcal N(-H^{-1}g, H^{-1})`.

    For a deterministic system this is an exact draw of :math:`p_\\theta(\\tau\\mid x_0)`
    (states by :func:`~ebm_ppl.spaces.linear_gaussian.rollout_states`); with noise it is the
    control marginal of the trajectory-level model.

    Args:
        rng_key: JAX key.
        batch: :class:`BatchGaussian` of one start state.
        num_samples: ``K >= 1``.

    Returns:
        ``(K, T, m)``.
    """
    num_samples = _check_int("num_samples", num_samples, 1)
    mean = jnp.asarray(batch.control_mean)
    chol = jnp.linalg.cholesky(batch.control_precision)
    eps = jax.random.normal(rng_key, (mean.size, num_samples), mean.dtype)
    draws = solve_triangular(chol.T, eps, lower=False)  # cov L^-T L^-1 = H^-1
    return mean + draws.T.reshape((num_samples,) + mean.shape)


# ---------------------------------------------------------------------------- soft Riccati
def soft_riccati(
    system: LinearGaussianSystem, cost: CostMatrices, *, model: str = "causal"
) -> SoftRiccati:
    """The soft Riccati recursion (module docstring; THEORY §8.1b causal, §8.1c trajectory).

    Exact. ``model="causal"``: the maximum-causal-entropy soft values :math:`V_t` and policy;
    ``model="trajectory"``: the trajectory-level values :math:`W_t` (:math:`W_0(x_0) = \\log
    Z(x_0)`), its action conditional and tilted next-state conditional. Identical for
    deterministic dynamics. One ``lax.scan`` over ``T`` steps, :math:`O(T(n^3 + m^3))`.

    Args:
        system: the system.
        cost: :class:`CostMatrices` (differentiable).
        model: ``"causal"`` or ``"trajectory"``.

    Returns:
        :class:`SoftRiccati`.
    """
    _check_system(system)
    check_choice("model", model, MODELS)
    cost = check_cost_matrices(system, cost)
    return _soft_riccati(system, cost, model)


@functools.partial(jax.jit, static_argnums=2)
def _soft_riccati(system, cost, model):
    a, b = system.transition, system.control_matrix
    n, m = system.state_dim, system.control_dim
    dtype = jnp.result_type(a.dtype, cost.state.dtype, cost.control.dtype, cost.terminal.dtype)
    noise, factor = system.noise_cov.astype(dtype), system.noise_factor.astype(dtype)
    eye_m = jnp.eye(m, dtype=dtype)
    terminal = jnp.asarray(cost.terminal, dtype)

    def step(carry, _):
        value_matrix, value_offset = carry
        if model == "trajectory":  # log E exp(V): P~ = P (I + Sigma P)^{-1}, tilted next state
            effective, logdet, next_map, next_factor = _tilt(value_matrix, factor)
            backup = -0.5 * logdet
            next_cov = _symmetrize(next_factor @ next_factor.T)
        else:  # E V: P~ = P, the true next state
            effective = value_matrix
            backup = -0.5 * jnp.sum(value_matrix * noise)  # tr(P Sigma), both symmetric
            next_map = jnp.eye(n, dtype=dtype)
            next_cov, next_factor = noise, factor
        control_precision = _symmetrize(cost.control + b.T @ effective @ b)
        cross = b.T @ effective @ a
        state_term = cost.state + a.T @ effective @ a
        chol = jnp.linalg.cholesky(control_precision)
        gain = cho_solve((chol, True), cross)
        new_matrix = _symmetrize(state_term - cross.T @ gain)
        new_offset = (
            value_offset + backup + 0.5 * m * _LOG_2PI - jnp.sum(jnp.log(jnp.diagonal(chol)))
        )
        control_factor = solve_triangular(chol, eye_m, lower=True).T  # L^-T: L^-T L^-1 = M^-1
        control_cov = _symmetrize(control_factor @ control_factor.T)
        outputs = (
            new_matrix,
            new_offset,
            gain,
            control_precision,
            control_cov,
            control_factor,
            next_map,
            next_cov,
            next_factor,
        )
        return (new_matrix, new_offset), outputs

    init = (terminal, jnp.zeros((), dtype))
    _, outputs = jax.lax.scan(step, init, None, length=system.horizon, reverse=True)
    matrices, offsets, *rest = outputs
    return SoftRiccati(
        jnp.concatenate([matrices, terminal[None]], axis=0),
        jnp.concatenate([offsets, jnp.zeros((1,), dtype)], axis=0),
        *rest,
    )


def initial_value(solution: SoftRiccati, x0) -> jax.Array:
    """:math:`-\\tfrac12x_0^\\top P_0x_0 + v_0`: :math:`V_0(x_0)` (causal) or
    :math:`W_0(x_0) = \\log Z(x_0)` (trajectory).

    Args:
        solution: :class:`SoftRiccati`.
        x0: ``(..., n)``.

    Returns:
        ``(...)``.
    """
    x0 = jnp.asarray(x0)
    matrix = solution.value_matrix[0]
    if x0.ndim < 1 or x0.shape[-1] != matrix.shape[-1]:
        raise ValueError(
            f"`x0` must have shape (..., n) with n = {matrix.shape[-1]}; got {x0.shape}."
        )
    return -0.5 * jnp.einsum("...i,ij,...j->...", x0, matrix, x0) + solution.value_offset[0]


def log_partition(
    system: LinearGaussianSystem, cost: CostMatrices, x0, *, method: str = "riccati"
) -> jax.Array:
    """Trajectory-level :math:`\\log Z(x_0) = \\log\\int b(\\tau)e^{-c(\\tau)}du` (exact).

    Args:
        system: the system.
        cost: :class:`CostMatrices`.
        x0: ``(..., n)`` start states.
        method: ``"riccati"`` (:func:`soft_riccati`, ``model="trajectory"``) or ``"batch"``
            (:func:`batch_gaussian`, vmapped over the start states).

    Returns:
        ``(...)``.
    """
    check_choice("method", method, ("riccati", "batch"))
    _check_system(system)
    x0 = _check_state("x0", x0, system)
    if method == "riccati":
        return initial_value(soft_riccati(system, cost, model="trajectory"), x0)
    cost = check_cost_matrices(system, cost)
    flat = x0.reshape(-1, system.state_dim)
    log_z = jax.vmap(lambda x: _batch_gaussian(system, cost, x).log_z)(flat)
    return log_z.reshape(x0.shape[:-1])


# ---------------------------------------------------------------------------- sampling, moments
def sample_trajectories(
    rng_key,
    system: LinearGaussianSystem,
    solution: SoftRiccati,
    x0,
    num_samples: int | None = None,
) -> GaussianTrajectories:
    """Exact draws of the model that ``solution`` solves, started at ``x0``.

    Forward in time: :math:`u_t\\sim\\mathcal N(-K_tx_t, M_{uu}^{-1})`, then
    :math:`x_{t+1}\\sim\\mathcal N(S_t(Ax_t + Bu_t), S_t\\Sigma_w)`: the true dynamics for the
    causal solution (the soft-optimal policy acting in the system), the tilted transitions for
    the trajectory-level one (THEORY §1.2, §1.4). Singular noise covariances are fine.

    Args:
        rng_key: JAX key.
        system: the system.
        solution: :func:`soft_riccati` of ``system``.
        x0: ``(..., n)`` start states, one trajectory each; or ``(n,)`` with ``num_samples``.
        num_samples: with an ``(n,)`` start, the number of draws ``K``.

    Returns:
        :class:`GaussianTrajectories` with batch shape ``x0.shape[:-1]`` (or ``(K,)``).
    """
    _check_system(system)
    _check_solution(solution, system)
    x0 = _check_state("x0", x0, system)
    if num_samples is not None:
        num_samples = _check_int("num_samples", num_samples, 1)
        if x0.ndim != 1:
            raise ValueError(
                f"`x0` must have shape (n,) when `num_samples` is given; got {x0.shape}."
            )
        x0 = jnp.broadcast_to(x0, (num_samples, system.state_dim))
    return _sample_trajectories(rng_key, system, solution, x0)


@jax.jit
def _sample_trajectories(rng_key, system, solution, x0):
    dtype = jnp.result_type(solution.gain.dtype, x0.dtype)
    batch = x0.shape[:-1]
    horizon, n, m = system.horizon, system.state_dim, system.control_dim
    eps = jax.random.normal(rng_key, (horizon,) + batch + (m + n,), dtype)
    control_eps, state_eps = eps[..., :m], eps[..., m:]

    def step(state, inputs):
        gain, control_root, next_map, state_root, eps_u, eps_x = inputs
        control = -state @ gain.T + eps_u @ control_root.T
        mean = (state @ system.transition.T + control @ system.control_matrix.T) @ next_map.T
        following = mean + eps_x @ state_root.T
        return following, (state, control)

    inputs = (
        solution.gain,
        solution.control_factor,
        solution.next_state_map,
        solution.next_state_factor,
        control_eps,
        state_eps,
    )
    last, (states, controls) = jax.lax.scan(step, x0.astype(dtype), inputs)
    states = jnp.concatenate([states, last[None]], axis=0)
    return GaussianTrajectories(jnp.moveaxis(states, 0, -2), jnp.moveaxis(controls, 0, -2))


def moments(system: LinearGaussianSystem, solution: SoftRiccati, x0_mean, x0_cov=None) -> Moments:
    """Per-step marginal means and covariances of the model ``solution`` solves (exact).

    Propagates :math:`x_{t+1} = S_t(A - BK_t)x_t + S_tB\\eta_t + \\xi_t` with
    :math:`\\eta_t\\sim\\mathcal N(0, M_{uu}^{-1})`, :math:`\\xi_t\\sim\\mathcal N(0,
    S_t\\Sigma_w)`, from :math:`x_0\\sim\\mathcal N(\\mu_0, \\Sigma_0)`. With these, expected
    quadratic features, hence :math:`\\nabla_\\theta\\log Z` (trajectory) and
    :math:`\\nabla_\\theta V_0` (causal, under the true dynamics), are closed-form (THEORY §1.5).

    Args:
        system: the system.
        solution: :func:`soft_riccati` of ``system``.
        x0_mean: ``(n,)``.
        x0_cov: ``(n, n)`` (default zeros: a fixed start).

    Returns:
        :class:`Moments`.
    """
    _check_system(system)
    _check_solution(solution, system)
    x0_mean = _check_state("x0_mean", x0_mean, system, batch=False)
    n = system.state_dim
    if x0_cov is None:
        x0_cov = jnp.zeros((n, n), x0_mean.dtype)
    x0_cov = jnp.asarray(x0_cov)
    if x0_cov.shape != (n, n):
        raise ValueError(f"`x0_cov` must have shape (n, n) = ({n}, {n}); got {x0_cov.shape}.")
    return _moments(system, solution, x0_mean, x0_cov)


@jax.jit
def _moments(system, solution, x0_mean, x0_cov):
    a, b = system.transition, system.control_matrix

    def step(carry, inputs):
        mean, cov = carry
        gain, control_cov, next_map, next_cov = inputs
        control_mean = -gain @ mean
        control_second = _symmetrize(gain @ cov @ gain.T + control_cov)
        closed = next_map @ (a - b @ gain)
        push = next_map @ b
        new_mean = closed @ mean
        new_cov = _symmetrize(closed @ cov @ closed.T + push @ control_cov @ push.T + next_cov)
        return (new_mean, new_cov), (mean, cov, control_mean, control_second)

    inputs = (solution.gain, solution.control_cov, solution.next_state_map, solution.next_state_cov)
    (last_mean, last_cov), outputs = jax.lax.scan(step, (x0_mean, x0_cov), inputs)
    means, covs, control_mean, control_cov = outputs
    return Moments(
        state_mean=jnp.concatenate([means, last_mean[None]], axis=0),
        state_cov=jnp.concatenate([covs, last_cov[None]], axis=0),
        control_mean=control_mean,
        control_cov=control_cov,
    )


# ---------------------------------------------------------------------------- likelihoods
def policy_log_prob(solution: SoftRiccati, trajectories: GaussianTrajectories) -> jax.Array:
    """:math:`\\sum_t\\log\\pi_t(u_t\\mid x_t)` with :math:`\\pi_t = \\mathcal N(-K_tx,
    M_{uu}^{-1})` (Lebesgue density on the controls).

    For the causal solution this is the whole causal log-likelihood with respect to the base
    measure :math:`b(\\tau)\\,du` (THEORY §1.3, §7.1).

    Args:
        solution: :class:`SoftRiccati`.
        trajectories: :class:`GaussianTrajectories`, states ``(..., T + 1, n)`` and controls
            ``(..., T, m)``.

    Returns:
        ``(...)``.
    """
    states = jnp.asarray(trajectories.states)[..., :-1, :]
    controls = jnp.asarray(trajectories.controls)
    residual = controls + jnp.einsum("tmn,...tn->...tm", solution.gain, states)
    precision = solution.control_precision
    quadratic = jnp.einsum("...ti,tij,...tj->...", residual, precision, residual)
    # log det M_uu = -2 sum log diag(L^-T)
    logdet = -2.0 * jnp.sum(jnp.log(jnp.diagonal(solution.control_factor, axis1=-2, axis2=-1)))
    m = controls.shape[-1]
    horizon = controls.shape[-2]
    return -0.5 * quadratic + 0.5 * logdet - 0.5 * horizon * m * _LOG_2PI


def log_likelihood(
    system: LinearGaussianSystem,
    cost: CostMatrices,
    trajectories: GaussianTrajectories,
    *,
    model: str = "causal",
) -> jax.Array:
    """Exact log-likelihood of trajectories with respect to :math:`b(\\tau)\\,du` (THEORY §7.1).

    * ``"trajectory"``: :math:`-c(\\tau) - \\log Z(x_0)` (:math:`\\log Z` by
      :func:`soft_riccati`, so per-trajectory start states cost nothing extra);
    * ``"causal"``: :math:`\\sum_t\\log\\pi_t(u_t\\mid x_t)` (not feature matching under noise,
      THEORY §1.5 caveat 2).

    The dynamics factor :math:`b(\\tau)` is left out: it does not depend on the cost, and it is
    degenerate for deterministic systems (a point mass on the reachable states). The two models
    agree for deterministic dynamics.

    Args:
        system: the system.
        cost: :class:`CostMatrices` (differentiable).
        trajectories: :class:`GaussianTrajectories` with any batch shape.
        model: ``"causal"`` or ``"trajectory"``.

    Returns:
        ``(...)``, one value per trajectory.
    """
    _check_system(system)
    check_choice("model", model, MODELS)
    if not isinstance(trajectories, GaussianTrajectories):
        raise TypeError(
            "`trajectories` must be GaussianTrajectories(states, controls); got "
            f"{type(trajectories).__name__}."
        )
    n, m, horizon = system.state_dim, system.control_dim, system.horizon
    states, controls = jnp.asarray(trajectories.states), jnp.asarray(trajectories.controls)
    if states.shape[-2:] != (horizon + 1, n) or controls.shape[-2:] != (horizon, m):
        raise ValueError(
            f"`trajectories` must have states (..., T + 1, n) = (..., {horizon + 1}, {n}) and "
            f"controls (..., T, m) = (..., {horizon}, {m}); got {states.shape} and "
            f"{controls.shape}."
        )
    solution = soft_riccati(system, cost, model=model)
    if model == "causal":
        return policy_log_prob(solution, GaussianTrajectories(states, controls))
    return -quadratic_cost(cost, states, controls) - initial_value(solution, states[..., 0, :])
