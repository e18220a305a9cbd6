"""Policies: tabular rollout distributions q(tau), and time-indexed policies over continuous states.

* :mod:`~ebm_ppl.policies.tabular`: the proposals and generators of the tabular problems;
* :mod:`~ebm_ppl.policies.gaussian`: Gaussian policies (linear or MLP mean) for continuous actions
  and softmax policies (linear or MLP logits) for discrete actions of continuous-state problems,
  the generators of :mod:`ebm_ppl.adversarial.continuous`.
"""

from ebm_ppl.policies.gaussian import COVARIANCES as COVARIANCES
from ebm_ppl.policies.gaussian import Policy as Policy
from ebm_ppl.policies.gaussian import Rollout as Rollout
from ebm_ppl.policies.gaussian import linear_gaussian as linear_gaussian
from ebm_ppl.policies.gaussian import linear_gaussian_params as linear_gaussian_params
from ebm_ppl.policies.gaussian import linear_softmax as linear_softmax
from ebm_ppl.policies.gaussian import mlp_gaussian as mlp_gaussian
from ebm_ppl.policies.gaussian import mlp_softmax as mlp_softmax
from ebm_ppl.policies.tabular import PolicyRollout as PolicyRollout
from ebm_ppl.policies.tabular import TrajectoryDistribution as TrajectoryDistribution

__all__ = [
    "COVARIANCES",
    "Policy",
    "PolicyRollout",
    "Rollout",
    "TrajectoryDistribution",
    "linear_gaussian",
    "linear_gaussian_params",
    "linear_softmax",
    "mlp_gaussian",
    "mlp_softmax",
]
