r"""MountainCar-v0 as a MaxEnt model over discrete action sequences (issue 7, part 4).

**Model.** Given a start state :math:`x_0 = (p_0, v_0)` and actions :math:`a_t \in \{0, 1, 2\}`
(push left, none, right), the states :math:`x_{t+1} = f(x_t, a_t)` follow Gymnasium's
MountainCar-v0 dynamics (:func:`ebm_ppl.envs.classic_control.mountaincar_step`), and

.. math::

    p_\theta(\tau\mid x_0) = \frac{e^{-E_\theta(\tau; x_0)}}{Z_\theta(x_0)},\qquad
    E_\theta(\tau; x_0) = \sum_{t=0}^{L-1} \theta\cdot\phi(x_t, a_t, x_{t+1}),

where :math:`L \le T` is the number of decisions before the goal (:math:`p \ge 0.5, v \ge 0`,
Gymnasium's termination) or ``T``, and the sum over :math:`\tau` runs over **trajectories**
(counting measure): after the goal the episode is over, the remaining actions are the padding
``-1`` and add neither energy nor entropy (THEORY §0.4, termination mask). The features of one
step are

.. math::

    \phi = \Big(\underbrace{\frac{(p_{goal} - p_{t+1})^+}{p_{goal} - p_{min}}}_{\text{distance}},\
    \underbrace{\frac{|v_{t+1}|}{\bar v}}_{\text{speed}},\
    \underbrace{|a_t - 1|}_{\text{push}},\ \underbrace{1}_{\text{step}}\Big) \in [0, 1]^4,

a distance-to-goal cost, a speed term (a negative weight rewards the momentum that the mountain
car needs), an action cost, and Gymnasium's own cost of 1 per step: ``theta = (0, 0, 0, 1)``
makes :math:`E` minus Gymnasium's return (:data:`GYMNASIUM_WEIGHTS`). The step feature is
constant unless trajectories reach the goal, so without termination its weight only shifts
:math:`\log Z` and is not identified (THEORY §1.6). It is the trajectory-level model
conditional on :math:`x_0` (THEORY §1.1), equal to the causal model (deterministic dynamics).

**Parameters.** ``params = {"weights": (4,)}``, prior :math:`\mathcal N(0, \sigma^2 I)`
(``prior_scale`` :math:`\sigma`, default 10).

**Exact answers by enumeration** (tiny horizons only, :math:`T \le`
:data:`MAX_ENUMERATION_HORIZON`): all :math:`3^T` action sequences are rolled out at once
(``vmap`` over sequences, ``lax.scan`` over time). A sequence that reaches the goal after
:math:`L` decisions stands for :math:`3^{T-L}` sequences of one trajectory, so it enters with
log-weight :math:`-E_\theta - (T - L)\log 3`:

.. math::

    \log Z_\theta(x_0) = \operatorname{logsumexp}_{a\in\{0,1,2\}^T}
    \big(-E_\theta(a; x_0) - (T - L(a))\log 3\big).

:func:`log_z_by_enumeration`, :func:`trajectory_log_probs` and the exact sampler
:func:`sample_by_enumeration` use this. Longer horizons have no exact answers here; particle SMC
and the adversarial trainers (softmax policies over the 3 actions) apply to the same energy
through :meth:`MountainCarMaxEnt.step_energy`.

**Start states** follow Gymnasium's reset: :math:`p_0 \sim U[-0.6, -0.4]`, :math:`v_0 = 0`, start
``i`` drawn with ``fold_in(rng_key, i)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp

from ebm_ppl._validation import check_finite, is_concrete
from ebm_ppl.envs.classic_control import (
    ActionSequenceProblem,
    MountainCarParams,
    mountaincar_reset_bounds,
    mountaincar_step,
    mountaincar_terminated,
    rollout,
)
from ebm_ppl.problems import check_num_demos

__all__ = [
    "FEATURE_NAMES",
    "GYMNASIUM_WEIGHTS",
    "HORIZON",
    "MAX_ENUMERATION_HORIZON",
    "NUM_ACTIONS",
    "PAD",
    "TRUE_WEIGHTS",
    "MountainCarMaxEnt",
    "enumerate_action_sequences",
    "log_z_by_enumeration",
    "trajectory_log_probs",
    "sample_by_enumeration",
    "start_states",
    "validate_actions",
    "validate_demos",
    "make_problem",
]

NUM_ACTIONS = 3
"""Push left, no push, push right."""

PAD = -1
"""Action value after termination."""

HORIZON = 8
"""Default horizon (``3^8 = 6561`` sequences: exact log Z and exact demonstrations)."""

MAX_ENUMERATION_HORIZON = 10
"""Largest horizon enumerated (``3^10 = 59049`` sequences)."""

FEATURE_NAMES = ("distance", "speed", "push", "step")

GYMNASIUM_WEIGHTS = (0.0, 0.0, 0.0, 1.0)
"""Weights for which :math:`E` is minus Gymnasium's return (``-1`` per step until the goal)."""

