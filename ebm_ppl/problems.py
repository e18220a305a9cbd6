"""Problems and the registry of ready-made problems by name (DESIGN §2–§3).

A :class:`Problem` bundles a space (a :class:`~ebm_ppl.spaces.TabularMDP`), an energy model with its
prior, the inference likelihood (``model``), the discount, and for synthetic problems the true
parameters and demonstrations. A :class:`DensityProblem` is its counterpart on R^d: an
energy-based model :math:`p_\\theta(x) = e^{-E_\\theta(x)}/Z(\\theta)`, model ``"ebm"``.
Big arrays are pytree leaves; names and settings are static.

The registry maps a name to ``ebm_ppl.models.<name>.make_problem``, imported lazily, so the library
never imports ``models/`` at import time.
"""

from __future__ import annotations

import dataclasses
import importlib
import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl._validation import check_finite, is_host_data
from ebm_ppl.exact.tabular import MODELS, check_model
from ebm_ppl.spaces.tabular import TabularMDP, validate_trajectories

__all__ = [
    "DensityProblem",
    "PROBLEMS",
    "Problem",
    "check_num_demos",
    "list_problems",
    "make_problem",
    "stated_params",
    "toy_text_problem",
]

PROBLEMS: dict[str, str] = {
    "objectworld": "ebm_ppl.models.objectworld",
    "frozenlake": "ebm_ppl.models.frozenlake",
    "cliffwalking": "ebm_ppl.models.cliffwalking",
    "taxi": "ebm_ppl.models.taxi",
    "toy2d": "ebm_ppl.models.toy2d",
    "lqr": "ebm_ppl.models.lqr",
    "pendulum": "ebm_ppl.models.pendulum",
    "mountaincar": "ebm_ppl.models.mountaincar",
}
"""Problem name -> module path holding its ``make_problem(rng_key, **options)``.

``objectworld`` samples its demonstrations exactly from the MDP's tables; the Gymnasium toy-text
problems (``frozenlake``, ``cliffwalking``, ``taxi``) collect theirs by rolling the causal
soft-optimal policy of a stated reward through the real ``env.step``
(:func:`ebm_ppl.envs.toy_text.collect_demonstrations`). ``toy2d`` is the 2-D energy-based model of
THEORY §8.3 (a :class:`DensityProblem`: Gaussian, banana, double well or Gaussian mixture), with
data drawn exactly at the true parameters and log Z by checked quadrature. ``lqr`` is a
linear-Gaussian control problem (:class:`~ebm_ppl.continuous.LinearGaussianProblem`, exact log Z by
the batch Gaussian integral and soft Riccati, exact demonstrations); ``pendulum`` (Pendulum-v1,
bounded torques) and ``mountaincar`` (MountainCar-v0, three actions) are MaxEnt models over action
sequences given the start state
(:class:`~ebm_ppl.envs.classic_control.ActionSequenceProblem`), with dynamics in JAX equal to
Gymnasium's: the pendulum's demonstrations come from long NUTS runs (a stored fixture), the
mountain car's are exact draws by enumeration at its short default horizon, where log Z is exact
too.
"""


