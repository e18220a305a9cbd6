"""State spaces and dynamics: tabular MDPs, linear-Gaussian systems, and their trajectories."""

from ebm_ppl.spaces.linear_gaussian import CostMatrices as CostMatrices
from ebm_ppl.spaces.linear_gaussian import GaussianTrajectories as GaussianTrajectories
from ebm_ppl.spaces.linear_gaussian import LinearGaussianSystem as LinearGaussianSystem
from ebm_ppl.spaces.tabular import PAD as PAD
from ebm_ppl.spaces.tabular import TabularMDP as TabularMDP
from ebm_ppl.spaces.tabular import Trajectories as Trajectories
from ebm_ppl.spaces.tabular import validate_trajectories as validate_trajectories

__all__ = [
    "CostMatrices",
    "GaussianTrajectories",
    "LinearGaussianSystem",
    "PAD",
    "TabularMDP",
    "Trajectories",
    "validate_trajectories",
]
