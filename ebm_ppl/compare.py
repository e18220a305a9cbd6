r"""The comparison harness: sampling-based and adversarial estimators side by side (DESIGN §1).

:func:`compare` runs a grid of **cells**, one per (problem, kind, method, budget, seed):

* ``kind="estimator"``: a :class:`~ebm_ppl.logz.LogZEstimator` (``exact``, ``importance``, ``psis``,
  ``gcl_mixture``, ``elbo``, ``iwae``, ``eubo``, ``particle_smc``, ``ais``, ``tempered_smc``, and
  the adversarial ``gan_zeta``) run once at the problem's true parameters with ``budget``
  samples/particles. Measured: :math:`\log\hat Z` and its error against the exact value (RMS over
  start states for the ``"trajectory"`` model), the gradient
  :math:`\nabla_\theta\log\hat Z` against the exact gradient (cosine and relative norm error),
  the reported standard error, PSIS :math:`\hat k` where the estimator reports one, energy
  evaluations, compile and run time.
* ``kind="trainer"``: an adversarial trainer (``gan_gcl``, ``gcl``, ``airl``, ``gail``) run for
  ``steps`` updates on the problem's demonstrations (``budget`` is the number of updates).
  Measured: EPIC and hard EVD of the learned reward against the truth (GAIL: the EVD of its own
  policy only), and for GAN-GCL :math:`|\zeta - \log Z|` of the learned reward
  (for GCL the mixture :math:`\log\hat Z` it used); wall time.
* ``kind="posterior"``: Bayesian reward inference (``nuts``, ``blackjax-nuts``, ``exchange``, or
  ``plugin:<estimator>`` for the plug-in likelihood) on tabular problems. Measured against a
  reference exact-likelihood NUTS run (cell ``reference``): the 1-D Wasserstein-1 distance per
  parameter (mean, in units of the reference sd), the error of the posterior mean (in reference
  sds), 90 % interval coverage of the true parameters, the largest R-hat, the smallest bulk ESS
  and ESS/s. The DataTree of every posterior cell is saved (netCDF).

Keys: every cell of seed ``i`` uses ``cell_key(rng_key, i) = fold_in(rng_key, i)`` (common random
numbers across methods and budgets), so a table entry equals calling the estimator directly:
``estimator.run(cell_key(rng_key, i), problem, problem.true_params, data=demos)``.

Resumable and safe (``out`` given): each finished cell is written at once to
``out/cells/<cell id>.json`` (atomically: a temporary file renamed into place); a rerun skips the
cells already there, so an interrupt or a crash loses at most the running cell; a cell that raises
records ``status="error"`` and its message and the grid goes on (it is retried on the next run).
``out/results.csv`` and ``out/results.json`` hold the tidy table (one row per cell) and are
rewritten after every cell; ``out/figures/`` holds the figures, ``out/posteriors/`` the DataTrees,
``out/study.json`` the grid's definition (a rerun with a different definition into the same
directory is refused rather than mixed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = [
    "ESTIMATOR_NAMES",
    "TRAINER_NAMES",
    "POSTERIOR_NAMES",
    "QUICK",
    "Cell",
    "cell_key",
    "compare",
    "load_results",
    "make_estimator",
    "problem_model",
    "summarize",
]

ESTIMATOR_NAMES = (
    "exact",
    "importance",
    "psis",
    "gcl_mixture",
    "elbo",
    "iwae",
    "eubo",
    "particle_smc",
    "ais",
    "tempered_smc",
    "gan_zeta",
)
"""Log-partition estimators the harness can build by name."""

TRAINER_NAMES = ("gan_gcl", "gcl", "airl", "gail")
r"""Adversarial trainers the harness can build by name (tabular problems, ``discount == 1``).

