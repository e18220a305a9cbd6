r"""The quadratic (LQR) cost as a NumPyro model (THEORY §8.1).

Sign convention (DESIGN §3): :math:`p(\tau)\propto b(\tau)e^{-c_\theta(\tau)}`, with

.. math::

    c_\theta(\tau) = \sum_{t=0}^{T-1}\big(\tfrac12x_t^\top Qx_t + \tfrac12u_t^\top Ru_t\big)
                     + \tfrac12x_T^\top Q_fx_T,\qquad
    Q = \mathrm{diag}(e^{\theta_q}),\ R = \mathrm{diag}(e^{\theta_r}),\ Q_f = \kappa Q,

so :math:`Q, Q_f, R` are positive definite for every :math:`\theta = (\theta_q, \theta_r)`, and the
parameters have unconstrained Gaussian priors. The cost is linear in the weights
:math:`w = e^\theta` with the quadratic features

.. math::

    \Phi(\tau) = \Big(\sum_{t<T}x_{t,i}^2 + \kappa x_{T,i}^2\Big)_{i\le n} \oplus
                 \Big(\sum_{t<T}u_{t,j}^2\Big)_{j\le m},\qquad c_\theta = \tfrac12w^\top\Phi,

hence (THEORY §1.5) :math:`\nabla_\theta\log Z = -\tfrac12w\odot\mathbb E_{p_\theta}[\Phi]`,
and :math:`\mathbb E\Phi` needs only the per-step second moments
(:meth:`QuadraticCost.expected_features`).

:class:`ControlSpaceEnergy` views a **deterministic** LQR problem from a fixed start as an energy
model on :math:`\mathbb R^{Tm}` (the stacked controls), so the R^d estimators of
:mod:`ebm_ppl.logz` (model ``"ebm"``) apply to it with a closed-form :math:`\log Z`.

Models are registered pytrees: arrays that are not learned are leaves, settings are static.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ebm_ppl._validation import check_finite, is_host_data
from ebm_ppl.spaces.linear_gaussian import CostMatrices, LinearGaussianSystem, rollout_states

__all__ = ["QuadraticCost", "ControlSpaceEnergy"]


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not float(value) > 0:
        raise ValueError(f"`{name}` must be > 0; got {value!r}.")
    return float(value)


def _dim(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1; got {value!r}.")
    return int(value)


@dataclasses.dataclass(frozen=True)
class QuadraticCost:
    """Diagonal quadratic cost with log-weights (module docstring).

    Params: ``log_q`` :math:`\\theta_q` ``(n,)`` and ``log_r`` :math:`\\theta_r` ``(m,)``, with
    i.i.d. :math:`\\mathcal N(\\mu, \\sigma^2)` priors (``prior_loc`` :math:`\\mu`,
    ``prior_scale`` :math:`\\sigma`).

    Args:
        state_dim: :math:`n` (static).
        control_dim: :math:`m` (static).
        terminal_scale: :math:`\\kappa > 0`, :math:`Q_f = \\kappa Q` (static).
        prior_loc: prior mean :math:`\\mu` of every log-weight.
        prior_scale: prior standard deviation :math:`\\sigma > 0`.
    """

    state_dim: int
    control_dim: int
    terminal_scale: float = 1.0
    prior_loc: float = 0.0
    prior_scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "state_dim", _dim("state_dim", self.state_dim))
        object.__setattr__(self, "control_dim", _dim("control_dim", self.control_dim))
        object.__setattr__(self, "terminal_scale", _positive("terminal_scale", self.terminal_scale))
        check_finite("prior_loc", float(self.prior_loc))
        object.__setattr__(self, "prior_loc", float(self.prior_loc))
        object.__setattr__(self, "prior_scale", _positive("prior_scale", self.prior_scale))

    @property
    def num_params(self) -> int:
        return self.state_dim + self.control_dim

    def _unpack(self, params):
        out = []
        for name, size in (("log_q", self.state_dim), ("log_r", self.control_dim)):
            if name not in params:
                raise ValueError(
                    f"`params` of QuadraticCost must hold 'log_q' (n,) and 'log_r' (m,); got "
                    f"keys {sorted(params)}."
                )
            value = jnp.asarray(params[name])
            if value.shape != (size,):
                raise ValueError(
                    f"`params['{name}']` must have shape ({size},); got {value.shape}."
                )
            out.append(value)
        return out

    def weights(self, params) -> jax.Array:
        """:math:`w = e^\\theta`, ``(n + m,)``: the diagonals of :math:`Q` and :math:`R`."""
        log_q, log_r = self._unpack(params)
        return jnp.exp(jnp.concatenate([log_q, log_r.astype(log_q.dtype)]))

    def matrices(self, params) -> CostMatrices:
        """:class:`~ebm_ppl.spaces.linear_gaussian.CostMatrices` :math:`(Q, R, \\kappa Q)`."""
        log_q, log_r = self._unpack(params)
        state = jnp.diag(jnp.exp(log_q))
        return CostMatrices(state, jnp.diag(jnp.exp(log_r)), self.terminal_scale * state)

    def features_of_squares(self, state_squares, control_squares) -> jax.Array:
        """:math:`\\Phi` from squared coordinates (linear, so it also maps second moments).

        Args:
            state_squares: ``(..., T + 1, n)`` :math:`x_{t,i}^2` (or :math:`\\mathbb E x_{t,i}^2`).
            control_squares: ``(..., T, m)`` :math:`u_{t,j}^2` (or expectations).

        Returns:
            ``(..., n + m)``.
        """
        state_squares = jnp.asarray(state_squares)
        control_squares = jnp.asarray(control_squares)
        if state_squares.shape[-1:] != (self.state_dim,) or state_squares.ndim < 2:
            raise ValueError(
                f"`states` must have shape (..., T + 1, n) with n = {self.state_dim}; got "
                f"{state_squares.shape}."
            )
        horizon = state_squares.shape[-2] - 1
        if control_squares.ndim < 2 or control_squares.shape[-2:] != (horizon, self.control_dim):
            raise ValueError(
                f"`controls` must have shape (..., T, m) = (..., {horizon}, {self.control_dim}) "
                f"to match the states; got {control_squares.shape}."
            )
        state_part = (
            jnp.sum(state_squares[..., :-1, :], axis=-2)
            + self.terminal_scale * state_squares[..., -1, :]
        )
        control_part = jnp.sum(control_squares, axis=-2)
        batch = jnp.broadcast_shapes(state_part.shape[:-1], control_part.shape[:-1])
        return jnp.concatenate(
            [
                jnp.broadcast_to(state_part, batch + state_part.shape[-1:]),
                jnp.broadcast_to(control_part, batch + control_part.shape[-1:]),
            ],
            axis=-1,
        )

    def features(self, states, controls) -> jax.Array:
        """:math:`\\Phi(\\tau)`, ``(..., n + m)``, of states ``(..., T + 1, n)`` and controls
        ``(..., T, m)``."""
        return self.features_of_squares(jnp.square(states), jnp.square(controls))

    def expected_features(self, moments) -> jax.Array:
        """:math:`\\mathbb E\\Phi` from per-step moments (e.g. :func:`ebm_ppl.exact.lqr.moments`).

        Args:
            moments: anything with ``state_mean (T + 1, n)``, ``state_cov (T + 1, n, n)``,
                ``control_mean (T, m)`` and ``control_cov (T, m, m)``.

        Returns:
            ``(n + m,)``.
        """
        state_squares = jnp.square(moments.state_mean) + jnp.diagonal(
            moments.state_cov, axis1=-2, axis2=-1
        )
        control_squares = jnp.square(moments.control_mean) + jnp.diagonal(
            moments.control_cov, axis1=-2, axis2=-1
        )
        return self.features_of_squares(state_squares, control_squares)

    def cost(self, params, states, controls) -> jax.Array:
        """:math:`c_\\theta(\\tau) = \\tfrac12w^\\top\\Phi(\\tau)`, shape ``(...)``."""
        features = self.features(states, controls)
        return 0.5 * features @ self.weights(params).astype(features.dtype)

    def reward(self, params, states, controls) -> jax.Array:
        """:math:`R_\\theta(\\tau) = -c_\\theta(\\tau)`."""
        return -self.cost(params, states, controls)

    def prior_distribution(self, size: int) -> dist.Distribution:
        return dist.Normal(self.prior_loc, self.prior_scale).expand([size]).to_event(1)

    def prior(self) -> dict:
        return {
            "log_q": numpyro.sample("log_q", self.prior_distribution(self.state_dim)),
            "log_r": numpyro.sample("log_r", self.prior_distribution(self.control_dim)),
        }

    def init_params(self) -> dict:
        """The prior's centre."""
        return {
            "log_q": jnp.full((self.state_dim,), self.prior_loc),
            "log_r": jnp.full((self.control_dim,), self.prior_loc),
        }


