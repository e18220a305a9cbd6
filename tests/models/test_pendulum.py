"""Pendulum-v1 MaxEnt model over torque sequences: energy, normalisation, NUTS demonstrations.

Exact references: Gymnasium's own cost for the energy; at ``T = 1`` a closed form for
:math:`Z` (erf); at ``T = 2`` a 1-D quadrature over :math:`u_0` (the second torque only enters
through :math:`u_1^2`, which factorises). The demonstrations file is checked for its
diagnostics and the configuration that ``make_problem()`` loads.
"""

import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density, potential_energy
from scipy.stats import norm

from ebm_ppl.envs.classic_control import pendulum_step
from ebm_ppl.models import pendulum as pd

X0 = np.array([2.5, -0.7])
WEIGHTS = np.array([0.8, 1.5, 2.0])
PARAMS = {"log_weights": jnp.log(jnp.asarray(WEIGHTS))}


def _torque_factor(weight):
    """:math:`\\tfrac14\\int_{-2}^{2} e^{-w (u/2)^2} du = \\tfrac{\\sqrt\\pi}{2\\sqrt w}\\,
    \\mathrm{erf}(\\sqrt w)`."""
    return math.sqrt(math.pi) / (2 * math.sqrt(weight)) * math.erf(math.sqrt(weight))


def _state_cost(state):
    angle = ((state[0] + math.pi) % (2 * math.pi)) - math.pi
    return WEIGHTS[0] * (angle / math.pi) ** 2 + WEIGHTS[1] * (state[1] / 8) ** 2


def _trapezoid(values, grid, axis=-1):
    return np.trapezoid(values, grid, axis=axis)


def _u0_marginal(x0, num=20001):
    """T = 2: density of u0 times b(u0) on a grid, unnormalised (u1 factorises: closed form).

    :math:`E = c(x_0) + w_3 (u_0/2)^2 + c(x_1(u_0)) + w_3 (u_1/2)^2` with :math:`c` the state
    cost.
    """
    u0 = np.linspace(-2, 2, num)
    x1 = np.asarray(pendulum_step(np.broadcast_to(x0, (num, 2)), u0))
    log_density_u0 = -(_state_cost(x0) + WEIGHTS[2] * (u0 / 2) ** 2 + _state_cost(x1.T))
    return u0, np.exp(log_density_u0 - math.log(4))


def test_energy_is_gymnasiums_summed_cost_with_gymnasium_weights():
    horizon = 20
    model = pd.PendulumMaxEnt(horizon=horizon)
    params = {"log_weights": jnp.log(jnp.asarray(pd.GYMNASIUM_WEIGHTS))}
    actions = np.random.default_rng(0).uniform(-2, 2, horizon)
    env = gymnasium.make("Pendulum-v1", disable_env_checker=True)
    env.reset(seed=0)
    env.unwrapped.state = X0.copy()
    total_cost = -sum(env.step(np.array([a]))[1] for a in actions)
    env.close()
    np.testing.assert_allclose(float(model.energy(params, actions, X0)), total_cost, rtol=1e-12)
    features = model.step_features(actions, X0)
    assert features.shape == (horizon, 3)
    assert float(features.min()) >= 0 and float(features.max()) <= 1


def test_log_z_at_horizon_1_closed_form_in_u_and_z():
    model = pd.PendulumMaxEnt(horizon=1)
    log_z = -_state_cost(X0) + math.log(_torque_factor(WEIGHTS[2]))
    # in z-space: the tanh transform and its log-Jacobian
    z = np.linspace(-25, 25, 40001)
    energies = jax.jit(jax.vmap(lambda zi: model.unconstrained_energy(PARAMS, zi[None], X0)))(z)
    np.testing.assert_allclose(
        math.log(_trapezoid(np.exp(-np.asarray(energies)), z)), log_z, rtol=0, atol=1e-9
    )
    # in u-space against Lebesgue measure
    u = np.linspace(-2, 2, 40001)
    log_densities = jax.jit(jax.vmap(lambda ui: model.log_density(PARAMS, ui[None], X0)))(u)
    np.testing.assert_allclose(
        math.log(_trapezoid(np.exp(np.asarray(log_densities)), u)), log_z, rtol=0, atol=1e-8
    )
    assert float(model.log_density(PARAMS, jnp.asarray([2.1]), X0)) == -np.inf


