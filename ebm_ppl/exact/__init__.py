"""Exact answers: backward recursions, occupancy measures, exact sampling, enumeration."""

from ebm_ppl.exact.enumerate import enumerate_trajectories as enumerate_trajectories
from ebm_ppl.exact.enumerate import enumerated_log_probs as enumerated_log_probs
from ebm_ppl.exact.infinite import soft_value_iteration as soft_value_iteration
from ebm_ppl.exact.sampling import policy_rollout as policy_rollout
from ebm_ppl.exact.sampling import sample_trajectories as sample_trajectories
from ebm_ppl.exact.tabular import MODELS as MODELS
from ebm_ppl.exact.tabular import Occupancy as Occupancy
from ebm_ppl.exact.tabular import SoftBellman as SoftBellman
from ebm_ppl.exact.tabular import feature_expectations as feature_expectations
from ebm_ppl.exact.tabular import initial_values as initial_values
from ebm_ppl.exact.tabular import log_partition as log_partition
from ebm_ppl.exact.tabular import occupancy_measures as occupancy_measures
from ebm_ppl.exact.tabular import soft_bellman as soft_bellman
from ebm_ppl.exact.trajectory import causal_log_prob as causal_log_prob

__all__ = [
    "MODELS",
    "Occupancy",
    "SoftBellman",
    "causal_log_prob",
    "enumerate_trajectories",
    "enumerated_log_probs",
    "feature_expectations",
    "initial_values",
    "log_partition",
    "occupancy_measures",
    "policy_rollout",
    "sample_trajectories",
    "soft_bellman",
    "soft_value_iteration",
]
