r""":math:`\log Z` of action-sequence problems, one per start state: glue for the R^d estimators,
and particle SMC over time for discrete actions (issue 7).

An :class:`~ebm_ppl.envs.classic_control.ActionSequenceProblem` is, at each start state
:math:`x_0`, the trajectory-level MaxEnt model (THEORY §1.1, conditional form)
:math:`p_\theta(a\mid x_0) = b(a)e^{-E_\theta(a; x_0)}/Z_\theta(x_0)` over action sequences, with a
base measure :math:`b` stated by its energy model. This module views it at one start state as an
energy on a fixed space (:func:`start_problem`, a :class:`~ebm_ppl.problems.DensityProblem`), so
the existing estimators run unchanged, and :func:`per_start` maps any of them over the start
states: ``log_z`` of shape ``(n,)``, model ``"trajectory"``.

**Continuous, bounded actions** (Pendulum: :math:`u\in[-\bar u,\bar u]^T`, :math:`b` the uniform
probability density :math:`(2\bar u)^{-T}`). The view lives in :math:`z\in\mathbb R^T` with
:math:`u = \bar u\tanh z` (the tanh reparameterisation, Jacobian included):

.. math::

    U_\theta(z; x_0) = E_\theta(\bar u\tanh z; x_0) - \sum_t\log\big(\tfrac12\operatorname{sech}^2
    z_t\big),\qquad \int_{\mathbb R^T}e^{-U_\theta(z; x_0)}\,dz = Z_\theta(x_0),

the energy model's ``unconstrained_energy(params, z, x0)``. Every R^d estimator applies:
``importance``, ``psis``, ``elbo``/``iwae``, ``gcl_mixture`` (demonstrations mapped to :math:`z`),
``eubo`` (with an exact sampler), ``ais``, ``tempered_smc``. A proposal or reference **on the box**
is mapped to :math:`z` by :func:`box_proposal` (its density picks up the same Jacobian), so "a
proposal on the box" and "the tanh reparameterisation" are one thing here: the weights
:math:`e^{-U}/q_z = b\,e^{-E}/q_u` are the same. :func:`box_proposal` with no ``base`` is the
base measure itself (:math:`z_t\sim\mathrm{Logistic}(0, \tfrac12)`: importance sampling from the
prior, tempering from the prior); :func:`moment_matched_box_proposal` fits an independent truncated
normal to the demonstrations' torques (fixed, so the estimators stay smooth in :math:`\theta`).

**Discrete actions** (MountainCar: :math:`a\in\{0..A-1\}^T`, :math:`b` counting measure on
trajectories, ``-1`` padding after termination). A trajectory that ends after :math:`L` decisions
stands for :math:`A^{T-L}` sequences, so the view's energy is
:math:`E_\theta(a; x_0) + (T - L(a))\log A` and :math:`\sum_{a\in\{0..A-1\}^T}e^{-\cdot} =
Z_\theta(x_0)` (counting measure on sequences; draws are cast to the parameters' float dtype by
the estimators and back to integers here). The importance family applies with a
:func:`sequence_proposal` (default uniform: :math:`\log w = -E_\theta + L\log A`); ``ais`` and
``tempered_smc`` need gradients and are refused. :func:`sequence_smc` is particle SMC over time on
the true dynamics, the continuous-state counterpart of :func:`ebm_ppl.logz.smc.particle_smc`.

Energy models are duck-typed (see ``models/pendulum.py`` and ``models/mountaincar.py``):
continuous ones have ``unconstrained_energy(params, z, x0)``, ``actions_from_unconstrained``,
``unconstrained_from_actions`` and ``dynamics.max_torque``; discrete ones have
``energy(params, actions, x0)``, ``num_decisions(actions, x0)``, ``transition(state, action)`` and
``step_energy(params, state, action, next_state)`` (0 from a terminal state), plus optionally
``num_actions`` and ``terminated(state)``: MountainCar-v0's are used when the model's ``dynamics``
are :class:`~ebm_ppl.envs.classic_control.MountainCarParams`.

Energy evaluations are counted per step (a whole sequence costs ``T``), like trajectories in
:class:`~ebm_ppl.logz.base.LogZResult`.

References: THEORY §1.1 (conditional model), §4 (dynamics cancel), §6 (Jensen bias), §7.4
(fixed random numbers, smoothness), §7.6 (k-hat); DESIGN §3 (interface).
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro.distributions import constraints

from ebm_ppl._validation import check_choice, is_concrete
from ebm_ppl.envs.classic_control import (
    ActionSequenceProblem,
    MountainCarParams,
    mountaincar_terminated,
)
from ebm_ppl.logz.base import LogZEstimator, LogZResult
from ebm_ppl.logz.smc import RESAMPLE, SCHEMES, _inverse_cdf, _log_ess, _resample_indices
from ebm_ppl.problems import DensityProblem

__all__ = [
    "SequenceProposal",
    "SequenceSMCInfo",
    "box_proposal",
    "moment_matched_box_proposal",
    "per_start",
    "sequence_proposal",
    "sequence_smc",
    "start_data",
    "start_problem",
]

MOUNTAINCAR_NUM_ACTIONS = 3
"""MountainCar-v0's actions (push left, none, right): the default for models with its dynamics."""

