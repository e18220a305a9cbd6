"""Energy (cost/reward) models as NumPyro models: tabular rewards and energies on R^d."""

from ebm_ppl.energy.density import BananaEnergy as BananaEnergy
from ebm_ppl.energy.density import DoubleWellEnergy as DoubleWellEnergy
from ebm_ppl.energy.density import GaussianEnergy as GaussianEnergy
from ebm_ppl.energy.density import GaussianMixtureEnergy as GaussianMixtureEnergy
from ebm_ppl.energy.tabular import LinearReward as LinearReward
from ebm_ppl.energy.tabular import MLPReward as MLPReward
from ebm_ppl.energy.tabular import TabularReward as TabularReward

__all__ = [
    "BananaEnergy",
    "DoubleWellEnergy",
    "GaussianEnergy",
    "GaussianMixtureEnergy",
    "LinearReward",
    "MLPReward",
    "TabularReward",
]
