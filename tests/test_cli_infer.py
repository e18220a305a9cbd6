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
