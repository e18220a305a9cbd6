r"""Pendulum-v1 swing-up as a MaxEnt model over torque sequences (issue 7, part 3).

**Model.** Given a start state :math:`x_0 = (\vartheta_0, \dot\vartheta_0)` and ``T`` torques
:math:`u = (u_0, \dots, u_{T-1}) \in [-\bar u, \bar u]^T` (:math:`\bar u = 2`, Gymnasium's
bound), the states :math:`x_{t+1} = f(x_t, u_t)` follow Gymnasium's Pendulum-v1 dynamics
(:func:`ebm_ppl.envs.classic_control.pendulum_step`) and

.. math::

    p_\theta(u\mid x_0) = \frac{b(u)\,e^{-E_\theta(u; x_0)}}{Z_\theta(x_0)},\qquad
    E_\theta(u; x_0) = \sum_{t=0}^{T-1} w_\theta\cdot\phi(x_t, u_t),\qquad
    \phi(x, u) = \Big(\frac{\operatorname{wrap}(\vartheta)^2}{\pi^2},\
        \frac{\dot\vartheta^2}{\bar\omega^2},\ \frac{u^2}{\bar u^2}\Big),

with :math:`b` the **uniform probability density** :math:`(2\bar u)^{-T}` on the box, so
:math:`Z_\theta(x_0) = \mathbb E_{u\sim U[-\bar u,\bar u]^T}[e^{-E_\theta}] \le 1` (finite: the
integrand is bounded on a compact set). Relative to Lebesgue measure on the box,
:math:`\log Z^{\mathrm{Leb}} = \log Z + T\log 2\bar u`. The features are Gymnasium's cost terms
scaled by their bounds (:math:`\pi`, :math:`\bar\omega = 8`, :math:`\bar u`) to lie in
:math:`[0, 1]`; Gymnasium's own cost :math:`\operatorname{wrap}(\vartheta)^2 + 0.1\dot\vartheta^2 +
0.001u^2` is :math:`w = (\pi^2, 6.4, 0.004)` (:data:`GYMNASIUM_WEIGHTS`), evaluated, like
Gymnasium's, at the state *before* each step. It is the trajectory-level model conditional on
:math:`x_0` (THEORY §1.1), equal to the causal one here (deterministic dynamics).

**Parameters.** Weights are positive, learned on the log scale: ``params = {"log_weights": (3,)}``
with :math:`w = e^{\text{log\_weights}}` and prior :math:`\text{log\_weights} \sim
\mathcal N(\mu, \sigma^2 I)`, :math:`\mu = ` ``prior_loc`` (default 0), :math:`\sigma =`
``prior_scale`` (default 1.5).

**Unconstrained space.** For gradient-based MCMC, :math:`u = \bar u\tanh z`, :math:`z\in\mathbb
R^T`; then :math:`b(u)\,du = \prod_t \tfrac12\operatorname{sech}^2 z_t\,dz_t` and

.. math::

    U_\theta(z; x_0) = E_\theta(\bar u\tanh z; x_0) - \sum_t \log\big(\tfrac12
    \operatorname{sech}^2 z_t\big),\qquad \int e^{-U_\theta(z)}\,dz = Z_\theta(x_0)

(:meth:`PendulumMaxEnt.unconstrained_energy`, the energy of :func:`density_problem`, so the
:math:`\mathbb R^d` log Z estimators apply for one start state). :meth:`PendulumMaxEnt.model` is
the same distribution as a NumPyro model (a ``Uniform`` site plus ``numpyro.factor``; NumPyro
then uses its own sigmoid transform :math:`u = \bar u(2\sigma(y) - 1)`, i.e. :math:`y = 2z`).

**Demonstrations** are draws from :math:`p_{\theta^*}(u\mid x_0)` by long NUTS runs
(:func:`sample_demonstrations`: BlackJAX NUTS with window adaptation on :math:`U_{\theta^*}`,
several chains per start state, the demos taken evenly spaced from the pooled chains). They are
approximate: :math:`\hat R` and ESS of every coordinate and of the energy are reported. The
start states are the lower (hanging) half of Gymnasium's reset box,
:math:`\vartheta_0\sim U[\pi/2, 3\pi/2]`, :math:`\dot\vartheta_0\sim U[-1, 1]`
(:func:`start_states` says why not all of it), start ``i`` drawn with ``fold_in(rng_key, i)``
(so a prefix of the starts does not depend on ``num_starts``).
``scripts/make_pendulum_demos.py`` makes them once into ``tests/data/pendulum_demos.npz``;
:func:`make_problem` loads that file whenever it holds the requested configuration and samples
afresh otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

from ebm_ppl._math import log_sech2
from ebm_ppl._validation import check_finite
from ebm_ppl.envs.classic_control import (
    ActionSequenceProblem,
    PendulumParams,
    angle_normalize,
    pendulum_reset_bounds,
    pendulum_step,
    rollout,
)
from ebm_ppl.problems import DensityProblem, check_num_demos

__all__ = [
    "FEATURE_NAMES",
    "GYMNASIUM_WEIGHTS",
    "HORIZON",
    "TRUE_WEIGHTS",
    "DEMOS_PATH",
    "DemoSettings",
    "PendulumMaxEnt",
    "density_problem",
    "start_states",
    "sample_demonstrations",
    "load_demonstrations",
    "make_problem",
]

HORIZON = 50
"""Default number of decisions ``T`` (2.5 s at ``dt = 0.05``)."""

FEATURE_NAMES = ("angle", "velocity", "torque")
"""The features :math:`(\\mathrm{wrap}(\\vartheta)/\\pi)^2, (\\dot\\vartheta/8)^2, (u/2)^2`."""

GYMNASIUM_WEIGHTS = (math.pi**2, 0.1 * 8.0**2, 0.001 * 2.0**2)
"""Weights ``w`` for which the energy is Gymnasium's summed cost (minus its return)."""

