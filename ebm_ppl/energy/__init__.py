"""Energy (cost/reward) models as NumPyro models."""

from ebm_ppl.energy.tabular import LinearReward as LinearReward
from ebm_ppl.energy.tabular import MLPReward as MLPReward
from ebm_ppl.energy.tabular import TabularReward as TabularReward

__all__ = ["LinearReward", "MLPReward", "TabularReward"]