jax.tree_util.register_dataclass(
    QuadraticCost,
    data_fields=[],
    meta_fields=["state_dim", "control_dim", "terminal_scale", "prior_loc", "prior_scale"],
)


@dataclasses.dataclass(frozen=True)
class ControlSpaceEnergy:
    """A deterministic LQR problem from a fixed start, as an energy on :math:`\\mathbb R^{Tm}`.

    :math:`E_\\theta(z) = c_\\theta(\\tau(z))`, where :math:`\\tau(z)` rolls the stacked controls
    :math:`z = (u_0..u_{T-1})` (time-major, ``(T m,)``) through :math:`x_{t+1} = Ax_t + Bu_t`
    from ``x0``. Then :math:`p_\\theta(z) = e^{-E_\\theta(z)}/Z` is exactly
    :math:`p_\\theta(\\tau\\mid x_0)` and :math:`\\log Z = \\log Z(x_0)` of THEORY §8.1a (closed
    form: :func:`ebm_ppl.exact.lqr.batch_gaussian`). It follows the interface of
    :mod:`ebm_ppl.energy.density` (``energy``, ``prior``, ``init_params``, ``dim``).

    Args:
        system: a :class:`~ebm_ppl.spaces.linear_gaussian.LinearGaussianSystem` with
            :math:`\\Sigma_w = 0` (checked when concrete).
        x0: ``(n,)`` start state.
        cost_model: the :class:`QuadraticCost` (static).
    """

    system: LinearGaussianSystem
    x0: jax.Array
    cost_model: QuadraticCost

    def __post_init__(self):
        if not isinstance(self.cost_model, QuadraticCost):
            raise TypeError(
                f"`cost_model` must be a QuadraticCost; got {type(self.cost_model).__name__}."
            )
        if not (is_host_data(self.x0) and is_host_data(self.system.transition)):
            return  # rebuilt by JAX with tracers or placeholders
        if (self.cost_model.state_dim, self.cost_model.control_dim) != (
            self.system.state_dim,
            self.system.control_dim,
        ):
            raise ValueError(
                f"`cost_model` has (state_dim, control_dim) = ({self.cost_model.state_dim}, "
                f"{self.cost_model.control_dim}); the system has ({self.system.state_dim}, "
                f"{self.system.control_dim})."
            )
        x0 = jnp.asarray(self.x0)
        if x0.shape != (self.system.state_dim,):
            raise ValueError(
                f"`x0` must have shape (n,) = ({self.system.state_dim},); got {x0.shape}."
            )
        check_finite("x0", x0)
        object.__setattr__(self, "x0", x0.astype(self.system.dtype))
        if not self.system.is_deterministic():
            raise ValueError(
                "ControlSpaceEnergy needs a deterministic `system` (noise_cov = 0): with noise the "
                "controls alone do not determine the trajectory; got a nonzero noise_cov."
            )

    @property
    def dim(self) -> int:
        return self.system.horizon * self.system.control_dim

    def trajectory(self, z) -> tuple:
        """``(states (T + 1, n), controls (T, m))`` of stacked controls ``z`` ``(T m,)``."""
        z = jnp.asarray(z)
        if z.shape != (self.dim,):
            raise ValueError(
                f"`x` of ControlSpaceEnergy.energy must be one point of shape (T m,) = "
                f"({self.dim},); got {z.shape} (vmap over points)."
            )
        controls = z.reshape(self.system.horizon, self.system.control_dim)
        return rollout_states(self.system, self.x0, controls), controls

    def energy(self, params, x) -> jax.Array:
        states, controls = self.trajectory(x)
        return self.cost_model.cost(params, states, controls)

    def prior(self) -> dict:
        return self.cost_model.prior()

    def init_params(self) -> dict:
        return self.cost_model.init_params()


jax.tree_util.register_dataclass(
    ControlSpaceEnergy, data_fields=["system", "x0"], meta_fields=["cost_model"]
)
