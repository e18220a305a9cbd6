"""Gymnasium adapters and the library's own Gymnasium environments.

Importing this package registers ``ebm_ppl/ObjectWorld-v0`` and ``ebm_ppl/LinearGaussian-v0`` with
Gymnasium (idempotently), so ``gymnasium.make("ebm_ppl/ObjectWorld-v0")`` works after
``import ebm_ppl.envs``.
"""

from __future__ import annotations

from ebm_ppl.envs.classic_control import MOUNTAINCAR_ID as MOUNTAINCAR_ID
from ebm_ppl.envs.classic_control import PENDULUM_ID as PENDULUM_ID
from ebm_ppl.envs.classic_control import ActionSequenceProblem as ActionSequenceProblem
from ebm_ppl.envs.classic_control import mountaincar_step as mountaincar_step
from ebm_ppl.envs.classic_control import pendulum_step as pendulum_step
from ebm_ppl.envs.linear_gaussian import LINEAR_GAUSSIAN_ID as LINEAR_GAUSSIAN_ID
from ebm_ppl.envs.linear_gaussian import LinearGaussianEnv as LinearGaussianEnv
from ebm_ppl.envs.linear_gaussian import register_linear_gaussian as register_linear_gaussian
from ebm_ppl.envs.objectworld import OBJECTWORLD_ID as OBJECTWORLD_ID
from ebm_ppl.envs.objectworld import ObjectWorldEnv as ObjectWorldEnv
from ebm_ppl.envs.objectworld import objectworld_mdp as objectworld_mdp
from ebm_ppl.envs.objectworld import register_objectworld as register_objectworld
from ebm_ppl.envs.toy_text import cliffwalking as cliffwalking
from ebm_ppl.envs.toy_text import frozenlake as frozenlake
from ebm_ppl.envs.toy_text import load_toy_text as load_toy_text
from ebm_ppl.envs.toy_text import reward_table_from_env as reward_table_from_env
from ebm_ppl.envs.toy_text import tabular_mdp_from_env as tabular_mdp_from_env
from ebm_ppl.envs.toy_text import taxi as taxi

register_objectworld()
register_linear_gaussian()

__all__ = [
    "ActionSequenceProblem",
    "MOUNTAINCAR_ID",
    "PENDULUM_ID",
    "mountaincar_step",
    "pendulum_step",
    "LINEAR_GAUSSIAN_ID",
    "LinearGaussianEnv",
    "OBJECTWORLD_ID",
    "ObjectWorldEnv",
    "cliffwalking",
    "frozenlake",
    "load_toy_text",
    "objectworld_mdp",
    "register_linear_gaussian",
    "register_objectworld",
    "reward_table_from_env",
    "tabular_mdp_from_env",
    "taxi",
]