``airl`` (linear state-only :math:`g`) and ``gail`` train on the demonstrations' transitions
weighted by :math:`\gamma_{\rm AIRL}^t` with :data:`AIRL_DISCOUNT`, because AIRL's stationary
discounted model needs :math:`\gamma < 1`; they have no :math:`\zeta`, and GAIL has no reward
(its row reports only the EVD of its own policy, ``policy_evd``)."""

AIRL_DISCOUNT = 0.9
"""Discount of AIRL's and GAIL's stationary model in the harness (THEORY §9.4)."""

POSTERIOR_NAMES = ("nuts", "blackjax-nuts", "exchange")
"""Posterior samplers by name; ``"plugin:<estimator>"`` adds the plug-in likelihood."""

QUICK: dict[str, Any] = {
    "problem_options": {
        "objectworld": {"size": 4, "horizon": 8, "num_demos": 32},
        "frozenlake": {"num_demos": 32},
        "cliffwalking": {"num_demos": 32},
        "toy2d": {"energy": "banana", "num_data": 256},
    },
    "estimators": (
        "exact",
        "importance",
        "psis",
        "gcl_mixture",
        "particle_smc",
        "gan_zeta",
        "iwae",
        "ais",
    ),
    "trainers": ("gan_gcl", "gcl", "airl", "gail"),
    "posteriors": (),
    "budgets": (64, 256),
    "num_seeds": 2,
    "steps": 40,
}
"""Settings of ``--quick``: small problems, two budgets, two seeds, short training."""

_COLUMNS = (
    "problem",
    "kind",
    "method",
    "budget",
    "seed",
    "status",
    "model",
    "log_z_exact",
    "log_z",
    "error",
    "bias",
    "stderr",
    "khat",
    "grad_cosine",
    "grad_rel_error",
    "energy_evals",
    "epic",
    "evd",
    "policy_evd",
    "zeta_error",
    "w1",
    "mean_error",
    "coverage",
    "rhat_max",
    "ess_min",
    "ess_per_second",
    "seconds",
    "compile_seconds",
    "error_message",
)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell of the grid."""

    problem: str
    kind: str
    method: str
    budget: int
    seed: int

    @property
    def id(self) -> str:
        method = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.method)
        return f"{self.problem}__{self.kind}__{method}__b{self.budget}__s{self.seed}"


def cell_key(rng_key, seed: int):
    """The key of every cell of seed ``seed``: ``jax.random.fold_in(rng_key, seed)``."""
    return jax.random.fold_in(rng_key, seed)


def problem_model(problem) -> str:
    """The model whose :math:`\\log Z` the harness estimates: ``"trajectory_global"`` for tabular
    problems (one number per problem), ``"ebm"`` for densities on :math:`\\mathbb R^d`."""
    return "trajectory_global" if hasattr(problem, "mdp") else "ebm"


def make_estimator(name: str, budget: int, model: str):
    """The estimator ``name`` (one of :data:`ESTIMATOR_NAMES`) with ``budget`` samples."""
    if name == "gan_zeta":
        if model == "ebm":
            raise ValueError("gan_zeta serves tabular problems (a policy generator); not 'ebm'.")
        from ebm_ppl.adversarial import gan_zeta

        return gan_zeta(budget, model=model)
    from ebm_ppl.logz.report import make_estimator as make_logz_estimator

    return make_logz_estimator(name, budget, model)


def _serves(name: str, model: str) -> bool:
    if name in ("ais", "tempered_smc"):
        return model == "ebm"
    if name in ("gan_zeta", "particle_smc", "exact"):
        return model != "ebm"
    return True


# ----------------------------------------------------------------------------- validation
def _check_names(argument: str, names, allowed, prefix_ok: str | None = None) -> tuple:
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = tuple(names)
    for name in names:
        if prefix_ok and isinstance(name, str) and name.startswith(prefix_ok):
            inner = name[len(prefix_ok) :]
            if inner not in ESTIMATOR_NAMES:
                raise ValueError(
                    f"`{argument}`: {name!r} names no estimator; after {prefix_ok!r} use one of "
                    f"{ESTIMATOR_NAMES}."
                )
            continue
        if name not in allowed:
            raise ValueError(f"`{argument}` must be among {allowed}; got {name!r}.")
    return names


def _check_positive_ints(argument: str, values) -> tuple:
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = (values,)
    values = tuple(values)
    if not values or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values
    ):
        raise ValueError(f"`{argument}` must be one or more ints >= 1; got {values!r}.")
    return tuple(int(v) for v in values)


# ----------------------------------------------------------------------------- measurements
def _flat(tree) -> np.ndarray:
    return np.asarray(ravel_pytree(tree)[0], dtype=np.float64)


