"""MaxEnt trajectory distributions (NumPyro) over tabular MDPs."""

from ebm_ppl.likelihood.tabular import CausalTrajectories as CausalTrajectories
from ebm_ppl.likelihood.tabular import MaxEntTrajectories as MaxEntTrajectories

__all__ = ["CausalTrajectories", "MaxEntTrajectories"]