_GRADIENT_ESTIMATORS = ("ais", "tempered_smc")


# ---------------------------------------------------------------------- kinds of problem
def _is_continuous(energy_model) -> bool:
    return callable(getattr(energy_model, "unconstrained_energy", None))


def _is_discrete(energy_model) -> bool:
    return all(
        callable(getattr(energy_model, name, None))
        for name in ("energy", "num_decisions", "transition", "step_energy")
    )


def _check_problem(problem) -> None:
    if not isinstance(problem, ActionSequenceProblem):
        raise TypeError(
            "this estimator serves action-sequence problems (an ActionSequenceProblem with one "
            f"log Z per start state); got {type(problem).__name__}."
        )
    model = problem.energy_model
    if not (_is_continuous(model) or _is_discrete(model)):
        raise TypeError(
            "the energy model must have `unconstrained_energy(params, z, x0)` (continuous "
            "actions) or `energy`, `num_decisions`, `transition` and `step_energy` (discrete "
            f"actions); got {type(model).__name__}."
        )


def _num_actions(energy_model, num_actions) -> int:
    if num_actions is None:
        num_actions = getattr(energy_model, "num_actions", None)
    if num_actions is None and isinstance(
        getattr(energy_model, "dynamics", None), MountainCarParams
    ):
        num_actions = MOUNTAINCAR_NUM_ACTIONS
    if (
        isinstance(num_actions, bool)
        or not isinstance(num_actions, (int, np.integer))
        or num_actions < 2
    ):
        raise ValueError(
            "`num_actions` must be an int >= 2 (pass it, or give the energy model a "
            f"`num_actions` attribute); got {num_actions!r}."
        )
    return int(num_actions)


def _terminated_fn(energy_model):
    """``terminated(states (..., d)) -> bool (...)``: the model's, MountainCar-v0's, or never."""
    fn = getattr(energy_model, "terminated", None)
    if callable(fn):
        return fn
    dynamics = getattr(energy_model, "dynamics", None)
    if isinstance(dynamics, MountainCarParams):
        return partial(mountaincar_terminated, params=dynamics)
    return lambda states: jnp.zeros(jnp.shape(states)[:-1], bool)


# ---------------------------------------------------------------------- per-start views
@dataclasses.dataclass(frozen=True)
class _ContinuousStartEnergy:
    """:math:`U_\\theta(z; x_0)` at one start: an energy on :math:`\\mathbb R^T` (module doc)."""

    model: Any
    x0: jax.Array

    @property
    def dim(self) -> int:
        return self.model.horizon

    def energy(self, params, z) -> jax.Array:
        return self.model.unconstrained_energy(params, z, self.x0)

    def prior(self) -> dict:
        return self.model.prior()

    def init_params(self) -> dict:
        return self.model.init_params()


