"""Benchmark of the log Z estimators: error and spread against energy evaluations and wall time.

Problems:

* ObjectWorld 16x16, T = 30, at the true parameters, the ``trajectory_global`` log Z (one
  number; exact by the backward recursion). Every sampling estimator uses the **same fixed
  proposal**, the uniform random policy (each estimator's default).
* each toy2d energy (Gaussian, banana, double well, Gaussian mixture), exact log Z by checked
  quadrature.

For every estimator and budget (samples or particles; >= 4 budgets), ``--seeds`` replicates run as
one vmapped, jitted program (compiled before timing); recorded: the RMSE, bias and spread (sd) of
log Z_hat over seeds, the mean energy evaluations (per-step reward evaluations for trajectories),
the wall seconds per estimate (the median over ``--repeats`` timed calls of the batch, divided by
the number of seeds) and the mean k-hat where the estimator reports one.

The summary compares particle SMC with plain importance sampling on ObjectWorld at equal energy
evaluations (target: SMC RMSE >= 10x lower) and writes a PNG of error against energy evaluations.

Usage::

    PYTHONPATH=. python benchmarks/logz.py --out benchmarks/reference_runs/logz.jsonl
    PYTHONPATH=. python benchmarks/logz.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from ebm_ppl import logz
from ebm_ppl.logz.report import exact_log_z
from ebm_ppl.models import objectworld, toy2d

TABULAR_ESTIMATORS = {
    "importance": lambda n: logz.importance(n, model="trajectory_global"),
    "psis": lambda n: logz.psis(n, model="trajectory_global"),
    "gcl_mixture": lambda n: logz.gcl_mixture(n, model="trajectory_global"),
    "elbo": lambda n: logz.elbo(n, model="trajectory_global"),
    "iwae8": lambda n: logz.iwae(n, 8, model="trajectory_global"),
    "eubo": lambda n: logz.eubo(n, model="trajectory_global"),
    "particle_smc": lambda n: logz.particle_smc(n, model="trajectory_global"),
}
DENSITY_ESTIMATORS = {
    "importance": lambda n: logz.importance(n, model="ebm"),
    "psis": lambda n: logz.psis(n, model="ebm"),
    "elbo": lambda n: logz.elbo(n, model="ebm"),
    "iwae8": lambda n: logz.iwae(n, 8, model="ebm"),
    "ais32": lambda n: logz.ais(n, 32),
    "tempered_smc": lambda n: logz.tempered_smc(n),
}


def measure(problem, name, estimator, num_seeds, repeats, data):
    params = problem.true_params
    model = estimator.models[0]
    exact = float(np.mean(exact_log_z(problem, params, model)))
    keys = jax.random.split(jax.random.key(1), num_seeds)
    run = jax.jit(
        jax.vmap(
            lambda k, pr, pa, d: estimator.run(k, pr, pa, data=d), in_axes=(0, None, None, None)
        )
    )
    result = jax.block_until_ready(run(keys, problem, params, data))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(keys, problem, params, data))
        times.append((time.perf_counter() - start) / num_seeds)
    estimates = np.asarray(result.log_z, dtype=np.float64)
    errors = estimates - exact
    khat = getattr(result.info, "khat", None)
    return {
        "name": "logz",
        "problem": problem.name,
        "estimator": name,
        "log_z_exact": exact,
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "bias": float(np.mean(errors)),
        "spread": float(np.std(estimates, ddof=1)),
        "energy_evals": float(np.mean(np.asarray(result.num_energy_evals))),
        "seconds_per_estimate": float(np.median(times)),
        "khat": float(np.nanmean(np.asarray(khat))) if khat is not None else None,
        "num_seeds": num_seeds,
        "dtype": str(estimates.dtype),
    }


def smc_vs_importance(records):
    """RMSE(IS) / RMSE(SMC) at SMC's energy evaluations (log-log interpolation of IS)."""
    rows = [r for r in records if r["problem"] == "objectworld"]
    smc = sorted(
        (r for r in rows if r["estimator"] == "particle_smc"), key=lambda r: r["energy_evals"]
    )
    imp = sorted(
        (r for r in rows if r["estimator"] == "importance"), key=lambda r: r["energy_evals"]
    )
    x = np.log([r["energy_evals"] for r in imp])
    y = np.log([max(r["rmse"], 1e-300) for r in imp])
    ratios = []
    for r in smc:
        at = np.log(r["energy_evals"])
        if x[0] <= at <= x[-1]:
            ratios.append(
                {
                    "energy_evals": r["energy_evals"],
                    "rmse_smc": r["rmse"],
                    "rmse_importance": float(np.exp(np.interp(at, x, y))),
                    "ratio": float(np.exp(np.interp(at, x, y)) / r["rmse"]),
                }
            )
    return ratios


def plot(records, path):
    import matplotlib.pyplot as plt

    problems = sorted({r["problem"] for r in records})
    fig, axes = plt.subplots(1, len(problems), figsize=(4.5 * len(problems), 4), squeeze=False)
    for ax, problem in zip(axes[0], problems, strict=True):
        rows = [r for r in records if r["problem"] == problem]
        for name in sorted({r["estimator"] for r in rows}):
            mine = sorted(
                (r for r in rows if r["estimator"] == name), key=lambda r: r["energy_evals"]
            )
            evals = [r["energy_evals"] for r in mine]
            ax.errorbar(
                evals,
                [abs(r["bias"]) + 1e-12 for r in mine],
                yerr=[r["spread"] for r in mine],
                marker="o",
                capsize=2,
                label=name,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("energy evaluations per estimate")
        ax.set_ylabel("|mean log Z_hat - log Z| (bars: sd over seeds)")
        ax.set_title(problem)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the JSON lines here")
    parser.add_argument("--png", default="logz_benchmark.png")
    args = parser.parse_args()
    budgets = (64, 256, 1024) if args.quick else (256, 1024, 4096, 16384)
    size, horizon = (8, 15) if args.quick else (16, 30)
    energies = ("banana",) if args.quick else toy2d.ENERGIES
    records = []
    sink = open(args.out, "w") if args.out else None  # noqa: SIM115

    def emit(record):
        records.append(record)
        line = json.dumps(record)
        print(line, flush=True)
        if sink:
            sink.write(line + "\n")
            sink.flush()

    world = objectworld.make_problem(
        jax.random.key(0), size=size, horizon=horizon, num_demos=200, model="trajectory_global"
    )
    for name, factory in TABULAR_ESTIMATORS.items():
        for budget in budgets:
            emit(measure(world, name, factory(budget), args.seeds, args.repeats, world.demos))
    for energy in energies:
        problem = toy2d.make_problem(jax.random.key(0), energy=energy, num_data=200)
        problem = problem.replace(name=f"toy2d/{energy}")
        for name, factory in DENSITY_ESTIMATORS.items():
            for budget in budgets:
                emit(
                    measure(problem, name, factory(budget), args.seeds, args.repeats, problem.data)
                )
    plot(records, args.png)
    summary = {
        "name": "summary",
        "objectworld": f"{size}x{size}, T = {horizon}, trajectory_global, uniform random proposal",
        "smc_vs_importance_at_equal_energy_evals": smc_vs_importance(records),
        "target_ratio": 10.0,
        "png": args.png,
    }
    emit(summary)
    if sink:
        sink.close()


if __name__ == "__main__":
    main()
