"""Small synthetic problems shared by the posterior tests."""

import jax
import numpy as np
import pytest

from ebm_ppl.energy import LinearReward
from ebm_ppl.exact.sampling import sample_trajectories
from ebm_ppl.problems import Problem
from ebm_ppl.spaces.tabular import TabularMDP


def tiny_mdp(seed, *, num_states=4, num_actions=2, horizon=3, num_features=1, terminal=False):
    """A random stochastic MDP with state features ``(S, F)`` (no shaping direction)."""
    rng = np.random.default_rng(seed)
    transitions = rng.dirichlet(np.ones(num_states) * 0.7, size=(num_states, num_actions))
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
    return TabularMDP.from_dense(transitions, initial, horizon, features=features, terminal=mask)


def tiny_problem(
    seed, *, num_features=1, num_demos=30, model="causal", theta=None, prior_scale=1.0, **mdp_kw
):
    """A :class:`Problem` with demos sampled exactly from ``model`` at ``theta``."""
    mdp = tiny_mdp(seed, num_features=num_features, **mdp_kw)
    energy = LinearReward(mdp.features, prior_scale=prior_scale)
    theta = np.linspace(0.8, -0.5, num_features) if theta is None else np.asarray(theta)
    params = {"theta": jax.numpy.asarray(theta, dtype=float)}
    demos = sample_trajectories(
        jax.random.key(seed + 1000),
        mdp,
        energy.reward(params),
        model=model,
        num_samples=num_demos,
    )
    return Problem(
        name=f"tiny{seed}",
        mdp=mdp,
        energy_model=energy,
        model=model,
        true_params=params,
        demos=demos,
    )


@pytest.fixture(scope="session")
def make_tiny_problem():
    return tiny_problem