@dataclasses.dataclass(frozen=True)
class _DiscreteStartEnergy:
    """:math:`E_\\theta(a; x_0) + (T - L(a))\\log A` at one start, on integer sequences stored
    as floats (counting measure on :math:`\\{0..A-1\\}^T`; module doc)."""

    model: Any
    x0: jax.Array
    num_actions: int

    @property
    def dim(self) -> int:
        return self.model.horizon

    def energy(self, params, x) -> jax.Array:
        actions = jnp.asarray(x).astype(jnp.int32)
        energy = self.model.energy(params, actions, self.x0)
        after = self.model.horizon - self.model.num_decisions(actions, self.x0)
        return energy + after.astype(energy.dtype) * math.log(self.num_actions)

    def prior(self) -> dict:
        return self.model.prior()

    def init_params(self) -> dict:
        return self.model.init_params()


jax.tree_util.register_dataclass(_ContinuousStartEnergy, data_fields=["x0"], meta_fields=["model"])
jax.tree_util.register_dataclass(
    _DiscreteStartEnergy, data_fields=["x0"], meta_fields=["model", "num_actions"]
)


def _view_energy(problem, x0, num_actions):
    model = problem.energy_model
    if _is_continuous(model):
        return _ContinuousStartEnergy(model, x0)
    return _DiscreteStartEnergy(model, x0, _num_actions(model, num_actions))


def start_data(problem: ActionSequenceProblem, actions) -> jax.Array:
    """Action sequences ``(..., T)`` as points of the per-start view (:func:`start_problem`).

    Continuous: :math:`z = \\operatorname{artanh}(u/\\bar u)` (infinite at the bounds).
    Discrete: the padding ``-1`` after termination becomes action 0 (any representative of the
    trajectory's :math:`A^{T-L}` sequences has the view's energy), as floats.
    """
    _check_problem(problem)
    actions = jnp.asarray(actions)
    if actions.ndim < 1 or actions.shape[-1] != problem.horizon:
        raise ValueError(
            f"`actions` must have shape (..., T) = (..., {problem.horizon}); got {actions.shape}."
        )
    model = problem.energy_model
    if _is_continuous(model):
        if not jnp.issubdtype(actions.dtype, jnp.floating):
            actions = actions.astype(jnp.result_type(float))
        return model.unconstrained_from_actions(actions)
    padded = jnp.where(actions < 0, 0, actions)
    return padded.astype(jnp.result_type(float))


def start_problem(
    problem: ActionSequenceProblem,
    index: int,
    *,
    params=None,
    data=None,
    num_actions: int | None = None,
) -> DensityProblem:
    """The model at start state ``index`` as a :class:`~ebm_ppl.problems.DensityProblem`.

    Its energy is :math:`U_\\theta(z; x_0)` on :math:`\\mathbb R^T` (continuous actions) or
    :math:`E_\\theta + (T - L)\\log A` on :math:`\\{0..A-1\\}^T` (discrete; module docstring), so
    that :math:`\\log\\int e^{-\\text{energy}} = \\log Z_\\theta(x_0)` and the ``"ebm"``
    estimators apply (for discrete actions: the importance family only).

    Args:
        problem: the action-sequence problem.
        index: which start state, ``0 <= index < n``.
        params: ``true_params`` of the view (default the problem's).
        data: ``(m, T)`` action sequences at this start, mapped by :func:`start_data` (default
            the problem's demonstrations at ``index``, if any).
        num_actions: ``A`` for discrete actions (default: the model's, or 3 for MountainCar).

    Returns:
        A ``DensityProblem`` with ``dim = T``; ``log_z`` from ``problem.log_z[index]`` when the
        problem has it and ``params`` is ``None``.
    """
    _check_problem(problem)
    n = problem.num_starts
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise ValueError(f"`index` must be an int in [0, {n}); got {index!r}.")
    if data is None and problem.demos is not None:
        data = problem.demos[index]
    if data is not None:
        data = start_data(problem, data)
    log_z = None
    if params is None:
        params = problem.true_params
        if problem.log_z is not None:
            log_z = problem.log_z[index]
    energy = _view_energy(problem, problem.start_states[index], num_actions)
    return DensityProblem(
        name=f"{problem.name}[{index}]",
        energy_model=energy,
        dim=problem.horizon,
        true_params=params,
        data=data,
        log_z=log_z,
    )