def test_log_z_at_horizon_2_z_space_quadrature_matches_the_u0_marginal():
    model = pd.PendulumMaxEnt(horizon=2)
    u0, density = _u0_marginal(X0)
    log_z = math.log(_trapezoid(density, u0) * _torque_factor(WEIGHTS[2]))
    z = np.linspace(-12, 12, 1201)
    grid = np.stack(np.meshgrid(z, z, indexing="ij"), axis=-1).reshape(-1, 2)
    energies = jax.jit(jax.vmap(lambda zi: model.unconstrained_energy(PARAMS, zi, X0)))(grid)
    values = np.exp(-np.asarray(energies)).reshape(z.size, z.size)
    got = math.log(_trapezoid(_trapezoid(values, z), z))
    np.testing.assert_allclose(got, log_z, rtol=0, atol=1e-6)


def test_numpyro_model_is_the_same_distribution():
    horizon = 3
    model = pd.PendulumMaxEnt(horizon=horizon)
    z = jnp.asarray([0.3, -1.2, 2.0])
    actions = model.actions_from_unconstrained(z)
    args = (PARAMS, X0)
    # constrained: log b(u) - E = -E - T log 4
    joint, _ = log_density(model.model, args, {}, {"actions": actions})
    np.testing.assert_allclose(
        float(joint), float(model.log_density(PARAMS, actions, X0)), rtol=1e-12
    )
    # unconstrained: NumPyro's sigmoid coordinate is y = 2z, so its potential is U(z) + T log 2
    potential = potential_energy(model.model, args, {}, {"actions": 2 * z})
    expected = model.unconstrained_energy(PARAMS, z, X0) + horizon * math.log(2)
    np.testing.assert_allclose(float(potential), float(expected), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(model.unconstrained_from_actions(actions)), z, rtol=1e-12)


def test_make_problem_samples_when_the_file_lacks_the_configuration(monkeypatch):
    """A configuration not in the file goes to the NUTS sampler with the split key.

    The sampler itself is checked against quadrature moments at ``T = 2`` by the demo script
    (its compilation alone costs 15-40 s here, over this file's test-time share); the test
    below asserts the stored result of that self-check.
    """
    calls = []

    def fake_sampler(rng_key, energy_model, params, starts, num_demos, settings):
        calls.append((rng_key, energy_model, params, starts, num_demos, settings))
        demos = jnp.zeros((starts.shape[0], num_demos, energy_model.horizon))
        return demos, {"rhat_max": np.ones(starts.shape[0])}

    monkeypatch.setattr(pd, "sample_demonstrations", fake_sampler)
    settings = pd.DemoSettings(num_chains=2, num_warmup=10, num_samples=20)
    problem = pd.make_problem(
        jax.random.key(3),
        horizon=2,
        num_starts=2,
        num_demos=4,
        true_params=PARAMS,
        settings=settings,
    )
    ((key, model, params, starts, num_demos, used),) = calls
    key_starts, key_demos = jax.random.split(jax.random.key(3))
    np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(key_demos))
    np.testing.assert_array_equal(np.asarray(starts), np.asarray(pd.start_states(key_starts, 2)))
    assert model.horizon == 2 and num_demos == 4 and used == settings
    np.testing.assert_allclose(np.asarray(params["log_weights"]), np.log(WEIGHTS))
    assert problem.demos.shape == (2, 4, 2) and problem.demo_info["rhat_max"].shape == (2,)
    # no demos: no sampling
    assert pd.make_problem(num_demos=0, horizon=2).demos is None and len(calls) == 1


