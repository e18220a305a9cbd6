"""ebm_ppl: MaxEnt IRL, GANs and energy-based models as probabilistic programs in JAX/NumPyro.

Sign convention: :math:`p(x) = e^{-E(x)}/Z`; for trajectories :math:`E = c = -R`.
"""

from ebm_ppl import diagnostics as diagnostics
from ebm_ppl import exact as exact
from ebm_ppl import logz as logz
from ebm_ppl import plots as plots
from ebm_ppl.compare import compare as compare
from ebm_ppl.diagnostics import reward_recovery as reward_recovery
from ebm_ppl.diagnostics import summary as summary
from ebm_ppl.energy import LinearReward as LinearReward
from ebm_ppl.energy import MLPReward as MLPReward
from ebm_ppl.energy import TabularReward as TabularReward
from ebm_ppl.inference import FitResult as FitResult
from ebm_ppl.inference import fit_reward as fit_reward
from ebm_ppl.inference import infer_reward as infer_reward
from ebm_ppl.inference import posterior_model as posterior_model
from ebm_ppl.likelihood import CausalTrajectories as CausalTrajectories
from ebm_ppl.likelihood import MaxEntTrajectories as MaxEntTrajectories
from ebm_ppl.metrics import epic_distance as epic_distance
from ebm_ppl.metrics import expected_value_difference as expected_value_difference
from ebm_ppl.policies import PolicyRollout as PolicyRollout
from ebm_ppl.problems import Problem as Problem
from ebm_ppl.problems import make_problem as make_problem
from ebm_ppl.spaces import TabularMDP as TabularMDP
from ebm_ppl.spaces import Trajectories as Trajectories

__version__ = "0.1.0"

__all__ = [
    "CausalTrajectories",
    "FitResult",
    "LinearReward",
    "MLPReward",
    "MaxEntTrajectories",
    "PolicyRollout",
    "Problem",
    "TabularMDP",
    "TabularReward",
    "Trajectories",
    "compare",
    "diagnostics",
    "epic_distance",
    "exact",
    "expected_value_difference",
    "fit_reward",
    "infer_reward",
    "logz",
    "make_problem",
    "plots",
    "posterior_model",
    "reward_recovery",
    "summary",
]