# ---------------------------------------------------------------------- proposals
def box_proposal(horizon: int, bound: float, base=None) -> dist.Distribution:
    """A proposal on the box :math:`(-\\bar u, \\bar u)^T` as a distribution of
    :math:`z = \\operatorname{artanh}(u/\\bar u)` (event shape ``(T,)``).

    With ``base`` ``None`` it is the base measure itself, :math:`u` uniform, i.e. :math:`z_t`
    i.i.d. :math:`\\mathrm{Logistic}(0, \\tfrac12)` (density :math:`\\tfrac12\\operatorname{sech}^2
    z`); importance weights are then :math:`e^{-E_\\theta(u)}` (sampling from the prior). Otherwise
    ``base`` is a univariate distribution on :math:`(-\\bar u, \\bar u)` (batch shape ``()`` or
    ``(T,)``) applied independently per step, and :math:`\\log q_z(z) = \\log q_u(u) +
    \\log(\\bar u\\operatorname{sech}^2 z)` (NumPyro's transforms
    :math:`u\\mapsto\\tfrac12 + \\tfrac u{2\\bar u}`, logit, halving).

    Args:
        horizon: ``T``.
        bound: :math:`\\bar u > 0`.
        base: ``None`` or a NumPyro distribution on :math:`(-\\bar u, \\bar u)`.
    """
    horizon = _positive_int("horizon", horizon)
    if isinstance(bound, bool) or not float(bound) > 0:
        raise ValueError(f"`bound` must be > 0; got {bound!r}.")
    bound = float(bound)
    if base is None:
        return dist.Logistic(jnp.zeros((horizon,)), 0.5).to_event(1)
    if not isinstance(base, dist.Distribution):
        raise TypeError(
            f"`base` must be None or a NumPyro distribution; got {type(base).__name__}."
        )
    if tuple(base.event_shape) != () or tuple(base.batch_shape) not in ((), (horizon,)):
        raise ValueError(
            f"`base` must be univariate with batch shape () or (T,) = ({horizon},); got batch "
            f"shape {tuple(base.batch_shape)}, event shape {tuple(base.event_shape)}."
        )
    base = base.expand((horizon,))
    transforms = [
        dist.transforms.AffineTransform(0.5, 0.5 / bound),
        dist.transforms.SigmoidTransform().inv,
        dist.transforms.AffineTransform(0.0, 0.5),
    ]
    return dist.TransformedDistribution(base, transforms).to_event(1)


def _truncated_normal_second_moment(scale: float, bound: float) -> float:
    """:math:`\\mathbb E[u^2]` of :math:`\\mathcal N(0, \\sigma^2)` truncated to
    :math:`[-\\bar u, \\bar u]`: :math:`\\sigma^2(1 - 2a\\varphi(a)/(2\\Phi(a) - 1))`,
    :math:`a = \\bar u/\\sigma`."""
    a = bound / scale
    mass = math.erf(a / math.sqrt(2))
    density = math.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    return scale**2 * (1 - 2 * a * density / mass)


