r"""The Bayesian-IRL Boltzmann likelihood [BIRL] as a NumPyro trajectory distribution (THEORY §7.5).

An expert who is Boltzmann-rational with confidence (inverse temperature) :math:`\alpha > 0`
picks actions from a **stationary** policy of the discounted MDP with reward :math:`R`:

.. math::

    \pi(a\mid s) = \frac{\exp(\alpha Q_R(s,a))}{\sum_b\exp(\alpha Q_R(s,b))},\qquad
    \log p(\tau) = \log\rho_0(s_0) + \sum_{t<L}\log P(s_{t+1}\mid s_t,a_t)
    + \sum_{t<L}\log\pi(a_t\mid s_t),

over the ``L`` non-padded steps of the observed array (``L = T`` unless the trajectory reached a
terminal state). Two choices of :math:`Q_R` (``q=``):

* ``"soft"`` (default, the recommended NumPyro variant of THEORY §7.5): the stationary discounted
  **causal** (MCE) model with reward :math:`\alpha R`, i.e.
  :math:`\log\pi = Q^{\mathrm{soft}}_{\alpha R} - V^{\mathrm{soft}}_{\alpha R}` from
  :func:`~ebm_ppl.exact.infinite.soft_value_iteration` (the soft Q of THEORY §1.3 at temperature
  :math:`1/\alpha`). Smooth in :math:`R` and :math:`\alpha` (implicit VJP), so NUTS-friendly;
  :math:`\alpha` may be a traced, sampled scalar.
* ``"hard"``: the paper's :math:`\log\pi = \log\mathrm{softmax}(\alpha Q^*_R(s,\cdot))` with
  :math:`Q^*_R` the hard optimal Q-function from :func:`~ebm_ppl.exact.hard.policy_iteration`.
  :math:`Q^*_R` is piecewise linear in :math:`R`, so the log-likelihood has kinks: use it with
  PolicyWalk (:mod:`ebm_ppl.inference.policywalk`) or for replication, not with NUTS.

Both are **normalised** policy models (a per-state softmax), so BIRL is not doubly intractable:
:math:`\log p` needs no global :math:`Z`, only one MDP solve per :math:`R`. The dynamics factor
:math:`\log\rho_0 + \sum\log P` is included in ``log_prob`` (DESIGN §3); it does not depend on
:math:`R` and cancels from every posterior ratio (``log_prob_policy`` omits it). [BIRL] writes the
likelihood as a product over observed (s, a) pairs; this is the same product.

**Identification** (THEORY §1.6). Only :math:`\alpha R` is identified: the soft policy depends on
:math:`\alpha R` alone, and :math:`Q^*_{cR} = cQ^*_R` for :math:`c > 0` makes the hard one depend
on it too, so sampling :math:`\alpha` and the scale of :math:`R` together needs a prior that fixes
one of them. Potential shaping leaves both policies unchanged (exactly flat, stationary
discounted model), and so does a constant shift of :math:`R` when no terminal state is reachable
(a terminal state has value 0, which pins the level).

**Label bias** ([Z08], THEORY §7.5). The model normalises locally, one softmax per visited state.
With the hard :math:`Q^*` the softmax compares only the optimal continuation of each action, not
how many good continuations it leads to, so branching structure distorts path probabilities (a
state with one action gets probability 1 whatever its reward). The soft Q counts continuations
through its log-sum-exp values: for deterministic dynamics, finite horizon and :math:`\gamma = 1`
the causal model equals the trajectory-level MaxEnt model, which has no label bias; the stationary
discounted version here is its infinite-horizon counterpart.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl._validation import check_choice, check_finite, is_concrete
from ebm_ppl.exact.hard import policy_iteration
from ebm_ppl.exact.infinite import soft_value_iteration
from ebm_ppl.exact.sampling import policy_rollout
from ebm_ppl.exact.trajectory import steps
from ebm_ppl.policies.tabular import TrajectoryDistribution, require_mdp
from ebm_ppl.spaces.tabular import TabularMDP

__all__ = ["BoltzmannTrajectories", "Q_KINDS"]

Q_KINDS = ("soft", "hard")
"""The Q-functions of the Boltzmann likelihood: soft (causal, smooth) or hard optimal."""


def _check_rationality(rationality, dtype) -> jax.Array:
    if isinstance(rationality, bool):
        raise TypeError(f"`rationality` must be a positive float; got {rationality!r}.")
    alpha = jnp.asarray(rationality)
    if alpha.ndim != 0:
        raise ValueError(f"`rationality` must be a scalar > 0; got shape {alpha.shape}.")
    if not jnp.issubdtype(alpha.dtype, jnp.floating):
        alpha = alpha.astype(dtype)
    if is_concrete(alpha):
        value = float(np.asarray(alpha))
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"`rationality` must be a finite float > 0; got {value!r}.")
    return alpha


def _check_discount(discount) -> float:
    if isinstance(discount, jax.core.Tracer):
        raise TypeError("`discount` must be a static Python float, not a traced value.")
    if isinstance(discount, bool) or not 0.0 < float(discount) < 1.0:
        raise ValueError(
            f"`discount` must be a float in (0, 1) (the stationary discounted model); "
            f"got {discount!r}."
        )
    return float(discount)


# compiled once per shape and setting (eager calls would re-trace their loops every time)
_policy_rollout = jax.jit(policy_rollout, static_argnums=(3,))
_soft_value_iteration = jax.jit(soft_value_iteration, static_argnames=("discount",))


class BoltzmannTrajectories(TrajectoryDistribution):
    """Bayesian-IRL Boltzmann-rational trajectories (THEORY §7.5); normalised, no :math:`Z`.

    ``log_prob`` is :math:`\\log\\rho_0(s_0) + \\sum_t\\log P(s_{t+1}|s_t,a_t) +
    \\sum_t\\log\\pi(a_t|s_t)` with the stationary policy :math:`\\pi =
    \\mathrm{softmax}(\\alpha Q_R)` (soft: the discounted causal policy of reward
    :math:`\\alpha R`), summed over the non-padded steps; ``sample`` rolls that policy through the
    true dynamics for ``mdp.horizon`` steps (exact). See the module docstring for the math, what is
    identified (only :math:`\\alpha R`) and the label-bias caveat of the hard variant.

    Args:
        mdp: the MDP (dense or sparse); its ``horizon`` is the length of the trajectories, the
            policy itself is the stationary infinite-horizon one.
        reward: ``(S,)``, ``(S, A)`` or ``(S, A, S)`` reward table :math:`R`.
        rationality: :math:`\\alpha > 0`, a scalar (may be traced; checked when concrete).
        discount: :math:`\\gamma \\in (0, 1)`, a static float (``problem.birl_discount``).
        q: ``"soft"`` (smooth, the default) or ``"hard"`` (the paper's :math:`Q^*`).
        validate_args: NumPyro's flag; when set, observed values are checked against the MDP.

    Attributes:
        log_policy: ``(S, A)`` stationary :math:`\\log\\pi` (uniform at terminal states).
        q_values: ``(S, A)`` :math:`\\alpha Q_R` (soft: :math:`Q^{\\mathrm{soft}}_{\\alpha R}`;
            hard: :math:`\\alpha Q^*_R`), the logits of the policy.
        num_iterations: soft value-iteration sweeps or policy-iteration evaluations used.

    Raises:
        ValueError: ``rationality`` not a scalar > 0, ``discount`` outside (0, 1), or ``q`` not
            one of ``("soft", "hard")``.
        TypeError: ``mdp`` is not a :class:`~ebm_ppl.spaces.TabularMDP`, or ``discount`` is
            traced.
    """

    pytree_data_fields = ("reward", "rationality", "log_policy", "q_values", "num_iterations")
    pytree_aux_fields = ("discount", "q")

    def __init__(
        self,
        mdp: TabularMDP,
        reward,
        *,
        rationality=1.0,
        discount: float = 0.9,
        q: str = "soft",
        validate_args=None,
    ):
        require_mdp(mdp)
        check_choice("q", q, Q_KINDS)
        self.discount = _check_discount(discount)
        self.q = q
        reward = jnp.asarray(reward)
        if not jnp.issubdtype(reward.dtype, jnp.floating):
            reward = reward.astype(mdp.dtype)
        check_finite("reward", reward)  # eagerly: inside the jitted solvers it is traced
        self.reward = reward
        self.rationality = _check_rationality(rationality, reward.dtype)
        alpha = self.rationality.astype(reward.dtype)
        if q == "soft":
            solution = _soft_value_iteration(mdp, alpha * reward, discount=self.discount)
            self.q_values = solution.q_values
            self.log_policy = solution.log_policy
        else:
            solution = policy_iteration(mdp, reward, discount=self.discount)
            self.q_values = alpha * solution.q_values
            self.log_policy = jax.nn.log_softmax(self.q_values, axis=-1)
        self.num_iterations = solution.num_iterations
        super().__init__(mdp, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        num = int(np.prod(sample_shape)) if sample_shape else 1
        draws = _policy_rollout(key, self.mdp, self.log_policy, num)
        return draws.reshape(tuple(sample_shape) + self.event_shape)

    def _log_prob_policy(self, observed):
        states, actions, _, mask = steps(observed)
        return jnp.sum(jnp.where(mask, self.log_policy[states, actions], 0))
