"""Adversarial IRL: the GAN-GCL discriminator, the three facts of THEORY §3, and trainers.

* :mod:`~ebm_ppl.adversarial.discriminator`: :math:`D = \\sigma(-c - \\zeta - \\log(\\nu q))`,
  its log loss (normalised by :math:`N_d`) and the generator losses (THEORY §3, §4, §5.1);
* :mod:`~ebm_ppl.adversarial.facts`: both sides of facts 1–3 (THEORY §3.3–§3.5);
* :mod:`~ebm_ppl.adversarial.trainers`: ``gan_gcl`` and ``gcl`` (optax-style), and
  ``gan_zeta`` (the discriminator's :math:`\\zeta^*` behind the ``LogZEstimator`` interface);
* :mod:`~ebm_ppl.adversarial.airl`: ``airl`` and ``gail`` (per-step discriminators), the AIRL
  reward forms and the transfer experiment (THEORY §9.4);
* :mod:`~ebm_ppl.adversarial.ebm`: ``nce``, ``gan_ebm`` and ``fce`` on :math:`\\mathbb R^d`
  (THEORY §5), with normalising-flow generators from :mod:`~ebm_ppl.adversarial.flows`.

* :mod:`~ebm_ppl.adversarial.continuous`: GAN-GCL, GCL and ``gan_zeta`` for continuous-state
  problems (LQR, MountainCar) with the policies of :mod:`ebm_ppl.policies.gaussian` as
  generators (module-level names: they mirror the tabular ones).

Each of :mod:`~ebm_ppl.adversarial.airl` and :mod:`~ebm_ppl.adversarial.ebm` has its own
``train`` loop (one ``lax.scan``); import it from the module.
"""

from ebm_ppl.adversarial.airl import REWARD_FORMS as REWARD_FORMS
from ebm_ppl.adversarial.airl import TRANSFER_METHODS as TRANSFER_METHODS
from ebm_ppl.adversarial.airl import AdversarialTrainer as AdversarialTrainer
from ebm_ppl.adversarial.airl import AIRLInfo as AIRLInfo
from ebm_ppl.adversarial.airl import AIRLState as AIRLState
from ebm_ppl.adversarial.airl import GAILInfo as GAILInfo
from ebm_ppl.adversarial.airl import GAILState as GAILState
from ebm_ppl.adversarial.airl import TransferResult as TransferResult
from ebm_ppl.adversarial.airl import Transitions as Transitions
from ebm_ppl.adversarial.airl import airl as airl
from ebm_ppl.adversarial.airl import airl_discriminator_loss as airl_discriminator_loss
from ebm_ppl.adversarial.airl import airl_logits as airl_logits
from ebm_ppl.adversarial.airl import airl_policy as airl_policy
from ebm_ppl.adversarial.airl import airl_reward as airl_reward
from ebm_ppl.adversarial.airl import airl_reward_table as airl_reward_table
from ebm_ppl.adversarial.airl import blocked_cells_mdp as blocked_cells_mdp
from ebm_ppl.adversarial.airl import discounted_occupancy as discounted_occupancy
from ebm_ppl.adversarial.airl import enumerate_transitions as enumerate_transitions
from ebm_ppl.adversarial.airl import gail as gail
from ebm_ppl.adversarial.airl import gail_discriminator_loss as gail_discriminator_loss
from ebm_ppl.adversarial.airl import gail_policy as gail_policy
from ebm_ppl.adversarial.airl import policy_evd as policy_evd
from ebm_ppl.adversarial.airl import sample_transitions as sample_transitions
from ebm_ppl.adversarial.airl import shaped_reward as shaped_reward
from ebm_ppl.adversarial.airl import transfer_evd as transfer_evd
from ebm_ppl.adversarial.airl import transfer_experiment as transfer_experiment
from ebm_ppl.adversarial.airl import transitions_from_trajectories as transitions_from_trajectories
from ebm_ppl.adversarial.discriminator import (
    GENERATOR_LOSSES,
    ZETA_MODELS,
    discriminator_logits,
    discriminator_loss,
    ebm_discriminator_loss,
    gather_zeta,
    generator_loss,
    init_zeta,
    log_loss,
    policy_log_probs,
    rollouts,
    trajectory_logits,
    trajectory_returns,
)
from ebm_ppl.adversarial.ebm import (
    EBM_GENERATOR_LOSSES,
    EBMInfo,
    EBMState,
    contrastive_ebm,
    energies,
    fce,
    gan_ebm,
    nce,
)
from ebm_ppl.adversarial.facts import (
    Equivalence,
    GeneratorIdentity,
    check_equivalence,
    check_equivalence_ebm,
    gcl_cost_loss,
    generator_identity,
    mixture_log_z,
    pooled_facts,
    solve_zeta,
)
from ebm_ppl.adversarial.flows import CouplingFlow
from ebm_ppl.adversarial.trainers import (
    GANGCLInfo,
    GANGCLState,
    GCLInfo,
    GCLState,
    Trainer,
    gan_gcl,
    gan_zeta,
    gcl,
    generator_elbo,
    reward_epic,
)

__all__ = [
    "Transitions",
    "AdversarialTrainer",
    "AIRLState",
    "AIRLInfo",
    "GAILState",
    "GAILInfo",
    "transitions_from_trajectories",
    "discounted_occupancy",
    "enumerate_transitions",
    "sample_transitions",
    "shaped_reward",
    "airl_logits",
    "airl_discriminator_loss",
    "airl_policy",
    "gail_discriminator_loss",
    "gail_policy",
    "airl",
    "gail",
    "policy_evd",
    "transfer_evd",
    "REWARD_FORMS",
    "airl_reward",
    "airl_reward_table",
    "blocked_cells_mdp",
    "TRANSFER_METHODS",
    "TransferResult",
    "transfer_experiment",
    "EBM_GENERATOR_LOSSES",
    "EBMState",
    "EBMInfo",
    "contrastive_ebm",
    "nce",
    "gan_ebm",
    "fce",
    "energies",
    "CouplingFlow",
    "GENERATOR_LOSSES",
    "ZETA_MODELS",
    "Equivalence",
    "GANGCLInfo",
    "GANGCLState",
    "GCLInfo",
    "GCLState",
    "GeneratorIdentity",
    "Trainer",
    "check_equivalence",
    "check_equivalence_ebm",
    "discriminator_logits",
    "discriminator_loss",
    "ebm_discriminator_loss",
    "gan_gcl",
    "gan_zeta",
    "gather_zeta",
    "gcl",
    "gcl_cost_loss",
    "generator_elbo",
    "generator_identity",
    "generator_loss",
    "init_zeta",
    "log_loss",
    "mixture_log_z",
    "policy_log_probs",
    "pooled_facts",
    "reward_epic",
    "rollouts",
    "solve_zeta",
    "trajectory_logits",
    "trajectory_returns",
]