@dataclasses.dataclass(frozen=True)
class Problem:
    """An inference problem.

    Attributes:
        name: registry name.
        mdp: the tabular MDP.
        energy_model: reward model with ``prior()``, ``reward(params)``, ``init_params()``.
        model: the inference likelihood, one of ``"causal"``, ``"trajectory"``,
            ``"trajectory_global"`` (DESIGN §3).
        discount: :math:`\\gamma` of the problem (1 in finite horizon unless stated).
        true_params: the parameters that generated the demonstrations (synthetic problems).
        demos: observed arrays ``(N, T + 1, 2)``.
        birl_discount: :math:`\\gamma` of the Bayesian-IRL likelihood (THEORY §7.5).
        grid_shape: ``(rows, cols)`` for grid worlds whose state index is row-major
            (``state = row * cols + col``); ``None`` otherwise. Used for reward heat maps.
    """

    name: str
    mdp: TabularMDP
    energy_model: Any
    model: str = "causal"
    discount: float = 1.0
    true_params: Any = None
    demos: Any = None
    birl_discount: float = 0.9
    grid_shape: tuple | None = None

    def __post_init__(self):
        if isinstance(self.model, str):
            check_model(self.model, self.discount, allowed=MODELS)
        if is_host_data(self.demos) and isinstance(self.mdp, TabularMDP):
            observed, _ = validate_trajectories(self.mdp, self.demos, name="demos")
            object.__setattr__(self, "demos", observed)
        if self.grid_shape is not None and is_host_data(self.mdp.initial_dist):
            shape = tuple(int(n) for n in self.grid_shape)
            if len(shape) != 2 or shape[0] * shape[1] != self.mdp.num_states:
                raise ValueError(
                    f"`grid_shape` must be (rows, cols) with rows * cols = S = "
                    f"{self.mdp.num_states}; got {self.grid_shape!r}."
                )
            object.__setattr__(self, "grid_shape", shape)

    def true_reward(self):
        """The reward table at ``true_params`` (raises if the problem has none)."""
        if self.true_params is None:
            raise ValueError(f"problem {self.name!r} has no `true_params`.")
        return self.energy_model.reward(self.true_params)

    def replace(self, **changes) -> Problem:
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    Problem,
    data_fields=["mdp", "energy_model", "true_params", "demos"],
    meta_fields=["name", "model", "discount", "birl_discount", "grid_shape"],
)


@dataclasses.dataclass(frozen=True)
class DensityProblem:
    """An energy-based model on :math:`\\mathbb R^d` (model ``"ebm"``, DESIGN §3).

    :math:`p_\\theta(x) = e^{-E_\\theta(x)}/Z(\\theta)`; the log Z estimators that serve ``"ebm"``
    (:func:`ebm_ppl.logz.ais.ais`, :func:`ebm_ppl.logz.ais.tempered_smc`) return one scalar
    :math:`\\log Z(\\theta)`.

    Attributes:
        name: registry name.
        energy_model: energy model with ``energy(params, x)`` for one point ``x`` of shape
            ``(dim,)`` (sign: :math:`p \\propto e^{-E}`), ``prior()`` and ``init_params()``
            (:mod:`ebm_ppl.energy.density`).
        dim: dimension ``d >= 1`` (static).
        true_params: the parameters that generated ``data`` (synthetic problems).
        data: observed points ``(N, dim)``.
        log_z: the exact :math:`\\log Z` at ``true_params`` where known (closed form or checked
            quadrature), a scalar array; ``None`` otherwise.
    """

    name: str
    energy_model: Any
    dim: int
    true_params: Any = None
    data: Any = None
    log_z: Any = None

    def __post_init__(self):
        if (
            isinstance(self.dim, bool)
            or not isinstance(self.dim, (int, np.integer))
            or self.dim < 1
        ):
            raise ValueError(f"`dim` must be an int >= 1; got {self.dim!r}.")
        object.__setattr__(self, "dim", int(self.dim))
        # the energy model's interface is checked by its users (JAX rebuilds this pytree with
        # placeholder leaves, so only cheap, placeholder-safe checks run here)
        model_dim = getattr(self.energy_model, "dim", None)
        if isinstance(model_dim, int) and model_dim != self.dim:
            raise ValueError(
                f"`dim` = {self.dim} differs from the energy model's dimension {model_dim}."
            )
        if is_host_data(self.data):
            data = jnp.asarray(self.data)
            if data.ndim != 2 or data.shape[1] != self.dim:
                raise ValueError(
                    f"`data` must have shape (N, dim) = (N, {self.dim}); got {data.shape}."
                )
            if not jnp.issubdtype(data.dtype, jnp.floating):
                data = data.astype(jnp.result_type(float))
            check_finite("data", data)
            object.__setattr__(self, "data", data)
        if isinstance(self.log_z, (float, int)) and not isinstance(self.log_z, bool):
            object.__setattr__(self, "log_z", jnp.asarray(float(self.log_z)))
        if is_host_data(self.log_z):
            log_z = jnp.asarray(self.log_z)
            if log_z.shape != ():
                raise ValueError(f"`log_z` must be a scalar; got shape {log_z.shape}.")
            check_finite("log_z", log_z)
            object.__setattr__(self, "log_z", log_z)

    @property
    def model(self) -> str:
        """Always ``"ebm"``: the one model on R^d (DESIGN §3)."""
        return "ebm"

    def replace(self, **changes) -> DensityProblem:
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    DensityProblem,
    data_fields=["energy_model", "true_params", "data", "log_z"],
    meta_fields=["name", "dim"],
)


