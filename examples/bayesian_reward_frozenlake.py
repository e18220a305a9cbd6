"""Bayesian reward inference on FrozenLake from demonstrations collected through ``env.step``.

The demonstrations are episodes of the real Gymnasium environment (``FrozenLake-v1``, slippery):
the expert's action at each step comes from the causal soft-optimal policy of a stated reward
(THEORY §1.3), and the next state from ``env.step`` itself, so the data carry the environment's
own randomness. The posterior over the reward weights is then sampled with NUTS and compared with
the truth.

    python examples/bayesian_reward_frozenlake.py
    python examples/bayesian_reward_frozenlake.py --demos 20 --draws 100 --out /tmp/frozenlake
"""

import argparse

import jax

import ebm_ppl as ep
from ebm_ppl import diagnostics
from ebm_ppl.envs.toy_text import FROZENLAKE_ID, collect_demonstrations, make_toy_text_env
from ebm_ppl.exact.tabular import soft_bellman
from ebm_ppl.models import frozenlake


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", type=int, default=100)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--out", default=None, help="write the DataTree and plots here")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)

    # the MDP tables and the stated reward, without demonstrations yet
    problem = frozenlake.make_problem(num_demos=0)
    mdp = problem.mdp
    expert = soft_bellman(mdp, problem.true_reward(), model="causal").log_policy  # (T, S, A)

    # roll the expert through the real environment (TimeLimit = the MDP's horizon)
    env = make_toy_text_env(FROZENLAKE_ID, mdp.horizon, map_name="4x4", is_slippery=True)
    demos = collect_demonstrations(jax.random.key(0), env, expert, args.demos)
    problem = problem.replace(demos=demos)
    print(f"{demos.shape[0]} episodes through env.step, horizon {mdp.horizon}")

    idata = ep.infer_reward(
        jax.random.key(1), problem, num_chains=2, num_warmup=args.draws, num_samples=args.draws
    )
    print(ep.summary(idata))
    print(ep.reward_recovery(idata, problem))
    if args.out:
        diagnostics.save(idata, f"{args.out}/posterior.nc")
        ep.plots.save_plots(idata, args.out)
        print(f"wrote {args.out}/posterior.nc and plots")
    return idata


if __name__ == "__main__":
    main()
