r"""Gymnasium's classic-control dynamics (Pendulum-v1, MountainCar-v0) as pure JAX functions.

The equations are re-derived from Gymnasium 1.4's ``PendulumEnv.step`` and
``MountainCarEnv.step`` (``gymnasium/envs/classic_control/{pendulum,mountain_car}.py``) and
checked against the environments' **internal** state ``env.unwrapped.state`` after ``env.step``
to ``1e-12`` on 1,000 random (state, action) pairs each (``tests/envs/test_classic_control.py``).
The observations Gymnasium returns are float32 copies of that state, so they are not the reference.

**Pendulum-v1** (state :math:`x = (\vartheta, \dot\vartheta)`, :math:`\vartheta = 0` upright,
counter-clockwise positive; :math:`g = 10, m = 1, l = 1, \Delta t = 0.05`, torque bound
:math:`\bar u = 2`, speed bound :math:`\bar\omega = 8`). One step with torque :math:`u` is a
semi-implicit Euler step, clipping the torque first and the new velocity before the position
update:

.. math::

    \tilde u &= \operatorname{clip}(u, -\bar u, \bar u),\\
    \dot\vartheta' &= \operatorname{clip}\Big(\dot\vartheta + \Big(\frac{3g}{2l}\sin\vartheta
        + \frac{3}{ml^2}\tilde u\Big)\Delta t,\ -\bar\omega,\ \bar\omega\Big),\\
    \vartheta' &= \vartheta + \dot\vartheta'\,\Delta t .

The angle is **not** wrapped in the state (it grows without bound); Gymnasium wraps it only in
the cost, :math:`c(x, u) = \operatorname{wrap}(\vartheta)^2 + 0.1\,\dot\vartheta^2 + 0.001\,\tilde
u^2` with :math:`\operatorname{wrap}(\vartheta) = ((\vartheta + \pi) \bmod 2\pi) - \pi \in [-\pi,
\pi)` (:func:`angle_normalize`), evaluated at the state *before* the step. The observation is
:math:`(\cos\vartheta, \sin\vartheta, \dot\vartheta)`. Gymnasium's reset draws
:math:`\vartheta \sim U[-\pi, \pi]`, :math:`\dot\vartheta \sim U[-1, 1]`.

**MountainCar-v0** (state :math:`x = (p, v)`, actions :math:`a \in \{0, 1, 2\}` = push left,
no push, push right; force :math:`f = 0.001`, gravity :math:`\gamma_g = 0.0025`, positions
:math:`[-1.2, 0.6]`, speeds :math:`[-0.07, 0.07]`, goal :math:`p \ge 0.5` and :math:`v \ge
v_{goal} = 0`). One step updates the velocity first, then the position with the *new* velocity:

.. math::

    v' &= \operatorname{clip}\big(v + ((a - 1) f - \gamma_g\cos 3p),\ -0.07,\ 0.07\big),\\
    p' &= \operatorname{clip}(p + v',\ -1.2,\ 0.6),\\
    v' &\leftarrow 0 \quad\text{if } p' = -1.2 \text{ and } v' < 0 \ \ \text{(inelastic left wall)}.

The episode terminates on the transition into :math:`p' \ge 0.5,\ v' \ge v_{goal}`
(:func:`mountaincar_terminated`); every step pays reward :math:`-1`. The observation is the state.
Gymnasium's reset draws :math:`p \sim U[-0.6, -0.4]`, :math:`v = 0`. There is no right wall
inelasticity: at :math:`p' = 0.6` the velocity is kept (the goal has terminated the episode by
then whenever :math:`v' \ge 0`).

**Floating point.** The functions compute in the dtype of ``state`` (physical constants are
Python floats, so they adopt it), in the same operation order as Gymnasium, so float64 inputs
reproduce Gymnasium's float64 state to rounding of ``sin``/``cos`` (measured: at most a few
ulp). Gymnasium itself computes in float64 **except** one case found while testing: a
Pendulum action passed as a float32 array (what ``env.action_space.sample()`` returns) makes
NumPy 2 evaluate the torque term :math:`3\tilde u/(ml^2)` in float32 (a Python float times a
float32 scalar stays float32 under NEP 50), so the next velocity differs from the float64
value by up to about :math:`6\cdot 2^{-24}\Delta t\approx 2\cdot10^{-8}`. Pass float64 actions
to compare at ``1e-12``.

Functions act on the last axis of ``state`` (size 2) and broadcast over leading axes; actions
have the batch shape of ``state`` (one scalar torque, or one integer action, per state).
:func:`rollout` runs a step function over an action sequence with :func:`jax.lax.scan`.

References:
    Gymnasium 1.4, ``gymnasium.envs.classic_control.pendulum.PendulumEnv`` and
    ``gymnasium.envs.classic_control.mountain_car.MountainCarEnv`` (``step``, ``reset``,
    ``angle_normalize``); A. W. Moore, *Efficient memory-based learning for robot control*, PhD
    thesis, 1990 (Mountain Car).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl._validation import check_finite, is_host_data

__all__ = [
    "PENDULUM_ID",
    "MOUNTAINCAR_ID",
    "PendulumParams",
    "MountainCarParams",
    "PENDULUM",
    "MOUNTAINCAR",
    "angle_normalize",
    "pendulum_step",
    "pendulum_observation",
    "pendulum_cost",
    "pendulum_reset_bounds",
    "mountaincar_step",
    "mountaincar_observation",
    "mountaincar_terminated",
    "mountaincar_reset_bounds",
    "rollout",
    "ActionSequenceProblem",
]

PENDULUM_ID = "Pendulum-v1"
"""Gymnasium id whose dynamics :func:`pendulum_step` reproduces."""

MOUNTAINCAR_ID = "MountainCar-v0"
"""Gymnasium id whose dynamics :func:`mountaincar_step` reproduces."""


class PendulumParams(NamedTuple):
    """Physical constants of Pendulum-v1 (Gymnasium's defaults; ``g`` is its ``make`` option).

    Attributes:
        g: gravitational acceleration :math:`g` (m s^-2).
        m: mass :math:`m` (kg).
        l: length :math:`l` (m).
        dt: time step :math:`\\Delta t` (s).
        max_speed: velocity bound :math:`\\bar\\omega` (rad s^-1).
        max_torque: torque bound :math:`\\bar u` (N m).
    """

    g: float = 10.0
    m: float = 1.0
    l: float = 1.0
    dt: float = 0.05
    max_speed: float = 8.0
    max_torque: float = 2.0


class MountainCarParams(NamedTuple):
    """Constants of MountainCar-v0 (Gymnasium's defaults; ``goal_velocity`` is its option).

    Attributes:
        min_position: left wall :math:`-1.2`.
        max_position: right bound :math:`0.6`.
        max_speed: velocity bound :math:`0.07`.
        goal_position: goal :math:`0.5`.
        goal_velocity: the goal also needs :math:`v \\ge v_{goal}` (default 0).
        force: push :math:`f = 0.001` per unit of ``action - 1``.
        gravity: :math:`\\gamma_g = 0.0025` (the slope term is :math:`-\\gamma_g\\cos 3p`).
    """

    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.5
    goal_velocity: float = 0.0
    force: float = 0.001
    gravity: float = 0.0025


PENDULUM = PendulumParams()
"""Pendulum-v1's default constants."""

MOUNTAINCAR = MountainCarParams()
"""MountainCar-v0's default constants."""


def _float_state(name: str, state) -> jax.Array:
    state = jnp.asarray(state)
    if not jnp.issubdtype(state.dtype, jnp.floating):
        state = state.astype(jnp.result_type(float))
    if state.ndim < 1 or state.shape[-1] != 2:
        raise ValueError(
            f"`{name}` must have shape (..., 2) (the last axis holds the two state "
            f"variables); got shape {state.shape}."
        )
    return state


def _batch_action(name: str, action, state: jax.Array) -> jax.Array:
    action = jnp.asarray(action)
    if action.shape != state.shape[:-1]:
        raise ValueError(
            f"`{name}` must have the batch shape of `state`, {state.shape[:-1]} (one action per "
            f"state); got shape {action.shape}."
        )
    return action


# ---------------------------------------------------------------------- Pendulum-v1
def angle_normalize(angle: jax.Array) -> jax.Array:
    """Wrap an angle into :math:`[-\\pi, \\pi)`: :math:`((\\vartheta + \\pi) \\bmod 2\\pi) - \\pi`.

    As Gymnasium's ``pendulum.angle_normalize`` (``jnp.mod`` takes the sign of the divisor, like
    Python's ``%``), so upright is 0 and hanging down is :math:`-\\pi`.
    """
    return jnp.mod(angle + math.pi, 2 * math.pi) - math.pi


def pendulum_step(state, action, params: PendulumParams = PENDULUM) -> jax.Array:
    """One Pendulum-v1 step (module docstring: clip torque, update velocity, clip, update angle).

    .. math::

        \\dot\\vartheta' = \\operatorname{clip}\\big(\\dot\\vartheta
        + (\\tfrac{3g}{2l}\\sin\\vartheta + \\tfrac{3}{ml^2}\\operatorname{clip}(u, \\pm\\bar u))
        \\Delta t, \\pm\\bar\\omega\\big),\\qquad
        \\vartheta' = \\vartheta + \\dot\\vartheta'\\Delta t.

    Args:
        state: ``(..., 2)`` states :math:`(\\vartheta, \\dot\\vartheta)` (angle unwrapped).
        action: torques :math:`u`, shape ``state.shape[:-1]`` (Gymnasium's action is ``(1,)``;
            here the torque is a scalar per state). Clipped to :math:`[-\\bar u, \\bar u]`.
        params: physical constants (default Gymnasium's).

    Returns:
        The next states, shape and dtype of ``state``.
    """
    state = _float_state("state", state)
    torque = _batch_action("action", action, state).astype(state.dtype)
    angle, velocity = state[..., 0], state[..., 1]
    torque = jnp.clip(torque, -params.max_torque, params.max_torque)
    # Gymnasium: newthdot = thdot + (3 * g / (2 * l) * sin(th) + 3.0 / (m * l**2) * u) * dt
    acceleration = (
        3 * params.g / (2 * params.l) * jnp.sin(angle) + 3.0 / (params.m * params.l**2) * torque
    )
    velocity = jnp.clip(velocity + acceleration * params.dt, -params.max_speed, params.max_speed)
    angle = angle + velocity * params.dt
    return jnp.stack([angle, velocity], axis=-1)


def pendulum_observation(state) -> jax.Array:
    """Pendulum-v1's observation :math:`(\\cos\\vartheta, \\sin\\vartheta, \\dot\\vartheta)`.

    Args:
        state: ``(..., 2)`` states.

    Returns:
        ``(..., 3)`` observations in the dtype of ``state`` (Gymnasium casts them to float32).
    """
    state = _float_state("state", state)
    angle, velocity = state[..., 0], state[..., 1]
    return jnp.stack([jnp.cos(angle), jnp.sin(angle), velocity], axis=-1)


def pendulum_cost(state, action, params: PendulumParams = PENDULUM) -> jax.Array:
    """Pendulum-v1's cost of taking ``action`` in ``state`` (its reward is the negative).

    .. math::

        c(x, u) = \\operatorname{wrap}(\\vartheta)^2 + 0.1\\,\\dot\\vartheta^2
        + 0.001\\operatorname{clip}(u, \\pm\\bar u)^2 .

    Args:
        state: ``(..., 2)`` states before the step.
        action: torques, shape ``state.shape[:-1]``.
        params: physical constants (only ``max_torque`` is used).

    Returns:
        Costs of shape ``state.shape[:-1]``.
    """
    state = _float_state("state", state)
    torque = _batch_action("action", action, state).astype(state.dtype)
    torque = jnp.clip(torque, -params.max_torque, params.max_torque)
    angle, velocity = state[..., 0], state[..., 1]
    return angle_normalize(angle) ** 2 + 0.1 * velocity**2 + 0.001 * torque**2


def pendulum_reset_bounds() -> tuple[tuple[float, float], tuple[float, float]]:
    """Gymnasium's default reset box ``((-pi, pi), (-1, 1))`` for (angle, velocity), uniform."""
    return (-math.pi, math.pi), (-1.0, 1.0)


# ---------------------------------------------------------------------- MountainCar-v0
def mountaincar_step(state, action, params: MountainCarParams = MOUNTAINCAR) -> jax.Array:
    """One MountainCar-v0 step (module docstring).

    .. math::

        v' = \\operatorname{clip}(v + ((a-1)f - \\gamma_g\\cos 3p), \\pm 0.07),\\quad
        p' = \\operatorname{clip}(p + v', [-1.2, 0.6]),\\quad
        v' \\leftarrow 0 \\text{ if } p' = -1.2 \\wedge v' < 0 .

    The step does not stop at the goal (Gymnasium's ``step`` does not either); use
    :func:`mountaincar_terminated` to mask what follows.

    Args:
        state: ``(..., 2)`` states :math:`(p, v)`.
        action: integer actions in ``{0, 1, 2}`` (left, none, right), shape
            ``state.shape[:-1]``. Not checked inside (jit-safe); other values extrapolate the
            force linearly.
        params: constants (default Gymnasium's).

    Returns:
        The next states, shape and dtype of ``state``.
    """
    state = _float_state("state", state)
    action = _batch_action("action", action, state)
    position, velocity = state[..., 0], state[..., 1]
    push = (action - 1).astype(state.dtype) * params.force
    # Gymnasium: velocity += (action - 1) * force + cos(3 * position) * (-gravity)
    velocity = velocity + (push + jnp.cos(3 * position) * (-params.gravity))
    velocity = jnp.clip(velocity, -params.max_speed, params.max_speed)
    position = jnp.clip(position + velocity, params.min_position, params.max_position)
    at_left_wall = (position == params.min_position) & (velocity < 0)
    velocity = jnp.where(at_left_wall, jnp.zeros_like(velocity), velocity)
    return jnp.stack([position, velocity], axis=-1)


def mountaincar_terminated(state, params: MountainCarParams = MOUNTAINCAR) -> jax.Array:
    """Whether a state is a goal state: :math:`p \\ge 0.5 \\wedge v \\ge v_{goal}`.

    Gymnasium flags termination on the transition *into* such a state.

    Args:
        state: ``(..., 2)`` states.
        params: constants.

    Returns:
        Booleans of shape ``state.shape[:-1]``.
    """
    state = _float_state("state", state)
    return (state[..., 0] >= params.goal_position) & (state[..., 1] >= params.goal_velocity)


def mountaincar_observation(state) -> jax.Array:
    """MountainCar-v0's observation: the state :math:`(p, v)` (Gymnasium casts it to float32)."""
    return _float_state("state", state)


def mountaincar_reset_bounds() -> tuple[tuple[float, float], tuple[float, float]]:
    """Gymnasium's default reset box ``((-0.6, -0.4), (0, 0))``: position uniform, velocity 0."""
    return (-0.6, -0.4), (0.0, 0.0)


# ---------------------------------------------------------------------- rollouts
def rollout(step: Callable, x0, actions) -> jax.Array:
    """Roll a deterministic step function over an action sequence with :func:`jax.lax.scan`.

    .. math::

        x_{t+1} = f(x_t, a_t),\\qquad t = 0, \\dots, T-1 .

    Trajectories carry :math:`x_0 .. x_T` (THEORY §0.4: ``T`` decisions, ``T + 1`` states).

    Args:
        step: ``step(state, action) -> next_state`` for one state ``(d,)`` and one action ``()``
            (e.g. :func:`pendulum_step`, :func:`mountaincar_step`, or a ``functools.partial``
            with other constants).
        x0: initial state ``(d,)``; vmap for a batch.
        actions: ``(T,)`` actions (``T >= 1``).

    Returns:
        States ``(T + 1, d)``, ``x0`` first, in the dtype of ``x0`` (floating).
    """
    x0 = jnp.asarray(x0)
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        x0 = x0.astype(jnp.result_type(float))
    actions = jnp.asarray(actions)
    if x0.ndim != 1:
        raise ValueError(f"`x0` must have shape (d,) (vmap for a batch); got shape {x0.shape}.")
    if actions.ndim != 1 or actions.shape[0] < 1:
        raise ValueError(
            f"`actions` must have shape (T,) with T >= 1 (vmap for a batch); got shape "
            f"{actions.shape}."
        )

    def body(state, action):
        next_state = step(state, action)
        return next_state, next_state

    _, states = jax.lax.scan(body, x0, actions)
    return jnp.concatenate([x0[None], states], axis=0)


# ---------------------------------------------------------------------- problems
@dataclasses.dataclass(frozen=True)
class ActionSequenceProblem:
    """A MaxEnt problem over action sequences of a deterministic control system, given x0.

    The model (THEORY §1.1, conditional form; ``model = "trajectory"``) is

    .. math::

        p_\\theta(a_{0:T-1}\\mid x_0) = \\frac{b(a)\\,e^{-E_\\theta(a; x_0)}}{Z_\\theta(x_0)},

    with a base measure :math:`b` on action sequences stated by the energy model (uniform on
    :math:`[-2, 2]^T` for the pendulum, counting measure on trajectories for the mountain car) and
    one :math:`\\log Z` per start state. With deterministic dynamics it is also the maximum
    causal entropy model (THEORY §1.3).

    Attributes:
        name: registry name (``"pendulum"``, ``"mountaincar"``).
        energy_model: the model of :math:`E_\\theta` with ``energy(params, actions, x0)``,
            ``features(actions, x0)``, ``prior()``, ``init_params()`` (see ``models/``).
        horizon: ``T`` decisions (static).
        start_states: ``(n, d)`` start states :math:`x_0`.
        true_params: parameters that generated ``demos`` (synthetic problems).
        demos: ``(n, m, T)`` action sequences, ``m`` per start state (float torques or int
            actions; ``-1`` pads after termination), or ``None``.
        log_z: ``(n,)`` exact :math:`\\log Z_\\theta(x_0)` at ``true_params`` where known, else
            ``None``.
        demo_info: diagnostics of how ``demos`` were drawn (a dict of arrays: sampler settings,
            R-hat, ESS), or ``None`` for exact draws.
        model: always ``"trajectory"`` (static).
    """

    name: str
    energy_model: Any
    horizon: int
    start_states: Any
    true_params: Any = None
    demos: Any = None
    log_z: Any = None
    demo_info: Any = None
    model: str = "trajectory"

    def __post_init__(self):
        if self.model != "trajectory":
            raise ValueError(f"`model` must be 'trajectory'; got {self.model!r}.")
        if (
            isinstance(self.horizon, bool)
            or not isinstance(self.horizon, (int, np.integer))
            or self.horizon < 1
        ):
            raise ValueError(f"`horizon` must be an int >= 1; got {self.horizon!r}.")
        object.__setattr__(self, "horizon", int(self.horizon))
        # JAX rebuilds this pytree with placeholder leaves: only check user data (host arrays)
        if is_host_data(self.start_states):
            starts = jnp.asarray(self.start_states)
            if starts.ndim != 2 or starts.shape[0] < 1:
                raise ValueError(
                    f"`start_states` must have shape (n, d) with n >= 1; got {starts.shape}."
                )
            check_finite("start_states", starts)
            object.__setattr__(self, "start_states", starts)
        if is_host_data(self.demos) and is_host_data(self.start_states):
            demos = jnp.asarray(self.demos)
            expected = (self.start_states.shape[0], None, self.horizon)
            if demos.ndim != 3 or demos.shape[0] != expected[0] or demos.shape[2] != self.horizon:
                raise ValueError(
                    f"`demos` must have shape (n, m, T) = ({expected[0]}, m, {self.horizon}); "
                    f"got {demos.shape}."
                )
            check_finite("demos", demos)
            object.__setattr__(self, "demos", demos)
        if is_host_data(self.log_z) and is_host_data(self.start_states):
            log_z = jnp.asarray(self.log_z)
            if log_z.shape != (self.start_states.shape[0],):
                raise ValueError(
                    f"`log_z` must have shape (n,) = ({self.start_states.shape[0]},); "
                    f"got {log_z.shape}."
                )
            object.__setattr__(self, "log_z", log_z)

    @property
    def num_starts(self) -> int:
        """Number of start states ``n``."""
        return int(self.start_states.shape[0])

    def replace(self, **changes) -> ActionSequenceProblem:
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    ActionSequenceProblem,
    data_fields=["energy_model", "start_states", "true_params", "demos", "log_z", "demo_info"],
    meta_fields=["name", "horizon", "model"],
)
