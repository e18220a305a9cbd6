"""Benchmark of the log Z estimators on the continuous problems (issue 7): error against wall time.

Problems (float64; each estimator's bias and spread over ``--seeds`` keys, run as one vmapped,
jitted program compiled before timing):

* ``lqr``: the reference LQR system at horizon T = 10, its stacked controls as an energy on
  R^10 (``models.lqr.control_space_problem``), exact log Z in closed form (THEORY §8.1a). Every
  estimator uses the same over-dispersed Gaussian q = N(mu, 1.5^2 Sigma) (proposal of the
  importance family, reference of AIS and tempered SMC; chi^2(p||q) = 5.3 in closed form); EUBO
  gets exact draws of p, the GCL mixture 64 exact draws per seed.
* ``pendulum``: Pendulum-v1 at T = 50 (``models.pendulum``, the test fixture's demos), start
  states 0 and 1, through ``ebm_ppl.logz.control.per_start`` (tanh reparameterisation of the
  torque box). No exact log Z: the reference is plain IS with 2^18 draws from the moment-matched
  box proposal (k-hat and SE recorded); the records give the spread over seeds and the deviation of
  the seeds' mean from that reference. IS and the GCL mixture under the fitted proposal, plain IS
  from the uniform box (the prior), AIS (MALA) and tempered SMC (HMC) from the uniform box.
* ``mountaincar``: MountainCar-v0 at T = 8 (``models.mountaincar``), start states 0-2, exact log Z
  by enumerating the 3^8 sequences. Particle SMC over time (``sequence_smc``, adaptive resampling
  and none), IS from uniform sequences, the GCL mixture with the problem's 20 exact demos. (PSIS
  runs on LQR only: it matches IS wherever k-hat is low, as on the two action-sequence problems.)

Per cell (problem, estimator, budget): RMSE, bias and spread (sd over seeds; averaged over the start
states for the per-start problems) of log Z_hat, the mean energy evaluations (per step for action
sequences: a sequence costs T), the wall seconds per estimate (median over ``--repeats`` timed
calls of the batch, divided by the seeds) and the mean k-hat where the estimator reports one. The
summary ranks the estimators of each problem by work-normalised error, RMSE^2 x seconds (lower is
better: the inverse of efficiency), at each estimator's best budget, and writes a PNG of error
against wall seconds. Timings: 2 cores shared with other jobs; every record carries ``loadavg_1m``.

Usage::

    PYTHONPATH=. python benchmarks/continuous.py --out benchmarks/reference_runs \\
        --tag continuous_2core_2026-12-05
    PYTHONPATH=. python benchmarks/continuous.py --quick --out /tmp/cont
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import resource
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

jax.config.update("jax_enable_x64", True)

from ebm_ppl import logz
from ebm_ppl.exact import lqr as exact_lqr
from ebm_ppl.logz import control
from ebm_ppl.models import lqr, mountaincar, pendulum

SCALE = 1.5
LQR_HORIZON = 10
MC_HORIZON = 8
PENDULUM_STARTS = (0, 1)
MC_STARTS = (0, 1, 2)


def loadavg():
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------------- problems
def lqr_setup():
    problem = lqr.make_problem(system="reference", horizon=LQR_HORIZON, num_demos=0)
    controls = lqr.control_space_problem(problem)
    cost = problem.cost_matrices(problem.true_params)
    batch = exact_lqr.batch_gaussian(problem.system, cost, problem.system.initial_mean)
    mean, cov = batch.control_mean.ravel(), batch.control_cov
    q = dist.MultivariateNormal(mean, SCALE**2 * cov)
    p = dist.MultivariateNormal(mean, cov)

    def sampler(key, problem, params, num):
        return p.sample(key, (num,))

    estimators = {
        "importance": lambda n: logz.importance(n, proposal=q, model="ebm"),
        "psis": lambda n: logz.psis(n, proposal=q, model="ebm"),
        "elbo": lambda n: logz.elbo(n, proposal=q, model="ebm"),
        "iwae8": lambda n: logz.iwae(n, 8, proposal=q, model="ebm"),
        "eubo": lambda n: logz.eubo(n, proposal=q, model="ebm", sampler=sampler),
        "gcl_mixture": lambda n: logz.gcl_mixture(n, proposal=q, model="ebm"),
        "ais32": lambda n: logz.ais(n, 32, kernel="mala", reference=q, step_size=0.2),
        "tempered_smc": lambda n: logz.tempered_smc(
            n, reference=q, num_mcmc_steps=2, num_integration_steps=5, step_size=0.2
        ),
    }
    budgets = {
        "ais32": (16, 64, 256),
        "tempered_smc": (32, 128, 512),
    }
    chi2 = (SCALE**2 / math.sqrt(2 * SCALE**2 - 1)) ** controls.dim - 1

    def data(key, num_seeds):
        return p.sample(key, (num_seeds, 64))

    info = {"dim": controls.dim, "chi2_closed_form": chi2, "proposal": "N(mu, 1.5^2 Sigma)"}
    return controls, float(controls.log_z), estimators, budgets, data, info


def pendulum_setup():
    problem = pendulum.make_problem()
    bound = problem.energy_model.dynamics.max_torque
    fitted = control.moment_matched_box_proposal(problem.demos, bound)
    box = control.box_proposal(problem.horizon, bound)
    wrap = control.per_start
    estimators = {
        "importance": lambda n: wrap(logz.importance(n, proposal=fitted, model="ebm")),
        "importance_box": lambda n: wrap(logz.importance(n, proposal=box, model="ebm")),
        "gcl_mixture": lambda n: wrap(logz.gcl_mixture(n, proposal=fitted, model="ebm")),
        "ais16": lambda n: wrap(logz.ais(n, 16, kernel="mala", reference=box, step_size=0.1)),
        "tempered_smc": lambda n: wrap(
            logz.tempered_smc(
                n, reference=box, num_mcmc_steps=2, num_integration_steps=5, step_size=0.2
            )
        ),
    }
    budgets = {"ais16": (16, 64, 256), "tempered_smc": (32, 128, 256)}
    reference = wrap(logz.importance(2**18, proposal=fitted, model="ebm"))
    starts = jnp.asarray(PENDULUM_STARTS)
    ref = jax.jit(lambda k, pr, pa, s: reference.run(k, pr, pa, s0=s))(
        jax.random.key(123), problem, problem.true_params, starts
    )
    info = {
        "horizon": problem.horizon,
        "starts": list(PENDULUM_STARTS),
        "reference": "IS 2^18 draws, moment-matched box proposal",
        "reference_log_z": np.asarray(ref.log_z).tolist(),
        "reference_stderr": np.asarray(ref.stderr).tolist(),
        "reference_khat": np.asarray(ref.info.khat).tolist(),
    }
    return problem, np.asarray(ref.log_z), estimators, budgets, None, info


def mountaincar_setup():
    problem = mountaincar.make_problem(
        jax.random.key(0), horizon=MC_HORIZON, num_demos=20, num_starts=len(MC_STARTS)
    )
    uniform = control.sequence_proposal(MC_HORIZON, 3)
    wrap = control.per_start
    estimators = {
        "sequence_smc": lambda n: control.sequence_smc(n),
        "sequence_sis": lambda n: control.sequence_smc(n, resample="never"),
        "importance": lambda n: wrap(logz.importance(n, proposal=uniform, model="ebm")),
        "gcl_mixture": lambda n: wrap(logz.gcl_mixture(n, proposal=uniform, model="ebm")),
    }
    info = {"horizon": MC_HORIZON, "starts": list(MC_STARTS), "exact": "enumeration of 3^8"}
    return problem, np.asarray(problem.log_z), estimators, {}, None, info


# ---------------------------------------------------------------------- measurement
def measure(problem_name, problem, exact, name, budget, estimator, num_seeds, repeats, data_fn):
    params = problem.true_params
    per_start = estimator.models == ("trajectory",)
    s0 = jnp.asarray(PENDULUM_STARTS) if problem_name == "pendulum" else None

    def one(key, data, problem, params):
        if per_start:
            return estimator.run(key, problem, params, s0=s0)
        return estimator.run(key, problem, params, data=data)

    run = jax.jit(jax.vmap(one, in_axes=(0, 0 if data_fn else None, None, None)))
    keys = jax.random.split(jax.random.key(1), num_seeds)
    data = data_fn(jax.random.key(2), num_seeds) if data_fn else None
    start = time.perf_counter()
    result = jax.block_until_ready(run(keys, data, problem, params))
    compile_seconds = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(keys, data, problem, params))
        times.append((time.perf_counter() - start) / num_seeds)
    estimates = np.asarray(result.log_z, dtype=np.float64)  # (seeds,) or (seeds, n)
    errors = estimates - exact
    khat = getattr(result.info, "khat", None)
    record = {
        "name": "continuous/logz",
        "problem": problem_name,
        "estimator": name,
        "budget": int(budget),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "bias": float(np.mean(errors)),
        "spread": float(np.mean(np.std(estimates, axis=0, ddof=1))),
        "energy_evals": float(np.mean(np.asarray(result.num_energy_evals))),
        "seconds_per_estimate": float(np.median(times)),
        "compile_plus_first_call_s": round(compile_seconds, 2),
        "khat": float(np.nanmean(np.asarray(khat))) if khat is not None else None,
        "num_seeds": num_seeds,
        "finite": bool(np.all(np.isfinite(estimates))),
        "dtype": str(estimates.dtype),
        "loadavg_1m": loadavg(),
    }
    if problem_name == "pendulum":
        record["error_vs"] = "IS 2^18 reference (not exact)"
    return record


def summarise(records, problem):
    rows = [r for r in records if r["name"] == "continuous/logz" and r["problem"] == problem]
    rows = [r for r in rows if r["finite"]]
    best = {}
    for r in rows:
        work = r["rmse"] ** 2 * r["seconds_per_estimate"]
        if r["estimator"] not in best or work < best[r["estimator"]]["work_normalised_mse"]:
            best[r["estimator"]] = {
                "budget": r["budget"],
                "rmse": r["rmse"],
                "spread": r["spread"],
                "seconds_per_estimate": r["seconds_per_estimate"],
                "work_normalised_mse": work,
            }
    ranking = sorted(best, key=lambda n: best[n]["work_normalised_mse"])
    return {"ranking": ranking, "best": best}


def plot(records, path):
    import matplotlib.pyplot as plt

    problems = ["lqr", "pendulum", "mountaincar"]
    problems = [p for p in problems if any(r["problem"] == p for r in records)]
    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 4.2), squeeze=False)
    for ax, problem in zip(axes[0], problems, strict=True):
        rows = [r for r in records if r["name"] == "continuous/logz" and r["problem"] == problem]
        rows = [r for r in rows if r["finite"]]
        for name in sorted({r["estimator"] for r in rows}):
            mine = sorted(
                (r for r in rows if r["estimator"] == name),
                key=lambda r: r["seconds_per_estimate"],
            )
            ax.plot(
                [r["seconds_per_estimate"] for r in mine],
                [r["rmse"] + 1e-12 for r in mine],
                marker="o",
                label=name,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("wall seconds per estimate (median, 2 shared cores)")
        what = "vs IS 2^18 reference" if problem == "pendulum" else "vs exact"
        ax.set_ylabel(f"RMSE of log Z_hat ({what})")
        ax.set_title(problem)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two budgets, 5 seeds")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--pendulum-seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="directory for the JSONL and the PNG")
    parser.add_argument("--tag", default="continuous", help="file name stem in --out")
    parser.add_argument("--problems", default="lqr,mountaincar,pendulum")
    args = parser.parse_args()
    out = pathlib.Path(args.out) if args.out else pathlib.Path(".")
    out.mkdir(parents=True, exist_ok=True)
    sink = open(out / f"{args.tag}.jsonl", "w") if args.out else None  # noqa: SIM115
    records = []
    started = time.perf_counter()

    def emit(record):
        records.append(record)
        line = json.dumps(record)
        print(line, flush=True)
        if sink:
            sink.write(line + "\n")
            sink.flush()

    default_budgets = (256, 1024) if args.quick else (256, 1024, 4096)
    setups = {"lqr": lqr_setup, "pendulum": pendulum_setup, "mountaincar": mountaincar_setup}
    for problem_name in args.problems.split(","):
        problem, exact, estimators, budgets, data_fn, info = setups[problem_name]()
        emit(
            {
                "name": "continuous/problem",
                "problem": problem_name,
                **info,
                "log_z_exact": np.asarray(exact).tolist(),
                "loadavg_1m": loadavg(),
            }
        )
        seeds = args.pendulum_seeds if problem_name == "pendulum" else args.seeds
        seeds = min(seeds, 5) if args.quick else seeds
        for name, factory in estimators.items():
            sizes = budgets.get(name, default_budgets)
            sizes = sizes[:2] if args.quick else sizes
            if name in ("elbo", "eubo"):  # bounds: their gap does not shrink with the budget
                sizes = sizes[-1:]
            for budget in sizes:
                emit(
                    measure(
                        problem_name,
                        problem,
                        exact,
                        name,
                        budget,
                        factory(budget),
                        seeds,
                        args.repeats,
                        data_fn if name == "gcl_mixture" else None,
                    )
                )
    png = out / f"{args.tag}.png"
    plot(records, png)
    summary = {
        "name": "continuous/summary",
        "png": str(png),
        "total_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mib_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "loadavg_1m": loadavg(),
    }
    for problem_name in args.problems.split(","):
        summary[problem_name] = summarise(records, problem_name)
    emit(summary)
    if sink:
        sink.close()


if __name__ == "__main__":
    main()