def test_demo_file_holds_the_default_configuration_with_good_diagnostics(monkeypatch):
    stored = pd.load_demonstrations()
    assert stored is not None, "run scripts/make_pendulum_demos.py"
    # loading must not sample
    monkeypatch.setattr(pd, "sample_demonstrations", lambda *a, **k: pytest.fail("sampled"))
    problem = pd.make_problem()
    assert problem.demos.shape == (10, 10, pd.HORIZON)
    assert problem.name == "pendulum" and problem.model == "trajectory"
    key_starts, _ = jax.random.split(jax.random.key(0))
    np.testing.assert_array_equal(
        np.asarray(problem.start_states), np.asarray(pd.start_states(key_starts, 10))
    )
    np.testing.assert_array_equal(np.asarray(problem.demos), stored["demos"])
    assert np.all(np.abs(stored["demos"]) < 2)
    np.testing.assert_allclose(stored["log_weights"], np.log(pd.TRUE_WEIGHTS))
    # approximate draws: their diagnostics, per start state
    assert np.max(stored["rhat_max"]) < 1.01 and np.max(stored["rhat_energy"]) < 1.01
    assert np.min(stored["ess_min"]) > 1000 and np.min(stored["ess_energy"]) > 400
    assert np.sum(stored["divergences"]) == 0
    assert int(stored["num_chains"]) * int(stored["num_samples"]) >= 100 * 10
    # the script's self-check of the sampler at T = 2: moments of u0, u0^2, u1, u1^2 from all
    # pooled NUTS draws against quadrature, as z-scores (difference / MCSE from the ESS)
    assert list(stored["selfcheck_names"]) == ["u0", "u0^2", "u1", "u1^2"]
    assert np.all(np.abs(stored["selfcheck_z"]) <= 4), stored["selfcheck_z"]
    # a smaller configuration is a subset of the file
    small = pd.make_problem(num_starts=3, num_demos=5)
    np.testing.assert_array_equal(np.asarray(small.demos), stored["demos"][:3, ::2])
    assert small.demo_info["rhat_max"].shape == (3,)
    # starts lie in the hanging half of Gymnasium's reset box
    angles, speeds = stored["start_states"].T
    assert np.all((angles >= math.pi / 2) & (angles <= 1.5 * math.pi)) and np.all(abs(speeds) <= 1)


def test_stored_demos_satisfy_the_stein_identities_of_the_model():
    """Exact checks of the stored draws in z-space: for :math:`p \\propto e^{-U}` on
    :math:`\\mathbb R^T`, :math:`E_p[\\partial_i U] = 0` and :math:`E_p[z_i\\,\\partial_i U] = 1`
    (Stein's identity with :math:`g = e_i` and :math:`g = z_i e_i`). Pooled over the 100 demos
    (10 starts x 10, nearly independent: spaced 400 draws apart), one z-score per coordinate
    and identity, Bonferroni over the 2T scores at family level 1e-3."""
    stored = pd.load_demonstrations()
    model = pd.PendulumMaxEnt(horizon=int(stored["horizon"]))
    z = model.unconstrained_from_actions(jnp.asarray(stored["demos"]))  # (n, m, T)
    starts = jnp.asarray(stored["start_states"])
    grad_u = jax.grad(model.unconstrained_energy, argnums=1)
    scores_at = jax.jit(jax.vmap(jax.vmap(grad_u, (None, 0, None)), (None, 0, 0)))
    flat_z = np.asarray(z).reshape(-1, model.horizon)
    bound = float(norm.ppf(1 - 1e-3 / (2 * 2 * model.horizon)))

    def stein_z_scores(log_weights):
        scores = np.asarray(scores_at({"log_weights": log_weights}, z, starts))
        scores = scores.reshape(-1, model.horizon)
        out = []
        for values, target in ((scores, 0.0), (flat_z * scores, 1.0)):
            se = values.std(0, ddof=1) / math.sqrt(len(values))
            out.append((values.mean(0) - target) / se)
        return out

    for z_scores in stein_z_scores(jnp.asarray(stored["log_weights"])):
        assert np.max(np.abs(z_scores)) < bound, np.round(z_scores, 2)
    # negative control: the demos are not draws at three times the weights
    _, wrong = stein_z_scores(jnp.asarray(stored["log_weights"]) + math.log(3.0))
    assert np.max(np.abs(wrong)) > bound


