"""Policy rollout distributions q(tau) (generators and proposals)."""

from ebm_ppl.likelihood.tabular import PolicyRollout as PolicyRollout

__all__ = ["PolicyRollout"]
