"""Exact MaxEnt IRL fitting on ObjectWorld and on tiny MDPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.energy import LinearReward
from ebm_ppl.exact.tabular import occupancy_measures
from ebm_ppl.inference import fit_reward
from ebm_ppl.metrics import epic_distance
from ebm_ppl.problems import Problem, make_problem


def _epic_after_fit(seed, num_demos):
    problem = make_problem("objectworld", jax.random.key(seed), num_demos=num_demos)
    fit = fit_reward(problem, num_steps=30)
    learned = problem.energy_model.reward(fit.params)
    return float(epic_distance(problem.true_reward(), learned, problem.mdp)), fit


def test_recovers_reward_on_default_objectworld_and_improves_with_data():
    """EPIC of the MLE < 0.1 at 200 demos; mean EPIC over 5 seeds lower at 200 than at 25."""
    curve = {n: [_epic_after_fit(seed, n)[0] for seed in range(5)] for n in (25, 200)}
    assert curve[200][0] < 0.1
    assert np.mean(curve[200]) < np.mean(curve[25])


def test_mle_matches_feature_expectations(random_mdp):
    """At the causal MLE under deterministic dynamics, model feature counts equal the data's."""
    mdp = random_mdp(0, num_states=4, num_actions=3, horizon=4, deterministic=True)
    energy = LinearReward(mdp.features)
    problem = Problem(name="tiny", mdp=mdp, energy_model=energy)
    true = {"theta": jnp.array([0.8, -0.5])}
    from ebm_ppl.exact.sampling import sample_trajectories

    demos = sample_trajectories(jax.random.key(3), mdp, energy.reward(true), num_samples=300)
    fit = fit_reward(problem, demos=demos, num_steps=40)
    assert float(fit.grad_norm) < 1e-8
    states, actions = demos[:, :-1, 0], demos[:, :-1, 1]
    empirical = mdp.features[states, actions].sum(axis=1).mean(axis=0)
    # the causal likelihood conditions on s0: model counts start from the demos' s0 histogram
    start = jnp.bincount(demos[:, 0, 0], length=mdp.num_states) / demos.shape[0]
    occupancy = occupancy_measures(mdp, energy.reward(fit.params), start=start)
    model = jnp.einsum("sa,saf->f", occupancy.state_action, mdp.features)
    np.testing.assert_allclose(model, empirical, atol=1e-7)


@pytest.mark.parametrize("model", ["trajectory", "trajectory_global"])
def test_trajectory_level_models_fit(model):
    problem = make_problem(
        "objectworld", jax.random.key(1), num_demos=60, model=model, size=4, horizon=8
    )
    fit = fit_reward(problem, num_steps=30)
    assert float(fit.grad_norm) < 1e-6
    assert float(fit.losses[-1]) <= float(fit.losses[0])


def test_map_shrinks_toward_prior_mean():
    problem = make_problem(
        "objectworld", jax.random.key(2), num_demos=10, size=4, horizon=8, prior_scale=1e-2
    )
    mle = fit_reward(problem, num_steps=30)
    map_fit = fit_reward(problem, num_steps=30, map_estimate=True)
    assert np.linalg.norm(map_fit.params["theta"]) < 0.5 * np.linalg.norm(mle.params["theta"])


def test_bad_demos_name_the_demo_and_step():
    problem = make_problem("objectworld", jax.random.key(0), num_demos=3, size=4)
    demos = np.array(problem.demos)
    s = demos[1, 2, 0]
    far = (s + 2 * 4 + 2) % 16  # two rows and two columns away: unreachable in one move
    demos[1, 3, 0] = far
    with pytest.raises(ValueError, match=r"demos`\[1\] step 2: transition"):
        fit_reward(problem, demos=demos)
    with pytest.raises(ValueError, match="num_steps"):
        fit_reward(problem, num_steps=0)
