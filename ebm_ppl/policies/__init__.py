"""Policy rollout distributions q(tau): the proposals and generators everything else uses."""

from ebm_ppl.policies.tabular import PolicyRollout as PolicyRollout
from ebm_ppl.policies.tabular import TrajectoryDistribution as TrajectoryDistribution

__all__ = ["PolicyRollout", "TrajectoryDistribution"]
