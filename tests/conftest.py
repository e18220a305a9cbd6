"""Test-session set-up: CPU only, float64 on, a non-interactive matplotlib backend.

The environment variables must be set before JAX or matplotlib is first imported, so this module
sets them at import time (pytest imports conftest.py before any test module). ``setdefault`` lets
a caller override them, e.g. ``JAX_PLATFORMS=cuda`` for a run on a GPU machine.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import pytest

# Library code never flips this flag (DESIGN §4); tests run in float64 unless a test says otherwise.
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def random_mdp():
    """Small random dense MDPs: ``random_mdp(seed, S, A, T, deterministic=, terminal=)``."""
    import numpy as np

    from ebm_ppl.spaces.tabular import TabularMDP

    def make(
        seed,
        num_states=3,
        num_actions=2,
        horizon=3,
        *,
        deterministic=False,
        terminal=False,
        num_features=2,
    ):
        rng = np.random.default_rng(seed)
        if deterministic:
            transitions = np.zeros((num_states, num_actions, num_states))
            nxt = rng.integers(num_states, size=(num_states, num_actions))
            transitions[np.arange(num_states)[:, None], np.arange(num_actions)[None], nxt] = 1
        else:
            transitions = rng.dirichlet(np.ones(num_states), size=(num_states, num_actions))
        mask = None
        if terminal:
            mask = np.zeros(num_states, bool)
            mask[-1] = True
            transitions[-1] = 0
            transitions[-1, :, -1] = 1
        initial = rng.dirichlet(np.ones(num_states))
        if terminal:
            initial[-1] = 0
            initial /= initial.sum()
        features = rng.normal(size=(num_states, num_actions, num_features))
        return TabularMDP.from_dense(
            transitions, initial, horizon, features=features, terminal=mask
        )

    return make
