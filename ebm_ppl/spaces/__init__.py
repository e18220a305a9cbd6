"""State spaces and dynamics: tabular MDPs and trajectories."""

from ebm_ppl.spaces.tabular import PAD as PAD
from ebm_ppl.spaces.tabular import TabularMDP as TabularMDP
from ebm_ppl.spaces.tabular import Trajectories as Trajectories
from ebm_ppl.spaces.tabular import validate_trajectories as validate_trajectories

__all__ = ["PAD", "TabularMDP", "Trajectories", "validate_trajectories"]