def _exact_gradient(problem, params, model: str):
    """:math:`\\nabla_\\theta\\log Z` exactly (tabular recursion or a closed-form ``log_z``)."""
    if model != "ebm":
        from ebm_ppl.logz import exact

        return jax.grad(lambda p: exact(model).run(None, problem, p).log_z)(params)
    if hasattr(problem.energy_model, "log_z"):
        return jax.grad(problem.energy_model.log_z)(params)
    return None


def _estimator_cell(cell, problem, estimator, key, cache, gradients: bool) -> dict:
    from ebm_ppl.logz.report import exact_log_z

    model = problem_model(problem)
    params = problem.true_params
    data = problem.demos if model != "ebm" else problem.data
    compiled = cache.get(("run", cell.problem, cell.method, cell.budget))
    start = time.perf_counter()
    if compiled is None:
        run = jax.jit(lambda k, pr, pa, d: estimator.run(k, pr, pa, data=d))
        compiled = run.lower(key, problem, params, data).compile()
        cache[("run", cell.problem, cell.method, cell.budget)] = compiled
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = jax.block_until_ready(compiled(key, problem, params, data))
    seconds = time.perf_counter() - start
    exact = np.asarray(exact_log_z(problem, params, model), np.float64)
    estimate = np.asarray(result.log_z, np.float64)
    errors = estimate - exact
    khat = getattr(result.info, "khat", None)
    row = {
        "model": model,
        "log_z_exact": float(np.mean(exact)),
        "log_z": float(np.mean(estimate)),
        "error": float(np.sqrt(np.mean(errors**2))),
        "bias": float(np.mean(errors)),
        "stderr": _nanmean(result.stderr),
        "khat": _nanmean(khat) if khat is not None else math.nan,
        "energy_evals": float(np.mean(np.asarray(result.num_energy_evals))),
        "seconds": seconds,
        "compile_seconds": compile_seconds,
    }
    if gradients:
        row.update(_gradient_error(cell, problem, estimator, key, cache))
    return row


def _gradient_error(cell, problem, estimator, key, cache) -> dict:
    model = problem_model(problem)
    params = problem.true_params
    data = problem.demos if model != "ebm" else problem.data
    exact = cache.get(("grad_exact", cell.problem))
    if exact is None:
        exact = _exact_gradient(problem, params, model)
        cache[("grad_exact", cell.problem)] = exact
    if exact is None:
        return {"grad_cosine": math.nan, "grad_rel_error": math.nan}
    grad_fn = cache.get(("grad", cell.problem, cell.method, cell.budget))
    if grad_fn is None:
        grad_fn = jax.jit(
            jax.grad(lambda p, k, pr, d: jnp.mean(estimator.run(k, pr, p, data=d).log_z))
        )
        cache[("grad", cell.problem, cell.method, cell.budget)] = grad_fn
    try:
        estimate = _flat(grad_fn(params, key, problem, data))
    except Exception:  # noqa: BLE001 - some estimators (adaptive tempering) are not differentiable
        return {"grad_cosine": math.nan, "grad_rel_error": math.nan}
    truth = _flat(exact)
    norm = np.linalg.norm(truth)
    cosine = float(estimate @ truth / (np.linalg.norm(estimate) * norm))
    return {"grad_cosine": cosine, "grad_rel_error": float(np.linalg.norm(estimate - truth) / norm)}


