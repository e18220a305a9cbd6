"""Conformance of every log Z estimator (DESIGN §5): one parametrised list.

Each estimator, jitted over ``jax.vmap`` of keys, compiles once for two problems of the same
shapes, returns finite ``log_z`` in the problem's dtype (float64 and float32), and gives the same
answer for the same key.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl import logz
from ebm_ppl.models import objectworld, toy2d

TABULAR = {
    "exact": lambda: logz.exact("trajectory"),
    "importance": lambda: logz.importance(64),
    "psis": lambda: logz.psis(64),
    "gcl_mixture": lambda: logz.gcl_mixture(64),
    "elbo": lambda: logz.elbo(64),
    "iwae": lambda: logz.iwae(64, 8),
    "eubo": lambda: logz.eubo(64),
    "particle_smc": lambda: logz.particle_smc(32),
}
DENSITY = {
    "importance": lambda: logz.importance(64, model="ebm"),
    "ais": lambda: logz.ais(32, 8),
    "tempered_smc": lambda: logz.tempered_smc(32, num_mcmc_steps=2),
}


def _cast(tree, dtype):
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x,
        tree,
    )


def _tabular_problems(dtype):
    problems = [
        objectworld.make_problem(jax.random.key(seed), size=4, horizon=5, num_demos=8)
        for seed in (0, 1)
    ]
    return [_cast(p, dtype) for p in problems]


def _run_twice(estimator, problems, data_of, s0=None):
    """Run jit(vmap over keys) twice per problem; return the results and the number of traces."""
    traces = []

    def run(key, problem, params, data):
        traces.append(1)
        return estimator.run(key, problem, params, data=data, s0=s0)

    batched = jax.jit(jax.vmap(run, in_axes=(0, None, None, None)))
    keys = jax.random.split(jax.random.key(3), 4)
    outputs = []
    for problem in problems:
        params = problem.true_params
        dtype = jax.tree.leaves(params)[0].dtype
        first = batched(keys, problem, params, data_of(problem))
        again = batched(keys, problem, params, data_of(problem))
        outputs.append((dtype, first.log_z, again.log_z))
    return outputs, len(traces)


def _assert_conformant(name, outputs, num_traces):
    assert num_traces == 1, f"{name} traced {num_traces} times"
    for dtype, first, again in outputs:
        assert first.dtype == dtype, (name, first.dtype, dtype)
        assert np.isfinite(np.asarray(first)).all(), name
        np.testing.assert_array_equal(np.asarray(first), np.asarray(again))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(TABULAR))
def test_tabular_estimator_conformance(name, dtype):
    problems = _tabular_problems(dtype)
    s0 = jnp.asarray([0, 5], jnp.int32)
    outputs, num_traces = _run_twice(TABULAR[name](), problems, lambda p: p.demos, s0=s0)
    assert num_traces == 1 and len(outputs) == 2
    _assert_conformant(name, outputs, num_traces)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(DENSITY))
def test_density_estimator_conformance(name, dtype):
    problems = [
        _cast(toy2d.make_problem(jax.random.key(seed), energy="banana", num_data=16), dtype)
        for seed in (0, 1)
    ]
    outputs, num_traces = _run_twice(DENSITY[name](), problems, lambda p: p.data)
    assert num_traces == 1 and len(outputs) == 2
    _assert_conformant(name, outputs, num_traces)
