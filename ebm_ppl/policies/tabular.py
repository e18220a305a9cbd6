r"""Policy rollouts :math:`q(\tau) = b(\tau)\prod_t\pi_t(a_t\mid s_t)` over a tabular MDP.

Also the base class every tabular trajectory distribution shares (event shape ``(T + 1, 2)``,
``log_prob`` = :math:`\log b(\tau)` + the dynamics-free ``log_prob_policy``, DESIGN §3). Policy
rollouts are the proposals and generators of the estimator and adversarial layers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints

from ebm_ppl._validation import is_concrete
from ebm_ppl.exact.sampling import policy_rollout
from ebm_ppl.exact.trajectory import log_base_measure, sum_log_policy
from ebm_ppl.spaces.tabular import TabularMDP, validate_trajectories

__all__ = ["TrajectoryDistribution", "PolicyRollout", "require_mdp"]


def _event_map(fn, value):
    """Apply a per-trajectory ``fn`` over the leading (batch) axes of ``value``."""
    value = jnp.asarray(value, dtype=jnp.int32)
    flat = value.reshape((-1,) + value.shape[-2:])
    return jax.vmap(fn)(flat).reshape(value.shape[:-2])


def _mdp_is_concrete(mdp) -> bool:
    return all(is_concrete(leaf) for leaf in jax.tree.leaves(mdp))


def require_mdp(mdp) -> None:
    """Raise ``TypeError`` unless ``mdp`` is a :class:`TabularMDP`."""
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"`mdp` must be a TabularMDP; got {type(mdp).__name__}.")


class TrajectoryDistribution(dist.Distribution):
    """Base of the tabular trajectory distributions: event ``(T + 1, 2)``, integer support.

    Subclasses define ``_log_prob_policy(observed)`` (one trajectory) and ``sample``.
    """

    pytree_data_fields = ("mdp",)

    def __init__(self, mdp: TabularMDP, *, validate_args=None):
        require_mdp(mdp)
        self.mdp = mdp
        super().__init__(
            batch_shape=(), event_shape=(mdp.horizon + 1, 2), validate_args=validate_args
        )

    @constraints.dependent_property(is_discrete=True, event_dim=2)
    def support(self):
        # a box over both columns (states < S, actions < A); the exact structure is checked by
        # `validate_trajectories` and made -inf by `log_prob`
        upper = max(self.mdp.num_states, self.mdp.num_actions) - 1
        return constraints.independent(constraints.integer_interval(-1, upper), 2)

    def _check_value(self, value):
        shape = jnp.shape(value)
        if shape[-2:] != self.event_shape:
            raise ValueError(
                f"`value` must have shape (..., T + 1, 2) = (..., {self.event_shape[0]}, 2); "
                f"got {shape}."
            )
        if self._validate_args and is_concrete(value) and _mdp_is_concrete(self.mdp):
            # eager even inside a trace whose constants these are (jnp ops would be staged)
            with jax.ensure_compile_time_eval():
                flat = jnp.reshape(value, (-1,) + self.event_shape)
                validate_trajectories(self.mdp, flat, name="value")

    def log_prob(self, value):
        """Log-probability of observed arrays ``(..., T + 1, 2)`` (``-inf`` if malformed)."""
        self._check_value(value)
        return _event_map(
            lambda obs: log_base_measure(self.mdp, obs) + self._log_prob_policy(obs), value
        )

    def log_prob_policy(self, value):
        """The dynamics-free part of ``log_prob`` (THEORY §4): ``log_prob`` minus ``log b(tau)``."""
        self._check_value(value)
        return _event_map(self._log_prob_policy, value)

    def _log_prob_policy(self, observed):  # pragma: no cover - abstract
        raise NotImplementedError


class PolicyRollout(TrajectoryDistribution):
    """Trajectories of a policy in the true dynamics, :math:`q(\\tau) = b(\\tau)\\prod_t\\pi_t`.

    Args:
        mdp: the MDP.
        log_policy: ``(T, S, A)`` time-indexed or ``(S, A)`` stationary log-probabilities.
    """

    pytree_data_fields = ("log_policy",)

    def __init__(self, mdp: TabularMDP, log_policy, *, validate_args=None):
        require_mdp(mdp)
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