TRUE_WEIGHTS = (0.5, 1.0, 1.0)
"""Weights ``w*`` of the synthetic demonstrations (``true_params = log w*``): calm the swing.

Gymnasium's weights (and any with a large angle weight) make a sharp swing-up distribution with
two modes (swing left or right first) that NUTS cannot mix over: measured split R-hat 7.5
(Gymnasium's weights) and 3.1 for the energy at ``w = (1, 0.5, 0.5)``. At ``w*`` the velocity and
torque terms dominate, the distribution is unimodal from every start state of
:func:`start_states`, and the chains mix (R-hat and ESS in the demo file).
"""

DEMOS_PATH = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "pendulum_demos.npz"
"""Where ``scripts/make_pendulum_demos.py`` writes the demonstrations (source checkouts only)."""


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Settings of the NUTS runs that draw demonstrations (:func:`sample_demonstrations`).

    Attributes:
        num_chains: chains per start state.
        num_warmup: window-adaptation steps per chain (step size and diagonal mass matrix).
        num_samples: draws per chain after warm-up.
        target_accept_prob: the adaptation's target acceptance rate.
    """

    num_chains: int = 4
    num_warmup: int = 1000
    num_samples: int = 1000
    target_accept_prob: float = 0.9

    def __post_init__(self):
        for name in ("num_chains", "num_warmup", "num_samples"):
            value = getattr(self, name)
            minimum = 2 if name == "num_chains" else 1
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or value < minimum
            ):
                raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
        if not 0 < self.target_accept_prob < 1:
            raise ValueError(
                f"`target_accept_prob` must be in (0, 1); got {self.target_accept_prob!r}."
            )


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"`{name}` must be a number > 0; got {value!r}.")
    return float(value)


# ---------------------------------------------------------------------- energy model
@dataclasses.dataclass(frozen=True)
class PendulumMaxEnt:
    """Energy model of :math:`p_\\theta(u\\mid x_0)` (module docstring), a NumPyro model.

    All methods act on **one** sequence ``actions`` ``(T,)`` and one start ``x0`` ``(2,)``
    (vmap for batches) and compute in the dtype of their inputs.

    Args:
        horizon: ``T >= 1`` (static).
        prior_loc: prior mean :math:`\\mu` of every log weight.
        prior_scale: prior standard deviation :math:`\\sigma > 0` of every log weight.
        dynamics: Pendulum constants (default Gymnasium's; ``max_torque`` is the box).
    """

    horizon: int = HORIZON
    prior_loc: float = 0.0
    prior_scale: float = 1.5
    dynamics: PendulumParams = PendulumParams()

    site = "log_weights"
    num_features = len(FEATURE_NAMES)

    def __post_init__(self):
        object.__setattr__(self, "horizon", _check_int("horizon", self.horizon, 1))
        _positive("prior_scale", self.prior_scale)
        if not isinstance(self.dynamics, PendulumParams):
            raise TypeError(
                f"`dynamics` must be a PendulumParams; got {type(self.dynamics).__name__}."
            )

    # -- checks
    def _x0(self, x0) -> jax.Array:
        x0 = jnp.asarray(x0)
        if x0.shape != (2,):
            raise ValueError(
                f"`x0` must be one start state (angle, velocity) of shape (2,) (vmap for a "
                f"batch); got shape {x0.shape}."
            )
        return x0

    def _actions(self, name: str, actions) -> jax.Array:
        actions = jnp.asarray(actions)
        if actions.shape != (self.horizon,):
            raise ValueError(
                f"`{name}` must be one sequence of shape (T,) = ({self.horizon},) (vmap for a "
                f"batch); got shape {actions.shape}."
            )
        return actions

    def weights(self, params) -> jax.Array:
        """:math:`w = e^{\\text{log\\_weights}}`, shape ``(3,)``."""
        if self.site not in params:
            raise ValueError(
                f"`params` must hold '{self.site}' (shape (3,)); got keys {sorted(params)}."
            )
        log_weights = jnp.asarray(params[self.site])
        if log_weights.shape != (self.num_features,):
            raise ValueError(
                f"`params['{self.site}']` must have shape (3,) (one per feature "
                f"{FEATURE_NAMES}); got {log_weights.shape}."
            )
        return jnp.exp(log_weights)

    # -- features and energies
    def step_features(self, actions, x0) -> jax.Array:
        """Per-step features :math:`\\phi(x_t, u_t)`, ``(T, 3)``, along the rollout of ``u``."""
        actions = self._actions("actions", actions)
        x0 = self._x0(x0)
        dtype = jnp.result_type(x0, actions, float)
        actions, x0 = actions.astype(dtype), x0.astype(dtype)
        step = functools.partial(pendulum_step, params=self.dynamics)
        return self.features_of_states(rollout(step, x0, actions)[:-1], actions)

    def features_of_states(self, states, actions) -> jax.Array:
        """:math:`\\phi(x_t, u_t)`, ``(..., 3)``, of states ``(..., 2)`` (each before its step)
        and torques ``(...)`` already known (no rollout; broadcast)."""
        bounds = self.dynamics
        return jnp.stack(
            [
                (angle_normalize(states[..., 0]) / math.pi) ** 2,
                (states[..., 1] / bounds.max_speed) ** 2,
                (actions / bounds.max_torque) ** 2,
            ],
            axis=-1,
        )

    def features(self, actions, x0) -> jax.Array:
        """Summed features :math:`\\Phi(u; x_0) = \\sum_t \\phi(x_t, u_t)`, ``(3,)``."""
        return jnp.sum(self.step_features(actions, x0), axis=0)

    def energy(self, params, actions, x0) -> jax.Array:
        """:math:`E_\\theta(u; x_0) = w\\cdot\\Phi(u; x_0)` (a scalar)."""
        features = self.features(actions, x0)
        return jnp.dot(self.weights(params).astype(features.dtype), features)

    def log_density(self, params, actions, x0) -> jax.Array:
        """Unnormalised log density w.r.t. Lebesgue measure: :math:`\\log b(u) - E_\\theta`.

        :math:`-E_\\theta(u) - T\\log 2\\bar u` inside the box, :math:`-\\infty` outside.
        """
        actions = self._actions("actions", actions)
        energy = self.energy(params, actions, x0)
        bound = self.dynamics.max_torque
        inside = jnp.all(jnp.abs(actions) <= bound)
        value = -energy - self.horizon * math.log(2 * bound)
        return jnp.where(inside, value, -jnp.inf)

    def actions_from_unconstrained(self, z) -> jax.Array:
        """:math:`u = \\bar u\\tanh z`."""
        return self.dynamics.max_torque * jnp.tanh(jnp.asarray(z))

    def unconstrained_from_actions(self, actions) -> jax.Array:
        """:math:`z = \\operatorname{artanh}(u/\\bar u)` (infinite at the bounds)."""
        return jnp.arctanh(jnp.asarray(actions) / self.dynamics.max_torque)

    def unconstrained_energy(self, params, z, x0) -> jax.Array:
        """:math:`U_\\theta(z; x_0) = E_\\theta(\\bar u\\tanh z) - \\sum_t\\log(\\tfrac12
        \\operatorname{sech}^2 z_t)`, with :math:`\\int e^{-U}dz = Z_\\theta(x_0)`.

        :math:`\\log(\\tfrac12\\operatorname{sech}^2 z) = \\log 2 - 2|z| - 2\\log(1 + e^{-2|z|})`
        (stable for large :math:`|z|`).
        """
        z = self._actions("z", z)
        log_base = log_sech2(z) - math.log(2.0)  # log(sech^2(z) / 2)
        return self.energy(params, self.actions_from_unconstrained(z), x0) - jnp.sum(log_base)

    # -- NumPyro
    def model(self, params, x0):
        """NumPyro model of :math:`p_\\theta(u\\mid x_0)`: site ``"actions"`` ``(T,)``.

        ``actions ~ Uniform(-ū, ū)^T`` (the base measure :math:`b`) and
        ``numpyro.factor("energy", -E)``; its normaliser is :math:`Z_\\theta(x_0)`.
        """
        bound = self.dynamics.max_torque
        x0 = self._x0(x0)
        base = dist.Uniform(-bound * jnp.ones(self.horizon, x0.dtype), bound).to_event(1)
        actions = numpyro.sample("actions", base)
        numpyro.factor("energy", -self.energy(params, actions, x0))
        return actions

    def prior(self) -> dict:
        """Sample ``log_weights ~ N(prior_loc, prior_scale^2 I_3)``; returns ``params``."""
        prior = dist.Normal(self.prior_loc, self.prior_scale).expand([self.num_features])
        return {self.site: numpyro.sample(self.site, prior.to_event(1))}

    def init_params(self) -> dict:
        """The prior mean, ``{"log_weights": prior_loc * ones(3)}``."""
        return {self.site: jnp.full((self.num_features,), float(self.prior_loc))}


jax.tree_util.register_dataclass(
    PendulumMaxEnt,
    data_fields=[],
    meta_fields=["horizon", "prior_loc", "prior_scale", "dynamics"],
)


@dataclasses.dataclass(frozen=True)
class _FixedStartEnergy:
    """:math:`U_\\theta(z; x_0)` at one fixed ``x0`` as an energy model on :math:`\\mathbb R^T`."""

    model: PendulumMaxEnt
    x0: jax.Array

    @property
    def dim(self) -> int:
        return self.model.horizon

    def energy(self, params, x) -> jax.Array:
        return self.model.unconstrained_energy(params, x, self.x0)

    def prior(self) -> dict:
        return self.model.prior()

    def init_params(self) -> dict:
        return self.model.init_params()


jax.tree_util.register_dataclass(_FixedStartEnergy, data_fields=["x0"], meta_fields=["model"])


def density_problem(energy_model: PendulumMaxEnt, x0, params=None, data=None) -> DensityProblem:
    """The model at one start state as a :class:`~ebm_ppl.problems.DensityProblem` on z-space.

    Its energy is :math:`U_\\theta(z; x_0)` (module docstring), so the ``"ebm"`` log Z
    estimators (AIS, tempered SMC) estimate :math:`\\log Z_\\theta(x_0)` w.r.t. the uniform base.

    Args:
        energy_model: the pendulum model.
        x0: start state ``(2,)``.
        params: ``true_params`` of the problem (optional).
        data: demonstrations at ``x0`` as **torques** ``(m, T)`` (mapped to z; optional).

    Returns:
        A ``DensityProblem`` named ``"pendulum"`` with ``dim = T`` and ``log_z = None``.
    """
    x0 = energy_model._x0(x0)
    if data is not None:
        data = jnp.asarray(data)
        if data.ndim != 2 or data.shape[1] != energy_model.horizon:
            raise ValueError(
                f"`data` must have shape (m, T) = (m, {energy_model.horizon}); got {data.shape}."
            )
        data = energy_model.unconstrained_from_actions(data)
    return DensityProblem(
        name="pendulum",
        energy_model=_FixedStartEnergy(energy_model, x0),
        dim=energy_model.horizon,
        true_params=params,
        data=data,
    )


# ---------------------------------------------------------------------- start states and demos
def start_states(rng_key, num_starts: int) -> jax.Array:
    """Start states in the lower half of Gymnasium's reset box: ``(num_starts, 2)``.

    :math:`\\vartheta_0\\sim U[\\pi/2, 3\\pi/2]` (hanging half: :math:`|\\operatorname{wrap}
    \\vartheta_0| \\ge \\pi/2`), :math:`\\dot\\vartheta_0\\sim U[-1, 1]`; start ``i`` from
    ``fold_in(rng_key, i)``, so a prefix does not depend on ``num_starts``. Gymnasium draws
    :math:`\\vartheta_0` from all of :math:`[-\\pi, \\pi]`; from the upper half the direction of
    the fall is a bifurcation of the dynamics, and NUTS does not mix there (measured at ``T = 50``:
    adapted step sizes 0.001-0.01, tree depth 10, R-hat up to 1.6 after 300 draws).
    """
    num_starts = _check_int("num_starts", num_starts, 1)
    _, (speed_low, speed_high) = pendulum_reset_bounds()
    low = jnp.asarray([0.5 * math.pi, speed_low])
    high = jnp.asarray([1.5 * math.pi, speed_high])

    def one(i):
        return jax.random.uniform(jax.random.fold_in(rng_key, i), (2,), low.dtype, low, high)

    return jax.vmap(one)(jnp.arange(num_starts))


@functools.lru_cache(maxsize=8)
def _nuts_program(energy_model: PendulumMaxEnt, settings: DemoSettings):
    """Compiled NUTS chains for one start state, vmapped over the chains.

    :func:`sample_demonstrations` calls it once per start state (same shapes: one compilation),
    so a start whose chains need long trajectories does not hold the others in lockstep, and the
    program stays small (wrapping the start states in ``lax.map`` doubled its compile time).
    """
    # the library's BlackJAX adapter (window adaptation, then NUTS steps)
    from ebm_ppl.inference.nuts import _sample_steps, _warmup

    def chain(rng_key, params, x0, z_init):
        logdensity = lambda z: -energy_model.unconstrained_energy(params, z, x0)
        key_warmup, key_sample = jax.random.split(rng_key)
        state, parameters = _warmup(
            key_warmup, logdensity, z_init, settings.num_warmup, settings.target_accept_prob
        )
        keys = jax.random.split(key_sample, settings.num_samples)
        _, (positions, stats) = _sample_steps(keys, logdensity, state, parameters)
        return positions, stats

    return jax.jit(jax.vmap(chain, in_axes=(0, None, None, 0)))


@functools.lru_cache(maxsize=8)
def _energy_program(energy_model: PendulumMaxEnt):
    """Energies of ``(n, C, S, T)`` draws at ``(n, 2)`` starts, compiled."""
    over_draws = jax.vmap(jax.vmap(energy_model.energy, (None, 0, None)), (None, 0, None))
    return jax.jit(jax.vmap(over_draws, (None, 0, 0)))


def _rhat_ess(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split R-hat and bulk ESS (NumPyro's estimators) of ``(chains, draws, ...)`` arrays."""
    return split_gelman_rubin(draws), effective_sample_size(draws)


def sample_demonstrations(
    rng_key,
    energy_model: PendulumMaxEnt,
    params,
    starts,
    num_demos: int,
    settings: DemoSettings = DemoSettings(),
) -> tuple[jax.Array, dict]:
    """Draw demonstrations from :math:`p_\\theta(u\\mid x_0)` by long NUTS runs (approximate).

    For each start state, ``settings.num_chains`` BlackJAX NUTS chains (window adaptation of
    step size and diagonal mass matrix, then ``num_samples`` draws) run on :math:`U_\\theta(z;
    x_0)` from :math:`z \\sim U[-0.5, 0.5]^T`, vmapped over chains, one compiled program run
    once per start state. The ``num_demos`` demonstrations are the pooled draws at evenly
    spaced positions (chain after chain), i.e. spaced ``num_chains * num_samples / num_demos``
    draws apart.

    Args:
        rng_key: JAX key.
        energy_model: the pendulum model.
        params: ``{"log_weights": (3,)}``.
        starts: ``(n, 2)`` start states.
        num_demos: demonstrations per start state, ``1 <= num_demos <= num_chains * num_samples``.
        settings: the NUTS settings.

    Returns:
        ``(demos, info)``: torques ``(n, num_demos, T)`` and a dict of NumPy arrays per start
        state: ``rhat_max`` / ``ess_min`` over the ``T`` coordinates, ``rhat_energy`` /
        ``ess_energy`` of :math:`E_\\theta(u)`, ``divergences``, ``mean_tree_depth``,
        ``step_size`` (mean over chains); R-hat is NumPyro's split :math:`\\hat R`, ESS its
        bulk ESS over all chains.
    """
    starts = jnp.asarray(starts)
    if starts.ndim != 2 or starts.shape[1] != 2:
        raise ValueError(f"`starts` must have shape (n, 2); got {starts.shape}.")
    total = settings.num_chains * settings.num_samples
    num_demos = _check_int("num_demos", num_demos, 1)
    if num_demos > total:
        raise ValueError(
            f"`num_demos` must be <= num_chains * num_samples = {total}; got {num_demos}."
        )
    energy_model.weights(params)  # checks params
    num_starts, horizon = starts.shape[0], energy_model.horizon
    key_init, key_chains = jax.random.split(rng_key)
    z_init = jax.random.uniform(
        key_init, (num_starts, settings.num_chains, horizon), starts.dtype, -0.5, 0.5
    )
    keys = jax.random.split(key_chains, (num_starts, settings.num_chains))
    program = _nuts_program(energy_model, settings)
    runs = [program(keys[i], params, starts[i], z_init[i]) for i in range(num_starts)]
    z = jnp.stack([positions for positions, _ in runs])
    stats = jax.tree.map(lambda *values: jnp.stack(values), *[stats for _, stats in runs])
    actions = energy_model.actions_from_unconstrained(z)  # (n, C, S, T)
    energies = np.asarray(_energy_program(energy_model)(params, actions, starts))
    actions = np.asarray(actions)
    info = {name: [] for name in ("rhat_max", "ess_min", "rhat_energy", "ess_energy")}
    for i in range(num_starts):
        rhat, ess = _rhat_ess(actions[i])
        rhat_e, ess_e = _rhat_ess(energies[i])
        info["rhat_max"].append(np.max(rhat))
        info["ess_min"].append(np.min(ess))
        info["rhat_energy"].append(rhat_e)
        info["ess_energy"].append(ess_e)
    info = {name: np.asarray(values) for name, values in info.items()}
    stats = {name: np.asarray(value) for name, value in stats.items()}
    info["divergences"] = stats["diverging"].sum(axis=(1, 2))
    info["mean_tree_depth"] = stats["tree_depth"].mean(axis=(1, 2))
    info["step_size"] = stats["step_size"].mean(axis=(1, 2))
    pooled = actions.reshape(num_starts, total, horizon)
    index = (np.arange(num_demos) * total) // num_demos + total // (2 * num_demos)
    demos = jnp.asarray(pooled[:, index], dtype=starts.dtype)
    return demos, info


def load_demonstrations(path=None) -> dict | None:
    """The arrays of a demo file (``DEMOS_PATH`` by default), or ``None`` if it does not exist."""
    path = DEMOS_PATH if path is None else pathlib.Path(path)
    if not path.exists():
        return None
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def _matching_demos(stored, starts, params, horizon, num_demos, settings):
    """The stored demos for this configuration, or ``None`` if the file does not hold it."""
    if stored is None:
        return None
    same = (
        int(stored["horizon"]) == horizon
        and stored["start_states"].shape[0] >= starts.shape[0]
        and stored["demos"].shape[1] >= num_demos
        and np.allclose(stored["start_states"][: starts.shape[0]], np.asarray(starts), atol=1e-12)
        and np.allclose(stored["log_weights"], np.asarray(params["log_weights"]), atol=1e-12)
        and all(
            int(stored[name]) == getattr(settings, name)
            for name in ("num_chains", "num_warmup", "num_samples")
        )
    )
    if not same:
        return None
    n = starts.shape[0]
    stored_m = stored["demos"].shape[1]
    pick = (np.arange(num_demos) * stored_m) // num_demos  # spread over the stored ones
    info_names = ("rhat_max", "ess_min", "rhat_energy", "ess_energy", "divergences")
    info = {name: stored[name][:n] for name in info_names if name in stored}
    return stored["demos"][:n][:, pick], info


def make_problem(
    rng_key=None,
    *,
    horizon: int = HORIZON,
    num_demos: int = 10,
    num_starts: int = 10,
    true_params=None,
    prior_loc: float = 0.0,
    prior_scale: float = 1.5,
    settings: DemoSettings = DemoSettings(),
    demos_path=None,
) -> ActionSequenceProblem:
    """Build the Pendulum-v1 MaxEnt problem (module docstring).

    Demonstrations come from the demo file (``demos_path``, default :data:`DEMOS_PATH`) when it
    holds this configuration: same horizon, true weights, NUTS settings and start states (the
    first ``num_starts`` of its starts, which ``rng_key = None`` reproduces), at least
    ``num_demos`` per start (a spread subset is taken). Otherwise they are sampled with
    :func:`sample_demonstrations` (about a minute per default configuration on 2 CPU cores).

    Args:
        rng_key: key for the start states and the NUTS runs (default ``key(0)``; start states
            from ``fold_in(key_starts, i)`` with ``key_starts, key_demos = split(rng_key)``).
        horizon: ``T >= 1``.
        num_demos: demonstrations per start state (0: none).
        num_starts: number of start states ``n >= 1``.
        true_params: ``{"log_weights": (3,)}`` (default ``log TRUE_WEIGHTS``).
        prior_loc, prior_scale: the prior of the log weights.
        settings: NUTS settings of the demonstrations.
        demos_path: demo file to look in (default :data:`DEMOS_PATH`).

    Returns:
        An :class:`~ebm_ppl.envs.classic_control.ActionSequenceProblem` named ``"pendulum"``
        with ``demos`` ``(n, num_demos, T)`` torques and their diagnostics in ``demo_info``
        (``log_z`` is ``None``: no exact value at these horizons).
    """
    num_demos = check_num_demos(num_demos)
    num_starts = _check_int("num_starts", num_starts, 1)
    energy_model = PendulumMaxEnt(horizon=horizon, prior_loc=prior_loc, prior_scale=prior_scale)
    if true_params is None:
        true_params = {"log_weights": jnp.log(jnp.asarray(TRUE_WEIGHTS))}
    energy_model.weights(true_params)
    check_finite("true_params", true_params["log_weights"])
    true_params = {"log_weights": jnp.asarray(true_params["log_weights"])}
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    key_starts, key_demos = jax.random.split(rng_key)
    starts = start_states(key_starts, num_starts)
    demos, info = None, None
    if num_demos > 0:
        found = _matching_demos(
            load_demonstrations(demos_path),
            starts,
            true_params,
            energy_model.horizon,
            num_demos,
            settings,
        )
        if found is None:
            demos, info = sample_demonstrations(
                key_demos, energy_model, true_params, starts, num_demos, settings
            )
        else:
            demos, info = jnp.asarray(found[0], dtype=starts.dtype), found[1]
    return ActionSequenceProblem(
        name="pendulum",
        energy_model=energy_model,
        horizon=energy_model.horizon,
        start_states=starts,
        true_params=true_params,
        demos=demos,
        demo_info=info,
    )