def check_num_demos(num_demos) -> int:
    """Raise unless ``num_demos`` is an int >= 0 (0: a problem without demonstrations)."""
    if isinstance(num_demos, bool) or not isinstance(num_demos, numbers.Integral) or num_demos < 0:
        raise ValueError(f"`num_demos` must be an int >= 0; got {num_demos!r}.")
    return int(num_demos)


def stated_params(true_params, energy_model, default) -> dict:
    """Stated true parameters of a linear reward: ``{site: (F,)}``, an ``(F,)`` array, or default.

    Raises:
        ValueError: wrong keys, shape, or non-finite values.
    """
    if true_params is None:
        true_params = default
    if not isinstance(true_params, Mapping):
        true_params = {energy_model.site: true_params}
    if set(true_params) != {energy_model.site}:
        raise ValueError(
            f"`true_params` must be {{'{energy_model.site}': array of shape (F,) = "
            f"({energy_model.num_features},)}} or such an array; got keys {sorted(true_params)}."
        )
    theta = jnp.asarray(true_params[energy_model.site], dtype=energy_model.features.dtype)
    energy_model.reward({energy_model.site: theta})  # checks the shape
    check_finite("true_params", theta)
    return {energy_model.site: theta}


def toy_text_problem(
    name: str,
    env_id: str,
    rng_key,
    *,
    features_fn,
    horizon: int,
    num_demos: int,
    model: str,
    prior_scale: float,
    true_params,
    default_params,
    sparse: bool = False,
    grid_shape=None,
    **env_kwargs,
) -> Problem:
    """A Gymnasium toy-text problem with a linear reward and demos rolled through ``env.step``.

    Builds the MDP from the environment's tables, the features ``features_fn(mdp, env_reward)``
    (``(S, A, F)``), a :class:`~ebm_ppl.energy.LinearReward`, the stated true parameters, and
    ``num_demos`` demonstrations of the causal soft-optimal policy of that reward collected by
    :func:`~ebm_ppl.envs.toy_text.collect_demonstrations` (the real environment loop).
    """
    from ebm_ppl.energy import LinearReward
    from ebm_ppl.envs.toy_text import (
        collect_demonstrations,
        make_toy_text_env,
        reward_table_from_env,
        tabular_mdp_from_env,
    )
    from ebm_ppl.exact.tabular import soft_bellman

    rng_key = jax.random.key(0) if rng_key is None else rng_key
    check_num_demos(num_demos)
    check_model(model, 1.0)
    env = make_toy_text_env(env_id, horizon, **env_kwargs)
    try:
        mdp = tabular_mdp_from_env(env, horizon, sparse=sparse)
        features = jnp.asarray(features_fn(mdp, reward_table_from_env(env)), dtype=mdp.dtype)
        mdp = dataclasses.replace(mdp, features=features)
        energy_model = LinearReward(features, prior_scale=prior_scale)
        theta = stated_params(true_params, energy_model, default_params)
        demos = None
        if num_demos > 0:
            log_policy = soft_bellman(mdp, energy_model.reward(theta), model="causal").log_policy
            demos = collect_demonstrations(rng_key, env, log_policy, num_demos)
    finally:
        env.close()
    return Problem(
        name=name,
        mdp=mdp,
        energy_model=energy_model,
        model=model,
        discount=1.0,
        true_params=theta,
        demos=demos,
        grid_shape=grid_shape,
    )


def list_problems() -> list[str]:
    return sorted(PROBLEMS)


def make_problem(name: str, rng_key, **options) -> Problem | DensityProblem:
    """Build the registered problem ``name`` (its module is imported on first use)."""
    if name not in PROBLEMS:
        raise ValueError(f"`name` must be one of {list_problems()}; got {name!r}.")
    module = importlib.import_module(PROBLEMS[name])
    return module.make_problem(rng_key, **options)
