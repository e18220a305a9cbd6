"""The comparison harness: a small grid end to end with every artefact read back, resuming after
the process is killed, the table against direct estimator calls, and the CLI/config form."""

import csv
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.compare import Cell, cell_key, compare, load_results, make_estimator, problem_model
from ebm_ppl.models import objectworld, toy2d

KEY = jax.random.key(7)


@pytest.fixture(scope="module")
def problems():
    return [
        objectworld.make_problem(jax.random.key(1), size=3, horizon=4, num_demos=16),
        toy2d.make_problem(jax.random.key(2), energy="gaussian", num_data=64),
    ]


@pytest.fixture(scope="module")
def study(tmp_path_factory, problems):
    out = tmp_path_factory.mktemp("study")
    rows = compare(
        KEY,
        problems,
        estimators=("importance", "gan_zeta"),
        trainers=("gan_gcl", "airl"),
        posteriors=("nuts", "plugin:particle_smc"),
        num_seeds=1,  # several seeds: test_killed_run_resumes_without_redoing_finished_cells
        budgets=(16,),
        steps=5,
        posterior_draws=30,
        out=out,
        progress_bar=False,
    )
    return out, rows


@pytest.mark.slow
def test_grid_end_to_end_reads_every_artefact_back(study):
    """Every artefact of a small grid read back (table, JSON lines, netCDF posteriors, figures).

    Slow (the ``study`` fixture: 59-66 s wall on 2 cores, shared with the next test): one run of
    each kind of cell on two problems, where compiling the NUTS, GAN-GCL, AIRL and gan_zeta
    programs is most of it; a smaller grid would not hold a cell of each kind."""
    out, rows = study
    # objectworld: 2 estimators + 2 trainers + 2 posteriors; toy2d: importance and the
    # exact-likelihood posterior (its Gaussian energy has a closed-form log Z)
    assert len(rows) == (2 + 2 + 2) + (1 + 1)
    by_kind = {kind: [r for r in rows if r["kind"] == kind] for kind in ("estimator", "trainer")}
    assert all(r["status"] == "ok" for r in by_kind["estimator"] + by_kind["trainer"])
    # a failing cell is recorded and the rest went on: the plug-in posterior refuses particle SMC
    # (not smooth in theta), the exact-likelihood posterior ran
    failed = [r for r in rows if r["status"] == "error"]
    assert [r["method"] for r in failed] == ["plugin:particle_smc"]
    assert "smooth" in failed[0]["error_message"]
    nuts = [r for r in rows if r["method"] == "nuts"]
    assert all(r["status"] == "ok" and 0 <= r["coverage"] <= 1 and r["w1"] >= 0 for r in nuts)
    airl = [r for r in rows if r["method"] == "airl"]
    assert all(0 <= r["epic"] <= 1 and r["policy_evd"] >= 0 for r in airl) and len(airl) == 1

    with open(out / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows)
    assert json.loads((out / "results.json").read_text()) == json.loads(
        json.dumps(rows, default=float)
    )
    cells = load_results(out)
    assert len(cells) == len(rows) == len(list((out / "cells").glob("*.json")))
    for row in table:
        if row["status"] == "ok" and row["kind"] == "estimator":
            assert np.isfinite(float(row["log_z"])) and float(row["energy_evals"]) > 0
    study_file = json.loads((out / "study.json").read_text())
    assert study_file["cells"] == len(rows)

    import matplotlib.image

    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == [
        "objectworld_logz_error.png",
        "objectworld_nuts_pair.png",
        "objectworld_rewards.png",
        "toy2d_logz_error.png",
        "toy2d_nuts_pair.png",
    ]
    for name in figures:
        assert matplotlib.image.imread(out / "figures" / name).ndim == 3

    from ebm_ppl.diagnostics import load

    posteriors = sorted((out / "posteriors").glob("*.nc"))
    assert len(posteriors) == 2
    idata = load(posteriors[0])
    assert idata["posterior"]["theta"].shape[:2] == (2, 30)
    # the gradient of log Z-hat against the exact gradient was measured where it applies
    grads = [r for r in rows if r["kind"] == "estimator"]
    assert all(-1 <= r["grad_cosine"] <= 1 and r["grad_rel_error"] >= 0 for r in grads)


