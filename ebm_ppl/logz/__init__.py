"""Log-partition estimators behind one interface (DESIGN §3).

=============================  ==========================================  ========================
estimator                      bias                                        models
=============================  ==========================================  ========================
``exact``                      none (backward recursion)                   trajectory(_global)
``importance``                 unbiased in Z (log Z biased low, Jensen)    trajectory(_global), ebm
``psis``                       consistent; k-hat flags unreliable weights  trajectory(_global), ebm
``gcl_mixture``                fixed point; consistent at the data's θ     trajectory(_global), ebm
``elbo`` / ``iwae``            lower bounds on log Z                       trajectory(_global), ebm
``eubo``                       upper bound (needs exact samples)           trajectory(_global)
``particle_smc``               unbiased in Z                               trajectory(_global)
``ais``                        unbiased in Z (fixed schedule)              ebm
``tempered_smc``               consistent (adaptive schedule)              ebm
``thermodynamic_integration``  consistent; ladder and MCMC bias            ebm
=============================  ==========================================  ========================
"""

from ebm_ppl.logz.ais import ais as ais
from ebm_ppl.logz.ais import tempered_smc as tempered_smc
from ebm_ppl.logz.base import ExactInfo as ExactInfo
from ebm_ppl.logz.base import LogZEstimator as LogZEstimator
from ebm_ppl.logz.base import LogZResult as LogZResult
from ebm_ppl.logz.base import exact as exact
from ebm_ppl.logz.importance import elbo as elbo
from ebm_ppl.logz.importance import eubo as eubo
from ebm_ppl.logz.importance import gcl_mixture as gcl_mixture
from ebm_ppl.logz.importance import importance as importance
from ebm_ppl.logz.importance import iwae as iwae
from ebm_ppl.logz.importance import psis as psis
from ebm_ppl.logz.smc import particle_smc as particle_smc
from ebm_ppl.logz.ti import TIInfo as TIInfo
from ebm_ppl.logz.ti import thermodynamic_integration as thermodynamic_integration

__all__ = [
    "ExactInfo",
    "LogZEstimator",
    "LogZResult",
    "TIInfo",
    "ais",
    "elbo",
    "eubo",
    "exact",
    "gcl_mixture",
    "importance",
    "iwae",
    "particle_smc",
    "psis",
    "tempered_smc",
    "thermodynamic_integration",
]