def _nanmean(values) -> float:
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def _per_step_trainer_cell(cell, problem, key, cache) -> dict:
    """AIRL / GAIL: transitions of the demonstrations, exact policy step, no zeta."""
    import optax

    from ebm_ppl.adversarial.airl import (
        airl,
        airl_reward_table,
        gail,
        policy_evd,
        train,
        transitions_from_trajectories,
    )
    from ebm_ppl.metrics import epic_distance, expected_value_difference

    mdp = problem.mdp
    cached = cache.get(("trainer", cell.problem, cell.method))
    if cached is None:
        if cell.method == "airl":
            trainer = airl(
                mdp, discount=AIRL_DISCOUNT, features=mdp.features, optimizer=optax.adam(0.05)
            )
        else:
            trainer = gail(mdp, discount=AIRL_DISCOUNT, optimizer=optax.adam(0.1))
        transitions = transitions_from_trajectories(problem.demos, discount=AIRL_DISCOUNT)
        cached = cache[("trainer", cell.problem, cell.method)] = (trainer, transitions)
    trainer, transitions = cached
    init_key, update_key = jax.random.split(key)
    start = time.perf_counter()
    state = trainer.init(init_key)
    state, _ = train(trainer, state, jax.random.split(update_key, cell.budget), transitions)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    truth = problem.true_reward()
    row = {
        "model": "causal",
        "policy_evd": float(policy_evd(truth, state.log_policy, mdp, discount=problem.discount)),
        "seconds": seconds,
    }
    if cell.method == "airl":
        reward = airl_reward_table(state.params, features=mdp.features)
        row["epic"] = float(epic_distance(reward, truth, mdp, discount=problem.discount))
        row["evd"] = float(
            expected_value_difference(truth, reward, mdp, discount=problem.discount)
        )
        row["_reward"] = np.asarray(reward, np.float64).tolist()
    return row


def _trainer_cell(cell, problem, key, cache) -> dict:
    from ebm_ppl.adversarial import gan_gcl, gcl, reward_epic
    from ebm_ppl.exact.tabular import log_partition
    from ebm_ppl.metrics import expected_value_difference

    if cell.method in ("airl", "gail"):
        return _per_step_trainer_cell(cell, problem, key, cache)

    trainer = cache.get(("trainer", cell.problem, cell.method))
    if trainer is None:
        factory = {"gan_gcl": gan_gcl, "gcl": gcl}[cell.method]
        trainer = factory(problem, model="trajectory_global", nu=2, policy_steps=5)
        cache[("trainer", cell.problem, cell.method)] = trainer
    init_key, update_key = jax.random.split(key)
    start = time.perf_counter()
    state = trainer.init(init_key)
    info = None
    for step_key in jax.random.split(update_key, cell.budget):
        state, info = trainer.update(step_key, state, problem.demos)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    reward = problem.energy_model.reward(state.params)
    log_z = float(log_partition(problem.mdp, reward, model="trajectory_global"))
    zeta = state.zeta if cell.method == "gan_gcl" else info.log_z
    return {
        "model": "trajectory_global",
        "epic": float(reward_epic(problem, state.params)),
        "evd": float(
            expected_value_difference(
                problem.true_reward(), reward, problem.mdp, discount=problem.discount
            )
        ),
        "log_z_exact": log_z,
        "log_z": float(zeta),
        "zeta_error": abs(float(zeta) - log_z),
        "seconds": seconds,
        "_reward": np.asarray(reward, np.float64).tolist(),
    }


def _reference_posterior(problem, key, cache, settings):
    cached = cache.get(("reference", problem.name))
    if cached is None:
        from ebm_ppl.inference import infer_reward

        cached = infer_reward(
            key,
            problem,
            method="nuts",
            num_chains=2,
            num_warmup=settings["reference_draws"],
            num_samples=settings["reference_draws"],
            progress_bar=False,
        )
        cache[("reference", problem.name)] = cached
    return cached


