"""Energy (cost/reward) models as NumPyro models: tabular rewards, R^d energies, quadratic costs."""

from ebm_ppl.energy.density import BananaEnergy as BananaEnergy
from ebm_ppl.energy.density import DoubleWellEnergy as DoubleWellEnergy
from ebm_ppl.energy.density import GaussianEnergy as GaussianEnergy
from ebm_ppl.energy.density import GaussianMixtureEnergy as GaussianMixtureEnergy
from ebm_ppl.energy.mlp import MLPEnergy as MLPEnergy
from ebm_ppl.energy.quadratic import ControlSpaceEnergy as ControlSpaceEnergy
from ebm_ppl.energy.quadratic import QuadraticCost as QuadraticCost
from ebm_ppl.energy.tabular import LinearReward as LinearReward
from ebm_ppl.energy.tabular import MLPReward as MLPReward
from ebm_ppl.energy.tabular import TabularReward as TabularReward

__all__ = [
    "BananaEnergy",
    "ControlSpaceEnergy",
    "DoubleWellEnergy",
    "GaussianEnergy",
    "GaussianMixtureEnergy",
    "LinearReward",
    "MLPEnergy",
    "MLPReward",
    "QuadraticCost",
    "TabularReward",
]