def _check_direct_calls(rows, problems, key):
    """Every estimator row (exact and thermodynamic integration aside: TI is checked against
    quadrature in tests/logz/test_ti.py and compiles slowly) equals a direct call of
    make_estimator(...).run with the cell's key, log Z and energy evaluations; returns how many
    rows were checked."""
    by_name = {p.name: p for p in problems}
    checked = 0
    for row in rows:
        if row["kind"] != "estimator" or row["method"] in ("exact", "thermodynamic_integration"):
            continue
        problem = by_name[row["problem"]]
        assert np.isfinite(row["log_z"]) and np.isfinite(row["error"]), row
        model = problem_model(problem)
        estimator = make_estimator(row["method"], row["budget"], model, problem)
        data = problem.data if model == "ebm" else problem.demos
        result = estimator.run(cell_key(key, row["seed"]), problem, problem.true_params, data=data)
        np.testing.assert_allclose(row["log_z"], float(jnp.mean(result.log_z)), rtol=1e-10)
        np.testing.assert_allclose(
            row["energy_evals"], float(np.mean(result.num_energy_evals)), rtol=0
        )
        checked += 1
    return checked


def test_table_equals_direct_estimator_calls(study, problems):
    _, rows = study
    assert _check_direct_calls(rows, problems, KEY) == 2 + 1


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    from ebm_ppl.compare import compare
    finished = []

    def kill_after_two(row):
        finished.append(row)
        if len(finished) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: a crash

    compare(jax.random.key(3), ["objectworld"], estimators=("importance",), budgets=(8,),
            num_seeds=4, problem_options={"objectworld": {"size": 3, "horizon": 4,
            "num_demos": 8}}, out=sys.argv[1], gradients=False, figures=False,
            progress_bar=False, on_cell=kill_after_two)
    """
)


def test_killed_run_resumes_without_redoing_finished_cells(tmp_path):
    out = tmp_path / "run"
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(out)],
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        timeout=300,
    )
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert len(finished) == 2
    assert not list((out / "cells").glob(".*.tmp"))  # the atomic writes left no partial cell

    computed = []
    rows = compare(
        jax.random.key(3),
        ["objectworld"],
        estimators=("importance",),
        budgets=(8,),
        num_seeds=4,
        problem_options={"objectworld": {"size": 3, "horizon": 4, "num_demos": 8}},
        out=out,
        gradients=False,
        figures=False,
        progress_bar=False,
        on_cell=computed.append,
    )
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert len(computed) == 2
    assert {
        Cell(**{k: r[k] for k in ("problem", "kind", "method", "budget", "seed")}).id + ".json"
        for r in computed
    }.isdisjoint(finished)
    for name, mtime in finished.items():
        assert (out / "cells" / name).stat().st_mtime_ns == mtime  # not rewritten
    # a different grid into the same directory is refused rather than mixed
    with pytest.raises(ValueError, match="different key or problems"):
        compare(jax.random.key(4), ["objectworld"], estimators=("importance",), out=out)


def test_cli_config_and_errors(tmp_path, capsys):
    from ebm_ppl.cli import main

    config = tmp_path / "study.toml"
    out = tmp_path / "cli"
    config.write_text(
        textwrap.dedent(
            f"""
            problems = ["objectworld"]
            estimators = ["importance"]
            seeds = 1
            budgets = [8]
            out = "{out}"
            [problem_options.objectworld]
            size = 3
            horizon = 4
            num_demos = 8
            """
        )
    )
    assert main(["compare", "--config", str(config), "--quiet", "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert "log Z estimators" in printed and "importance" in printed
    assert len(load_results(out)) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text('problems = ["objectworld"]\nbudget = 3\n')
    assert main(["compare", "--config", str(bad)]) == 2
    assert "unknown key 'budget'" in capsys.readouterr().err
    assert main(["compare", "objectworld", "--estimators", "nope", "--out", str(out)]) == 2
    assert "estimators" in capsys.readouterr().err
    assert main(["compare"]) == 2


def test_argument_errors(problems):
    with pytest.raises(ValueError, match="num_seeds"):
        compare(KEY, problems, num_seeds=0)
    with pytest.raises(ValueError, match="budgets"):
        compare(KEY, problems, budgets=(0,))
    with pytest.raises(ValueError, match="posteriors"):
        compare(KEY, problems, posteriors=("plugin:nope",))
    with pytest.raises(TypeError, match="problems"):
        compare(KEY, [3.0])
    with pytest.raises(ValueError, match="twice"):
        compare(KEY, [problems[0], problems[0]])


# ---------------------------------------------------------------------------- control and MCMC
def _grid(tmp_path, key, problems, **methods):
    """One small grid (budget 32, 3 trainer steps, 20 posterior draws) that must not fail."""
    rows = compare(
        key,
        problems,
        num_seeds=1,
        budgets=(32,),
        steps=3,
        posterior_draws=20,
        out=tmp_path / "grid",
        gradients=False,
        figures=False,
        progress_bar=False,
        **methods,
    )
    failed = [(r["problem"], r["method"], r["error_message"]) for r in rows if r["status"] != "ok"]
    assert not failed, failed
    return rows


@pytest.mark.slow
def test_control_problems_run_beside_the_others(tmp_path):
    """LQR (closed-form log Z) and MountainCar (log Z by enumeration) through the grid: exact
    rows equal the closed forms, the other estimator rows equal direct calls, and the continuous
    GAN-GCL and AIRL, PCD on LQR's stacked controls and the exchange algorithm on LQR produce
    finite rows (the plug-in posterior of the action-sequence problems runs in
    tests/logz/test_continuous.py, the pendulum's trainers in tests/adversarial). Methods that do
    not apply to a problem are skipped, not failed.

    Slow (45-55 s wall on 2 cores, over 60 s under load): twelve cells on two problems, each
    compiling its own program (three trainers, four estimators, the exchange sampler and the NUTS
    reference); split further, each part would pay the problems' set-up again."""
    from ebm_ppl.models import lqr, mountaincar

    key = jax.random.key(11)
    problems = [
        lqr.make_problem(jax.random.key(1), num_demos=16),
        mountaincar.make_problem(jax.random.key(2), horizon=4, num_starts=2, num_demos=4),
    ]
    rows = _grid(
        tmp_path,
        key,
        problems,
        estimators=("exact", "importance", "particle_smc", "thermodynamic_integration"),
        trainers=("gan_gcl", "airl", "pcd"),
        posteriors=("exchange",),
    )
    cells = {(r["problem"], r["kind"], r["method"]) for r in rows}
    assert cells == {
        ("lqr", "estimator", "exact"),
        ("lqr", "estimator", "importance"),
        ("lqr", "estimator", "thermodynamic_integration"),
        ("lqr", "trainer", "gan_gcl"),
        ("lqr", "trainer", "airl"),
        ("lqr", "trainer", "pcd"),
        ("lqr", "posterior", "exchange"),
        ("mountaincar", "estimator", "exact"),
        ("mountaincar", "estimator", "importance"),
        ("mountaincar", "estimator", "particle_smc"),
        ("mountaincar", "trainer", "gan_gcl"),
        ("mountaincar", "trainer", "airl"),
    }
    lqr_problem, car = problems
    exact = {r["problem"]: r["log_z"] for r in rows if r["method"] == "exact"}
    np.testing.assert_allclose(exact["lqr"], 2.112306461529, rtol=1e-10)  # THEORY §8.1
    np.testing.assert_allclose(exact["mountaincar"], float(jnp.mean(car.log_z)), rtol=1e-10)
    assert _check_direct_calls(rows, problems, key) == 3  # importance x 2, particle SMC
    trainers = {(r["problem"], r["method"]): r for r in rows if r["kind"] == "trainer"}
    for method in ("gan_gcl", "airl"):  # AIRL's zeta is its h_0 at the starts
        lqr_row, car_row = trainers["lqr", method], trainers["mountaincar", method]
        assert np.isfinite(lqr_row["param_error"]) and lqr_row["zeta_error"] >= 0
        assert np.isfinite(car_row["zeta_error"])
    for method in ("gan_gcl", "airl", "pcd"):  # PCD on the stacked controls; the exact MLE
        assert trainers["lqr", method]["nll_gap"] >= -1e-9  # maximises the likelihood
    (exchange,) = [r for r in rows if r["kind"] == "posterior"]  # against exact NUTS
    assert 0 <= exchange["coverage"] <= 1 and exchange["w1"] >= 0
    assert lqr_problem.system.is_deterministic()


def test_mcmc_methods_run_beside_the_others(tmp_path):
    """The MCMC methods of issue 8 on a toy2d density in the same grid: thermodynamic
    integration beside importance sampling (which equals a direct call), PCD with its energy
    correlation, and SGLD against the exact-likelihood NUTS reference."""
    key = jax.random.key(11)
    problems = [toy2d.make_problem(jax.random.key(3), energy="gaussian", num_data=128)]
    rows = _grid(
        tmp_path,
        key,
        problems,
        estimators=("importance", "thermodynamic_integration"),
        trainers=("pcd",),
        posteriors=("sgld",),
    )
    cells = {(r["kind"], r["method"]) for r in rows}
    assert cells == {
        ("estimator", "importance"),
        ("estimator", "thermodynamic_integration"),
        ("trainer", "pcd"),
        ("posterior", "sgld"),
    }
    assert _check_direct_calls(rows, problems, key) == 1  # importance
    ti = [r for r in rows if r["method"] == "thermodynamic_integration"][0]
    assert np.isfinite(ti["log_z"]) and ti["stderr"] >= 0
    (trainer,) = [r for r in rows if r["kind"] == "trainer"]
    assert -1 <= trainer["energy_pearson"] <= 1
    (posterior,) = [r for r in rows if r["kind"] == "posterior"]
    assert 0 <= posterior["coverage"] <= 1 and posterior["w1"] >= 0