def _draws(idata, name) -> np.ndarray:
    values = np.asarray(idata["posterior"][name].values, np.float64)
    return values.reshape(values.shape[0] * values.shape[1], -1)


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein-1 distance between two samples (quantile coupling on a common grid)."""
    grid = (np.arange(512) + 0.5) / 512
    return float(np.mean(np.abs(np.quantile(a, grid) - np.quantile(b, grid))))


def _posterior_cell(cell, problem, key, cache, settings, out: Path | None) -> dict:
    from ebm_ppl import diagnostics
    from ebm_ppl.inference import infer_reward

    reference = _reference_posterior(problem, jax.random.fold_in(key, 10**6), cache, settings)
    method, estimator = cell.method, None
    if method.startswith("plugin:"):
        estimator = make_estimator(
            method.split(":", 1)[1], settings["plugin_samples"], "trajectory"
        )
        method = "nuts"
    start = time.perf_counter()
    idata = infer_reward(
        key,
        problem,
        method=method,
        num_chains=2,
        num_warmup=cell.budget,
        num_samples=cell.budget,
        progress_bar=False,
        **({"estimator": estimator, "likelihood": "trajectory"} if estimator else {}),
    )
    seconds = time.perf_counter() - start
    names = [n for n in problem.true_params]
    w1, mean_error, covered, total = [], [], 0, 0
    for name in names:
        draws, ref = _draws(idata, name), _draws(reference, name)
        truth = np.asarray(problem.true_params[name], np.float64).ravel()
        for j in range(draws.shape[1]):
            sd = np.std(ref[:, j], ddof=1)
            w1.append(_w1(draws[:, j], ref[:, j]) / sd)
            mean_error.append(abs(np.mean(draws[:, j]) - np.mean(ref[:, j])) / sd)
            lo, hi = np.quantile(draws[:, j], [0.05, 0.95])
            covered += int(lo <= truth[j] <= hi)
            total += 1
    table = diagnostics.summary(idata, var_names=names)
    ess = float(np.min(table["ess_bulk"]))
    row = {
        "model": "trajectory" if estimator else problem.model,
        "w1": float(np.mean(w1)),
        "mean_error": float(np.mean(mean_error)),
        "coverage": covered / total,
        "rhat_max": float(np.max(table["r_hat"])),
        "ess_min": ess,
        "ess_per_second": ess / seconds,
        "seconds": seconds,
    }
    if out is not None:
        directory = out / "posteriors"
        directory.mkdir(parents=True, exist_ok=True)
        diagnostics.save(idata, directory / f"{cell.id}.nc")
    return row


# ----------------------------------------------------------------------------- the grid
def _build_problems(problems, problem_options, rng_key) -> dict:
    from ebm_ppl.problems import make_problem

    built = {}
    for index, spec in enumerate(problems):
        if isinstance(spec, str):
            options = dict((problem_options or {}).get(spec, {}))
            problem = make_problem(spec, jax.random.fold_in(rng_key, 10_000 + index), **options)
            label = spec
        elif hasattr(spec, "energy_model"):
            problem, label = spec, spec.name
        else:
            raise TypeError(
                "`problems` must hold registered problem names or built problems; got "
                f"{type(spec).__name__}."
            )
        if label in built:
            raise ValueError(f"`problems` names {label!r} twice.")
        built[label] = problem
    if not built:
        raise ValueError("`problems` must name at least one problem.")
    return built


def _cells(problems: dict, estimators, trainers, posteriors, budgets, steps, post_draws, seeds):
    cells, skipped = [], []
    for label, problem in problems.items():
        model = problem_model(problem)
        tabular = model != "ebm"
        for name in estimators:
            if not _serves(name, model):
                skipped.append(f"{label}: estimator {name!r} does not serve model {model!r}")
                continue
            cells += [Cell(label, "estimator", name, b, s) for b in budgets for s in range(seeds)]
        for name in trainers:
            if not tabular or float(problem.discount) != 1.0:
                skipped.append(f"{label}: trainer {name!r} needs a tabular problem with discount 1")
                continue
            cells += [Cell(label, "trainer", name, steps, s) for s in range(seeds)]
        for name in posteriors:
            if not tabular:
                skipped.append(f"{label}: posterior {name!r} needs a tabular problem")
                continue
            cells += [Cell(label, "posterior", name, post_draws, s) for s in range(seeds)]
    return cells, skipped


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _row(cell: Cell, values: dict) -> dict:
    row = {column: math.nan for column in _COLUMNS}
    row.update(dataclasses.asdict(cell))
    row["error_message"] = ""
    row.update(values)
    return row


def load_results(out) -> list[dict]:
    """Every finished cell under ``out/cells`` as a list of row dicts (sorted by cell id)."""
    directory = Path(out) / "cells"
    if not directory.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def _write_table(out: Path, rows: list[dict]) -> None:
    import csv

    public = [{c: r.get(c, math.nan) for c in _COLUMNS} for r in rows]
    with open(out / ".results.csv.tmp", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows(public)
    os.replace(out / ".results.csv.tmp", out / "results.csv")
    _atomic_write(out / "results.json", json.dumps(public, indent=1, default=_json_default))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def compare(
    rng_key,
    problems: Sequence[str | Any],
    *,
    estimators: Sequence[str] = ("importance", "psis", "gcl_mixture", "particle_smc"),
    trainers: Sequence[str] = (),
    posteriors: Sequence[str] = (),
    num_seeds: int = 3,
    budgets: Sequence[int] | int = (256, 1024),
    steps: int = 200,
    posterior_draws: int = 500,
    problem_options: dict | None = None,
    out: str | os.PathLike | None = None,
    gradients: bool = True,
    figures: bool = True,
    progress_bar: bool = True,
    on_cell: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run sampling-based and adversarial estimators on the same problems, data and energies.

    Args:
        rng_key: JAX key; cells of seed ``i`` use :func:`cell_key` ``(rng_key, i)`` and problems
            built from names use ``fold_in(rng_key, 10_000 + index)``.
        problems: registered problem names (:func:`ebm_ppl.problems.list_problems`) or built
            problems (labelled by their ``name``).
        estimators: names from :data:`ESTIMATOR_NAMES`; each runs on every problem whose model it
            serves (others are skipped with a note).
        trainers: names from :data:`TRAINER_NAMES` (tabular problems with ``discount == 1``).
        posteriors: names from :data:`POSTERIOR_NAMES` or ``"plugin:<estimator>"`` (tabular).
        num_seeds: replicates per cell (int >= 1).
        budgets: samples/particles of each estimator (one int or several).
        steps: updates per trainer cell.
        posterior_draws: warm-up and kept draws per chain (2 chains) of posterior cells; the
            reference posterior uses ``4 * posterior_draws``.
        problem_options: problem name -> keyword arguments of its ``make_problem``.
        out: directory for cells, tables, figures and DataTrees (resumable); ``None`` keeps
            everything in memory.
        gradients: measure the gradient error of each estimator (one more compilation per
            estimator and budget).
        figures: write figures to ``out/figures`` at the end.
        progress_bar: a tqdm bar over the cells.
        on_cell: called with each finished row (e.g. to log or to stop a run).

    Returns:
        The tidy table: one dict per cell (finished earlier or now), columns as in
        ``results.csv``.
    """
    estimators = _check_names("estimators", estimators, ESTIMATOR_NAMES)
    trainers = _check_names("trainers", trainers, TRAINER_NAMES)
    posteriors = _check_names("posteriors", posteriors, POSTERIOR_NAMES, prefix_ok="plugin:")
    (num_seeds,) = _check_positive_ints("num_seeds", num_seeds)
    budgets = _check_positive_ints("budgets", budgets)
    (steps,) = _check_positive_ints("steps", steps)
    (posterior_draws,) = _check_positive_ints("posterior_draws", posterior_draws)
    if isinstance(problems, str):
        problems = [problems]
    built = _build_problems(problems, problem_options, rng_key)
    cells, skipped = _cells(
        built, estimators, trainers, posteriors, budgets, steps, posterior_draws, num_seeds
    )
    for note in skipped:
        print(f"compare: skipped {note}")
    out = None if out is None else Path(out)
    done: dict[str, dict] = {}
    if out is not None:
        (out / "cells").mkdir(parents=True, exist_ok=True)
        _check_study(out, rng_key, built, problem_options, cells)
        done = {
            row_id: row
            for row_id, row in ((_cell_id(r), r) for r in load_results(out))
            if row.get("status") == "ok"
        }
    todo = [cell for cell in cells if cell.id not in done]
    settings = {"reference_draws": 4 * posterior_draws, "plugin_samples": 256}
    cache: dict = {}
    rows = {cell.id: done[cell.id] for cell in cells if cell.id in done}
    bar = _progress(len(cells), len(cells) - len(todo), progress_bar)
    for cell in todo:
        bar.set_postfix_str(cell.id, refresh=False)
        key = cell_key(rng_key, cell.seed)
        problem = built[cell.problem]
        try:
            if cell.kind == "estimator":
                estimator = make_estimator(cell.method, cell.budget, problem_model(problem))
                values = _estimator_cell(cell, problem, estimator, key, cache, gradients)
            elif cell.kind == "trainer":
                values = _trainer_cell(cell, problem, key, cache)
            else:
                values = _posterior_cell(cell, problem, key, cache, settings, out)
            values["status"] = "ok"
        except Exception as error:  # noqa: BLE001 - a failed cell is recorded, the grid goes on
            values = {
                "status": "error",
                "error_message": f"{type(error).__name__}: {error}",
                "_traceback": traceback.format_exc(),
            }
        row = _row(cell, values)
        rows[cell.id] = row
        if out is not None:
            _atomic_write(out / "cells" / f"{cell.id}.json", json.dumps(row, default=_json_default))
            _write_table(out, [rows[c.id] for c in cells if c.id in rows])
        if on_cell is not None:
            on_cell(row)
        bar.update(1)
    bar.close()
    table = [rows[c.id] for c in cells]
    if out is not None:
        _write_table(out, table)
        if figures:
            from ebm_ppl.plots import save_comparison_figures

            save_comparison_figures(table, built, out / "figures")
    return [{c: r.get(c, math.nan) for c in _COLUMNS} for r in table]


