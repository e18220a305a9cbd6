"""ObjectWorld: the default synthetic MaxEnt IRL problem.

An ``N x N`` grid (``ebm_ppl/ObjectWorld-v0``) with coloured objects; features are the distances to
the nearest object of each colour. The true reward is **linear** in those features,
:math:`r^*(s) = \\phi(s)^\\top\\theta^*`, with :math:`\\theta^*` drawn from the prior under the
problem's key (not Levine et al.'s thresholded reward, which no linear model can fit), and the
demonstrations are exact samples of the chosen MaxEnt model at :math:`\\theta^*`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from numpyro.infer.util import Predictive

from ebm_ppl.energy import LinearReward
from ebm_ppl.envs.objectworld import objectworld_mdp
from ebm_ppl.exact.sampling import sample_trajectories
from ebm_ppl.problems import Problem

__all__ = ["make_problem"]


def make_problem(
    rng_key=None,
    *,
    size: int = 8,
    num_colours: int = 2,
    objects_per_colour: int = 3,
    slip: float = 0.0,
    horizon: int = 20,
    num_demos: int = 50,
    model: str = "causal",
    prior_scale: float = 1.0,
    world_seed: int = 0,
    sparse: bool = False,
) -> Problem:
    """Build the ObjectWorld problem.

    Args:
        rng_key: key for :math:`\\theta^*` and the demonstrations (default ``key(0)``).
        size: grid side ``N`` (``S = N^2`` states, 5 actions).
        num_colours: colours (= features).
        objects_per_colour: objects of each colour.
        slip: probability that the executed action is redrawn uniformly.
        horizon: decisions per trajectory ``T``.
        num_demos: demonstrations sampled exactly from ``model`` at :math:`\\theta^*`.
        model: the inference likelihood and the demonstrations' model.
        prior_scale: prior standard deviation of :math:`\\theta`.
        world_seed: seed of the object placement.
        sparse: build the MDP in sparse successor form.
    """
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    key_theta, key_demos = jax.random.split(rng_key)
    mdp = objectworld_mdp(
        size=size,
        num_colours=num_colours,
        objects_per_colour=objects_per_colour,
        slip=slip,
        horizon=horizon,
        seed=world_seed,
        sparse=sparse,
    )
    features = mdp.features
    # distances standardised to zero mean and unit spread so that prior_scale means the same
    # thing on every grid size
    spread = features.std(axis=0)
    features = (features - features.mean(axis=0)) / jnp.where(spread > 0, spread, 1)
    mdp = dataclasses.replace(mdp, features=features)
    energy_model = LinearReward(features, prior_scale=prior_scale)
    true_params = Predictive(energy_model.prior, num_samples=1)(key_theta)
    true_params = {name: value[0] for name, value in true_params.items()}
    demos = None
    if num_demos > 0:
        demos = sample_trajectories(
            key_demos, mdp, energy_model.reward(true_params), model=model, num_samples=num_demos
        )
    return Problem(
        name="objectworld",
        mdp=mdp,
        energy_model=energy_model,
        model=model,
        discount=1.0,
        true_params=true_params,
        demos=demos,
        grid_shape=(size, size),
    )
