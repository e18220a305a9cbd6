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

from ebm_ppl.exact.sampling import sample_trajectories
from ebm_ppl.exact.tabular import check_model, initial_values, safe_log, soft_bellman, start_states
from ebm_ppl.exact.trajectory import sum_log_policy, trajectory_return
from ebm_ppl.policies.tabular import TrajectoryDistribution, require_mdp
from ebm_ppl.spaces.tabular import TabularMDP

__all__ = ["CausalTrajectories", "MaxEntTrajectories"]


class CausalTrajectories(TrajectoryDistribution):
    """Maximum-causal-entropy trajectories (THEORY §1.3); normalised, no :math:`Z` needed.

    Args:
        mdp: the MDP.
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)`` reward table.
        discount: :math:`\\gamma \\in (0, 1]` multiplying the continuation value.
    """

    pytree_data_fields = ("reward", "log_policy")
    pytree_aux_fields = ("discount",)

    def __init__(self, mdp: TabularMDP, reward, *, discount: float = 1.0, validate_args=None):
        require_mdp(mdp)
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


class MaxEntTrajectories(TrajectoryDistribution):
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
            The exact default is differentiable in ``reward`` only: the dynamics are constants.
    """

    pytree_data_fields = ("reward", "log_z")
    pytree_aux_fields = ("model",)

    def __init__(
        self, mdp: TabularMDP, reward, *, model: str = "trajectory", log_z=None, validate_args=None
    ):
        require_mdp(mdp)
        check_model(model, 1.0, allowed=("trajectory", "trajectory_global"))
        self.reward = jnp.asarray(reward)
        self.model = model
        if log_z is None:
            w0 = initial_values(mdp, self.reward, model="trajectory")
            if model == "trajectory_global":
                log_rho = safe_log(mdp.initial_dist)
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
    def from_estimator(
        cls, rng_key, estimator, problem, params, *, model: str = "trajectory", s0=None
    ):
        """Build with :math:`\\log Z` from ``estimator``, run once now with ``rng_key``.

        The key is bound here (fixed random numbers): ``log_prob`` is then a deterministic,
        smooth function of ``params`` only if the estimator is (``estimator.smooth``,
        THEORY §7.4). With an estimated :math:`\\log Z` the likelihood is a **plug-in**
        surrogate, biased (inflated by about :math:`N\\chi^2/2K`, THEORY §7.4).

        Args:
            s0: the start states whose :math:`\\log Z(s_0)` to estimate (``"trajectory"``);
                default every state with :math:`\\rho_0 > 0` (needs a concrete ``mdp``: under
                ``jit`` pass them). Demonstrations from other start states get ``-inf``.
        """
        if model not in estimator.models:
            raise ValueError(
                f"estimator {estimator.name!r} serves models {estimator.models}; "
                f"got model={model!r}."
            )
        mdp = problem.mdp
        if model == "trajectory":
            starts = start_states(mdp, s0)
            result = estimator.run(rng_key, problem, params, s0=starts)
            table = jnp.full((mdp.num_states,), jnp.inf, dtype=result.log_z.dtype)
            log_z = table.at[starts].set(result.log_z)
        else:
            log_z = estimator.run(rng_key, problem, params).log_z
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
