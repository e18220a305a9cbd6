"""What every posterior sampler returns before it becomes an ArviZ DataTree.

Samplers (NumPyro NUTS, BlackJAX NUTS, PolicyWalk) hand back :class:`PosteriorDraws`;
:func:`ebm_ppl.diagnostics.to_datatree` turns it into the DataTree users see. Keeping this raw form
small means each sampler knows nothing about ArviZ (DESIGN §4: one adapter per upstream API).
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["PosteriorDraws", "SAMPLE_STATS"]

SAMPLE_STATS = (
    "diverging",
    "energy",
    "step_size",
    "tree_depth",
    "n_steps",
    "acceptance_rate",
    "lp",
)
"""ArviZ's names for per-draw sampler statistics; a sampler reports the ones it has."""


class PosteriorDraws(NamedTuple):
    """Posterior draws of one sampler run.

    Attributes:
        positions: site name -> array ``(chains, draws, *site_shape)`` in the **constrained**
            space (the energy model's parameter sites, plus ``"rationality"`` where it is sampled).
        sample_stats: name (from :data:`SAMPLE_STATS`) -> array ``(chains, draws)``.
        info: method-specific settings worth recording as DataTree attributes (a flat dict of
            strings and numbers, e.g. PolicyWalk's grid step).
    """

    positions: dict[str, Any]
    sample_stats: dict[str, Any]
    info: dict[str, Any]
