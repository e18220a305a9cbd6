"""Log-partition estimators behind one interface (DESIGN §3)."""

from ebm_ppl.logz.base import ExactInfo as ExactInfo
from ebm_ppl.logz.base import LogZEstimator as LogZEstimator
from ebm_ppl.logz.base import LogZResult as LogZResult
from ebm_ppl.logz.base import exact as exact

__all__ = ["ExactInfo", "LogZEstimator", "LogZResult", "exact"]