def _cell_id(row: dict) -> str:
    return Cell(row["problem"], row["kind"], row["method"], row["budget"], row["seed"]).id


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="compare", unit="cell")


def _check_study(out: Path, rng_key, built, problem_options, cells) -> None:
    """Refuse to mix two different grids in one directory; record the grid otherwise."""
    key_data = np.asarray(jax.random.key_data(rng_key)).tolist()
    study = {
        "rng_key": key_data,
        "problems": {
            label: {"name": problem.name, "options": (problem_options or {}).get(label, {})}
            for label, problem in built.items()
        },
    }
    path = out / "study.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if {k: previous.get(k) for k in study} != json.loads(json.dumps(study)):
            raise ValueError(
                f"`out` ({out}) holds a study with a different key or problems; use another "
                "directory or remove it (its cells would not be comparable)."
            )
    _atomic_write(path, json.dumps({**study, "cells": len(cells)}, indent=1))


def summarize(rows: list[dict]) -> list[dict]:
    """Medians over seeds per (problem, kind, method, budget) of the numeric columns that apply."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("status") != "ok":
            continue
        groups.setdefault((row["problem"], row["kind"], row["method"], row["budget"]), []).append(
            row
        )
    summary = []
    for (problem, kind, method, budget), members in sorted(groups.items()):
        entry = {"problem": problem, "kind": kind, "method": method, "budget": budget}
        entry["seeds"] = len(members)
        for column in _COLUMNS[7:-1]:
            values = np.asarray([m.get(column, math.nan) for m in members], np.float64)
            if np.isfinite(values).any():
                entry[column] = float(np.nanmedian(values))
        summary.append(entry)
    return summary


_KIND_COLUMNS = {
    "estimator": (
        "log_z_exact",
        "log_z",
        "error",
        "bias",
        "stderr",
        "khat",
        "grad_cosine",
        "grad_rel_error",
        "energy_evals",
        "seconds",
        "compile_seconds",
    ),
    "trainer": ("epic", "evd", "policy_evd", "log_z_exact", "log_z", "zeta_error", "seconds"),
    "posterior": (
        "w1",
        "mean_error",
        "coverage",
        "rhat_max",
        "ess_min",
        "ess_per_second",
        "seconds",
    ),
}


def print_summary(rows: list[dict], file=None) -> None:
    """Terminal tables of :func:`summarize`, one per kind of cell, with the columns that apply
    (rich tables), then one line per failed cell."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=200)
    summary = summarize(rows)
    titles = {
        "estimator": "log Z estimators (error: RMS over start states; medians over seeds)",
        "trainer": "adversarial trainers (budget = updates; medians over seeds)",
        "posterior": "posteriors against the exact-likelihood reference (medians over seeds)",
    }
    for kind, columns in _KIND_COLUMNS.items():
        entries = [e for e in summary if e["kind"] == kind]
        if not entries:
            continue
        table = Table(title=titles[kind])
        for column in ("problem", "method", "budget", "seeds") + columns:
            table.add_column(column, justify="left" if column in ("problem", "method") else "right")
        for entry in entries:
            cells = [entry["problem"], entry["method"], str(entry["budget"]), str(entry["seeds"])]
            table.add_row(*cells, *[_format(entry.get(c)) for c in columns])
        console.print(table)
    for row in rows:
        if row.get("status") == "error":
            console.print(f"failed: {_cell_id(row)}: {row['error_message']}", markup=False)


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
