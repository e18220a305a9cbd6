"""The ``ebm-ppl`` command.

* ``ebm-ppl demo``: the main job. The reward posterior of the default ObjectWorld (8x8, 50 demos)
  with 4 NUTS chains: prints the summary, EPIC/EVD of the posterior against the truth, and where
  the DataTree, plots and tables went.
* ``ebm-ppl infer PROBLEM``: Bayesian reward inference (NumPyro NUTS, BlackJAX NUTS or PolicyWalk)
  with any exact likelihood; writes ``posterior.nc`` (ArviZ DataTree), PNG plots, ``summary.csv``
  and ``report.json`` to ``--out``.
* ``ebm-ppl logz PROBLEM --estimators a,b,c --budget N --seeds K``: log Z estimators side by
  side: estimate, error and bias against the exact value, spread over seeds, k-hat, energy
  evaluations and time.
* ``ebm-ppl compare PROBLEM... [--config study.toml] [--quick]``: the comparison harness
  (:func:`ebm_ppl.compare.compare`): log Z estimators, adversarial trainers and posteriors on the
  same problems, resumable into ``--out`` (tables, figures, DataTrees), a summary table at the end.
* ``ebm-ppl fit PROBLEM``: exact MaxEnt IRL (maximum likelihood or MAP); prints a JSON report with
  EPIC and EVD against the truth.

Float64 is on for every command; chains run in parallel on one CPU device each.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time


def _fit(args) -> int:
    import jax

    from ebm_ppl.exact.tabular import MODELS
    from ebm_ppl.inference.mle import fit_reward, negative_log_likelihood
    from ebm_ppl.metrics import epic_distance, expected_value_difference
    from ebm_ppl.problems import make_problem

    if args.model not in MODELS:
        raise ValueError(f"`--model` must be one of {MODELS}; got {args.model!r}.")
    start = time.perf_counter()
    problem = make_problem(
        args.problem, jax.random.key(args.seed), num_demos=args.num_demos, model=args.model
    )
    fit = fit_reward(problem, num_steps=args.steps, map_estimate=args.map)
    true_reward = problem.true_reward()
    learned = problem.energy_model.reward(fit.params)
    report = {
        "problem": problem.name,
        "model": problem.model,
        "estimate": "MAP" if args.map else "MLE",
        "num_demos": int(problem.demos.shape[0]),
        "seed": args.seed,
        "true_params": {k: jax.device_get(v).tolist() for k, v in problem.true_params.items()},
        "fitted_params": {k: jax.device_get(v).tolist() for k, v in fit.params.items()},
        "mean_nll_fitted": float(negative_log_likelihood(problem, fit.params, problem.demos)),
        "mean_nll_true": float(
            negative_log_likelihood(problem, problem.true_params, problem.demos)
        ),
        "grad_norm": float(fit.grad_norm),
        "epic": float(epic_distance(true_reward, learned, problem.mdp)),
        "evd_hard": float(
            expected_value_difference(true_reward, learned, problem.mdp, policy="hard")
        ),
        "evd_soft": float(
            expected_value_difference(true_reward, learned, problem.mdp, policy="soft")
        ),
        "seconds": round(time.perf_counter() - start, 3),
    }
    print(json.dumps(report, indent=2))
    return 0


def _infer(args) -> int:
    import jax
    import numpyro.distributions as dist

    from ebm_ppl import diagnostics
    from ebm_ppl.inference.posterior import infer_reward
    from ebm_ppl.plots import save_plots
    from ebm_ppl.problems import make_problem

    start = time.perf_counter()
    options = {"num_demos": args.num_demos} if args.num_demos is not None else {}
    problem = make_problem(args.problem, jax.random.key(args.seed), **options)
    rationality = args.rationality
    if args.rationality_prior is not None:
        rationality = dist.LogNormal(0.0, args.rationality_prior)
    idata = infer_reward(
        jax.random.key(args.seed + 1),
        problem,
        method=args.method,
        likelihood=args.likelihood,
        num_chains=args.chains,
        num_warmup=args.warmup,
        num_samples=args.draws,
        rationality=rationality,
        q=args.q,
        step_size=args.step_size,
        thinning=args.thinning,
        progress_bar=not args.quiet,
    )
    sampled = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = diagnostics.summary(idata)
    table.to_csv(out / "summary.csv")
    path = diagnostics.save(idata, out / "posterior.nc")
    figures = save_plots(idata, out)
    stats = idata["sample_stats"]
    report = {
        "problem": problem.name,
        "likelihood": idata.attrs["likelihood"],
        "method": args.method,
        "chains": args.chains,
        "draws": args.draws,
        "seed": args.seed,
        "num_demos": int(idata.attrs["num_demos"]),
        "max_rhat": float(table["r_hat"].max()),
        "min_ess_bulk": float(table["ess_bulk"].min()),
        "divergences": int(stats["diverging"].sum()) if "diverging" in stats else None,
        "interval": table.attrs["interval"],
        "sampling_seconds": round(sampled - start, 2),
        "total_seconds": round(time.perf_counter() - start, 2),
        "files": [str(path), str(out / "summary.csv"), *(str(f) for f in figures)],
    }
    if problem.true_params is not None:
        report["recovery"] = diagnostics.reward_recovery(idata, problem)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    report["files"].append(str(out / "report.json"))
    print(
        f"{problem.name}: {report['likelihood']} likelihood, {args.method}, {args.chains} chains "
        f"x {args.draws} draws ({table.attrs['interval']})"
    )
    print(table.to_string())
    print(json.dumps({k: v for k, v in report.items() if k != "files"}, indent=2))
    print("wrote:\n  " + "\n  ".join(report["files"]))
    return 0


def _logz(args) -> int:
    import jax

    from ebm_ppl.logz.report import evaluate, make_estimator
    from ebm_ppl.problems import make_problem

    options = {"num_demos": args.num_demos} if args.num_demos is not None else {}
    problem = make_problem(args.problem, jax.random.key(args.seed), **options)
    model = args.model or ("trajectory_global" if hasattr(problem, "mdp") else "ebm")
    names = [name.strip() for name in args.estimators.split(",") if name.strip()]
    if not names:
        raise ValueError("`--estimators` must name at least one estimator.")
    estimators = {name: make_estimator(name, args.budget, model) for name in names}
    rows = evaluate(
        jax.random.key(args.seed + 1), problem, estimators, num_seeds=args.seeds, model=model
    )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = ("estimator", "estimate", "error", "bias", "spread", "stderr", "khat")
    columns += ("energy_evals", "seconds_per_seed")
    print(
        f"{problem.name}: log Z of the {model!r} model at the true parameters, exact "
        f"{rows[0]['log_z_exact']:.6g}; budget {args.budget}, {args.seeds} seeds "
        "(error: RMS over seeds; spread: sd over seeds)"
    )
    print("  ".join(f"{c:>16}" for c in columns))
    for row in rows:
        cells = [f"{row['estimator']:>16}"]
        cells += [f"{row[c]:>16.6g}" for c in columns[1:]]
        print("  ".join(cells))
    return 0


_CONFIG_KEYS = {
    "problems": list,
    "seed": int,
    "estimators": list,
    "trainers": list,
    "posteriors": list,
    "seeds": int,
    "budgets": list,
    "steps": int,
    "posterior_draws": int,
    "out": str,
    "quick": bool,
    "problem_options": dict,
}


def _read_config(path) -> dict:
    """A study file (TOML) with keys of :data:`_CONFIG_KEYS` (see ``ebm-ppl compare --help``)."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            config = tomllib.load(handle)
    except OSError as error:
        raise ValueError(f"`--config`: cannot read {path!r}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"`--config`: {path!r} is not valid TOML: {error}") from error
    for key, value in config.items():
        if key not in _CONFIG_KEYS:
            raise ValueError(
                f"`--config`: unknown key {key!r} in {path!r}; expected among "
                f"{sorted(_CONFIG_KEYS)}."
            )
        if not isinstance(value, _CONFIG_KEYS[key]) or (
            _CONFIG_KEYS[key] is int and isinstance(value, bool)
        ):
            raise ValueError(
                f"`--config`: {key!r} must be a {_CONFIG_KEYS[key].__name__}; got {value!r}."
            )
    return config


def _split(value) -> list:
    if value is None or isinstance(value, list):
        return value
    return [item.strip() for item in str(value).split(",") if item.strip()]


def _compare(args) -> int:
    import jax

    from ebm_ppl.compare import QUICK, compare, print_summary
    from ebm_ppl.problems import list_problems

    settings = {
        "problems": [],
        "seed": 0,
        "estimators": ["importance", "psis", "gcl_mixture", "particle_smc"],
        "trainers": [],
        "posteriors": [],
        "seeds": 3,
        "budgets": [256, 1024],
        "steps": 200,
        "posterior_draws": 500,
        "out": "ebm_ppl_compare",
        "problem_options": {},
    }
    config = _read_config(args.config) if args.config else {}
    if args.quick or config.get("quick"):
        settings.update(
            estimators=list(QUICK["estimators"]),
            trainers=list(QUICK["trainers"]),
            posteriors=list(QUICK["posteriors"]),
            budgets=list(QUICK["budgets"]),
            seeds=QUICK["num_seeds"],
            steps=QUICK["steps"],
            problem_options=dict(QUICK["problem_options"]),
        )
    config.pop("quick", None)
    options = {**settings["problem_options"], **config.pop("problem_options", {})}
    settings.update(config)
    settings["problem_options"] = options
    given = {
        "problems": args.problems or None,
        "seed": args.seed,
        "estimators": _split(args.estimators),
        "trainers": _split(args.trainers),
        "posteriors": _split(args.posteriors),
        "seeds": args.seeds,
        "budgets": [int(b) for b in _split(args.budget)] if args.budget else None,
        "steps": args.steps,
        "posterior_draws": args.posterior_draws,
        "out": args.out,
    }
    settings.update({k: v for k, v in given.items() if v is not None})
    if not settings["problems"]:
        raise ValueError(
            "name at least one problem (positional PROBLEM... or `problems` in --config)."
        )
    for name in settings["problems"]:
        if name not in list_problems():
            raise ValueError(f"problems must be among {list_problems()}; got {name!r}.")
    start = time.perf_counter()
    rows = compare(
        jax.random.key(settings["seed"]),
        settings["problems"],
        estimators=settings["estimators"],
        trainers=settings["trainers"],
        posteriors=settings["posteriors"],
        num_seeds=settings["seeds"],
        budgets=settings["budgets"],
        steps=settings["steps"],
        posterior_draws=settings["posterior_draws"],
        problem_options=settings["problem_options"],
        out=settings["out"],
        figures=not args.no_figures,
        progress_bar=not args.quiet,
    )
    print_summary(rows)
    failed = sum(row["status"] == "error" for row in rows)
    print(
        f"{len(rows)} cells ({failed} failed) in {time.perf_counter() - start:.1f} s; "
        f"tables, figures and posteriors in {settings['out']}/"
    )
    return 1 if failed else 0


def _add_infer_arguments(parser, *, defaults) -> None:
    parser.add_argument(
        "--method", default=defaults.get("method", "nuts"), help="nuts | blackjax-nuts | policywalk"
    )
    parser.add_argument(
        "--likelihood",
        default=None,
        help="causal | trajectory | trajectory_global | birl "
        "(default: the problem's model; birl for policywalk)",
    )
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000, help="kept draws per chain")
    parser.add_argument("--warmup", type=int, default=1000, help="warm-up steps per chain")
    parser.add_argument("--num-demos", type=int, default=defaults.get("num_demos"))
    parser.add_argument("--rationality", type=float, default=1.0, help="birl: fixed alpha")
    parser.add_argument(
        "--rationality-prior",
        type=float,
        default=None,
        help="birl + NUTS: sample alpha ~ LogNormal(0, this scale)",
    )
    parser.add_argument("--q", default="soft", help="birl: soft | hard (hard: policywalk only)")
    parser.add_argument("--step-size", type=float, default=None, help="policywalk grid step")
    parser.add_argument("--thinning", type=int, default=1, help="policywalk: keep every k-th")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=defaults.get("out", "ebm_ppl_results"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _demo(args) -> int:
    args.problem = "objectworld"
    return _infer(args)


def build_parser() -> argparse.ArgumentParser:
    from ebm_ppl.problems import list_problems

    parser = argparse.ArgumentParser(prog="ebm-ppl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="exact MaxEnt IRL (MLE/MAP) with EPIC and EVD")
    fit.add_argument("problem", choices=list_problems())
    fit.add_argument("--model", default="causal", help="causal | trajectory | trajectory_global")
    fit.add_argument("--num-demos", type=int, default=200)
    fit.add_argument("--steps", type=int, default=50, help="L-BFGS steps")
    fit.add_argument("--map", action="store_true", help="MAP instead of maximum likelihood")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(handler=_fit)

    infer = commands.add_parser("infer", help="Bayesian reward inference (ArviZ DataTree out)")
    infer.add_argument("problem", choices=list_problems())
    _add_infer_arguments(infer, defaults={})
    infer.set_defaults(handler=_infer)

    demo = commands.add_parser(
        "demo",
        help="the main job: reward posterior on the default ObjectWorld (50 demos, 4 chains)",
    )
    _add_infer_arguments(demo, defaults={"num_demos": 50, "out": "ebm_ppl_demo"})
    demo.set_defaults(handler=_demo)

    logz = commands.add_parser("logz", help="log Z estimators against the exact value")
    logz.add_argument("problem", choices=list_problems())
    logz.add_argument(
        "--estimators",
        default="importance,psis,particle_smc",
        help="comma-separated: exact, importance, psis, gcl_mixture, elbo, iwae, eubo, "
        "particle_smc, ais, tempered_smc",
    )
    logz.add_argument("--budget", type=int, default=1024, help="samples / particles per run")
    logz.add_argument("--seeds", type=int, default=10)
    logz.add_argument(
        "--model", default=None, help="trajectory | trajectory_global (tabular), ebm (R^d)"
    )
    logz.add_argument("--num-demos", type=int, default=None)
    logz.add_argument("--seed", type=int, default=0)
    logz.add_argument("--json", action="store_true", help="print the rows as JSON")
    logz.set_defaults(handler=_logz)

    compare = commands.add_parser(
        "compare",
        help="sampling-based and adversarial estimators side by side (resumable)",
        description="Run a grid of problems x (log Z estimators, trainers, posteriors) x seeds x "
        "budgets into --out: cells/*.json (one per finished cell; a rerun skips them), "
        "results.csv/results.json, figures/, posteriors/*.nc. Settings: defaults < --quick < "
        "--config study.toml < flags.",
    )
    compare.add_argument("problems", nargs="*", help=f"among {list_problems()}")
    compare.add_argument("--config", default=None, help="a TOML study file")
    compare.add_argument("--quick", action="store_true", help="small problems and budgets")
    compare.add_argument("--estimators", default=None, help="comma-separated log Z estimators")
    compare.add_argument(
        "--trainers",
        default=None,
        help="comma-separated: gan_gcl, gcl, airl, gail (tabular; gan_gcl, gcl also LQR and "
        "MountainCar), nce, gan_ebm, fce, cd, pcd (densities)",
    )
    compare.add_argument(
        "--posteriors",
        default=None,
        help="comma-separated: nuts, blackjax-nuts, exchange, plugin:NAME, sgld, sghmc",
    )
    compare.add_argument("--seeds", type=int, default=None)
    compare.add_argument("--budget", default=None, help="comma-separated budgets, e.g. 256,1024")
    compare.add_argument("--steps", type=int, default=None, help="updates per trainer cell")
    compare.add_argument("--posterior-draws", type=int, default=None)
    compare.add_argument("--out", default=None, help="output directory (resumable)")
    compare.add_argument("--seed", type=int, default=None)
    compare.add_argument("--no-figures", action="store_true")
    compare.add_argument("--quiet", action="store_true", help="no progress bar")
    compare.set_defaults(handler=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    chains = getattr(args, "chains", 1)
    if chains > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        # one CPU device per chain (NumPyro runs chains in parallel then); must precede JAX's
        # backend initialisation, which nothing above has triggered
        import numpyro

        numpyro.set_host_device_count(chains)
    import jax

    jax.config.update("jax_enable_x64", True)
    try:
        return args.handler(args)
    except (ValueError, TypeError) as error:
        print(f"ebm-ppl: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
