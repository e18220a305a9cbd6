"""MCMC gradient estimators of the MaxEnt / EBM objective (THEORY §1.5, §5.1).

* :mod:`~ebm_ppl.mcmc.chains`: BlackJAX kernels by name, persistent chains, the CD-k and PCD
  estimates of :math:`\\nabla_\\theta\\log Z` (CD-k biased for finite k; PCD consistent at a
  fixed :math:`\\theta` as the chains mix) and long-run averages with standard errors;
* :mod:`~ebm_ppl.mcmc.tabular`: Metropolis-within-Gibbs over action sequences of deterministic
  tabular MDPs, with its exact transition matrix on tiny problems;
* :mod:`~ebm_ppl.mcmc.trainers`: optax-style ``cd`` and ``pcd`` trainers.
"""

from ebm_ppl.mcmc.chains import KERNELS as KERNELS
from ebm_ppl.mcmc.chains import ChainInfo as ChainInfo
from ebm_ppl.mcmc.chains import Kernel as Kernel
from ebm_ppl.mcmc.chains import LongRunInfo as LongRunInfo
from ebm_ppl.mcmc.chains import PersistentChains as PersistentChains
from ebm_ppl.mcmc.chains import cd_gradient as cd_gradient
from ebm_ppl.mcmc.chains import data_energy_gradient as data_energy_gradient
from ebm_ppl.mcmc.chains import energy_gradients as energy_gradients
from ebm_ppl.mcmc.chains import init_chains as init_chains
from ebm_ppl.mcmc.chains import init_chains_from_data as init_chains_from_data
from ebm_ppl.mcmc.chains import long_run_gradient as long_run_gradient
from ebm_ppl.mcmc.chains import mcmc_kernel as mcmc_kernel
from ebm_ppl.mcmc.chains import nll_gradient as nll_gradient
from ebm_ppl.mcmc.chains import pcd_gradient as pcd_gradient
from ebm_ppl.mcmc.chains import run_chains as run_chains
from ebm_ppl.mcmc.tabular import GibbsInfo as GibbsInfo
from ebm_ppl.mcmc.tabular import GibbsState as GibbsState
from ebm_ppl.mcmc.tabular import TransitionMatrix as TransitionMatrix
from ebm_ppl.mcmc.tabular import expected_cd_gradient as expected_cd_gradient
from ebm_ppl.mcmc.tabular import gibbs_kernel as gibbs_kernel
from ebm_ppl.mcmc.tabular import trajectory_energy as trajectory_energy
from ebm_ppl.mcmc.tabular import transition_matrix as transition_matrix
from ebm_ppl.mcmc.trainers import CDState as CDState
from ebm_ppl.mcmc.trainers import MCMCTrainerInfo as MCMCTrainerInfo
from ebm_ppl.mcmc.trainers import PCDState as PCDState
from ebm_ppl.mcmc.trainers import cd as cd
from ebm_ppl.mcmc.trainers import pcd as pcd
from ebm_ppl.mcmc.trainers import train as train

__all__ = [
    "CDState",
    "ChainInfo",
    "GibbsInfo",
    "GibbsState",
    "KERNELS",
    "Kernel",
    "LongRunInfo",
    "MCMCTrainerInfo",
    "PCDState",
    "PersistentChains",
    "TransitionMatrix",
    "cd",
    "cd_gradient",
    "data_energy_gradient",
    "energy_gradients",
    "expected_cd_gradient",
    "gibbs_kernel",
    "init_chains",
    "init_chains_from_data",
    "long_run_gradient",
    "mcmc_kernel",
    "nll_gradient",
    "pcd",
    "pcd_gradient",
    "run_chains",
    "train",
    "trajectory_energy",
    "transition_matrix",
]
