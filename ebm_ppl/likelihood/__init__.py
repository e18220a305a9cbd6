"""MaxEnt trajectory distributions (NumPyro) over tabular MDPs."""

from ebm_ppl.likelihood.tabular import CausalTrajectories as CausalTrajectories
from ebm_ppl.likelihood.tabular import MaxEntTrajectories as MaxEntTrajectories
from ebm_ppl.likelihood.tabular import PolicyRollout as PolicyRollout

__all__ = ["CausalTrajectories", "MaxEntTrajectories", "PolicyRollout"]
