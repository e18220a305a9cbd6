r"""A linear-Gaussian control task as a Gymnasium environment (``ebm_ppl/LinearGaussian-v0``).

Dynamics and reward (THEORY §8.1):

* **State and control.** :math:`x\in\mathbb R^n` (``Box``, float64), :math:`u\in\mathbb R^m`
  (unbounded ``Box``, float64).
* **Start.** :math:`x_0\sim\mathcal N(\mu_0, \Sigma_0)` drawn with ``self.np_random`` (a fixed
  start when :math:`\Sigma_0 = 0`), or ``reset(options={"state": x0})``.
* **Step.** :math:`x_{t+1} = Ax_t + Bu_t + w_t`, :math:`w_t = L\varepsilon_t`,
  :math:`\varepsilon_t\sim\mathcal N(0, I_n)` from ``self.np_random``, :math:`LL^\top =
  \Sigma_w` (symmetric square root by eigendecomposition, so singular :math:`\Sigma_w` works); the
  draw is returned as ``info["noise"]``.
* **Reward.** ``step`` pays :math:`-\tfrac12x_t^\top Qx_t - \tfrac12u_t^\top Ru_t` for the state
  the control is applied in; the step that reaches the horizon also pays the terminal
  :math:`-\tfrac12x_T^\top Q_fx_T`. So the return of an episode is exactly :math:`-c(\tau)` of
  :mod:`ebm_ppl.spaces.linear_gaussian`.
* **End.** ``truncated=True`` at step ``horizon``; ``terminated`` is always ``False``. Stepping
  past the horizon raises (call ``reset``).

The defaults are THEORY §8.1's reference case (double integrator, :math:`Q = \mathrm{diag}(1,
0.5)`, :math:`R = 0.3`, :math:`Q_f = \mathrm{diag}(2, 1)`, :math:`x_0 = (1, -0.5)`, :math:`T = 3`,
no noise). :meth:`LinearGaussianEnv.system` and :meth:`LinearGaussianEnv.cost_matrices` hand the
same numbers to the exact layer (:mod:`ebm_ppl.exact.lqr`).
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

from ebm_ppl.spaces.linear_gaussian import (
    CostMatrices,
    LinearGaussianSystem,
    check_cost_matrices,
)

__all__ = ["LINEAR_GAUSSIAN_ID", "LinearGaussianEnv", "register_linear_gaussian"]

LINEAR_GAUSSIAN_ID = "ebm_ppl/LinearGaussian-v0"
"""Gymnasium id registered by ``import ebm_ppl.envs``."""

_DEFAULTS = dict(
    transition=[[1.0, 0.1], [0.0, 1.0]],
    control_matrix=[[0.0], [0.1]],
    state_cost=[[1.0, 0.0], [0.0, 0.5]],
    control_cost=[[0.3]],
    terminal_cost=[[2.0, 0.0], [0.0, 1.0]],
    initial_mean=[1.0, -0.5],
)


def _symmetric_root(cov: np.ndarray) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh(0.5 * (cov + cov.T))
    return vectors * np.sqrt(np.maximum(eigenvalues, 0.0))[None, :]


class LinearGaussianEnv(gymnasium.Env):
    """Linear-Gaussian control task (see the module docstring for the exact dynamics).

    Args:
        transition: :math:`A`, ``(n, n)``.
        control_matrix: :math:`B`, ``(n, m)``.
        noise_cov: :math:`\\Sigma_w`, ``(n, n)`` symmetric PSD (default zeros).
        state_cost: :math:`Q`, ``(n, n)`` symmetric PSD.
        control_cost: :math:`R`, ``(m, m)`` symmetric positive definite.
        terminal_cost: :math:`Q_f`, ``(n, n)`` symmetric PSD.
        initial_mean: :math:`\\mu_0`, ``(n,)``.
        initial_cov: :math:`\\Sigma_0`, ``(n, n)`` symmetric PSD (default zeros).
        horizon: ``T >= 1``. The registered id carries ``max_episode_steps=3`` (the default
            horizon): with ``gymnasium.make(LINEAR_GAUSSIAN_ID, horizon=H)`` pass
            ``max_episode_steps=H`` too, or the ``TimeLimit`` wrapper truncates at 3 before the
            terminal cost is paid.
        render_mode: ``None`` or ``"ansi"``.

    Attributes:
        state: the current state ``(n,)`` (float64).

    Raises:
        ValueError: bad shapes or values (named, see
            :class:`~ebm_ppl.spaces.linear_gaussian.LinearGaussianSystem`).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        transition=None,
        control_matrix=None,
        noise_cov=None,
        state_cost=None,
        control_cost=None,
        terminal_cost=None,
        initial_mean=None,
        initial_cov=None,
        horizon: int = 3,
        render_mode: str | None = None,
    ):
        given = dict(
            transition=transition,
            control_matrix=control_matrix,
            state_cost=state_cost,
            control_cost=control_cost,
            terminal_cost=terminal_cost,
            initial_mean=initial_mean,
        )
        if transition is None and control_matrix is None:  # the reference case
            given = {name: _DEFAULTS[name] if v is None else v for name, v in given.items()}
        for name, value in given.items():
            if value is None and name != "initial_mean":
                raise ValueError(
                    f"`{name}` must be given with a custom `transition`/`control_matrix` (the "
                    "defaults belong to the reference double integrator); got None."
                )
        as_array = lambda value: None if value is None else np.asarray(value, np.float64)
        system = LinearGaussianSystem(
            transition=as_array(given["transition"]),
            control_matrix=as_array(given["control_matrix"]),
            noise_cov=as_array(noise_cov),
            initial_mean=as_array(given["initial_mean"]),
            initial_cov=as_array(initial_cov),
            horizon=horizon,
        )
        cost = check_cost_matrices(
            system,
            CostMatrices(
                as_array(given["state_cost"]),
                as_array(given["control_cost"]),
                as_array(given["terminal_cost"]),
            ),
        )
        if render_mode not in (None, "ansi"):
            raise ValueError(f"`render_mode` must be None or 'ansi'; got {render_mode!r}.")
        self.render_mode = render_mode
        self._system, self._cost = system, cost
        self.horizon = system.horizon
        self.state_dim, self.control_dim = system.state_dim, system.control_dim
        self.transition = np.asarray(system.transition, np.float64)
        self.control_matrix = np.asarray(system.control_matrix, np.float64)
        self.noise_cov = np.asarray(system.noise_cov, np.float64)
        self.initial_mean = np.asarray(system.initial_mean, np.float64)
        self.initial_cov = np.asarray(system.initial_cov, np.float64)
        self.state_cost = np.asarray(cost.state, np.float64)
        self.control_cost = np.asarray(cost.control, np.float64)
        self.terminal_cost = np.asarray(cost.terminal, np.float64)
        self._noise_root = _symmetric_root(self.noise_cov)
        self._initial_root = _symmetric_root(self.initial_cov)
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.state_dim,), np.float64)
        self.action_space = spaces.Box(-np.inf, np.inf, (self.control_dim,), np.float64)
        self.state = self.initial_mean.copy()
        self._elapsed = 0

    # ------------------------------------------------------------------ exact-layer views
    def system(self) -> LinearGaussianSystem:
        """The dynamics as a :class:`~ebm_ppl.spaces.linear_gaussian.LinearGaussianSystem`."""
        return self._system

    def cost_matrices(self) -> CostMatrices:
        """:math:`(Q, R, Q_f)` as :class:`~ebm_ppl.spaces.linear_gaussian.CostMatrices`."""
        return self._cost

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode at :math:`x_0\\sim\\mathcal N(\\mu_0, \\Sigma_0)` (or
        ``options={"state": x0}``).

        Returns:
            ``(observation, info)`` with an empty ``info``.
        """
        super().reset(seed=seed)
        if options is not None and "state" in options:
            state = np.asarray(options["state"], dtype=np.float64)
            if state.shape != (self.state_dim,) or not np.all(np.isfinite(state)):
                raise ValueError(
                    f"`options['state']` must be a finite array of shape (n,) = "
                    f"({self.state_dim},); got {options['state']!r}."
                )
        else:
            eps = self.np_random.standard_normal(self.state_dim)
            state = self.initial_mean + self._initial_root @ eps
        self.state = state.copy()
        self._elapsed = 0
        return self.state.copy(), {}

    def step(self, action):
        """Apply control ``action`` ``(m,)``: pay the running reward, move, add the noise.

        Returns:
            ``(observation, reward, terminated, truncated, info)``; ``reward`` includes the
            terminal term on the last step, ``info["noise"]`` is :math:`w_t`.
        """
        control = np.asarray(action, dtype=np.float64)
        if control.shape != (self.control_dim,) or not np.all(np.isfinite(control)):
            raise ValueError(
                f"`action` must be a finite array of shape (m,) = ({self.control_dim},); got "
                f"{action!r}."
            )
        if self._elapsed >= self.horizon:
            raise RuntimeError(
                f"the episode ended at the horizon T = {self.horizon}; call reset() first."
            )
        state = self.state
        reward = (
            -0.5 * state @ self.state_cost @ state - 0.5 * control @ self.control_cost @ control
        )
        noise = self._noise_root @ self.np_random.standard_normal(self.state_dim)
        self.state = self.transition @ state + self.control_matrix @ control + noise
        self._elapsed += 1
        truncated = self._elapsed >= self.horizon
        if truncated:
            reward -= 0.5 * self.state @ self.terminal_cost @ self.state
        return self.state.copy(), float(reward), False, truncated, {"noise": noise}

    def render(self):
        """Text line (``render_mode="ansi"``): step and state."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; pass render_mode='ansi'.")
            return None
        values = ", ".join(f"{v:.4g}" for v in self.state)
        return f"t={self._elapsed} x=({values})\n"


def register_linear_gaussian() -> None:
    """Register ``ebm_ppl/LinearGaussian-v0`` with Gymnasium (idempotent).

    ``max_episode_steps`` is 3, the default horizon (see :class:`LinearGaussianEnv` for others).
    """
    if LINEAR_GAUSSIAN_ID in gymnasium.registry:
        return
    gymnasium.register(
        id=LINEAR_GAUSSIAN_ID,
        entry_point="ebm_ppl.envs.linear_gaussian:LinearGaussianEnv",
        max_episode_steps=3,
    )