TRUE_WEIGHTS = (10.0, -10.0, 0.5, 1.0)
"""Weights of the synthetic demonstrations: go toward the goal, build speed, push sparingly."""


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f"an int >= {minimum}" if maximum is None else f"an int in [{minimum}, {maximum}]"
        raise ValueError(f"`{name}` must be {bound}; got {value!r}.")
    return int(value)


# ---------------------------------------------------------------------- energy model
@dataclasses.dataclass(frozen=True)
class MountainCarMaxEnt:
    """Energy model of :math:`p_\\theta(\\tau\\mid x_0)` (module docstring), a NumPyro model.

    Methods act on **one** sequence ``actions`` ``(T,)`` (ints, ``-1`` allowed after the goal)
    and one start ``x0`` ``(2,)``; vmap for batches. Floats follow the dtype of ``x0``.

    Args:
        horizon: ``T >= 1`` (static).
        prior_scale: prior standard deviation :math:`\\sigma > 0` of the weights.
        dynamics: MountainCar constants (default Gymnasium's).
    """

    horizon: int = HORIZON
    prior_scale: float = 10.0
    dynamics: MountainCarParams = MountainCarParams()

    site = "weights"
    num_features = len(FEATURE_NAMES)

    def __post_init__(self):
        object.__setattr__(self, "horizon", _check_int("horizon", self.horizon, 1))
        if isinstance(self.prior_scale, bool) or not float(self.prior_scale) > 0:
            raise ValueError(f"`prior_scale` must be > 0; got {self.prior_scale!r}.")
        if not isinstance(self.dynamics, MountainCarParams):
            raise TypeError(
                f"`dynamics` must be a MountainCarParams; got {type(self.dynamics).__name__}."
            )

    def _x0(self, x0) -> jax.Array:
        x0 = jnp.asarray(x0)
        if x0.shape != (2,):
            raise ValueError(
                f"`x0` must be one start state (position, velocity) of shape (2,) (vmap for a "
                f"batch); got shape {x0.shape}."
            )
        if not jnp.issubdtype(x0.dtype, jnp.floating):
            x0 = x0.astype(jnp.result_type(float))
        if is_concrete(x0) and bool(mountaincar_terminated(x0, self.dynamics)):
            raise ValueError(f"`x0` must not be a goal state (p >= 0.5 and v >= 0); got {x0}.")
        return x0

    def _actions(self, actions) -> jax.Array:
        actions = jnp.asarray(actions)
        if actions.shape != (self.horizon,) or not jnp.issubdtype(actions.dtype, jnp.integer):
            raise ValueError(
                f"`actions` must be one integer sequence of shape (T,) = ({self.horizon},) "
                f"(vmap for a batch); got {actions.dtype} array of shape {actions.shape}."
            )
        return actions

    def weights(self, params) -> jax.Array:
        """:math:`\\theta`, shape ``(4,)`` (checked)."""
        if self.site not in params:
            raise ValueError(
                f"`params` must hold '{self.site}' (shape (4,)); got keys {sorted(params)}."
            )
        theta = jnp.asarray(params[self.site])
        if theta.shape != (self.num_features,):
            raise ValueError(
                f"`params['{self.site}']` must have shape (4,) (one per feature "
                f"{FEATURE_NAMES}); got {theta.shape}."
            )
        return theta

    # -- one step (for sequential methods: particle SMC, policies)
    def transition(self, state, action) -> jax.Array:
        """:math:`x_{t+1} = f(x_t, a_t)` (Gymnasium's MountainCar-v0 step)."""
        return mountaincar_step(state, action, self.dynamics)

    def step_features(self, state, action, next_state) -> jax.Array:
        """:math:`\\phi(x_t, a_t, x_{t+1})`, shape ``(..., 4)`` (not masked)."""
        state, next_state = jnp.asarray(state), jnp.asarray(next_state)
        c = self.dynamics
        distance = jnp.maximum(c.goal_position - next_state[..., 0], 0.0) / (
            c.goal_position - c.min_position
        )
        speed = jnp.abs(next_state[..., 1]) / c.max_speed
        push = jnp.abs(jnp.asarray(action) - 1).astype(next_state.dtype)
        step = jnp.ones_like(speed)
        return jnp.stack([distance, speed, push, step], axis=-1)

    def step_energy(self, params, state, action, next_state) -> jax.Array:
        """Energy increment :math:`\\theta\\cdot\\phi` of one step, **0 if ``state`` is a goal
        state** (the mask), shape ``state.shape[:-1]``."""
        features = self.step_features(state, action, next_state)
        alive = ~mountaincar_terminated(state, self.dynamics)
        increment = features @ self.weights(params).astype(features.dtype)
        return jnp.where(alive, increment, jnp.zeros_like(increment))

    # -- whole sequences
    def rollout(self, actions, x0) -> tuple[jax.Array, jax.Array]:
        """States ``(T + 1, 2)`` and the mask ``alive`` ``(T,)``: no goal among
        :math:`x_0,\\dots,x_t` (the episode ends at the first goal; the actions after it, which
        could carry the car out of the goal region, count for nothing)."""
        actions = self._actions(actions)
        x0 = self._x0(x0)
        states = rollout(functools.partial(mountaincar_step, params=self.dynamics), x0, actions)
        goal = mountaincar_terminated(states[:-1], self.dynamics)
        alive = jnp.cumsum(goal.astype(jnp.int32)) == 0
        return states, alive

    def features(self, actions, x0) -> jax.Array:
        """Summed masked features :math:`\\Phi(\\tau; x_0) = \\sum_{t<L}\\phi_t`, ``(4,)``."""
        states, alive = self.rollout(actions, x0)
        features = self.step_features(states[:-1], actions, states[1:])
        return jnp.sum(jnp.where(alive[:, None], features, 0.0), axis=0)

    def num_decisions(self, actions, x0) -> jax.Array:
        """:math:`L`: decisions taken before the goal (``T`` if it is not reached)."""
        _, alive = self.rollout(actions, x0)
        return jnp.sum(alive)

    def energy(self, params, actions, x0) -> jax.Array:
        """:math:`E_\\theta(\\tau; x_0) = \\theta\\cdot\\Phi(\\tau; x_0)` (a scalar)."""
        features = self.features(actions, x0)
        return features @ self.weights(params).astype(features.dtype)

    # -- NumPyro
    def model(self, params, x0):
        """NumPyro model of the sequence: site ``"actions"`` ``(T,)``, uniform over
        :math:`\\{0,1,2\\}^T`, and ``numpyro.factor`` :math:`-E_\\theta + L\\log 3`.

        Its joint log density is :math:`-E_\\theta - (T-L)\\log 3`, so marginalising the
        post-goal actions gives :math:`p_\\theta(\\tau\\mid x_0)`: the normaliser is
        :math:`Z_\\theta(x_0)`. Actions after the goal are then arbitrary (not ``-1``).
        """
        x0 = self._x0(x0)
        base = dist.Categorical(probs=jnp.ones(NUM_ACTIONS, x0.dtype) / NUM_ACTIONS)
        actions = numpyro.sample("actions", base.expand([self.horizon]).to_event(1))
        decisions = self.num_decisions(actions, x0).astype(x0.dtype)
        numpyro.factor("energy", -self.energy(params, actions, x0) + decisions * math.log(3))
        return actions

    def prior(self) -> dict:
        """Sample ``weights ~ N(0, prior_scale^2 I_4)``; returns ``params``."""
        prior = dist.Normal(0.0, self.prior_scale).expand([self.num_features]).to_event(1)
        return {self.site: numpyro.sample(self.site, prior)}

    def init_params(self) -> dict:
        """Zeros (the prior mean)."""
        return {self.site: jnp.zeros((self.num_features,))}


