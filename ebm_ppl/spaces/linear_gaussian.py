r"""Linear-Gaussian systems, quadratic costs and continuous trajectories (THEORY §8.1).

A :class:`LinearGaussianSystem` holds

.. math::

    x_{t+1} = A x_t + B u_t + w_t,\qquad w_t\sim\mathcal N(0,\Sigma_w),\qquad
    x_0\sim\mathcal N(\mu_0,\Sigma_0),

with states :math:`x\in\mathbb R^n`, controls :math:`u\in\mathbb R^m` and ``T = horizon``
decisions. :math:`\Sigma_w = 0` is the deterministic system, :math:`\Sigma_0 = 0` a fixed start;
both covariances need only be positive **semi**-definite (noise on some coordinates only is
allowed).

A :class:`CostMatrices` holds the quadratic cost of THEORY §8.1,

.. math::

    c(\tau) = \sum_{t=0}^{T-1}\big(\tfrac12 x_t^\top Q x_t + \tfrac12 u_t^\top R u_t\big)
              + \tfrac12 x_T^\top Q_f x_T = -R(\tau),

with :math:`Q, Q_f \succeq 0` and :math:`R \succ 0` (so every control integral converges).

Conventions (THEORY §0.4), fixed here for the continuous part of the library:

* **Length.** A trajectory carries the states :math:`x_0..x_T` and the controls
  :math:`u_0..u_{T-1}`: :class:`GaussianTrajectories` with ``states (..., T + 1, n)`` and
  ``controls (..., T, m)``.
* **Observed array.** For ``numpyro.sample(..., obs=...)`` a trajectory is one float array of
  shape ``(T + 1, n + m)``: row ``t`` is :math:`(x_t, u_t)` for ``t < T``, row ``T`` is
  :math:`(x_T, 0)` (the control slot of the last row is padding, ignored and written as zeros);
  :func:`to_observed` and :func:`from_observed` convert.
* **Base measure.** Densities of trajectories are taken with respect to
  :math:`b(\tau)\,du_{0:T-1}` (the dynamics and the start law times Lebesgue measure on the
  controls), as in THEORY §8.1; :math:`b` does not depend on the cost, and it is degenerate for a
  deterministic system, which is why it is never part of a log-likelihood here.

The system is a registered pytree (arrays are leaves, the horizon is static); validation runs
eagerly on host data and is skipped for tracers (DESIGN §4).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl._validation import check_finite, is_host_data

__all__ = [
    "CostMatrices",
    "GaussianTrajectories",
    "LinearGaussianSystem",
    "check_cost_matrices",
    "check_symmetric_psd",
    "from_observed",
    "psd_root",
    "quadratic_cost",
    "rollout_states",
    "to_observed",
    "validate_trajectories",
]


# ---------------------------------------------------------------------------- checks
def _tolerance(array: np.ndarray) -> float:
    eps = np.finfo(array.dtype).eps if np.issubdtype(array.dtype, np.floating) else 2.0**-52
    return 1e3 * eps * max(1.0, float(np.max(np.abs(array), initial=0.0)))


def _float_array(name: str, value, dtype=None) -> jax.Array:
    array = jnp.asarray(value)
    if not (jnp.issubdtype(array.dtype, jnp.floating) or jnp.issubdtype(array.dtype, jnp.integer)):
        raise TypeError(f"`{name}` must be a real array; got dtype {array.dtype}.")
    if dtype is None:
        dtype = array.dtype if jnp.issubdtype(array.dtype, jnp.floating) else float
    return array.astype(jnp.result_type(dtype))


def _check_matrix_shape(name: str, array, shape: tuple, description: str) -> None:
    if array.shape != shape:
        raise ValueError(f"`{name}` must have shape {description} = {shape}; got {array.shape}.")


def check_symmetric_psd(name: str, value, *, definite: bool = False) -> None:
    """Raise unless a concrete square matrix is symmetric positive (semi-)definite.

    Args:
        name: the argument's name.
        value: ``(k, k)`` array (skipped when it is a tracer).
        definite: require positive definite (smallest eigenvalue > tolerance) instead of
            semi-definite (smallest eigenvalue >= -tolerance); the tolerance is
            ``1000 * eps * max(1, max|entry|)``.
    """
    if not is_host_data(value):
        return
    array = np.asarray(value)
    check_finite(name, array)
    tol = _tolerance(array)
    asymmetry = float(np.max(np.abs(array - array.T), initial=0.0))
    if asymmetry > tol:
        raise ValueError(
            f"`{name}` must be symmetric; got max |{name} - {name}^T| = {asymmetry:.3g} "
            f"(tolerance {tol:.3g})."
        )
    if array.size == 0:
        return
    smallest = float(np.linalg.eigvalsh(0.5 * (array + array.T).astype(np.float64))[0])
    if definite and smallest <= tol:
        raise ValueError(
            f"`{name}` must be positive definite; got smallest eigenvalue {smallest:.6g}."
        )
    if smallest < -tol:
        raise ValueError(
            f"`{name}` must be positive semi-definite; got smallest eigenvalue {smallest:.6g}."
        )


def _check_horizon(horizon) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"`horizon` must be an int >= 1; got {horizon!r}.")
    return int(horizon)


# ---------------------------------------------------------------------------- system
def psd_root(cov):
    """A square root :math:`L` with :math:`LL^\\top = \\Sigma` of a symmetric PSD matrix.

    :math:`L = V\\operatorname{diag}(\\sqrt{\\max(\\lambda, 0)})` from the eigendecomposition
    (NumPy float64 for host data, ``jnp.linalg.eigh`` for traced values), so singular covariances
    work. Returned in the input's dtype.
    """
    if is_host_data(cov):
        array = np.asarray(cov)
        eigenvalues, vectors = np.linalg.eigh(0.5 * (array + array.T).astype(np.float64))
        root = vectors * np.sqrt(np.maximum(eigenvalues, 0.0))[None, :]
        return jnp.asarray(root.astype(array.dtype))
    cov = jnp.asarray(cov)
    eigenvalues, vectors = jnp.linalg.eigh(0.5 * (cov + cov.T))
    return vectors * jnp.sqrt(jnp.maximum(eigenvalues, 0.0))[None, :]


_COVARIANCES = {"noise_cov": "noise_factor", "initial_cov": "initial_factor"}


@dataclasses.dataclass(frozen=True)
class LinearGaussianSystem:
    """Linear dynamics with additive Gaussian noise and a Gaussian start (see the module docstring).

    Attributes:
        transition: :math:`A`, ``(n, n)``.
        control_matrix: :math:`B`, ``(n, m)``.
        noise_cov: :math:`\\Sigma_w`, ``(n, n)`` symmetric PSD; ``None`` means zeros
            (deterministic dynamics).
        initial_mean: :math:`\\mu_0`, ``(n,)``; ``None`` means zeros.
        initial_cov: :math:`\\Sigma_0`, ``(n, n)`` symmetric PSD; ``None`` means zeros (a fixed
            start state :math:`x_0 = \\mu_0`).
        horizon: ``T >= 1`` decisions (static).
        noise_factor: :math:`L_w` with :math:`L_wL_w^\\top = \\Sigma_w`, ``(n, n)``; computed by
            :func:`psd_root` when ``None`` (the default). The exact layer works with this factor
            only (Cholesky factorisations of SPD matrices, no LU or eigendecompositions under
            ``jit``), so gradients with respect to the noise covariance are not supported.
        initial_factor: :math:`L_0` with :math:`L_0L_0^\\top = \\Sigma_0`; computed likewise.

    All arrays are cast to one floating dtype: that of ``transition`` and ``control_matrix``
    combined (the default float if both are integer). :meth:`replace` recomputes a factor whose
    covariance changed.

    Raises:
        ValueError: wrong shapes, non-finite entries, a covariance that is not symmetric PSD, a
            factor that does not reproduce its covariance, or a horizon that is not an int >= 1
            (the message names the argument).
    """

    transition: Any
    control_matrix: Any
    noise_cov: Any = None
    initial_mean: Any = None
    initial_cov: Any = None
    horizon: int = 1
    noise_factor: Any = None
    initial_factor: Any = None

    def __post_init__(self):
        object.__setattr__(self, "horizon", _check_horizon(self.horizon))
        if not (is_host_data(self.transition) and is_host_data(self.control_matrix)):
            if isinstance(self.transition, jax.core.Tracer):  # built under jit: fill the factors
                for cov_name, factor_name in _COVARIANCES.items():
                    cov = getattr(self, cov_name)
                    if getattr(self, factor_name) is None and cov is not None:
                        object.__setattr__(self, factor_name, psd_root(cov))
            return  # rebuilt by JAX with tracers or placeholders: nothing to check
        first = _float_array("transition", self.transition)
        second = _float_array("control_matrix", self.control_matrix)
        dtype = jnp.result_type(first.dtype, second.dtype)
        transition, control = first.astype(dtype), second.astype(dtype)
        if transition.ndim != 2 or transition.shape[0] != transition.shape[1]:
            raise ValueError(f"`transition` must have shape (n, n); got {transition.shape}.")
        n = transition.shape[0]
        if n < 1:
            raise ValueError("`transition` must have shape (n, n) with n >= 1; got (0, 0).")
        if control.ndim != 2 or control.shape[0] != n or control.shape[1] < 1:
            raise ValueError(
                f"`control_matrix` must have shape (n, m) = ({n}, m) with m >= 1; got "
                f"{control.shape}."
            )
        check_finite("transition", transition)
        check_finite("control_matrix", control)
        arrays = {"transition": transition, "control_matrix": control}
        for name, shape, description in (
            ("noise_cov", (n, n), "(n, n)"),
            ("initial_mean", (n,), "(n,)"),
            ("initial_cov", (n, n), "(n, n)"),
            ("noise_factor", (n, n), "(n, n)"),
            ("initial_factor", (n, n), "(n, n)"),
        ):
            value = getattr(self, name)
            if value is None:
                array = None if name.endswith("factor") else jnp.zeros(shape, dtype)
            else:
                array = _float_array(name, value, dtype)
                _check_matrix_shape(name, array, shape, description)
                check_finite(name, array)
                if name.endswith("cov"):
                    check_symmetric_psd(name, array)
            arrays[name] = array
        for cov_name, factor_name in _COVARIANCES.items():
            cov, factor = arrays[cov_name], arrays[factor_name]
            if factor is None:
                arrays[factor_name] = psd_root(cov)
                continue
            if not (is_host_data(cov) and is_host_data(factor)):
                continue
            product = np.asarray(factor, np.float64) @ np.asarray(factor, np.float64).T
            gap = float(np.max(np.abs(product - np.asarray(cov, np.float64)), initial=0.0))
            if gap > _tolerance(np.asarray(cov)):
                raise ValueError(
                    f"`{factor_name}` must satisfy {factor_name} @ {factor_name}.T = {cov_name}; "
                    f"got a max deviation of {gap:.3g}."
                )
        for name, array in arrays.items():
            object.__setattr__(self, name, array)

    @property
    def state_dim(self) -> int:
        """:math:`n`."""
        return self.transition.shape[-1]

    @property
    def control_dim(self) -> int:
        """:math:`m`."""
        return self.control_matrix.shape[-1]

    @property
    def dtype(self):
        return self.transition.dtype

    def is_deterministic(self) -> bool:
        """Whether :math:`\\Sigma_w = 0` (reads the array on the host: not for use under jit)."""
        return not bool(np.any(np.asarray(self.noise_cov)))

    def replace(self, **changes) -> LinearGaussianSystem:
        """A copy with ``changes``; the factor of a changed covariance is recomputed."""
        for cov_name, factor_name in _COVARIANCES.items():
            if cov_name in changes and factor_name not in changes:
                changes[factor_name] = None
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    LinearGaussianSystem,
    data_fields=[
        "transition",
        "control_matrix",
        "noise_cov",
        "initial_mean",
        "initial_cov",
        "noise_factor",
        "initial_factor",
    ],
    meta_fields=["horizon"],
)


# ---------------------------------------------------------------------------- cost
class CostMatrices(NamedTuple):
    """The matrices of the quadratic cost (module docstring): :math:`Q`, :math:`R`, :math:`Q_f`.

    Attributes:
        state: :math:`Q`, ``(n, n)`` symmetric PSD, charged on :math:`x_0..x_{T-1}`.
        control: :math:`R`, ``(m, m)`` symmetric positive definite.
        terminal: :math:`Q_f`, ``(n, n)`` symmetric PSD, charged on :math:`x_T`.
    """

    state: Any
    control: Any
    terminal: Any


def check_cost_matrices(system: LinearGaussianSystem, cost: CostMatrices) -> CostMatrices:
    """Validate ``cost`` against ``system`` (shapes always; values when concrete).

    Returns:
        ``cost`` with every matrix as a JAX array.

    Raises:
        TypeError: ``cost`` is not a :class:`CostMatrices`.
        ValueError: a wrong shape, or (concrete values) :math:`Q, Q_f` not symmetric PSD or
            :math:`R` not symmetric positive definite.
    """
    if not isinstance(cost, CostMatrices):
        raise TypeError(
            f"`cost` must be a CostMatrices(state, control, terminal); got {type(cost).__name__}."
        )
    n, m = system.state_dim, system.control_dim
    arrays = []
    for name, value, shape, description, definite in (
        ("cost.state", cost.state, (n, n), "(n, n)", False),
        ("cost.control", cost.control, (m, m), "(m, m)", True),
        ("cost.terminal", cost.terminal, (n, n), "(n, n)", False),
    ):
        array = jnp.asarray(value)
        _check_matrix_shape(name, array, shape, description)
        check_symmetric_psd(name, array, definite=definite)
        arrays.append(array)
    return CostMatrices(*arrays)


def quadratic_cost(cost: CostMatrices, states, controls) -> jax.Array:
    """The trajectory cost :math:`c(\\tau)` of the module docstring.

    Args:
        cost: :class:`CostMatrices`.
        states: ``(..., T + 1, n)``.
        controls: ``(..., T, m)``.

    Returns:
        ``(...)``.
    """
    states, controls = jnp.asarray(states), jnp.asarray(controls)
    running = jnp.einsum(
        "...ti,ij,...tj->...", states[..., :-1, :], cost.state, states[..., :-1, :]
    )
    effort = jnp.einsum("...ti,ij,...tj->...", controls, cost.control, controls)
    last = states[..., -1, :]
    final = jnp.einsum("...i,ij,...j->...", last, cost.terminal, last)
    return 0.5 * (running + effort + final)


# ---------------------------------------------------------------------------- trajectories
class GaussianTrajectories(NamedTuple):
    """Continuous trajectories (any leading batch shape).

    Attributes:
        states: :math:`x_0..x_T`, ``(..., T + 1, n)``.
        controls: :math:`u_0..u_{T-1}`, ``(..., T, m)``.
    """

    states: Any
    controls: Any


def to_observed(trajectories: GaussianTrajectories) -> jax.Array:
    """The observed array ``(..., T + 1, n + m)``: rows :math:`(x_t, u_t)`, last row
    :math:`(x_T, 0)`."""
    states, controls = jnp.asarray(trajectories.states), jnp.asarray(trajectories.controls)
    pad = jnp.zeros(controls.shape[:-2] + (1, controls.shape[-1]), controls.dtype)
    return jnp.concatenate([states, jnp.concatenate([controls, pad], axis=-2)], axis=-1)


def from_observed(observed, state_dim: int) -> GaussianTrajectories:
    """Split an observed array ``(..., T + 1, n + m)`` (see :func:`to_observed`)."""
    observed = jnp.asarray(observed)
    return GaussianTrajectories(observed[..., :state_dim], observed[..., :-1, state_dim:])


def validate_trajectories(
    system: LinearGaussianSystem, trajectories, *, name: str = "demos", atol: float | None = None
) -> GaussianTrajectories:
    """Check shapes, finiteness and consistency with the dynamics of concrete trajectories.

    A transition :math:`x_{t+1} - Ax_t - Bu_t` with a component outside the range of
    :math:`\\Sigma_w` has density zero under every model (for a deterministic system: any nonzero
    residual), so it is an error naming the trajectory and step (DESIGN §4).

    Args:
        system: the system.
        trajectories: :class:`GaussianTrajectories` with batch shape ``(N,)`` (or an observed
            array ``(N, T + 1, n + m)``).
        name: the argument's name, for messages.
        atol: absolute tolerance on the residual outside the noise range (default
            ``1e-8 * (1 + max|x|)`` in float64, ``1e-4 * (1 + max|x|)`` in float32).

    Returns:
        The trajectories as :class:`GaussianTrajectories` of JAX arrays in the system's dtype.
    """
    if not isinstance(trajectories, GaussianTrajectories):
        observed = jnp.asarray(trajectories)
        n, m, horizon = system.state_dim, system.control_dim, system.horizon
        if observed.ndim != 3 or observed.shape[1:] != (horizon + 1, n + m):
            raise ValueError(
                f"`{name}` must be GaussianTrajectories or an observed array of shape "
                f"(N, T + 1, n + m) = (N, {horizon + 1}, {n + m}); got shape {observed.shape}."
            )
        trajectories = from_observed(observed, n)
    n, m, horizon = system.state_dim, system.control_dim, system.horizon
    states = jnp.asarray(trajectories.states).astype(system.dtype)
    controls = jnp.asarray(trajectories.controls).astype(system.dtype)
    if states.ndim != 3 or states.shape[1:] != (horizon + 1, n):
        raise ValueError(
            f"`{name}.states` must have shape (N, T + 1, n) = (N, {horizon + 1}, {n}); got "
            f"{states.shape}."
        )
    if controls.shape != (states.shape[0], horizon, m):
        raise ValueError(
            f"`{name}.controls` must have shape (N, T, m) = ({states.shape[0]}, {horizon}, {m}); "
            f"got {controls.shape}."
        )
    if not is_host_data(states) or not is_host_data(controls):
        return GaussianTrajectories(states, controls)
    check_finite(f"{name}.states", states)
    check_finite(f"{name}.controls", controls)
    x, u = np.asarray(states, np.float64), np.asarray(controls, np.float64)
    a, b = np.asarray(system.transition, np.float64), np.asarray(system.control_matrix, np.float64)
    residual = x[:, 1:] - x[:, :-1] @ a.T - u @ b.T  # (N, T, n)
    noise = np.asarray(system.noise_cov, np.float64)
    eigenvalues, vectors = np.linalg.eigh(noise)
    null = vectors[:, eigenvalues <= _tolerance(noise)]  # directions without noise
    outside = (
        np.linalg.norm(residual @ null, axis=-1) if null.size else np.zeros(residual.shape[:2])
    )
    if atol is None:
        scale = 1e-4 if states.dtype == jnp.float32 else 1e-8
        atol = scale * (1.0 + float(np.max(np.abs(x), initial=0.0)))
    bad = outside > atol
    if bad.any():
        index, step = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"`{name}` is inconsistent with the dynamics: trajectory {index}, step {step} has "
            f"x_(t+1) - A x_t - B u_t off the range of the noise covariance by "
            f"{outside[index, step]:.3g} (tolerance {atol:.3g}); it has density 0."
        )
    return GaussianTrajectories(states, controls)


def rollout_states(system: LinearGaussianSystem, x0, controls, noise=None) -> jax.Array:
    """States :math:`x_0..x_T` of :math:`x_{t+1} = Ax_t + Bu_t + w_t` (one ``lax.scan``).

    Args:
        system: the system.
        x0: ``(..., n)``.
        controls: ``(..., T, m)`` (batch shape broadcast with that of ``x0``).
        noise: optional ``(..., T, n)`` :math:`w_t` (default: none, the noiseless rollout).

    Returns:
        ``(..., T + 1, n)`` in the promoted dtype of the inputs.
    """
    n, m, horizon = system.state_dim, system.control_dim, system.horizon
    x0, controls = jnp.asarray(x0), jnp.asarray(controls)
    if x0.ndim < 1 or x0.shape[-1] != n:
        raise ValueError(f"`x0` must have shape (..., n) with n = {n}; got {x0.shape}.")
    if controls.ndim < 2 or controls.shape[-2:] != (horizon, m):
        raise ValueError(
            f"`controls` must have shape (..., T, m) = (..., {horizon}, {m}); got {controls.shape}."
        )
    drive = controls @ system.control_matrix.T
    if noise is not None:
        noise = jnp.asarray(noise)
        if noise.ndim < 2 or noise.shape[-2:] != (horizon, n):
            raise ValueError(
                f"`noise` must have shape (..., T, n) = (..., {horizon}, {n}); got {noise.shape}."
            )
        drive = drive + noise
    dtype = jnp.result_type(x0.dtype, drive.dtype)
    batch = jnp.broadcast_shapes(x0.shape[:-1], drive.shape[:-2])
    x0 = jnp.broadcast_to(x0, batch + (n,)).astype(dtype)
    drive = jnp.moveaxis(jnp.broadcast_to(drive, batch + (horizon, n)), -2, 0).astype(dtype)

    def step(state, push):
        following = state @ system.transition.T + push
        return following, following

    _, later = jax.lax.scan(step, x0, drive)
    return jnp.moveaxis(jnp.concatenate([x0[None], later], axis=0), 0, -2)