def test_density_problem_is_the_z_space_energy():
    model = pd.PendulumMaxEnt(horizon=4)
    actions = jnp.asarray([[0.5, -1.0, 1.5, 0.0]])
    problem = pd.density_problem(model, X0, PARAMS, data=actions)
    assert problem.dim == 4 and problem.model == "ebm"
    z = problem.data[0]
    np.testing.assert_allclose(
        float(problem.energy_model.energy(PARAMS, z)),
        float(model.unconstrained_energy(PARAMS, z, X0)),
        rtol=1e-12,
    )
    np.testing.assert_allclose(np.asarray(model.actions_from_unconstrained(z)), actions[0])


def test_float32_is_preserved():
    model = pd.PendulumMaxEnt(horizon=3)
    params = {"log_weights": PARAMS["log_weights"].astype(jnp.float32)}
    x0 = jnp.asarray(X0, jnp.float32)
    actions = jnp.asarray([0.1, -0.2, 0.3], jnp.float32)
    assert model.energy(params, actions, x0).dtype == jnp.float32
    assert model.unconstrained_energy(params, actions, x0).dtype == jnp.float32


def test_bad_inputs_raise_clear_errors():
    model = pd.PendulumMaxEnt(horizon=3)
    actions = jnp.zeros(3)
    with pytest.raises(
        ValueError, match=r"`x0` must be one start state .* shape \(2,\).*got shape"
    ):
        model.energy(PARAMS, actions, jnp.zeros(3))
    with pytest.raises(
        ValueError, match=r"`actions` must be one sequence of shape \(T,\) = \(3,\)"
    ):
        model.energy(PARAMS, jnp.zeros(4), X0)
    with pytest.raises(ValueError, match=r"`params` must hold 'log_weights'"):
        model.energy({"weights": jnp.zeros(3)}, actions, X0)
    with pytest.raises(ValueError, match=r"`params\['log_weights'\]` must have shape \(3,\)"):
        model.energy({"log_weights": jnp.zeros(2)}, actions, X0)
    with pytest.raises(ValueError, match=r"`horizon` must be an int >= 1; got 0"):
        pd.PendulumMaxEnt(horizon=0)
    with pytest.raises(ValueError, match=r"`prior_scale` must be a number > 0"):
        pd.PendulumMaxEnt(prior_scale=0.0)
    with pytest.raises(TypeError, match=r"`dynamics` must be a PendulumParams"):
        pd.PendulumMaxEnt(dynamics=(10.0,))
    with pytest.raises(ValueError, match=r"`num_chains` must be an int >= 2; got 1"):
        pd.DemoSettings(num_chains=1)
    with pytest.raises(ValueError, match=r"`target_accept_prob` must be in \(0, 1\)"):
        pd.DemoSettings(target_accept_prob=1.0)
    with pytest.raises(ValueError, match=r"`num_demos` must be an int >= 0; got -1"):
        pd.make_problem(num_demos=-1)
    with pytest.raises(ValueError, match=r"`num_starts` must be an int >= 1; got 0"):
        pd.make_problem(num_starts=0)
    with pytest.raises(ValueError, match=r"`num_demos` must be <= num_chains \* num_samples = 4"):
        pd.sample_demonstrations(
            jax.random.key(0),
            model,
            PARAMS,
            jnp.asarray([X0]),
            5,
            pd.DemoSettings(num_chains=2, num_samples=2),
        )
    with pytest.raises(ValueError, match=r"`starts` must have shape \(n, 2\)"):
        pd.sample_demonstrations(jax.random.key(0), model, PARAMS, jnp.asarray(X0), 1)
    with pytest.raises(ValueError, match=r"`data` must have shape \(m, T\) = \(m, 3\)"):
        pd.density_problem(model, X0, data=jnp.zeros((2, 4)))
