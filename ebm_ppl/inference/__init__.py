"""Inference over reward parameters."""

from ebm_ppl.inference.mle import FitResult as FitResult
from ebm_ppl.inference.mle import fit_reward as fit_reward
from ebm_ppl.inference.mle import negative_log_likelihood as negative_log_likelihood

__all__ = ["FitResult", "fit_reward", "negative_log_likelihood"]
