"""Sampling-based and adversarial log Z estimators side by side, on the same problems and data.

Runs :func:`ebm_ppl.compare` on ObjectWorld (trajectory-level MaxEnt, exact log Z by the backward
recursion) and the banana energy on R^2 (log Z = log pi): importance sampling, PSIS, the
guided-cost-learning mixture, particle SMC, AIS and the GAN discriminator's zeta, plus the GAN-GCL
and GCL trainers, over seeds and budgets. Results (CSV/JSON table, figures) go to ``--out`` and a
rerun resumes where it stopped.

    python examples/compare_estimators.py --out compare_study
    python examples/compare_estimators.py --tiny --out /tmp/compare
"""

import argparse

import jax

import ebm_ppl as ep
from ebm_ppl.compare import print_summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="compare_study")
    parser.add_argument("--tiny", action="store_true", help="tiny problems, one budget, 1 seed")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)

    if args.tiny:
        options = {
            "objectworld": {"size": 3, "horizon": 4, "num_demos": 16},
            "toy2d": {"energy": "banana", "num_data": 64},
        }
        settings = {"num_seeds": 1, "budgets": (32,), "steps": 5, "gradients": False}
        estimators = ("importance", "gcl_mixture", "gan_zeta")
    else:
        options = {
            "objectworld": {"size": 6, "horizon": 10, "num_demos": 100},
            "toy2d": {"energy": "banana", "num_data": 1000},
        }
        settings = {"num_seeds": 5, "budgets": (64, 256, 1024), "steps": 200}
        estimators = ("importance", "psis", "gcl_mixture", "particle_smc", "ais", "gan_zeta")
    rows = ep.compare(
        jax.random.key(0),
        ["objectworld", "toy2d"],
        estimators=estimators,
        trainers=("gan_gcl", "gcl"),
        problem_options=options,
        out=args.out,
        **settings,
    )
    print_summary(rows)
    print(f"table: {args.out}/results.csv, figures: {args.out}/figures/")
    return rows


if __name__ == "__main__":
    main()
