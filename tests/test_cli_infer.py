"""`ebm-ppl infer` end to end with tiny arguments, and its errors."""

import json

import numpy as np
import pytest

from ebm_ppl import diagnostics
from ebm_ppl.cli import main


@pytest.mark.parametrize(
    ("problem", "extra"),
    [
        ("frozenlake", ["--method", "blackjax-nuts"]),
        ("objectworld", ["--method", "policywalk", "--step-size", "0.1", "--q", "hard"]),
    ],
)
def test_infer_writes_datatree_plots_and_tables(tmp_path, capsys, problem, extra):
    out = tmp_path / problem
    argv = ["infer", problem, "--chains", "2", "--draws", "30", "--warmup", "30"]
    argv += ["--num-demos", "10", "--out", str(out), "--quiet", *extra]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "wrote:" in printed and "90% equal-tailed interval" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["problem"] == problem and report["chains"] == 2
    idata = diagnostics.load(out / "posterior.nc")
    assert idata["posterior"].sizes["draw"] == 30
    assert np.isfinite(idata["log_likelihood"]["demos"].values).all()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"chains_trace.png", "chains_rank.png", "occupancy.png"} <= set(pngs)
    if problem in ("frozenlake", "objectworld"):
        assert "reward_grid.png" in pngs
    assert (out / "summary.csv").read_text().startswith(",mean")


def test_infer_bad_input_is_a_clear_error(tmp_path, capsys):
    argv = ["infer", "objectworld", "--method", "policywalk", "--likelihood", "causal"]
    assert main([*argv, "--out", str(tmp_path), "--quiet"]) == 2
    assert "likelihood='birl'" in capsys.readouterr().err


def test_logz_prints_a_table_against_the_exact_value(capsys):
    argv = ["logz", "objectworld", "--estimators", "exact,importance,particle_smc"]
    assert main([*argv, "--budget", "64", "--seeds", "3", "--num-demos", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "exact" in lines[0] and "energy_evals" in lines[1]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"exact", "importance", "particle_smc"}
    assert float(rows["exact"][2]) == 0.0  # the exact estimator's error


def test_logz_json_matches_direct_estimator_calls(capsys):
    import jax

    from ebm_ppl.logz import importance
    from ebm_ppl.problems import make_problem

    argv = ["logz", "objectworld", "--estimators", "importance", "--budget", "64"]
    assert main([*argv, "--seeds", "3", "--num-demos", "5", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    problem = make_problem("objectworld", jax.random.key(0), num_demos=5)
    keys = jax.random.split(jax.random.key(1), 3)
    estimator = importance(64, model="trajectory_global")
    direct = [float(estimator.run(k, problem, problem.true_params).log_z) for k in keys]
    np.testing.assert_allclose(row["estimate"], np.mean(direct), rtol=1e-10)
