"""Inference over reward parameters: MLE/MAP fits and posteriors returned as ArviZ DataTrees."""

from ebm_ppl.inference.base import PosteriorDraws as PosteriorDraws
from ebm_ppl.inference.mle import FitResult as FitResult
from ebm_ppl.inference.mle import fit_reward as fit_reward
from ebm_ppl.inference.mle import negative_log_likelihood as negative_log_likelihood
from ebm_ppl.inference.posterior import LIKELIHOODS as LIKELIHOODS
from ebm_ppl.inference.posterior import METHODS as METHODS
from ebm_ppl.inference.posterior import NonFiniteDrawsError as NonFiniteDrawsError
from ebm_ppl.inference.posterior import infer_reward as infer_reward
from ebm_ppl.inference.posterior import posterior_model as posterior_model
from ebm_ppl.inference.sgld import SGMCMCInfo as SGMCMCInfo
from ebm_ppl.inference.sgld import SGMCMCState as SGMCMCState
from ebm_ppl.inference.sgld import infer_sgmcmc as infer_sgmcmc

__all__ = [
    "LIKELIHOODS",
    "METHODS",
    "FitResult",
    "NonFiniteDrawsError",
    "PosteriorDraws",
    "SGMCMCInfo",
    "SGMCMCState",
    "fit_reward",
    "infer_reward",
    "infer_sgmcmc",
    "negative_log_likelihood",
    "posterior_model",
]
