"""The `ebm-ppl` command and the problem registry."""

import json

import jax
import pytest

from ebm_ppl.cli import main
from ebm_ppl.problems import list_problems, make_problem


def test_fit_command_prints_report(capsys):
    assert main(["fit", "objectworld", "--num-demos", "20", "--steps", "5", "--seed", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problem"] == "objectworld" and report["num_demos"] == 20
    assert 0.0 <= report["epic"] <= 1.0
    assert report["evd_hard"] >= -1e-9


def test_fit_command_rejects_unknown_model(capsys):
    assert main(["fit", "objectworld", "--model", "nope", "--num-demos", "2", "--steps", "1"]) == 2
    assert "--model" in capsys.readouterr().err


def test_registry():
    assert "objectworld" in list_problems()
    with pytest.raises(ValueError, match="`name` must be one of"):
        make_problem("no-such-problem", jax.random.key(0))


def test_objectworld_problem():
    problem = make_problem("objectworld", jax.random.key(0), num_demos=4, size=5, horizon=6)
    assert problem.mdp.num_states == 25 and problem.mdp.num_actions == 5
    assert problem.demos.shape == (4, 7, 2)
    assert problem.true_reward().shape == (25,)
    with pytest.raises(ValueError, match="model"):
        make_problem("objectworld", jax.random.key(0), num_demos=1, model="nope")


def test_problem_is_a_pytree():
    """Problems cross jit/vmap/eval_shape and tree maps without re-validation errors."""
    import jax.numpy as jnp

    from ebm_ppl.logz import exact

    problem = make_problem("objectworld", jax.random.key(0), num_demos=3, size=4)
    shapes = jax.tree.map(lambda x: x.shape, problem)
    assert shapes.demos == (3, 21, 2)
    assert jax.eval_shape(lambda p: p, problem).mdp.horizon == 20
    keys = jax.random.split(jax.random.key(0), 2)
    log_z = jax.jit(
        jax.vmap(
            lambda k, p: exact().run(k, p, p.true_params, s0=jnp.array([0, 1])).log_z,
            in_axes=(0, None),
        )
    )(keys, problem)
    assert log_z.shape == (2, 2)
