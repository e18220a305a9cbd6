"""The three facts of Finn, Christiano, Abbeel & Levine (2016), printed side by side.

On a tiny random MDP (3 states, 2 actions, horizon 3) with demonstrations from the MaxEnt model
and rollouts of an arbitrary generator policy q (THEORY §3):

1. at the optimal discriminator parameter zeta*, sum of D over the pooled sample = N_d, and
   exp(zeta*) is the guided-cost-learning mixture importance estimate of Z;
2. at zeta*, the gradient in theta of the discriminator loss equals the GCL cost gradient with
   the mixture density held constant (drop the stop-gradient and they differ);
3. the log-odds generator loss equals KL(q || p_theta) + zeta - log Z + log nu, exactly (by
   enumerating every trajectory).

    python examples/gan_equivalence.py [--nu 3] [--seed 0]
"""

import argparse

import jax
import numpy as np

from ebm_ppl.adversarial import check_equivalence, generator_identity, rollouts
from ebm_ppl.energy import LinearReward
from ebm_ppl.exact.sampling import sample_trajectories
from ebm_ppl.exact.tabular import log_partition
from ebm_ppl.problems import Problem
from ebm_ppl.spaces import TabularMDP


def tiny_mdp(seed: int) -> TabularMDP:
    """3 states, 2 actions, horizon 3, random dense dynamics and 2 random features."""
    rng = np.random.default_rng(seed)
    transitions = rng.dirichlet(np.ones(3), size=(3, 2))
    features = rng.normal(size=(3, 2))
    return TabularMDP.from_dense(transitions, np.full(3, 1 / 3), 3, features=features)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nu", type=int, default=3, help="generator draws per demonstration")
    parser.add_argument("--demos", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)

    mdp = tiny_mdp(args.seed)
    problem = Problem(name="tiny", mdp=mdp, energy_model=LinearReward(mdp.features))
    theta = {"theta": np.array([0.7, -0.4])}
    reward = problem.energy_model.reward(theta)
    key_demos, key_policy, key_draws = jax.random.split(jax.random.key(args.seed), 3)
    demos = sample_trajectories(
        key_demos, mdp, reward, model="trajectory_global", num_samples=args.demos
    )
    log_policy = jax.nn.log_softmax(jax.random.normal(key_policy, (3, 3, 2)), axis=-1)
    samples = rollouts(key_draws, mdp, log_policy, args.nu * args.demos)

    facts = check_equivalence(problem, theta, demos, samples, log_policy, nu=args.nu)
    control = check_equivalence(
        problem, theta, demos, samples, log_policy, nu=args.nu, stop_gradient=False
    )
    log_z = float(log_partition(mdp, reward, model="trajectory_global"))
    identity = generator_identity(mdp, reward, log_policy, facts.zeta, nu=args.nu)

    grad_d = np.asarray(facts.discriminator_grad["theta"])
    grad_c = np.asarray(facts.cost_grad["theta"])
    grad_no_stop = np.asarray(control.cost_grad["theta"])
    print(f"N_d = {args.demos} demonstrations, N_g = {args.nu * args.demos} generator rollouts")
    print(f"exact log Z(theta)                      {log_z: .12f}")
    print("fact 1")
    print(f"  sum of D at zeta*          {float(facts.sum_d): .12f}   N_d = {args.demos}")
    print(
        f"  zeta*                      {float(facts.zeta): .12f}   "
        f"log Z_mixture = {float(facts.log_z_mixture): .12f}"
    )
    print("fact 2")
    print(f"  grad of discriminator loss {np.array2string(grad_d, precision=12)}")
    print(f"  GCL cost gradient          {np.array2string(grad_c, precision=12)}")
    print(f"  without the stop-gradient  {np.array2string(grad_no_stop, precision=12)}")
    print("fact 3 (exact, by enumeration)")
    print(f"  log-odds generator loss    {identity.generator_loss: .12f}")
    print(
        f"  KL + zeta - log Z + log nu {identity.rhs: .12f}   "
        f"(KL = {identity.kl:.6f}, log nu = {identity.log_nu:.6f})"
    )
    return facts, control, identity


if __name__ == "__main__":
    main()