jax.tree_util.register_dataclass(
    MountainCarMaxEnt, data_fields=[], meta_fields=["horizon", "prior_scale", "dynamics"]
)


# ---------------------------------------------------------------------- enumeration
def enumerate_action_sequences(horizon: int) -> jax.Array:
    """All :math:`3^T` sequences, ``(3^T, T)`` int32, in base-3 order (last action fastest)."""
    horizon = _check_int("horizon", horizon, 1, MAX_ENUMERATION_HORIZON)
    codes = jnp.arange(NUM_ACTIONS**horizon, dtype=jnp.int32)
    powers = NUM_ACTIONS ** jnp.arange(horizon - 1, -1, -1, dtype=jnp.int32)
    return (codes[:, None] // powers[None, :]) % NUM_ACTIONS


def _model_for(energy_model, horizon) -> MountainCarMaxEnt:
    if energy_model is None:
        return MountainCarMaxEnt(horizon=horizon)
    if not isinstance(energy_model, MountainCarMaxEnt):
        raise TypeError(
            f"`energy_model` must be a MountainCarMaxEnt; got {type(energy_model).__name__}."
        )
    if energy_model.horizon != horizon:
        raise ValueError(
            f"`horizon` = {horizon} differs from the energy model's horizon {energy_model.horizon}."
        )
    return energy_model


def _enumerated_one(energy_model, params, x0, horizon):
    """Sequences, log-weights :math:`-E - (T - L)\\log 3` and masks for one start (pure)."""
    sequences = enumerate_action_sequences(horizon)

    def one(actions):
        states, alive = energy_model.rollout(actions, x0)
        features = energy_model.step_features(states[:-1], actions, states[1:])
        energy = jnp.where(alive[:, None], features, 0.0).sum(0) @ energy_model.weights(params)
        after_goal = (horizon - jnp.sum(alive)).astype(energy.dtype)
        return -energy - after_goal * math.log(NUM_ACTIONS), alive

    log_weights, alive = jax.vmap(one)(sequences)
    return sequences, log_weights, alive


@functools.partial(jax.jit, static_argnums=(3,))
def _enumerated_log_probs(energy_model, params, starts, horizon):
    """Padded sequences ``(3^T, T)``, log-probs ``(n, 3^T)`` and log Z ``(n,)`` for ``n`` starts."""

    def one(x0):
        sequences, log_weights, alive = _enumerated_one(energy_model, params, x0, horizon)
        log_z = logsumexp(log_weights)
        return jnp.where(alive, sequences, PAD), log_weights - log_z, log_z

    return jax.vmap(one)(starts)


def _check_starts(energy_model: MountainCarMaxEnt, x0) -> tuple[jax.Array, bool]:
    """``x0`` as ``(n, 2)`` floats (and whether it came batched); no goal states."""
    x0 = jnp.asarray(x0)
    if x0.ndim not in (1, 2) or x0.shape[-1] != 2 or (x0.ndim == 2 and x0.shape[0] < 1):
        raise ValueError(
            f"`x0` must be a start state of shape (2,) or a batch of shape (n, 2); got shape "
            f"{x0.shape}."
        )
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        x0 = x0.astype(jnp.result_type(float))
    starts = x0 if x0.ndim == 2 else x0[None]
    if is_concrete(starts):
        goal = np.flatnonzero(np.asarray(mountaincar_terminated(starts, energy_model.dynamics)))
        if goal.size:
            raise ValueError(
                f"`x0` must not hold goal states (p >= 0.5 and v >= 0); got "
                f"{np.asarray(starts[goal[0]])} at index {int(goal[0])}."
            )
    return starts, x0.ndim == 2


def trajectory_log_probs(params, x0, horizon: int, *, energy_model=None):
    """Exact :math:`\\log p_\\theta` of every sequence, by enumeration (``T <= 10``).

    Args:
        params: ``{"weights": (4,)}``.
        x0: start state ``(2,)``, or ``(n, 2)`` start states (none a goal state).
        horizon: ``T`` in ``[1, MAX_ENUMERATION_HORIZON]``.
        energy_model: the model (default ``MountainCarMaxEnt(horizon)``).

    Returns:
        ``(sequences, log_probs, log_z)``: ``sequences`` ``(3^T, T)`` int32 with ``-1`` after
        the goal (duplicates then stand for one trajectory), ``log_probs`` ``(3^T,)`` of the
        *sequences* (:math:`\\log p_\\theta(\\tau) - (T - L)\\log 3`: a trajectory's
        probability is the sum over its duplicates), and the scalar :math:`\\log Z_\\theta(x_0)`;
        each with a leading ``(n,)`` axis for batched ``x0``. Computed in the dtype of ``x0``.
    """
    horizon = _check_int("horizon", horizon, 1, MAX_ENUMERATION_HORIZON)
    energy_model = _model_for(energy_model, horizon)
    starts, batched = _check_starts(energy_model, x0)
    energy_model.weights(params)
    params = {energy_model.site: jnp.asarray(params[energy_model.site], starts.dtype)}
    result = _enumerated_log_probs(energy_model, params, starts, horizon)
    return result if batched else tuple(value[0] for value in result)


def log_z_by_enumeration(params, x0, horizon: int, *, energy_model=None) -> jax.Array:
    """Exact :math:`\\log Z_\\theta(x_0)` by enumerating all :math:`3^T` sequences (module
    docstring; ``T <= 10``): a scalar for ``x0`` ``(2,)``, ``(n,)`` for ``(n, 2)``. Args as
    :func:`trajectory_log_probs`."""
    return trajectory_log_probs(params, x0, horizon, energy_model=energy_model)[2]


def sample_by_enumeration(
    rng_key, params, x0, horizon: int, num_samples: int, *, energy_model=None
) -> jax.Array:
    """Exact i.i.d. draws from :math:`p_\\theta(\\tau\\mid x_0)` (``T <= 10``).

    A sequence is drawn with its enumerated probability and its post-goal actions set to ``-1``
    (this is exact: every trajectory's duplicates share its probability).

    Returns:
        ``(num_samples, T)`` int32 actions.
    """
    num_samples = _check_int("num_samples", num_samples, 1)
    sequences, log_probs, _ = trajectory_log_probs(params, x0, horizon, energy_model=energy_model)
    index = jax.random.categorical(rng_key, log_probs, shape=(num_samples,))
    return sequences[index]


@functools.partial(jax.jit, static_argnums=0)
def _alive_masks(energy_model, demos, starts):
    playable = jnp.where(demos == PAD, 1, demos)
    per_start = jax.vmap(lambda actions, x0: energy_model.rollout(actions, x0)[1], (0, None))
    return jax.vmap(per_start)(playable, starts)


def validate_demos(energy_model: MountainCarMaxEnt, demos, starts, name: str = "demos"):
    """Check concrete trajectories: actions in ``{0, 1, 2}`` before the goal, ``-1`` after.

    Args:
        energy_model: the model (its horizon ``T``).
        demos: ``(n, m, T)`` integer actions, ``m`` per start state.
        starts: ``(n, 2)`` start states.
        name: the argument's name in error messages.

    Returns:
        ``demos`` as an int32 array.

    Raises:
        ValueError: naming ``name``, the start, demo and step, and the value found.
    """
    demos = jnp.asarray(demos)
    starts, _ = _check_starts(energy_model, starts)
    horizon = energy_model.horizon
    if (
        demos.ndim != 3
        or demos.shape[0] != starts.shape[0]
        or demos.shape[2] != horizon
        or not jnp.issubdtype(demos.dtype, jnp.integer)
    ):
        raise ValueError(
            f"`{name}` must be an integer array of shape (n, m, T) = ({starts.shape[0]}, m, "
            f"{horizon}); got {demos.dtype} array of shape {demos.shape}."
        )
    demos = demos.astype(jnp.int32)
    alive = np.asarray(_alive_masks(energy_model, demos, starts))
    values = np.asarray(demos)
    for bad, rule in (
        (alive & ~np.isin(values, (0, 1, 2)), "actions in {0, 1, 2} before the goal"),
        (~alive & (values != PAD), f"{PAD} after the goal is reached"),
    ):
        if bad.any():
            i, j, t = (int(k) for k in np.argwhere(bad)[0])
            raise ValueError(
                f"`{name}` must hold {rule}; got {values[i, j, t]} at start {i}, demo {j}, "
                f"step {t}."
            )
    return demos


def validate_actions(energy_model: MountainCarMaxEnt, actions, x0, name: str = "actions"):
    """:func:`validate_demos` for one sequence ``(T,)`` from one start ``(2,)``."""
    actions = energy_model._actions(actions)
    validate_demos(energy_model, actions[None, None], jnp.asarray(x0)[None], name)
    return actions


# ---------------------------------------------------------------------- problems
def _start_states(rng_key, num_starts: int) -> jax.Array:
    (low, high), (velocity, _) = mountaincar_reset_bounds()

    def one(i):
        position = jax.random.uniform(jax.random.fold_in(rng_key, i), (), minval=low, maxval=high)
        return jnp.stack([position, jnp.full_like(position, velocity)])

    return jax.vmap(one)(jnp.arange(num_starts))


def start_states(rng_key, num_starts: int) -> jax.Array:
    """Gymnasium's reset distribution, ``(num_starts, 2)``: :math:`p_0\\sim U[-0.6,-0.4]`,
    :math:`v_0 = 0`; start ``i`` from ``fold_in(rng_key, i)``."""
    return _start_states(rng_key, _check_int("num_starts", num_starts, 1))


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _exact_problem_arrays(energy_model, true_params, rng_key, num_starts, num_demos):
    """Start states, exact log Z and exact demos in one compiled program (make_problem)."""
    key_starts, key_demos = jax.random.split(rng_key)
    starts = _start_states(key_starts, num_starts)
    params = {"weights": true_params["weights"].astype(starts.dtype)}
    sequences, log_probs, log_z = _enumerated_log_probs(
        energy_model, params, starts, energy_model.horizon
    )
    keys = jax.random.split(key_demos, num_starts)
    draw = lambda key, logits: jax.random.categorical(key, logits, shape=(max(num_demos, 1),))
    index = jax.vmap(draw)(keys, log_probs)  # (n, num_demos)
    demos = jnp.take_along_axis(sequences, index[:, :, None], axis=1)
    return starts, log_z, demos


def make_problem(
    rng_key=None,
    *,
    horizon: int = HORIZON,
    num_demos: int = 20,
    num_starts: int = 10,
    true_params=None,
    prior_scale: float = 10.0,
) -> ActionSequenceProblem:
    """Build the MountainCar-v0 MaxEnt problem (module docstring).

    For ``horizon <= MAX_ENUMERATION_HORIZON`` the demonstrations are **exact** draws
    (:func:`sample_by_enumeration`) and ``log_z`` is exact. Longer horizons have neither:
    they need ``num_demos = 0`` (the problem then serves log Z estimators and samplers at
    ``true_params``).

    Args:
        rng_key: key for the start states and demos (default ``key(0)``; ``key_starts,
            key_demos = split(rng_key)``).
        horizon: ``T >= 1``.
        num_demos: exact demonstrations per start state (0: none).
        num_starts: start states ``n >= 1``.
        true_params: ``{"weights": (4,)}`` (default :data:`TRUE_WEIGHTS`).
        prior_scale: prior standard deviation of the weights.

    Returns:
        An :class:`~ebm_ppl.envs.classic_control.ActionSequenceProblem` named
        ``"mountaincar"``: ``demos`` ``(n, num_demos, T)`` int32 (``-1`` after the goal),
        ``log_z`` ``(n,)``.
    """
    num_demos = check_num_demos(num_demos)
    num_starts = _check_int("num_starts", num_starts, 1)
    energy_model = MountainCarMaxEnt(horizon=horizon, prior_scale=prior_scale)
    if true_params is None:
        true_params = {"weights": jnp.asarray(TRUE_WEIGHTS)}
    energy_model.weights(true_params)
    check_finite("true_params", true_params["weights"])
    true_params = {"weights": jnp.asarray(true_params["weights"])}
    exact = energy_model.horizon <= MAX_ENUMERATION_HORIZON
    if num_demos > 0 and not exact:
        raise ValueError(
            f"`num_demos` must be 0 when `horizon` > {MAX_ENUMERATION_HORIZON} (demonstrations "
            f"are exact draws by enumeration); got num_demos={num_demos}, horizon={horizon}."
        )
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    demos, log_z = None, None
    if exact:
        starts, log_z, demos = _exact_problem_arrays(
            energy_model, true_params, rng_key, num_starts, num_demos
        )
        demos = demos if num_demos > 0 else None
    else:
        starts = start_states(jax.random.split(rng_key)[0], num_starts)
    return ActionSequenceProblem(
        name="mountaincar",
        energy_model=energy_model,
        horizon=energy_model.horizon,
        start_states=starts,
        true_params=true_params,
        demos=demos,
        log_z=log_z,
    )
