"""Benchmark: the plug-in posterior's error against the exact posterior as the IS budget K grows.

THEORY §7.4: with log Z estimated by importance sampling with K draws and the key fixed, NUTS
samples a smooth surrogate posterior that is **biased** (the likelihood is inflated by about
N chi^2 / 2K, most where the proposal fits worst). This script measures that bias:

* problem: ObjectWorld 5x5, T = 10, 20 demonstrations, the s0-conditional ``trajectory``
  likelihood, proposal the uniform random policy;
* reference: the exact-likelihood posterior (BlackJAX NUTS, 4 x 2000 draws);
* for each K, ``--seeds`` plug-in posteriors, one per estimator key, sampled in one vmapped
  BlackJAX program (one chain of 1000 draws each after 300 warm-up steps);
* the error of each plug-in posterior mean, in units of the exact posterior sd,
  ``|mean_plugin - mean_exact| / sd_exact`` per parameter (its Monte Carlo floor is about
  ``1/sqrt(ESS)``), summarised by the median and quartiles over seeds.

Usage::

    PYTHONPATH=. python benchmarks/plugin_posterior.py --out benchmarks/reference_runs/plugin.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from ebm_ppl.inference.nuts import nuts_chain
from ebm_ppl.inference.posterior import PlugIn, infer_reward
from ebm_ppl.logz import importance
from ebm_ppl.problems import make_problem


@partial(jax.jit, static_argnames=("plug_in",))
def plug_in_posteriors(keys, estimator_keys, starts, problem, *, plug_in):
    model_kwargs = {"likelihood": "trajectory", "rationality": 1.0, "q": "soft"}
    model_kwargs["plug_in"] = plug_in

    def chain(key, estimator_key, start):
        positions, _ = nuts_chain(
            key,
            problem,
            problem.demos,
            start,
            model_kwargs=model_kwargs,
            num_warmup=300,
            num_samples=1000,
            estimator_key=estimator_key,
        )
        return positions["theta"]

    return jax.vmap(chain)(keys, estimator_keys, starts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", default="64,256,1024,4096")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    problem = make_problem(
        "objectworld", jax.random.key(0), size=5, horizon=10, num_demos=20, model="trajectory"
    )
    exact = infer_reward(
        jax.random.key(1),
        problem,
        method="blackjax-nuts",
        num_chains=4,
        num_warmup=500,
        num_samples=2000,
        progress_bar=False,
        posterior_predictive=False,
    )
    draws = np.asarray(exact["posterior"]["theta"]).reshape(-1, 2)
    mean, sd = draws.mean(axis=0), draws.std(axis=0)
    sink = open(args.out, "w") if args.out else None  # noqa: SIM115

    def emit(record):
        line = json.dumps(record)
        print(line, flush=True)
        if sink:
            sink.write(line + "\n")

    emit({"name": "exact_posterior", "mean": mean.tolist(), "sd": sd.tolist()})
    for budget in budgets:
        estimator = importance(budget, model="trajectory")
        plug_in = PlugIn.build(estimator, problem.mdp)
        key_chain, key_est, key_init = jax.random.split(jax.random.key(budget), 3)
        keys = jax.random.split(key_chain, args.seeds)
        estimator_keys = jax.random.split(key_est, args.seeds)
        starts = {"theta": jax.random.uniform(key_init, (args.seeds, 2), minval=-2, maxval=2)}
        start = time.perf_counter()
        theta = np.asarray(
            plug_in_posteriors(keys, estimator_keys, starts, problem, plug_in=plug_in)
        )
        seconds = time.perf_counter() - start
        errors = np.abs(theta.mean(axis=1) - mean) / sd  # (seeds, 2)
        khat = [
            float(
                np.nanmax(
                    np.asarray(
                        estimator.run(
                            k, problem, {"theta": mean}, s0=np.asarray(plug_in.starts)
                        ).info.khat
                    )
                )
            )
            for k in estimator_keys[:5]
        ]
        emit(
            {
                "name": "plug_in_posterior_error",
                "K": budget,
                "seeds": args.seeds,
                "error_median": np.median(errors, axis=0).tolist(),
                "error_quartiles": np.quantile(errors, [0.25, 0.75], axis=0).tolist(),
                "plug_in_mean_avg": theta.mean(axis=(0, 1)).tolist(),
                "khat_at_exact_mean": khat,
                "seconds": round(seconds, 2),
            }
        )
    if sink:
        sink.close()


if __name__ == "__main__":
    main()