def moment_matched_box_proposal(actions, bound: float, *, horizon: int | None = None):
    """:func:`box_proposal` with an independent truncated normal :math:`\\mathcal N(0, \\sigma^2)`
    on :math:`[-\\bar u, \\bar u]` per step, :math:`\\sigma` chosen so that its
    :math:`\\mathbb E[u^2]` equals the mean of ``actions**2`` (host-side bisection).

    Fitted once to demonstrations, it does not depend on :math:`\\theta`, so importance sampling and
    IWAE under it stay smooth in :math:`\\theta` with the key fixed (plug-in likelihoods,
    THEORY §7.4). A mean square at or above :math:`\\bar u^2/3` (the uniform's) gives the base
    measure (:func:`box_proposal` without ``base``).

    Args:
        actions: ``(..., T)`` torques in :math:`[-\\bar u, \\bar u]` (concrete).
        bound: :math:`\\bar u`.
        horizon: ``T`` (default ``actions.shape[-1]``).

    Returns:
        The proposal on :math:`z`, event shape ``(T,)``.
    """
    values = np.asarray(actions, dtype=np.float64)
    if values.ndim < 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(
            f"`actions` must be a non-empty finite array (..., T); got shape {values.shape}."
        )
    bound = float(bound)
    if np.any(np.abs(values) > bound):
        raise ValueError(
            f"`actions` must lie in [-{bound}, {bound}]; got max |u| = {np.abs(values).max()}."
        )
    horizon = values.shape[-1] if horizon is None else horizon
    target = float(np.mean(values**2))
    if not target > 0:
        raise ValueError("`actions` must not all be 0 (the mean square fixes the scale).")
    if target >= bound**2 / 3:
        return box_proposal(horizon, bound)
    low, high = math.log(1e-6 * bound), math.log(1e3 * bound)
    for _ in range(200):  # E[u^2] increases with sigma
        mid = 0.5 * (low + high)
        if _truncated_normal_second_moment(math.exp(mid), bound) < target:
            low = mid
        else:
            high = mid
    scale = math.exp(0.5 * (low + high))
    base = dist.TruncatedNormal(0.0, scale, low=-bound, high=bound)
    return box_proposal(horizon, bound, base)


