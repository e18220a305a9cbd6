"""Quickstart: the reward posterior of ObjectWorld from 50 demonstrations, in about 20 lines.

python examples/quickstart.py            # 8x8 grid, 4 chains x 1000 draws (~1 minute)
python examples/quickstart.py --tiny     # a 4x4 grid and short chains (seconds)
"""

import argparse

import jax

import ebm_ppl as ep
from ebm_ppl.models import objectworld


def main(argv=None):
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--tiny", action="store_true", help="small grid, short chains")
    args = args.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    size, draws = (4, 100) if args.tiny else (8, 1000)

    problem = objectworld.make_problem(jax.random.key(0), size=size, num_demos=50)
    idata = ep.infer_reward(
        jax.random.key(1), problem, num_chains=2, num_warmup=draws, num_samples=draws
    )
    print(ep.summary(idata))  # R-hat, ESS and 90% intervals of theta
    print(ep.reward_recovery(idata, problem))  # EPIC / EVD of the posterior against the truth
    return idata


if __name__ == "__main__":
    main()
