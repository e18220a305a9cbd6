r"""Linear-Gaussian (LQR) problems: the trajectory distribution, the problem, the posterior.

.. math::

    \pi(\theta\mid\mathcal D)\propto\pi(\theta)\prod_{i=1}^Np_\theta(\tau_i\mid x_0^i),

with the exact likelihoods of :func:`ebm_ppl.exact.lqr.log_likelihood` (THEORY §7.1, §8.1):
``"causal"`` (maximum causal entropy, :math:`\prod_t\pi_t(u_t\mid x_t)`, the default) or
``"trajectory"`` (:math:`e^{-c_\theta(\tau)}/Z(x_0)`, :math:`\log Z` by the soft Riccati
recursion). They coincide for deterministic dynamics. Both are smooth in :math:`\theta`, so NUTS
samples the posterior directly (:func:`posterior_model` is plain NumPyro).

**Base measure.** :class:`LinearGaussianTrajectories` is a NumPyro distribution over observed
arrays ``(T + 1, n + m)`` (:func:`ebm_ppl.spaces.linear_gaussian.to_observed`). Its ``log_prob``
is the density with respect to :math:`\rho_0(x_0)\,b(\tau)\,du`: the start law and the dynamics
factor are **not** included, unlike the tabular distributions (DESIGN §3), because for a fixed
start or deterministic dynamics they are point masses without a Lebesgue density. They do not
depend on :math:`\theta`, so posteriors, Bayes factors between the two models and PSIS-LOO
comparisons are unaffected.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from ebm_ppl._validation import check_choice, is_host_data
from ebm_ppl.exact.lqr import (
    MODELS,
    initial_value,
    log_partition,
    policy_log_prob,
    sample_trajectories,
    soft_riccati,
)
from ebm_ppl.spaces.linear_gaussian import (
    CostMatrices,
    GaussianTrajectories,
    LinearGaussianSystem,
    from_observed,
    quadratic_cost,
    to_observed,
    validate_trajectories,
)

__all__ = [
    "LinearGaussianProblem",
    "LinearGaussianTrajectories",
    "posterior_model",
]


@functools.partial(jax.jit, static_argnums=3)
def _sample_observed(key, system, solution, sample_shape):
    """Start states from :math:`\\mathcal N(\\mu_0, \\Sigma_0)`, then the model's exact draws."""
    key_start, key_path = jax.random.split(key)
    cov = system.initial_cov
    eigenvalues, vectors = jnp.linalg.eigh(0.5 * (cov + cov.T))
    root = vectors * jnp.sqrt(jnp.maximum(eigenvalues, 0.0))[None, :]
    eps = jax.random.normal(key_start, sample_shape + (system.state_dim,), solution.gain.dtype)
    x0 = system.initial_mean + eps @ root.T
    return to_observed(sample_trajectories(key_path, system, solution, x0))


class LinearGaussianTrajectories(dist.Distribution):
    """MaxEnt trajectories of a linear-Gaussian system with a quadratic cost.

    Sampling: :math:`x_0\\sim\\mathcal N(\\mu_0, \\Sigma_0)` (the system's start law), then
    exact draws of the model (:func:`ebm_ppl.exact.lqr.sample_trajectories`: the soft-optimal
    policy in the true dynamics for ``"causal"``, the tilted transitions for ``"trajectory"``).
    ``log_prob``: the exact log-likelihood given :math:`x_0`, with respect to
    :math:`b(\\tau)\\,du` (module docstring).

    Args:
        system: :class:`~ebm_ppl.spaces.linear_gaussian.LinearGaussianSystem`.
        cost: :class:`~ebm_ppl.spaces.linear_gaussian.CostMatrices` (may be traced).
        model: ``"causal"`` or ``"trajectory"``.
    """

    pytree_data_fields = ("system", "cost", "solution")
    pytree_aux_fields = ("model",)

    def __init__(
        self,
        system: LinearGaussianSystem,
        cost: CostMatrices,
        *,
        model: str = "causal",
        validate_args=None,
    ):
        check_choice("model", model, MODELS)
        self.system = system
        self.cost = cost
        self.model = model
        self.solution = soft_riccati(system, cost, model=model)
        event = (system.horizon + 1, system.state_dim + system.control_dim)
        super().__init__(batch_shape=(), event_shape=event, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=2)
    def support(self):
        return constraints.independent(constraints.real, 2)

    def _check_value(self, value):
        shape = jnp.shape(value)
        if shape[-2:] != self.event_shape:
            raise ValueError(
                f"`value` must have shape (..., T + 1, n + m) = (..., {self.event_shape[0]}, "
                f"{self.event_shape[1]}); got {shape}."
            )

    def sample(self, key, sample_shape=()):
        return _sample_observed(key, self.system, self.solution, tuple(sample_shape))

    def log_prob(self, value):
        """Exact log-likelihood of observed arrays ``(..., T + 1, n + m)`` given their starts."""
        self._check_value(value)
        paths = from_observed(value, self.system.state_dim)
        if self.model == "causal":
            return policy_log_prob(self.solution, paths)
        start = paths.states[..., 0, :]
        return -quadratic_cost(self.cost, paths.states, paths.controls) - initial_value(
            self.solution, start
        )


