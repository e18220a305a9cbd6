"""The Trajectories pytree and its observed-array encoding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.exact.sampling import sample_trajectories
from ebm_ppl.spaces import PAD, Trajectories, validate_trajectories


def test_round_trip_and_lengths(random_mdp):
    mdp = random_mdp(0, num_states=4, num_actions=2, horizon=5, terminal=True)
    observed = sample_trajectories(jax.random.key(0), mdp, jnp.zeros(4), num_samples=200)
    trajectories = Trajectories.from_array(observed)
    np.testing.assert_array_equal(trajectories.to_array(), observed)
    # lengths count decisions; a trajectory that terminated at step k has length k
    terminal_hit = np.asarray(observed[:, :, 0] == mdp.num_states - 1)
    first = np.where(terminal_hit.any(1), terminal_hit.argmax(1), mdp.horizon)
    np.testing.assert_array_equal(trajectories.lengths, first)
    assert (first < mdp.horizon).any() and (first == mdp.horizon).any()
    # after termination every row is padding; row T has no action
    assert np.all(np.asarray(observed[:, -1, 1]) == PAD)
    _, validated = validate_trajectories(mdp, observed)
    np.testing.assert_array_equal(validated.lengths, trajectories.lengths)
    assert trajectories.validate(mdp).horizon == mdp.horizon


def test_is_a_pytree():
    trajectories = Trajectories.from_array(jnp.array([[[0, 1], [1, 0], [2, -1]]]))
    doubled = jax.tree.map(lambda x: x * 1, trajectories)
    np.testing.assert_array_equal(doubled.states, trajectories.states)
    assert jax.jit(lambda t: t.lengths)(trajectories).tolist() == [2]


def test_validation_errors(random_mdp):
    mdp = random_mdp(1, num_states=3, num_actions=2, horizon=2, deterministic=True)
    good = np.asarray(sample_trajectories(jax.random.key(1), mdp, jnp.zeros(3), num_samples=1))
    with pytest.raises(ValueError, match=r"shape \(N, T \+ 1, 2\)"):
        validate_trajectories(mdp, good[:, :2])
    bad = good.copy()
    bad[0, 0, 1] = 5
    with pytest.raises(ValueError, match=r"`demos`\[0\] step 0: action 5 out of range"):
        validate_trajectories(mdp, bad)
    bad = good.copy()
    bad[0, 1, 0] = 7
    with pytest.raises(ValueError, match=r"`demos`\[0\] step 1: state 7 out of range"):
        validate_trajectories(mdp, bad)
    bad = good.copy()
    bad[0, -1, 1] = 0
    with pytest.raises(ValueError, match="action must be -1"):
        validate_trajectories(mdp, bad)
    with pytest.raises(ValueError, match="integer"):
        validate_trajectories(mdp, good + 0.5)
