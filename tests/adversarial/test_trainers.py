"""GAN-GCL and GCL trainers: interface, errors, and a short ObjectWorld run with EPIC decreasing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.adversarial import GANGCLInfo, GCLInfo, gan_gcl, gan_zeta, gcl, reward_epic
from ebm_ppl.models.objectworld import make_problem


@pytest.fixture(scope="module")
def problem():
    return make_problem(jax.random.key(3), size=4, horizon=6, num_demos=64, model="trajectory")


def _run(trainer, problem, num_steps):
    start = {"theta": -problem.true_params["theta"]}  # maximally wrong: EPIC = 1
    state = trainer.init(jax.random.key(0), start)
    epic0 = float(reward_epic(problem, state.params))
    infos = []
    for key in jax.random.split(jax.random.key(1), num_steps):
        state, info = trainer.update(key, state, problem.demos)
        infos.append(info)
    return state, epic0, float(reward_epic(problem, state.params)), infos


@pytest.mark.parametrize("model", ["trajectory", "trajectory_global"])
def test_gan_gcl_learns_objectworld(problem, model):
    trainer = gan_gcl(problem, nu=2, model=model, policy_steps=5)
    state, epic0, epic1, infos = _run(trainer, problem, 100)
    assert isinstance(infos[-1], GANGCLInfo)
    assert state.zeta.shape == ((problem.mdp.num_states,) if model == "trajectory" else ())
    assert np.all(np.isfinite([i.discriminator_loss for i in infos]))
    assert epic1 < 0.5 * epic0 and epic1 < 0.2, (epic0, epic1)
    # the generator's exact ELBO is a lower bound on log Z under the learned reward
    from ebm_ppl.exact.tabular import log_partition

    log_z = log_partition(
        problem.mdp, problem.energy_model.reward(state.params), model="trajectory_global"
    )
    assert infos[-1].elbo <= log_z + 1e-9


def test_gcl_learns_objectworld(problem):
    trainer = gcl(problem, nu=2, policy_steps=5)
    state, epic0, epic1, infos = _run(trainer, problem, 100)
    assert isinstance(infos[-1], GCLInfo)
    assert infos[-1].log_z.shape == (problem.mdp.num_states,)
    assert epic1 < 0.5 * epic0 and epic1 < 0.2, (epic0, epic1)


def test_trainer_errors(problem):
    with pytest.raises(ValueError, match="nu"):
        gan_gcl(problem, nu=0)
    with pytest.raises(ValueError, match="model"):
        gcl(problem, model="causal")
    with pytest.raises(ValueError, match="discount"):
        gan_gcl(problem.replace(model="causal", discount=0.9))
    trainer = gan_gcl(problem)
    state = trainer.init(jax.random.key(0))
    with pytest.raises(ValueError, match="batch"):
        trainer.update(jax.random.key(0), state, jnp.zeros((3, 2, 2), jnp.int32))


def test_gan_zeta_estimates_log_z_at_the_data_theta(problem):
    """The discriminator's zeta* with a generator fitted at theta (fact 1: the mixture fixed
    point) estimates log Z(s0) at the data's theta: pooled bias within 4 SE over seeds and start
    states, and an RMSE far below plain importance sampling from the uniform policy at the same
    budget (the generator is the learned proposal)."""
    from ebm_ppl.logz import exact, importance

    truth = np.asarray(exact("trajectory").run(None, problem, problem.true_params).log_z)
    keys = jax.random.split(jax.random.key(0), 8)

    def errors(estimator):
        run = jax.jit(jax.vmap(lambda k: estimator.run(k, problem, problem.true_params)))
        result = run(keys)
        return np.asarray(result.log_z) - truth, result

    err, result = errors(gan_zeta(64, generator_steps=200))
    assert result.log_z.shape == (8, problem.mdp.num_states)
    assert abs(err.mean()) <= 4 * err.std(ddof=1) / np.sqrt(err.size)
    err_is, _ = errors(importance(64))
    rmse, rmse_is = np.sqrt(np.mean(err**2)), np.sqrt(np.mean(err_is**2))
    assert rmse < 0.1 * rmse_is, (rmse, rmse_is)
    estimator = gan_zeta(8, model="trajectory_global")
    assert estimator.models == ("trajectory_global",)
    assert estimator.run(jax.random.key(1), problem, problem.true_params).log_z.shape == ()


def test_gan_zeta_errors(problem):
    with pytest.raises(ValueError, match="generator_steps"):
        gan_zeta(8, generator_steps=0)
    with pytest.raises(ValueError, match="model"):
        gan_zeta(8, model="causal")
    from models.toy2d import make_problem as make_density

    density = make_density(jax.random.key(0), energy="gaussian", num_data=4)
    with pytest.raises(ValueError, match="tabular problem"):
        gan_zeta(8, model="trajectory_global").run(jax.random.key(0), density, density.true_params)
