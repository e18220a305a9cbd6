"""Problems and the registry of ready-made problems by name (DESIGN §2–§3).

A :class:`Problem` bundles a space (a :class:`~ebm_ppl.spaces.TabularMDP`), an energy model with its
prior, the inference likelihood (``model``), the discount, and for synthetic problems the true
parameters and demonstrations. Big arrays are pytree leaves; names and settings are static.

The registry maps a name to ``ebm_ppl.models.<name>.make_problem``, imported lazily, so the library
never imports ``models/`` at import time.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import jax

from ebm_ppl._validation import is_host_data
from ebm_ppl.exact.tabular import MODELS, check_model
from ebm_ppl.spaces.tabular import TabularMDP, validate_trajectories

__all__ = ["Problem", "PROBLEMS", "make_problem", "list_problems"]

PROBLEMS: dict[str, str] = {
    "objectworld": "ebm_ppl.models.objectworld",
    "frozenlake": "ebm_ppl.models.frozenlake",
    "cliffwalking": "ebm_ppl.models.cliffwalking",
    "taxi": "ebm_ppl.models.taxi",
}
"""Problem name -> module path holding its ``make_problem(rng_key, **options)``.

``objectworld`` samples its demonstrations exactly from the MDP's tables; the Gymnasium toy-text
problems (``frozenlake``, ``cliffwalking``, ``taxi``) collect theirs by rolling the causal
soft-optimal policy of a stated reward through the real ``env.step``
(:func:`ebm_ppl.envs.toy_text.collect_demonstrations`).
"""


@dataclasses.dataclass(frozen=True)
class Problem:
    """An inference problem.

    Attributes:
        name: registry name.
        mdp: the tabular MDP.
        energy_model: reward model with ``prior()``, ``reward(params)``, ``init_params()``.
        model: the inference likelihood, one of ``"causal"``, ``"trajectory"``,
            ``"trajectory_global"`` (DESIGN §3).
        discount: :math:`\\gamma` of the problem (1 in finite horizon unless stated).
        true_params: the parameters that generated the demonstrations (synthetic problems).
        demos: observed arrays ``(N, T + 1, 2)``.
        birl_discount: :math:`\\gamma` of the Bayesian-IRL likelihood (THEORY §7.5).
        grid_shape: ``(rows, cols)`` for grid worlds whose state index is row-major
            (``state = row * cols + col``); ``None`` otherwise. Used for reward heat maps.
    """

    name: str
    mdp: TabularMDP
    energy_model: Any
    model: str = "causal"
    discount: float = 1.0
    true_params: Any = None
    demos: Any = None
    birl_discount: float = 0.9
    grid_shape: tuple | None = None

    def __post_init__(self):
        if isinstance(self.model, str):
            check_model(self.model, self.discount, allowed=MODELS)
        if is_host_data(self.demos) and isinstance(self.mdp, TabularMDP):
            observed, _ = validate_trajectories(self.mdp, self.demos, name="demos")
            object.__setattr__(self, "demos", observed)
        if self.grid_shape is not None and is_host_data(self.mdp.initial_dist):
            shape = tuple(int(n) for n in self.grid_shape)
            if len(shape) != 2 or shape[0] * shape[1] != self.mdp.num_states:
                raise ValueError(
                    f"`grid_shape` must be (rows, cols) with rows * cols = S = "
                    f"{self.mdp.num_states}; got {self.grid_shape!r}."
                )
            object.__setattr__(self, "grid_shape", shape)

    def true_reward(self):
        """The reward table at ``true_params`` (raises if the problem has none)."""
        if self.true_params is None:
            raise ValueError(f"problem {self.name!r} has no `true_params`.")
        return self.energy_model.reward(self.true_params)

    def replace(self, **changes) -> Problem:
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    Problem,
    data_fields=["mdp", "energy_model", "true_params", "demos"],
    meta_fields=["name", "model", "discount", "birl_discount", "grid_shape"],
)


def list_problems() -> list[str]:
    return sorted(PROBLEMS)


def make_problem(name: str, rng_key, **options) -> Problem:
    """Build the registered problem ``name`` (its module is imported on first use)."""
    if name not in PROBLEMS:
        raise ValueError(f"`name` must be one of {list_problems()}; got {name!r}.")
    module = importlib.import_module(PROBLEMS[name])
    return module.make_problem(rng_key, **options)
