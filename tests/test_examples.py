"""Every example runs with tiny arguments (in-process, through its ``main(argv)``)."""

import runpy
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _main(name):
    return runpy.run_path(str(EXAMPLES / name), run_name="example")["main"]


def test_every_example_is_tested():
    tested = {"quickstart.py", "bayesian_reward_frozenlake.py", "compare_estimators.py"}
    tested |= {"gan_equivalence.py", "ebm_2d.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_quickstart(capsys):
    idata = _main("quickstart.py")(["--tiny"])
    assert idata["posterior"]["theta"].shape[:2] == (2, 100)
    assert "epic" in capsys.readouterr().out


def test_bayesian_reward_frozenlake(tmp_path, capsys):
    idata = _main("bayesian_reward_frozenlake.py")(
        ["--demos", "10", "--draws", "50", "--out", str(tmp_path)]
    )
    assert idata["observed_data"]["demos"].shape[0] == 10
    assert (tmp_path / "posterior.nc").exists()
    assert "episodes through env.step" in capsys.readouterr().out


def test_compare_estimators(tmp_path):
    rows = _main("compare_estimators.py")(["--tiny", "--out", str(tmp_path)])
    assert all(row["status"] == "ok" for row in rows)
    assert (tmp_path / "results.csv").exists()


def test_gan_equivalence(capsys):
    facts, control, identity = _main("gan_equivalence.py")([])
    np.testing.assert_allclose(float(facts.sum_d), float(facts.num_data), atol=1e-8)
    np.testing.assert_allclose(float(facts.zeta), float(facts.log_z_mixture), atol=1e-8)
    np.testing.assert_allclose(
        facts.discriminator_grad["theta"], facts.cost_grad["theta"], atol=1e-8
    )
    assert np.max(np.abs(control.discriminator_grad["theta"] - control.cost_grad["theta"])) > 1e-3
    assert identity.generator_loss == pytest.approx(identity.rhs, abs=1e-10)
    assert "fact 3" in capsys.readouterr().out


def test_ebm_2d(tmp_path, capsys):
    results = _main("ebm_2d.py")(
        ["--energy", "gaussian", "--steps", "40", "--data", "200", "--grid", "40", "--out",
         str(tmp_path)]
    )
    assert set(results) == {"nce", "gan_ebm", "fce"}
    for method, r in results.items():
        assert np.isfinite(r["zeta"]) and np.isfinite(r["log_z_quadrature"]), method
        assert r["zeta_trace"].shape == (40,)
    assert (tmp_path / "ebm_2d_gaussian_densities.png").exists()
    assert (tmp_path / "ebm_2d_gaussian_zeta.png").exists()
    assert "pearson" in capsys.readouterr().out
