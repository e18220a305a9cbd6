"""The trajectory-level recursion stays exact when one global shift would underflow.

Rewards of a few hundred nats per step spread the values W_{t+1} by more than the float64 exponent
range, so the fast matrix-vector form of log sum P e^W underflows and the exact log-space branch
must take over (in the value pass, the occupancy gradient, and for float32 at far smaller scales).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.exact.enumerate import enumerated_log_probs
from ebm_ppl.exact.tabular import initial_values, log_partition, soft_bellman
from ebm_ppl.spaces.tabular import TabularMDP


def _mdp(dtype=jnp.float64):
    """State 1 is a trap and state 3 a paradise (both absorbing, not terminal); from state 0 action
    0 leads only into the trap, so its successors all sit far below the best value."""
    transitions = np.zeros((4, 2, 4))
    transitions[0, 0, 1] = 1.0
    transitions[0, 1] = [0.2, 0.0, 0.3, 0.5]
    transitions[1, :, 1] = 1.0
    transitions[2, 0] = [0.5, 0.5, 0.0, 0.0]
    transitions[2, 1] = [0.0, 0.1, 0.4, 0.5]
    transitions[3, :, 3] = 1.0
    return TabularMDP.from_dense(jnp.asarray(transitions, dtype), np.full(4, 0.25), 4)


REWARD = jnp.array([[0.0, -1.0], [-900.0, -950.0], [-400.0, 300.0], [250.0, 240.0]])


@pytest.mark.parametrize("sparse", [False, True])
def test_huge_reward_spread_matches_enumeration(sparse):
    mdp = _mdp()
    reward = REWARD
    solver = mdp.to_sparse() if sparse else mdp
    _, _, log_z = enumerated_log_probs(mdp, reward, "trajectory")
    np.testing.assert_allclose(log_partition(solver, reward), log_z, rtol=1e-12)
    lean = jax.grad(lambda r: initial_values(solver, r, model="trajectory").sum())(reward)
    full = jax.grad(lambda r: soft_bellman(solver, r, model="trajectory").values[0].sum())(reward)
    assert np.all(np.isfinite(lean))
    np.testing.assert_allclose(lean, full, rtol=1e-10, atol=1e-12)


def test_float32_spread_beyond_its_exponent_range():
    mdp64, mdp32 = _mdp(), _mdp(jnp.float32)
    reward = REWARD / 15.0  # spreads of ~300 nats: beyond float32's ~87
    expected = log_partition(mdp64, reward)
    got = log_partition(mdp32, reward.astype(jnp.float32))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_the_cases_above_do_need_the_fallback(monkeypatch):
    """Negative control: with the fallback disabled the same inputs go non-finite or wrong."""
    import ebm_ppl.exact.tabular as tabular

    monkeypatch.setattr(tabular, "_underflow_floor", lambda dtype: 0.0)
    mdp = _mdp()
    reward = REWARD
    _, _, log_z = enumerated_log_probs(mdp, reward, "trajectory")
    got = np.asarray(log_partition(mdp, reward))
    assert not np.allclose(got, log_z, rtol=1e-12)
    with np.errstate(invalid="ignore"):
        lean = jax.grad(lambda r: initial_values(mdp.to_sparse(), r, model="trajectory").sum())(
            reward
        )
    assert not np.all(np.isfinite(lean))
