r"""MaxEnt trajectory distributions over a tabular MDP, as NumPyro distributions.

Each distribution's event is one observed array of shape ``(T + 1, 2)`` (DESIGN §3) and its
``log_prob`` is the log-probability of the whole array under counting measure, **including**
:math:`\log\rho_0(s_0)` and :math:`\sum_t\log P(s_{t+1}\mid s_t,a_t)`;
``log_prob_policy`` is the dynamics-free part (THEORY §4). ``sample`` is exact.

* :class:`CausalTrajectories`: maximum causal entropy (THEORY §1.3), normalised, no estimator:
  :math:`\log p = \log b(\tau) + \sum_t \log\pi_t(a_t\mid s_t)`.
* :class:`MaxEntTrajectories`: the trajectory-level models of THEORY §1.1–§1.2,
  :math:`\log p = \log b(\tau) + R(\tau) - \log Z(s_0)` (``"trajectory"``) or
  :math:`- \log Z` (``"trajectory_global"``), with :math:`\log Z` from a
  :class:`~ebm_ppl.logz.LogZEstimator` (default :func:`~ebm_ppl.logz.exact`). An estimated
  :math:`\log Z` is computed **once, when the distribution is built**, with the key given then
  (fixed random numbers, THEORY §7.4); ``log_prob`` never draws a fresh key.

A reward posterior is then plain NumPyro::

    def model(demos):
        params = energy_model.prior()
        numpyro.sample("demos", CausalTrajectories(mdp, energy_model.reward(params)), obs=demos)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints

from ebm_ppl.exact.sampling import policy_rollout, sample_trajectories
from ebm_ppl.exact.tabular import check_model, initial_values, soft_bellman, start_states
from ebm_ppl.exact.trajectory import (
    log_base_measure,
    sum_log_policy,
    trajectory_return,
)
from ebm_ppl.spaces.tabular import TabularMDP

__all__ = ["CausalTrajectories", "MaxEntTrajectories", "PolicyRollout"]


def _event_map(fn, value):
    """Apply a per-trajectory ``fn`` over the leading (batch) axes of ``value``."""
    value = jnp.asarray(value, dtype=jnp.int32)
    flat = value.reshape((-1,) + value.shape[-2:])
    return jax.vmap(fn)(flat).reshape(value.shape[:-2])


def _require_mdp(mdp) -> None:
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"`mdp` must be a TabularMDP; got {type(mdp).__name__}.")


class _TrajectoryDistribution(dist.Distribution):
    """Shared plumbing: event shape ``(T + 1, 2)``, integer support, batch handling."""

    pytree_data_fields = ("mdp",)

    def __init__(self, mdp: TabularMDP, *, validate_args=None):
        _require_mdp(mdp)
        self.mdp = mdp
        super().__init__(
            batch_shape=(), event_shape=(mdp.horizon + 1, 2), validate_args=validate_args
        )

    @constraints.dependent_property(is_discrete=True, event_dim=2)
    def support(self):
        return constraints.independent(constraints.integer_interval(-1, self.mdp.num_states - 1), 2)

    def log_prob(self, value):
        return _event_map(
            lambda obs: log_base_measure(self.mdp, obs) + self._log_prob_policy(obs), value
        )

    def log_prob_policy(self, value):
        """The dynamics-free part of ``log_prob`` (THEORY §4): ``log_prob`` minus ``log b(tau)``."""
        return _event_map(self._log_prob_policy, value)

    def _log_prob_policy(self, observed):  # pragma: no cover - abstract
        raise NotImplementedError


class CausalTrajectories(_TrajectoryDistribution):
    """Maximum-causal-entropy trajectories (THEORY §1.3); normalised, no :math:`Z` needed.

    Args:
        mdp: the MDP.
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)`` reward table.
        discount: :math:`\\gamma \\in (0, 1]` multiplying the continuation value.
    """

    pytree_data_fields = ("reward", "log_policy")
    pytree_aux_fields = ("discount",)

    def __init__(self, mdp: TabularMDP, reward, *, discount: float = 1.0, validate_args=None):
        _require_mdp(mdp)
        check_model("causal", discount)
        self.reward = jnp.asarray(reward)
        self.discount = float(discount)
        self.log_policy = soft_bellman(
            mdp, self.reward, model="causal", discount=discount
        ).log_policy
        super().__init__(mdp, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        num = int(jnp.prod(jnp.asarray(sample_shape))) if sample_shape else 1
        draws = sample_trajectories(
            key, self.mdp, self.reward, model="causal", num_samples=num, discount=self.discount
        )
        return draws.reshape(tuple(sample_shape) + self.event_shape)

    def _log_prob_policy(self, observed):
        return sum_log_policy(self.log_policy, observed)


class MaxEntTrajectories(_TrajectoryDistribution):
    """Trajectory-level MaxEnt model :math:`p(\\tau) = b(\\tau)e^{R(\\tau)}/Z` (THEORY §1.1–§1.2).

    Under stochastic dynamics this model tilts the transitions toward high-value next states and
    is not realisable by a policy in the true dynamics (THEORY §1.2); it equals the causal model
    under deterministic dynamics with ``model="trajectory"``.

    Args:
        mdp: the MDP.
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        model: ``"trajectory"`` (one :math:`\\log Z(s_0)` per start state, the default) or
            ``"trajectory_global"`` (one :math:`Z`; re-weights start states).
        log_z: optional precomputed :math:`\\log Z`: ``(S,)`` indexed by start state for
            ``"trajectory"``, scalar for ``"trajectory_global"``; default: exact recursion.
            Use :meth:`from_estimator` for an estimated :math:`\\log Z`.
    """

    pytree_data_fields = ("reward", "log_z")
    pytree_aux_fields = ("model",)

    def __init__(
        self, mdp: TabularMDP, reward, *, model: str = "trajectory", log_z=None, validate_args=None
    ):
        _require_mdp(mdp)
        check_model(model, 1.0, allowed=("trajectory", "trajectory_global"))
        self.reward = jnp.asarray(reward)
        self.model = model
        if log_z is None:
            w0 = initial_values(mdp, self.reward, model="trajectory")
            if model == "trajectory_global":
                with jax.numpy_dtype_promotion("standard"):
                    log_rho = jnp.where(mdp.initial_dist > 0, jnp.log(mdp.initial_dist), -jnp.inf)
                log_z = jax.scipy.special.logsumexp(log_rho + w0)
            else:
                log_z = w0
        self.log_z = jnp.asarray(log_z)
        expected = () if model == "trajectory_global" else (mdp.num_states,)
        if self.log_z.shape != expected:
            raise ValueError(
                f"`log_z` must have shape {expected} for model={model!r}; got {self.log_z.shape}."
            )
        super().__init__(mdp, validate_args=validate_args)

    @classmethod
    def from_estimator(cls, rng_key, estimator, problem, params, *, model: str = "trajectory"):
        """Build with :math:`\\log Z` from ``estimator``, run once now with ``rng_key``.

        The key is bound here (fixed random numbers): ``log_prob`` is then a deterministic,
        smooth function of ``params`` only if the estimator is (THEORY §7.4).
        """
        if model not in estimator.models:
            raise ValueError(
                f"estimator {estimator.name!r} serves models {estimator.models}; "
                f"got model={model!r}."
            )
        mdp = problem.mdp
        result = estimator.run(rng_key, problem, params, s0=None if model != "trajectory" else None)
        if model == "trajectory":
            table = jnp.full((mdp.num_states,), jnp.inf, dtype=result.log_z.dtype)
            log_z = table.at[start_states(mdp)].set(result.log_z)
        else:
            log_z = result.log_z
        return cls(mdp, problem.energy_model.reward(params), model=model, log_z=log_z)

    def sample(self, key, sample_shape=()):
        num = int(jnp.prod(jnp.asarray(sample_shape))) if sample_shape else 1
        draws = sample_trajectories(key, self.mdp, self.reward, model=self.model, num_samples=num)
        return draws.reshape(tuple(sample_shape) + self.event_shape)

    def _log_prob_policy(self, observed):
        total = trajectory_return(self.mdp, self.reward, observed)
        if self.model == "trajectory_global":
            return total - self.log_z
        return total - self.log_z[jnp.maximum(jnp.asarray(observed)[0, 0], 0)]


class PolicyRollout(_TrajectoryDistribution):
    """Trajectories of a policy in the true dynamics, :math:`q(\\tau) = b(\\tau)\\prod_t\\pi_t`.

    Args:
        mdp: the MDP.
        log_policy: ``(T, S, A)`` time-indexed or ``(S, A)`` stationary log-probabilities.
    """

    pytree_data_fields = ("log_policy",)

    def __init__(self, mdp: TabularMDP, log_policy, *, validate_args=None):
        log_policy = jnp.asarray(log_policy)
        num_states, num_actions = mdp.num_states, mdp.num_actions
        if log_policy.shape == (num_states, num_actions):
            log_policy = jnp.broadcast_to(log_policy, (mdp.horizon, num_states, num_actions))
        if log_policy.shape != (mdp.horizon, num_states, num_actions):
            raise ValueError(
                f"`log_policy` must have shape (T, S, A) = ({mdp.horizon}, {num_states}, "
                f"{num_actions}) or (S, A); got {log_policy.shape}."
            )
        self.log_policy = log_policy
        super().__init__(mdp, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        num = int(jnp.prod(jnp.asarray(sample_shape))) if sample_shape else 1
        draws = policy_rollout(key, self.mdp, self.log_policy, num)
        return draws.reshape(tuple(sample_shape) + self.event_shape)

    def _log_prob_policy(self, observed):
        return sum_log_policy(self.log_policy, observed)
