"""Benchmark of posterior sampling: bulk ESS per second of NUTS against PolicyWalk, and the demo.

Part 1 (issue 3): the **same** Bayesian-IRL posterior (``likelihood="birl"``, soft Q,
alpha = 1, gamma = ``problem.birl_discount`` = 0.9) on ObjectWorld 16x16 with 100 demonstrations,
sampled in one run by

* NumPyro NUTS (4 chains; ``MCMC.run`` recompiles on every call, so its time includes compiling),
* BlackJAX NUTS (4 vmapped chains; timed on a second call, after the compile is cached; the first
  call's time is reported too),
* PolicyWalk with ``q="soft"`` and grid step ``delta`` (4 vmapped chains; second call as well).

For each: wall seconds of ``infer_reward`` (without the posterior-predictive pass, the same for
all), bulk ESS of every parameter, R-hat, and the **bulk ESS per second**, the median over the
parameters, counted only where R-hat < 1.01 (a parameter with R-hat >= 1.01 counts as ESS 0).
Repeated ``--repeats`` times with different seeds; medians reported; the ratio NUTS / PolicyWalk
is the target (>= 10).

Part 2: the wall time of ``ebm-ppl demo`` in a fresh subprocess (target <= 3 minutes on 2 cores),
repeated ``--demo-repeats`` times.

Usage::

    PYTHONPATH=. python benchmarks/posterior.py            # full
    PYTHONPATH=. python benchmarks/posterior.py --quick    # smaller, for a smoke run

One JSON object per measurement, then a ``summary`` object.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import numpyro

numpyro.set_host_device_count(4)  # NumPyro runs its 4 chains in parallel, as the CLI does

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from arviz_stats import ess, rhat

from ebm_ppl.inference.posterior import infer_reward
from ebm_ppl.problems import make_problem

RHAT_LIMIT = 1.01
TARGET_RATIO = 10.0
DEMO_TARGET_S = 180.0


def ess_per_second(idata, seconds, sites=("theta",)):
    bulk, r_hats = [], []
    for site in sites:
        bulk.extend(np.ravel(ess(idata, var_names=[site], method="bulk")[site].values))
        r_hats.extend(np.ravel(rhat(idata, var_names=[site])[site].values))
    bulk, r_hats = np.array(bulk), np.array(r_hats)
    counted = np.where(r_hats < RHAT_LIMIT, bulk, 0.0)
    return float(np.median(counted) / seconds), bulk.tolist(), r_hats.tolist()


def _ratio(numerator, denominator):
    return numerator / denominator if denominator > 0 else None


def uncounted_ess_per_second(record):
    """Median bulk ESS / s ignoring the R-hat rule (reported beside the counted figure)."""
    return float(np.median(record["bulk_ess"]) / record["seconds"])


def run_method(method, problem, seed, args):
    kwargs = dict(
        method=method,
        likelihood="birl",
        num_chains=4,
        progress_bar=False,
        posterior_predictive=False,
    )
    if method == "policywalk":
        kwargs.update(
            num_warmup=args.policywalk_warmup,
            num_samples=args.policywalk_draws,
            step_size=args.delta,
            thinning=args.policywalk_thinning,
        )
    else:
        kwargs.update(num_warmup=args.nuts_warmup, num_samples=args.nuts_draws)
    start = time.perf_counter()
    idata = infer_reward(jax.random.key(seed), problem, **kwargs)
    seconds = time.perf_counter() - start
    rate, bulk, r_hats = ess_per_second(idata, seconds)
    return {
        "name": "posterior_ess_per_second",
        "method": method,
        "seed": seed,
        "seconds": round(seconds, 3),
        "bulk_ess": bulk,
        "r_hat": r_hats,
        "ess_per_second": rate,
        "ess_per_second_ignoring_rhat": float(np.median(bulk) / seconds),
        "posterior_mean": np.asarray(idata["posterior"]["theta"].mean(("chain", "draw"))).tolist(),
        "settings": {k: v for k, v in kwargs.items() if k not in ("progress_bar",)},
    }


def demo_wall_time():
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ebm_ppl.cli", "demo", "--out", out, "--quiet"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--num-demos", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo-repeats", type=int, default=3)
    parser.add_argument("--nuts-warmup", type=int, default=300)
    parser.add_argument("--nuts-draws", type=int, default=500)
    parser.add_argument(
        "--delta", type=float, default=0.04, help="PolicyWalk grid step (about the posterior sd)"
    )
    parser.add_argument("--policywalk-warmup", type=int, default=3000)
    parser.add_argument("--policywalk-draws", type=int, default=6000)
    parser.add_argument("--policywalk-thinning", type=int, default=1)
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.size, args.num_demos, args.repeats, args.demo_repeats = 8, 50, 1, 1
        args.nuts_warmup, args.nuts_draws = 200, 200
        args.policywalk_warmup, args.policywalk_draws = 200, 1000

    environment = {
        "name": "environment",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "devices": jax.local_device_count(),
        "versions": {
            p: importlib.metadata.version(p) for p in ("jax", "numpyro", "blackjax", "arviz")
        },
    }
    print(json.dumps(environment), flush=True)
    problem = make_problem(
        "objectworld", jax.random.key(0), size=args.size, num_demos=args.num_demos
    )
    records = {m: [] for m in ("nuts", "blackjax-nuts", "policywalk")}
    first_call = {}
    for method in ("blackjax-nuts", "policywalk"):  # compile once, report the first call's time
        record = run_method(method, problem, 10_000, args)
        first_call[method] = record["seconds"]
        print(json.dumps({**record, "name": "first_call_with_compile"}), flush=True)
    for repeat in range(args.repeats):
        for method in records:
            record = run_method(method, problem, repeat, args)
            record["repeat"] = repeat
            records[method].append(record)
            print(json.dumps(record), flush=True)
    medians = {m: float(np.median([r["ess_per_second"] for r in rs])) for m, rs in records.items()}
    uncounted = {
        m: float(np.median([uncounted_ess_per_second(r) for r in rs])) for m, rs in records.items()
    }
    summary = {
        "name": "summary",
        "problem": f"objectworld {args.size}x{args.size}, {args.num_demos} demos, birl (soft Q)",
        "delta": args.delta,
        "median_ess_per_second": medians,
        "median_ess_per_second_ignoring_rhat": uncounted,
        "first_call_seconds_with_compile": first_call,
        # null when PolicyWalk's counted ESS is 0 (R-hat >= 1.01: not converged in the budget)
        "ratio_numpyro_nuts_to_policywalk": _ratio(medians["nuts"], medians["policywalk"]),
        "ratio_blackjax_nuts_to_policywalk": _ratio(
            medians["blackjax-nuts"], medians["policywalk"]
        ),
        "ratio_numpyro_nuts_to_policywalk_ignoring_rhat": _ratio(
            uncounted["nuts"], uncounted["policywalk"]
        ),
        "ratio_blackjax_nuts_to_policywalk_ignoring_rhat": _ratio(
            uncounted["blackjax-nuts"], uncounted["policywalk"]
        ),
        "target_ratio": TARGET_RATIO,
    }
    if not args.skip_demo:
        demo_times = [demo_wall_time() for _ in range(args.demo_repeats)]
        for seconds in demo_times:
            print(json.dumps({"name": "demo_wall_seconds", "seconds": round(seconds, 2)}))
        summary["demo_wall_seconds_median"] = float(np.median(demo_times))
        summary["demo_target_seconds"] = DEMO_TARGET_S
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