class SequenceProposal(dist.Distribution):
    """Independent categorical actions per step, :math:`q(a) = \\prod_t\\pi_t(a_t)`, over
    :math:`\\{0..A-1\\}^T`; ``log_prob`` takes integer **or float** sequences (the importance
    estimators cast their draws to the parameters' float dtype).

    Args:
        log_probs: ``(T, A)`` normalised log-probabilities.
    """

    arg_constraints = {"log_probs": constraints.real}
    pytree_data_fields = ("log_probs",)

    def __init__(self, log_probs, *, validate_args=None):
        self.log_probs = jnp.asarray(log_probs)
        horizon, num_actions = self.log_probs.shape
        self._support = constraints.independent(constraints.integer_interval(0, num_actions - 1), 1)
        super().__init__(batch_shape=(), event_shape=(horizon,), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return self._support

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.event_shape
        return jax.random.categorical(key, self.log_probs, shape=shape).astype(jnp.int32)

    def log_prob(self, value):
        index = jnp.asarray(value).astype(jnp.int32)
        steps = jnp.arange(self.event_shape[0])
        return jnp.sum(self.log_probs[steps, index], axis=-1)


def _log_policy(log_probs, horizon: int, num_actions: int, dtype):
    """``(T, A)`` log-probabilities from ``None`` (uniform), ``(A,)`` or ``(T, A)`` (checked)."""
    if log_probs is None:
        return jnp.full((horizon, num_actions), -math.log(num_actions), dtype)
    log_probs = jnp.asarray(log_probs, dtype)
    if log_probs.shape == (num_actions,):
        log_probs = jnp.broadcast_to(log_probs, (horizon, num_actions))
    if log_probs.shape != (horizon, num_actions):
        raise ValueError(
            f"`log_probs` must have shape (A,) = ({num_actions},) or (T, A) = ({horizon}, "
            f"{num_actions}); got {log_probs.shape}."
        )
    if is_concrete(log_probs):
        values = np.asarray(log_probs, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            totals = np.logaddexp.reduce(values, axis=-1)
        atol = 1e-4 if log_probs.dtype == jnp.float32 else 1e-8
        if np.isnan(values).any() or np.any(~(np.abs(totals) <= atol)):
            raise ValueError(
                "`log_probs` must hold normalised log-probabilities over the actions at every "
                f"step; the probabilities sum to {np.exp(totals).tolist()}."
            )
    return log_probs


def sequence_proposal(horizon: int, num_actions: int, log_probs=None) -> SequenceProposal:
    """A :class:`SequenceProposal` over :math:`\\{0..A-1\\}^T` for the importance family on
    discrete action sequences (default uniform: :math:`\\log w = -E_\\theta + L\\log A`).

    Args:
        horizon: ``T``.
        num_actions: ``A >= 2``.
        log_probs: ``None`` (uniform), ``(A,)`` (the same every step) or ``(T, A)``.
    """
    horizon = _positive_int("horizon", horizon)
    num_actions = _positive_int("num_actions", num_actions)
    return SequenceProposal(_log_policy(log_probs, horizon, num_actions, jnp.result_type(float)))


# ---------------------------------------------------------------------- per start state
def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1; got {value!r}.")
    return int(value)


def _start_indices(problem, s0) -> jax.Array:
    """``s0`` (indices into ``problem.start_states``) as int32 ``(n,)``; ``None``: all."""
    n = problem.num_starts
    if s0 is None:
        return jnp.arange(n, dtype=jnp.int32)
    index = jnp.asarray(s0)
    if index.ndim != 1 or not jnp.issubdtype(index.dtype, jnp.integer):
        raise ValueError(
            "`s0` must be None or a 1-D integer array of start-state indices into "
            f"`problem.start_states`; got {index.dtype} array of shape {index.shape}."
        )
    if is_concrete(index) and index.size:
        values = np.asarray(index)
        if values.min() < 0 or values.max() >= n:
            raise ValueError(f"`s0` must index the {n} start states; got {values}.")
    return index.astype(jnp.int32)


def per_start(estimator: LogZEstimator, *, num_actions: int | None = None) -> LogZEstimator:
    """Run an R^d (``"ebm"``) estimator at every start state of an action-sequence problem.

    For each requested start :math:`x_0^i` the estimator runs on :func:`start_problem`'s view
    with its own key (``split(rng_key, n)``), vmapped over the starts, and estimates
    :math:`\\log Z_\\theta(x_0^i)` w.r.t. the problem's base measure (module docstring). Bias and
    ``stderr`` are the wrapped estimator's, per start. The demonstrations at each start (``data``,
    default ``problem.demos``) reach the estimator as its ``data`` in view coordinates
    (:func:`start_data`; only ``gcl_mixture`` reads them). ``smooth`` is inherited. Serves
    ``"trajectory"`` (conditional on :math:`x_0`, the only model of these problems).

    Args:
        estimator: a :class:`~ebm_ppl.logz.base.LogZEstimator` that serves ``"ebm"``. Give it a
            proposal on the view's space: :func:`box_proposal` /
            :func:`moment_matched_box_proposal` (continuous) or :func:`sequence_proposal`
            (discrete; required there: the default standard normal has the wrong support).
            ``ais`` and ``tempered_smc`` are refused for discrete actions.
        num_actions: ``A`` for discrete actions (default the model's, or 3 for MountainCar).

    Returns:
        A :class:`~ebm_ppl.logz.base.LogZEstimator` whose ``run(rng_key, problem, params, *,
        data=None, s0=None)`` takes ``s0`` = ``None`` (every start) or integer indices ``(n,)``
        into ``problem.start_states`` and ``data`` ``(N, m, T)`` action sequences per start state
        (all ``N`` starts; the ``s0`` rows are used), and returns ``log_z`` and ``stderr`` ``(n,)``,
        ``num_energy_evals`` per step summed over the starts (``T`` per sequence) and the
        wrapped estimator's ``info`` with a leading ``(n,)`` axis.
    """
    if not isinstance(estimator, LogZEstimator):
        raise TypeError(f"`estimator` must be a LogZEstimator; got {type(estimator).__name__}.")
    if "ebm" not in estimator.models:
        raise ValueError(
            f"`estimator` must serve model 'ebm' (an energy on a fixed space); {estimator.name!r} "
            f"serves {estimator.models}."
        )
    if num_actions is not None:
        num_actions = _positive_int("num_actions", num_actions)

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        _check_problem(problem)
        if not _is_continuous(problem.energy_model):
            _num_actions(problem.energy_model, num_actions)
            if estimator.name.startswith(_GRADIENT_ESTIMATORS):
                raise ValueError(
                    f"{estimator.name!r} moves particles by gradient MCMC; problem "
                    f"{problem.name!r} has discrete actions: use the importance family with a "
                    "sequence_proposal, or sequence_smc."
                )
        index = _start_indices(problem, s0)
        if data is None:
            data = problem.demos
        if data is not None:
            data = jnp.asarray(data)
            if data.ndim != 3 or data.shape[0] != problem.num_starts:
                raise ValueError(
                    f"`data` must have shape (n, m, T) = ({problem.num_starts}, m, "
                    f"{problem.horizon}) (one row per start state); got {data.shape}."
                )
            data = start_data(problem, data)[index]
        starts = problem.start_states[index]
        keys = jax.random.split(rng_key, index.shape[0])

        def one(key, x0, points):
            view = DensityProblem(
                name=problem.name,
                energy_model=_view_energy(problem, x0, num_actions),
                dim=problem.horizon,
            )
            if points is not None:
                points = points.astype(jnp.result_type(x0, float))
            return estimator.run(key, view, params, data=points)

        result = jax.vmap(one)(keys, starts, data)
        return result._replace(
            num_energy_evals=jnp.sum(jnp.asarray(result.num_energy_evals)) * problem.horizon
        )

    return LogZEstimator(
        name=f"per_start[{estimator.name}]",
        models=("trajectory",),
        run=run,
        smooth=estimator.smooth,
    )


# ---------------------------------------------------------------------- particle SMC over time
class SequenceSMCInfo(NamedTuple):
    """Info of :func:`sequence_smc`.

    Attributes:
        ess: ``(n, T)`` effective sample size after each step's reweighting, in particles.
        num_resampling: ``(n,)`` resampling events.
    """

    ess: jax.Array
    num_resampling: jax.Array


def sequence_smc(
    num_particles: int,
    *,
    proposal=None,
    num_actions: int | None = None,
    resample: str = "adaptive",
    ess_threshold: float = 0.5,
    scheme: str = "systematic",
) -> LogZEstimator:
    """Particle SMC over time for :math:`\\log Z_\\theta(x_0)` of discrete action sequences on
    deterministic dynamics (MountainCar).

    ``N`` particles start at :math:`x_0`; at step :math:`t` each alive particle draws
    :math:`a_t\\sim\\pi_t`, moves by the true dynamics :math:`x_{t+1} = f(x_t, a_t)` (so the
    dynamics cancel, THEORY §4) and is reweighted by

    .. math::

        \\log w_t = -\\theta\\cdot\\phi(x_t, a_t, x_{t+1}) - \\log\\pi_t(a_t)\\quad
        (0 \\text{ once the particle is terminal}),\\qquad
        \\log\\hat Z = \\sum_t\\log\\sum_i\\bar W^i_{t-1}w^i_t,

    with resampling never, always or adaptively (ESS below ``ess_threshold * N``), exactly as
    :func:`ebm_ppl.logz.smc.particle_smc` (whose resampling code this reuses).

    Bias: unbiased in :math:`Z` (counting measure on trajectories); :math:`\\log\\hat Z` biased
    low (Jensen). ``stderr`` is NaN (use the spread over runs). ``smooth`` only with
    ``resample="never"`` (resampling is piecewise constant in :math:`\\theta`, THEORY §7.4).
    Serves ``"trajectory"`` on :class:`~ebm_ppl.envs.classic_control.ActionSequenceProblem` with
    discrete actions.

    Args:
        num_particles: ``N`` per start state.
        proposal: the policy :math:`\\pi_t`: ``None`` (uniform), ``(A,)`` or ``(T, A)``
            log-probabilities (state-independent; every action must have positive probability).
        num_actions: ``A`` (default the model's, or 3 for MountainCar).
        resample: ``"adaptive"``, ``"always"`` or ``"never"``.
        ess_threshold: adaptive threshold as a fraction of ``N``, in ``(0, 1]``.
        scheme: ``"systematic"`` or ``"multinomial"``.

    Returns:
        A :class:`~ebm_ppl.logz.base.LogZEstimator`; ``run(rng_key, problem, params, *,
        data=None, s0=None)`` (``s0``: start-state indices or ``None``) returns ``log_z`` ``(n,)``,
        ``stderr`` NaN, ``num_energy_evals`` ``n N T`` and :class:`SequenceSMCInfo`.
    """
    num = _positive_int("num_particles", num_particles)
    check_choice("resample", resample, RESAMPLE)
    check_choice("scheme", scheme, SCHEMES)
    if not 0 < float(ess_threshold) <= 1:
        raise ValueError(f"`ess_threshold` must lie in (0, 1]; got {ess_threshold!r}.")
    if num_actions is not None:
        num_actions = _positive_int("num_actions", num_actions)
    threshold = float(ess_threshold)

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        del data
        _check_problem(problem)
        model = problem.energy_model
        if _is_continuous(model) or not _is_discrete(model):
            raise TypeError(
                f"sequence_smc needs discrete actions; problem {problem.name!r} has continuous "
                "ones: use per_start(...) with an R^d estimator."
            )
        count = _num_actions(model, num_actions)
        horizon = problem.horizon
        index = _start_indices(problem, s0)
        starts = problem.start_states[index]
        dtype = jnp.result_type(starts, float)
        log_policy = _log_policy(proposal, horizon, count, dtype)
        terminated = _terminated_fn(model)
        uniform = jnp.full((num,), -math.log(num), dtype)

        def one(key, x0):
            def step(carry, inputs):
                states, log_w, log_z, resampled = carry
                t, u = inputs
                if resample == "never":
                    do = jnp.zeros((), bool)
                elif resample == "always":
                    do = t > 0
                else:
                    do = (t > 0) & (_log_ess(log_w) < jnp.log(threshold * num))
                if resample != "never":
                    ancestors = jnp.where(
                        do,
                        _resample_indices(u[1], log_w, scheme),
                        jnp.arange(num, dtype=jnp.int32),
                    )
                    states = states[ancestors]
                    log_w = jnp.where(do, uniform, log_w[ancestors])
                alive = ~terminated(states)
                probs = jnp.broadcast_to(jnp.exp(log_policy[t]), (num, count))
                actions = _inverse_cdf(probs, u[0])
                following = model.transition(states, actions)
                energy = model.step_energy(params, states, actions, following).astype(dtype)
                increment = jnp.where(alive, -energy - log_policy[t, actions], 0.0)
                states = jnp.where(alive[:, None], following, states)
                total = logsumexp(log_w + increment)
                log_w = log_w + increment - total
                carry = (states, log_w, log_z + total, resampled + do.astype(jnp.int32))
                return carry, jnp.exp(_log_ess(log_w))

            init = (
                jnp.broadcast_to(x0, (num, x0.shape[-1])).astype(dtype),
                uniform,
                jnp.zeros((), dtype),
                jnp.zeros((), jnp.int32),
            )
            draws = jax.random.uniform(key, (horizon, 2, num), dtype)
            (_, _, log_z, resampled), ess = jax.lax.scan(step, init, (jnp.arange(horizon), draws))
            return log_z, ess, resampled

        keys = jax.random.split(rng_key, index.shape[0])
        log_z, ess, resampled = jax.vmap(one)(keys, starts)
        return LogZResult(
            log_z=log_z,
            stderr=jnp.full_like(log_z, jnp.nan),
            num_energy_evals=jnp.asarray(num * horizon * index.shape[0]),
            info=SequenceSMCInfo(ess=ess, num_resampling=resampled),
        )

    smooth = resample == "never"
    return LogZEstimator(name="sequence_smc", models=("trajectory",), run=run, smooth=smooth)
