"""Benchmark of the adversarial reward learners against the exact MLE on ObjectWorld (issue 5).

Problem: the default ObjectWorld (8x8, T = 20, 2 distance features, linear true reward,
deterministic dynamics, uniform start), 200 demonstrations sampled exactly from the trajectory
model at the true theta, gamma = 1. In one run:

* ``mle``: exact maximum likelihood (``ebm_ppl.inference.mle.fit_reward``, L-BFGS) of the
  trajectory model; one point per step budget (``num_steps`` in MLE_STEPS), each timed after its
  compile (median over ``--repeats`` calls).
* ``gcl``: guided cost learning with the mixture proposal (``gcl``, nu = 2, 5 generator steps
  per update); log Z_hat = its fixed point zeta* per start state.
* ``gan_gcl``: GAN-GCL (``gan_gcl``, nu = 2, 5 generator steps per update); log Z_hat = its
  discriminator parameter zeta per start state.
* ``airl``: AIRL with a linear state-only reward g = Phi theta (the same reward class as the
  others) plus a tabular shaping potential h, on the demonstrations' transitions weighted
  gamma_AIRL^t (gamma_AIRL = 0.9: AIRL's stationary discounted model needs gamma < 1), exact
  policy step; ``airl_table``: the same with a tabular g (64 free values).
* ``gail``: GAIL on the same transitions; its discriminator is not a reward, so only the EVD of
  its policy is reported.

Along training, at checkpoints: EPIC distance of the learned reward to the truth (problem
gamma = 1), |log Z_hat - log Z| where the method has a log Z_hat (exact log Z of the learned
reward by ``ebm_ppl.exact.tabular.log_partition``, trajectory model, per start state, averaged
over the demonstrations' start states), and EVD (hard EVD of the learned reward; for AIRL and
GAIL also the EVD of the trainer's own stationary soft policy), against the cumulative wall
seconds of the updates (compile excluded and reported separately; evaluation excluded). Each
trainer runs ``--repeats`` times with different keys; the ``final`` records hold medians.

Then the transfer experiment (``ebm_ppl.adversarial.airl.transfer_experiment``): rewards learned
under the deterministic dynamics (AIRL state-only table, AIRL state-action table, GAN-GCL, plus the
exact MLE) are re-optimised under slip = 0.5 and under a wall (column 4 blocked except the top
row), and scored by hard EVD against the true reward there, for ``--transfer-seeds`` problems.

Timings: the machine has 2 cores shared with other jobs; every record carries ``loadavg_1m``.
Treat wall seconds as noisy (a factor of 2-4 under load).

Usage::

    PYTHONPATH=. python benchmarks/adversarial.py --out benchmarks/reference_runs/adversarial.jsonl
    PYTHONPATH=. python benchmarks/adversarial.py --quick     # tiny smoke run, about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

from ebm_ppl.adversarial.airl import (
    airl,
    blocked_cells_mdp,
    gail,
    policy_evd,
    transfer_experiment,
    transitions_from_trajectories,
)
from ebm_ppl.adversarial.trainers import gan_gcl, gcl
from ebm_ppl.exact.infinite import soft_value_iteration
from ebm_ppl.exact.tabular import log_partition, soft_bellman
from ebm_ppl.inference.mle import fit_reward
from ebm_ppl.metrics import epic_distance, expected_value_difference
from ebm_ppl.models.objectworld import make_problem

EPIC_TARGET = 0.2
AIRL_DISCOUNT = 0.9
MLE_STEPS = (1, 2, 5, 10, 20, 50, 100)
MLE_STEPS_QUICK = (5, 50)


def loadavg():
    return round(os.getloadavg()[0], 2)


def checkpoints(num_steps, count=12):
    steps = np.unique(np.round(np.geomspace(1, num_steps, count)).astype(int))
    return sorted(set(steps.tolist()) | {num_steps})


# ----------------------------------------------------------------------------- evaluation
def make_evaluators(problem):
    mdp, gamma = problem.mdp, problem.discount
    truth = problem.true_reward()
    starts = problem.demos[:, 0, 0]

    @jax.jit
    def epic(reward):
        return epic_distance(reward, truth, mdp, gamma)

    @jax.jit
    def evd(reward):
        return expected_value_difference(truth, reward, mdp, policy="hard", discount=gamma)

    @jax.jit
    def log_z_error(reward, log_z_hat):
        exact = log_partition(mdp, reward, model="trajectory", s0=jnp.arange(mdp.num_states))
        error = log_z_hat[starts] - exact[starts]
        return jnp.mean(jnp.abs(error)), jnp.mean(error)

    @jax.jit
    def own_policy_evd(log_policy):
        return policy_evd(truth, log_policy, mdp, discount=gamma)

    return epic, evd, log_z_error, own_policy_evd


# ----------------------------------------------------------------------------- MLE
def run_mle(problem, repeats, emit, evaluators, budgets):
    epic, evd, _, _ = evaluators
    records = []
    for num_steps in budgets:
        start = time.perf_counter()
        fit = jax.block_until_ready(fit_reward(problem, num_steps=num_steps))
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fit = jax.block_until_ready(fit_reward(problem, num_steps=num_steps))
            times.append(time.perf_counter() - start)
        reward = problem.energy_model.reward(fit.params)
        record = {
            "name": "adversarial/curve",
            "method": "mle",
            "repeat": 0,
            "step": num_steps,
            "wall_s": float(np.median(times)),
            "compile_s": compile_s - float(np.median(times)),
            "epic": float(epic(reward)),
            "evd": float(evd(reward)),
            "nll": float(fit.losses[-1]),
            "grad_norm": float(fit.grad_norm),
            "theta": np.asarray(fit.params["theta"]).tolist(),
            "loadavg_1m": loadavg(),
        }
        emit(record)
        records.append(record)
    return records, problem.energy_model.reward(fit.params)


# ----------------------------------------------------------------------------- trainers
def train_curve(method, trainer, state, batch, num_steps, rng_key, evaluate, emit, repeat):
    """Python loop over jitted updates; checkpoints block and evaluate (not timed)."""
    keys = jax.random.split(rng_key, num_steps + 1)
    start = time.perf_counter()
    warm, _ = trainer.update(keys[-1], state, batch)  # compile (first repeat) on a throwaway copy
    jax.block_until_ready(warm)
    compile_s = time.perf_counter() - start  # compile + one update; ~one update when cached
    marks = set(checkpoints(num_steps))
    records, elapsed, previous = [], 0.0, state
    tic = time.perf_counter()
    for step in range(1, num_steps + 1):
        new_state, info = trainer.update(keys[step - 1], state, batch)
        previous, state = state, new_state
        if step in marks:
            jax.block_until_ready(state)
            elapsed += time.perf_counter() - tic
            record = {
                "name": "adversarial/curve",
                "method": method,
                "repeat": repeat,
                "step": step,
                "wall_s": elapsed,
                "compile_s": compile_s,
                **evaluate(state, info, previous),
                "loadavg_1m": loadavg(),
            }
            emit(record)
            records.append(record)
            tic = time.perf_counter()
    return records


def method_specs(problem, args, evaluators):
    epic, evd, log_z_error, own_policy_evd = evaluators
    reward_of = problem.energy_model.reward
    mdp = problem.mdp
    transitions = transitions_from_trajectories(problem.demos, discount=AIRL_DISCOUNT)

    def eval_gan(state, info, previous):
        reward = reward_of(state.params)
        abs_err, signed = log_z_error(reward, state.zeta)
        return {
            "epic": float(epic(reward)),
            "evd": float(evd(reward)),
            "log_z_abs_error": float(abs_err),
            "log_z_error": float(signed),
            "elbo": float(info.elbo),
            "theta": np.asarray(state.params["theta"]).tolist(),
        }

    def eval_gcl(state, info, previous):
        # info.log_z is zeta* of the pooled sample at the parameters *before* this update
        reward = reward_of(state.params)
        abs_err, signed = log_z_error(reward_of(previous.params), info.log_z)
        return {
            "epic": float(epic(reward)),
            "evd": float(evd(reward)),
            "log_z_abs_error": float(abs_err),
            "log_z_error": float(signed),
            "elbo": float(info.elbo),
            "theta": np.asarray(state.params["theta"]).tolist(),
        }

    def eval_airl(state, info, previous):
        reward = info.reward
        return {
            "epic": float(epic(reward)),
            "evd": float(evd(reward)),
            "policy_evd": float(own_policy_evd(state.log_policy)),
            "expert_mean_d": float(info.expert_mean_d),
        }

    def eval_gail(state, info, previous):
        return {
            "policy_evd": float(own_policy_evd(state.log_policy)),
            "expert_mean_d": float(info.expert_mean_d),
        }

    # trainers are built lazily, once per method (the repeats reuse its compiled update)
    def airl_trainer(features):
        return airl(mdp, discount=AIRL_DISCOUNT, features=features, optimizer=optax.adam(0.05))

    return {
        "gan_gcl": (
            lambda: gan_gcl(problem, nu=args.nu, policy_steps=5),
            problem.demos,
            eval_gan,
            args.gan_gcl_steps,
        ),
        "gcl": (
            lambda: gcl(problem, nu=args.nu, policy_steps=5),
            problem.demos,
            eval_gcl,
            args.gcl_steps,
        ),
        "airl": (lambda: airl_trainer(mdp.features), transitions, eval_airl, args.airl_steps),
        "airl_table": (lambda: airl_trainer(None), transitions, eval_airl, args.airl_steps),
        "gail": (
            lambda: gail(mdp, discount=AIRL_DISCOUNT, optimizer=optax.adam(0.1)),
            transitions,
            eval_gail,
            args.gail_steps,
        ),
    }


def summarise(method, records, repeats):
    """Median over repeats of the last checkpoint (and of the time to reach EPIC < target)."""
    last_step = max(r["step"] for r in records)
    finals = [r for r in records if r["step"] == last_step]
    summary = {
        "name": "adversarial/final",
        "method": method,
        "steps": last_step,
        "repeats": len(finals),
        "wall_s": float(np.median([r["wall_s"] for r in finals])),
        "compile_s": float(np.median([r["compile_s"] for r in finals])),
    }
    for key in ("epic", "evd", "log_z_abs_error", "log_z_error", "policy_evd"):
        if key in finals[0]:
            values = [r[key] for r in finals]
            summary[key] = float(np.median(values))
            summary[f"{key}_range"] = [float(np.min(values)), float(np.max(values))]
    if "epic" in finals[0]:
        reach = []
        for repeat in sorted({r["repeat"] for r in records}):
            mine = sorted((r for r in records if r["repeat"] == repeat), key=lambda r: r["step"])
            hit = [r["wall_s"] for r in mine if r["epic"] < EPIC_TARGET]
            reach.append(hit[0] if hit else float("nan"))
        summary["wall_s_to_epic_target"] = float(np.median(reach))
        summary["reaches_epic_target"] = bool(summary["epic"] < EPIC_TARGET)
    summary["loadavg_1m"] = loadavg()
    return summary


# ----------------------------------------------------------------------------- transfer
def wall_cells(size):
    """Column ``size // 2`` blocked except the top row (one gap)."""
    return [row * size + size // 2 for row in range(1, size)]


def run_transfer(args, emit):
    rows = []
    for seed in range(args.transfer_seeds):
        problem = make_problem(
            jax.random.key(seed),
            size=args.size,
            horizon=args.horizon,
            num_demos=args.num_demos,
            model="trajectory",
        )
        slip = make_problem(
            jax.random.key(seed),
            size=args.size,
            horizon=args.horizon,
            num_demos=0,
            slip=0.5,
        ).mdp
        targets = {"slip0.5": slip, "wall": blocked_cells_mdp(problem.mdp, wall_cells(args.size))}
        mle = fit_reward(problem, num_steps=100)
        start = time.perf_counter()
        result = transfer_experiment(
            jax.random.key(1000 + seed),
            problem,
            targets,
            discount=AIRL_DISCOUNT,
            airl_steps=args.transfer_airl_steps,
            gan_gcl_steps=args.transfer_gan_gcl_steps,
            gan_gcl_options={"nu": args.nu, "policy_steps": 5},
            extra_rewards={"mle": problem.energy_model.reward(mle.params)},
        )
        seconds = time.perf_counter() - start
        for i, method in enumerate(result.methods):
            record = {
                "name": "adversarial/transfer",
                "seed": seed,
                "method": method,
                "epic": float(result.epic[i]),
                "source_evd": float(result.source_evd[i]),
                **{
                    f"target_evd[{t}]": float(result.target_evd[k, i])
                    for k, t in enumerate(result.targets)
                },
                "experiment_s": seconds,
                "loadavg_1m": loadavg(),
            }
            emit(record)
            rows.append(record)
    targets = [k[len("target_evd[") : -1] for k in rows[0] if k.startswith("target_evd[")]
    table = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        table[method] = {
            "source_evd": float(np.median([r["source_evd"] for r in mine])),
            **{t: float(np.median([r[f"target_evd[{t}]"] for r in mine])) for t in targets},
            "epic": float(np.median([r["epic"] for r in mine])),
        }
    wins = {
        t: sum(
            r_so[f"target_evd[{t}]"] < r_sa[f"target_evd[{t}]"]
            for r_so, r_sa in zip(
                [r for r in rows if r["method"] == "airl_state_only"],
                [r for r in rows if r["method"] == "airl_state_action"],
                strict=True,
            )
        )
        for t in targets
    }
    return {
        "name": "adversarial/transfer_table",
        "statistic": f"median over {args.transfer_seeds} problem seeds",
        "airl_discount": AIRL_DISCOUNT,
        "wall_cells": wall_cells(args.size),
        "evd": table,
        "state_only_beats_state_action": {t: f"{wins[t]}/{args.transfer_seeds}" for t in targets},
    }


# ----------------------------------------------------------------------------- plot
def plot(curves, mle_records, path, title):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = dict(
        zip(
            ["mle", "gcl", "gan_gcl", "airl", "airl_table", "gail"],
            plt.rcParams["axes.prop_cycle"].by_key()["color"],
            strict=False,
        )
    )
    for method, records in curves.items():
        for repeat in sorted({r["repeat"] for r in records}):
            mine = sorted((r for r in records if r["repeat"] == repeat), key=lambda r: r["step"])
            wall = [r["wall_s"] for r in mine]
            label = method if repeat == 0 else None
            style = dict(color=colours[method], alpha=0.8, marker=".", label=label)
            if "epic" in mine[0]:
                axes[0].plot(wall, [max(r["epic"], 1e-4) for r in mine], **style)
            if "log_z_abs_error" in mine[0]:
                axes[1].plot(wall, [max(r["log_z_abs_error"], 1e-6) for r in mine], **style)
            if "evd" in mine[0]:
                axes[2].plot(wall, [max(r["evd"], 1e-4) for r in mine], **style)
            if "policy_evd" in mine[0]:
                style.update(ls="--", label=f"{method} (own policy)" if repeat == 0 else None)
                axes[2].plot(wall, [max(r["policy_evd"], 1e-4) for r in mine], **style)
    mle = sorted(mle_records, key=lambda r: r["step"])
    style = dict(color=colours["mle"], marker="s", label="mle (exact)")
    axes[0].plot([r["wall_s"] for r in mle], [max(r["epic"], 1e-4) for r in mle], **style)
    axes[2].plot([r["wall_s"] for r in mle], [max(r["evd"], 1e-4) for r in mle], **style)
    axes[0].axhline(EPIC_TARGET, color="grey", ls="--", lw=1)
    titles = (
        "EPIC distance to the true reward",
        "|log Z_hat - log Z| (mean over demo start states)",
        "EVD: learned reward, hard-optimal (solid); trainer's soft policy (dashed)",
    )
    for ax, panel in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("wall seconds (updates only, compile excluded)")
        ax.set_title(panel, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (5x5, T = 8, 40 demos)")
    parser.add_argument("--out", default=None, help="directory for the JSONL and the PNG")
    parser.add_argument("--tag", default="adversarial", help="file name stem in --out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nu", type=int, default=2)
    parser.add_argument("--gan-gcl-steps", type=int, default=1000)
    parser.add_argument("--gcl-steps", type=int, default=150)
    parser.add_argument("--airl-steps", type=int, default=600)
    parser.add_argument("--gail-steps", type=int, default=400)
    parser.add_argument("--transfer-seeds", type=int, default=3)
    parser.add_argument("--transfer-airl-steps", type=int, default=300)
    parser.add_argument("--transfer-gan-gcl-steps", type=int, default=300)
    args = parser.parse_args()
    args.size, args.horizon, args.num_demos = 8, 20, 200
    if args.quick:
        args.size, args.horizon, args.num_demos = 5, 8, 40
        args.repeats = 1
        args.gan_gcl_steps, args.gcl_steps, args.airl_steps, args.gail_steps = 40, 10, 40, 20
        args.transfer_seeds, args.transfer_airl_steps, args.transfer_gan_gcl_steps = 1, 40, 20

    sink, png = None, None
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        sink = open(os.path.join(args.out, f"{args.tag}.jsonl"), "w")  # noqa: SIM115
        png = os.path.join(args.out, f"{args.tag}.png")

    def emit(record):
        line = json.dumps(record)
        print(line, flush=True)
        if sink:
            sink.write(line + "\n")
            sink.flush()

    problem = make_problem(
        jax.random.key(0),
        size=args.size,
        horizon=args.horizon,
        num_demos=args.num_demos,
        model="trajectory",
    )
    truth = problem.true_reward()
    emit(
        {
            "name": "adversarial/setup",
            "problem": f"objectworld {args.size}x{args.size}, T = {args.horizon}",
            "num_demos": args.num_demos,
            "model": problem.model,
            "discount": problem.discount,
            "airl_discount": AIRL_DISCOUNT,
            "nu": args.nu,
            "true_theta": np.asarray(problem.true_params["theta"]).tolist(),
            # references for the policy EVDs of GAIL and AIRL: the demonstrator (finite-horizon
            # soft-optimal, time-indexed) and the stationary soft-optimal policy at AIRL's gamma
            "demonstrator_policy_evd": float(
                policy_evd(
                    truth,
                    soft_bellman(problem.mdp, truth, model="causal").log_policy,
                    problem.mdp,
                )
            ),
            "stationary_soft_policy_evd": float(
                policy_evd(
                    truth,
                    soft_value_iteration(problem.mdp, truth, discount=AIRL_DISCOUNT).log_policy,
                    problem.mdp,
                )
            ),
            "uniform_policy_evd": float(
                policy_evd(
                    truth,
                    jnp.full((problem.mdp.num_states, 5), -jnp.log(5.0)),
                    problem.mdp,
                )
            ),
            "repeats": args.repeats,
            "dtype": str(truth.dtype),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "loadavg_1m": loadavg(),
        }
    )
    evaluators = make_evaluators(problem)
    budgets = MLE_STEPS_QUICK if args.quick else MLE_STEPS
    mle_records, _ = run_mle(problem, max(args.repeats, 5), emit, evaluators, budgets)
    summaries = [
        {
            "name": "adversarial/final",
            "method": "mle",
            "steps": mle_records[-1]["step"],
            "wall_s": mle_records[-1]["wall_s"],
            "compile_s": mle_records[-1]["compile_s"],
            "epic": mle_records[-1]["epic"],
            "evd": mle_records[-1]["evd"],
            "reaches_epic_target": mle_records[-1]["epic"] < EPIC_TARGET,
            "loadavg_1m": loadavg(),
        }
    ]
    emit(summaries[0])
    curves = {}
    specs = method_specs(problem, args, evaluators)
    for method, (make_trainer, batch, evaluate, num_steps) in specs.items():
        records, trainer = [], make_trainer()
        for repeat in range(args.repeats):
            key = jax.random.fold_in(jax.random.key(1), repeat)
            state = trainer.init(None)
            records += train_curve(
                method, trainer, state, batch, num_steps, key, evaluate, emit, repeat
            )
        curves[method] = records
        summaries.append(summarise(method, records, args.repeats))
        emit(summaries[-1])
    transfer = run_transfer(args, emit)
    emit(transfer)
    if png:
        title = (
            f"ObjectWorld {args.size}x{args.size}, T = {args.horizon}, {args.num_demos} demos "
            f"(trajectory model); medians of {args.repeats} repeats in the JSONL; 2 shared cores"
        )
        plot(curves, mle_records, png, title)
    acceptance = {
        m["method"]: {"epic": m.get("epic"), "passes": m.get("reaches_epic_target")}
        for m in summaries
        if "epic" in m
    }
    emit(
        {
            "name": "adversarial/summary",
            "epic_target": EPIC_TARGET,
            "epic_final": acceptance,
            "issue5_acceptance_gan_gcl_gcl_airl": all(
                acceptance[m]["passes"] for m in ("gan_gcl", "gcl", "airl")
            ),
            "gail_policy_evd": next(s for s in summaries if s["method"] == "gail")["policy_evd"],
            "transfer_evd": transfer["evd"],
            "png": png,
        }
    )
    if sink:
        sink.close()


if __name__ == "__main__":
    main()