@dataclasses.dataclass(frozen=True)
class LinearGaussianProblem:
    """A linear-Gaussian MaxEnt IRL problem (the continuous counterpart of
    :class:`~ebm_ppl.problems.Problem`).

    Attributes:
        name: registry name.
        system: the :class:`~ebm_ppl.spaces.linear_gaussian.LinearGaussianSystem`.
        energy_model: a cost model with ``prior()``, ``init_params()``, ``matrices(params)``
            and ``cost(params, states, controls)``
            (:class:`~ebm_ppl.energy.quadratic.QuadraticCost`).
        model: the inference likelihood, ``"causal"`` (default) or ``"trajectory"``.
        discount: :math:`\\gamma`; must be 1 (finite horizon, undiscounted).
        true_params: the parameters that generated the demonstrations (synthetic problems).
        demos: :class:`~ebm_ppl.spaces.linear_gaussian.GaussianTrajectories` with batch shape
            ``(N,)`` (validated against the dynamics when concrete), or ``None``.
    """

    name: str
    system: LinearGaussianSystem
    energy_model: Any
    model: str = "causal"
    discount: float = 1.0
    true_params: Any = None
    demos: Any = None

    def __post_init__(self):
        if isinstance(self.model, str):
            check_choice("model", self.model, MODELS)
        if self.discount != 1.0:
            raise ValueError(
                "`discount` must be 1: linear-Gaussian problems are finite-horizon, undiscounted "
                f"(the trajectory-level model refuses gamma < 1); got {self.discount!r}."
            )
        if not isinstance(self.system, LinearGaussianSystem):
            raise TypeError(
                f"`system` must be a LinearGaussianSystem; got {type(self.system).__name__}."
            )
        dims = (
            getattr(self.energy_model, "state_dim", None),
            getattr(self.energy_model, "control_dim", None),
        )
        if is_host_data(self.system.transition) and None not in dims:
            expected = (self.system.state_dim, self.system.control_dim)
            if dims != expected:
                raise ValueError(
                    f"`energy_model` has (state_dim, control_dim) = {dims}; the system has "
                    f"{expected}."
                )
        if self.demos is not None and is_host_data(self.system.transition):
            leaves = jax.tree.leaves(self.demos)
            if leaves and all(is_host_data(leaf) for leaf in leaves):
                demos = validate_trajectories(self.system, self.demos, name="demos")
                object.__setattr__(self, "demos", demos)

    @property
    def num_demos(self) -> int:
        return 0 if self.demos is None else int(self.demos.states.shape[0])

    def cost_matrices(self, params) -> CostMatrices:
        return self.energy_model.matrices(params)

    def trajectory_distribution(self, params, *, model: str | None = None):
        """:class:`LinearGaussianTrajectories` at ``params`` (default model: ``self.model``)."""
        model = self.model if model is None else model
        return LinearGaussianTrajectories(self.system, self.cost_matrices(params), model=model)

    def log_likelihood(self, params, demos=None, *, model: str | None = None) -> jax.Array:
        """Exact per-demonstration log-likelihood ``(N,)`` (module docstring)."""
        demos = self._demos(demos)
        distribution = self.trajectory_distribution(params, model=model)
        return distribution.log_prob(to_observed(demos))

    def log_z(self, params, x0=None) -> jax.Array:
        """Trajectory-level :math:`\\log Z(x_0)` (default :math:`x_0 = \\mu_0`), shape
        ``x0.shape[:-1]``."""
        x0 = self.system.initial_mean if x0 is None else x0
        return log_partition(self.system, self.cost_matrices(params), x0)

    def _demos(self, demos) -> GaussianTrajectories:
        demos = self.demos if demos is None else demos
        if demos is None:
            raise ValueError(f"problem {self.name!r} has no `demos`; pass `demos=`.")
        if not isinstance(demos, GaussianTrajectories):
            demos = validate_trajectories(self.system, demos, name="demos")
        return demos

    def replace(self, **changes) -> LinearGaussianProblem:
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    LinearGaussianProblem,
    data_fields=["system", "energy_model", "true_params", "demos"],
    meta_fields=["name", "model", "discount"],
)


def posterior_model(problem: LinearGaussianProblem, demos=None, *, num_demos: int | None = None):
    """NumPyro model of the cost posterior of a :class:`LinearGaussianProblem`.

    Sites: the energy model's parameter sites (``prior()``) and the observed site ``"demos"`` in
    a plate ``"demo"`` of size :math:`N` (per-demonstration log-likelihoods for
    ``numpyro.infer.log_likelihood`` and ArviZ). Run it with ``numpyro.infer.NUTS``; pass the
    problem as a model argument (it is a pytree).

    Args:
        problem: the problem.
        demos: :class:`~ebm_ppl.spaces.linear_gaussian.GaussianTrajectories` or observed arrays
            ``(N, T + 1, n + m)``; default ``problem.demos``. ``None`` with ``num_demos``: the
            prior predictive (nothing observed).
        num_demos: size of the plate when nothing is observed.
    """
    if demos is None and num_demos is not None:
        observed = None
        size = num_demos
    else:
        demos = problem._demos(demos)
        observed = to_observed(demos)
        size = observed.shape[0]
    params = problem.energy_model.prior()
    with numpyro.plate("demo", size):
        numpyro.sample("demos", problem.trajectory_distribution(params), obs=observed)
