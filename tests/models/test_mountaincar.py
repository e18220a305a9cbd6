"""MountainCar-v0 MaxEnt model: exact log Z, gradients and sampling by enumeration.

The brute-force reference below is independent of the library: it steps the real Gymnasium
environment through every action sequence (``itertools.product``), stops at Gymnasium's
``terminated`` flag, computes the features in NumPy and sums over the distinct trajectories.
"""

import itertools
import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import stats

from ebm_ppl.models import mountaincar as mc

# one ordinary start, one close to the goal where some sequences terminate after 1 or 2 steps
STARTS = [np.array([-0.52, 0.0]), np.array([0.44, 0.03])]
PARAMS = {"weights": jnp.asarray([10.0, -10.0, 0.5, 1.0])}


def _brute_force(params, x0, horizon):
    """{trajectory (tuple of actions up to the goal): (energy, features)} via Gymnasium."""
    env = gymnasium.make("MountainCar-v0", disable_env_checker=True)
    env.reset(seed=0)
    theta = np.asarray(params["weights"])
    trajectories = {}
    for sequence in itertools.product(range(3), repeat=horizon):
        env.unwrapped.state = np.array(x0, dtype=np.float64)
        features, taken = np.zeros(4), []
        for action in sequence:
            _, _, terminated, _, _ = env.step(action)
            position, velocity = env.unwrapped.state
            features += [
                max(0.5 - position, 0.0) / 1.7,
                abs(velocity) / 0.07,
                abs(action - 1),
                1.0,
            ]
            taken.append(action)
            if terminated:
                break
        trajectories[tuple(taken)] = (float(theta @ features), features)
    env.close()
    return trajectories


def _reference_log_z_and_mean_features(params, x0, horizon):
    trajectories = _brute_force(params, x0, horizon)
    energies = np.array([e for e, _ in trajectories.values()])
    features = np.array([f for _, f in trajectories.values()])
    log_z = np.log(np.sum(np.exp(-(energies - np.min(energies))))) - np.min(energies)
    probs = np.exp(-energies - log_z)
    return log_z, probs @ features, trajectories


def test_enumerated_sequences_are_all_of_them_in_product_order():
    sequences = np.asarray(mc.enumerate_action_sequences(3))
    np.testing.assert_array_equal(sequences, np.array(list(itertools.product(range(3), repeat=3))))


@pytest.mark.parametrize("start", [0, 1])
def test_log_z_and_its_gradient_match_brute_force_through_gymnasium(start):
    x0, horizon = STARTS[start], 3
    log_z, mean_features, trajectories = _reference_log_z_and_mean_features(PARAMS, x0, horizon)
    lengths = {len(t) for t in trajectories}
    if start == 1:  # near the goal, some trajectories end after 2 decisions
        assert lengths == {2, 3} and len(trajectories) < 27
    else:
        assert lengths == {3} and len(trajectories) == 27
    got = mc.log_z_by_enumeration(PARAMS, x0, horizon)
    np.testing.assert_allclose(float(got), log_z, rtol=1e-12)
    # the feature-expectation identity: grad log Z = -E_p[grad E] = -E_p[Phi]
    log_z_fn = lambda w: mc.log_z_by_enumeration({"weights": w}, x0, horizon)
    grad = jax.grad(log_z_fn)(PARAMS["weights"])
    np.testing.assert_allclose(np.asarray(grad), -mean_features, rtol=1e-10, atol=1e-12)
    # and central finite differences of the enumerated log Z
    eps = 1e-5
    for i in range(4):
        step = eps * np.eye(4)[i]
        central = (log_z_fn(PARAMS["weights"] + step) - log_z_fn(PARAMS["weights"] - step)) / (
            2 * eps
        )
        np.testing.assert_allclose(float(central), float(grad[i]), rtol=1e-7, atol=1e-9)


def test_exact_sampling_frequencies_chi_square():
    x0, horizon, num = STARTS[1], 3, 20_000
    sequences, log_probs, _ = mc.trajectory_log_probs(PARAMS, x0, horizon)
    assert abs(float(jax.scipy.special.logsumexp(log_probs))) < 1e-12
    # one cell per distinct trajectory (padded duplicates merged)
    cells = {}
    for sequence, log_prob in zip(np.asarray(sequences), np.asarray(log_probs), strict=True):
        key = tuple(sequence)
        cells[key] = cells.get(key, 0.0) + math.exp(log_prob)
    draws = np.asarray(mc.sample_by_enumeration(jax.random.key(0), PARAMS, x0, horizon, num))
    assert draws.shape == (num, horizon) and draws.dtype == np.int32
    keys = list(cells)
    # count draws per trajectory: encode each padded sequence as an integer (base 4, -1 -> 0)
    codes = (draws + 1) @ 4 ** np.arange(horizon)
    key_codes = (np.array(keys) + 1) @ 4 ** np.arange(horizon)
    counts = np.array([np.sum(codes == code) for code in key_codes])
    assert counts.sum() == num
    expected = num * np.array([cells[k] for k in keys])
    # pool the cells with expected count < 5 into one
    small = expected < 5
    observed = np.append(counts[~small], counts[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # the brute-force probabilities agree with the merged cells
    _, _, trajectories = _reference_log_z_and_mean_features(PARAMS, x0, horizon)
    log_z = float(mc.log_z_by_enumeration(PARAMS, x0, horizon))
    for actions, (energy, _) in trajectories.items():
        padded = tuple(actions) + (mc.PAD,) * (horizon - len(actions))
        np.testing.assert_allclose(cells[padded], math.exp(-energy - log_z), rtol=1e-10)


def test_energy_is_minus_gymnasium_return_with_gymnasium_weights():
    horizon = 8
    model = mc.MountainCarMaxEnt(horizon=horizon)
    params = {"weights": jnp.asarray(mc.GYMNASIUM_WEIGHTS)}
    rng = np.random.default_rng(0)
    env = gymnasium.make("MountainCar-v0", disable_env_checker=True)
    env.reset(seed=0)
    for x0 in [np.array([0.40, 0.045]), np.array([-0.5, 0.0])]:
        actions = rng.integers(0, 3, horizon)
        env.unwrapped.state = x0.copy()
        total = 0.0
        for action in actions:
            _, reward, terminated, _, _ = env.step(int(action))
            total += reward
            if terminated:
                break
        np.testing.assert_allclose(float(model.energy(params, actions, x0)), -total)
        # the sequential form used by particle SMC: masked step energies along the rollout
        states, alive = model.rollout(actions, x0)
        steps = model.step_energy(PARAMS, states[:-1], actions, states[1:])
        np.testing.assert_allclose(float(steps.sum()), float(model.energy(PARAMS, actions, x0)))
        assert np.all(np.asarray(steps)[~np.asarray(alive)] == 0)
    env.close()


def test_numpyro_model_marginal_is_the_trajectory_model():
    horizon, x0 = 3, STARTS[1]
    model = mc.MountainCarMaxEnt(horizon=horizon)
    sequences = mc.enumerate_action_sequences(horizon)
    one = lambda actions: log_density(model.model, (PARAMS, x0), {}, {"actions": actions})[0]
    joint = jax.jit(jax.vmap(one))(sequences)
    _, log_probs, log_z = mc.trajectory_log_probs(PARAMS, x0, horizon)
    np.testing.assert_allclose(np.asarray(joint), np.asarray(log_probs + log_z), rtol=1e-12)


def test_make_problem_exact_demos_and_log_z():
    problem = mc.make_problem(jax.random.key(1), horizon=4, num_demos=6, num_starts=3)
    assert problem.name == "mountaincar" and problem.model == "trajectory"
    assert problem.demos.shape == (3, 6, 4) and problem.log_z.shape == (3,)
    starts = np.asarray(problem.start_states)
    assert np.all((starts[:, 0] >= -0.6) & (starts[:, 0] <= -0.4)) and np.all(starts[:, 1] == 0)
    expected = mc.log_z_by_enumeration(problem.true_params, starts, 4)
    np.testing.assert_allclose(np.asarray(problem.log_z), np.asarray(expected), rtol=1e-12)
    mc.validate_demos(problem.energy_model, problem.demos, starts)
    again = mc.make_problem(jax.random.key(1), horizon=4, num_demos=6, num_starts=3)
    np.testing.assert_array_equal(np.asarray(again.demos), np.asarray(problem.demos))
    # a longer horizon without demos: no exact log Z
    long = mc.make_problem(horizon=40, num_demos=0, num_starts=2)
    assert long.demos is None and long.log_z is None


def test_float32_is_preserved():
    x0 = jnp.asarray(STARTS[1], jnp.float32)
    params = {"weights": PARAMS["weights"].astype(jnp.float32)}
    log_z = mc.log_z_by_enumeration(params, x0, 3)
    assert log_z.dtype == jnp.float32
    np.testing.assert_allclose(
        float(log_z), float(mc.log_z_by_enumeration(PARAMS, STARTS[1], 3)), rtol=1e-5
    )
    model = mc.MountainCarMaxEnt(horizon=3)
    assert model.energy(params, jnp.zeros(3, jnp.int32), x0).dtype == jnp.float32


def test_bad_inputs_raise_clear_errors():
    model = mc.MountainCarMaxEnt(horizon=3)
    with pytest.raises(ValueError, match=r"`horizon` must be an int in \[1, 10\]; got 11"):
        mc.log_z_by_enumeration(PARAMS, STARTS[0], 11)
    with pytest.raises(ValueError, match=r"`x0` must not hold goal states .* at index 1"):
        mc.log_z_by_enumeration(PARAMS, np.array([[0.0, 0.0], [0.55, 0.01]]), 3)
    with pytest.raises(ValueError, match=r"`demos` must be an integer array of shape \(n, m, T\)"):
        mc.validate_demos(model, jnp.zeros((1, 2, 3)), STARTS[:1])
    with pytest.raises(ValueError, match=r"`x0` must not be a goal state"):
        model.energy(PARAMS, jnp.zeros(3, jnp.int32), np.array([0.55, 0.01]))
    with pytest.raises(ValueError, match=r"`x0` must be one start state .* shape \(2,\)"):
        model.energy(PARAMS, jnp.zeros(3, jnp.int32), jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"`actions` must be one integer sequence of shape \(T,\)"):
        model.energy(PARAMS, jnp.zeros(3), STARTS[0])
    with pytest.raises(ValueError, match=r"`params\['weights'\]` must have shape \(4,\)"):
        model.energy({"weights": jnp.zeros(3)}, jnp.zeros(3, jnp.int32), STARTS[0])
    with pytest.raises(ValueError, match=r"`params` must hold 'weights'"):
        model.energy({"theta": jnp.zeros(4)}, jnp.zeros(3, jnp.int32), STARTS[0])
    with pytest.raises(
        ValueError, match=r"`horizon` = 4 differs from the energy model's horizon 3"
    ):
        mc.log_z_by_enumeration(PARAMS, STARTS[0], 4, energy_model=model)
    with pytest.raises(ValueError, match=r"`num_demos` must be 0 when `horizon` > 10"):
        mc.make_problem(horizon=12, num_demos=5)
    with pytest.raises(ValueError, match=r"`num_demos` must be an int >= 0; got -1"):
        mc.make_problem(num_demos=-1)
    with pytest.raises(ValueError, match=r"`num_samples` must be an int >= 1; got 0"):
        mc.sample_by_enumeration(jax.random.key(0), PARAMS, STARTS[0], 3, 0)
    # demonstrations: actions before the goal in {0, 1, 2}, -1 after it
    with pytest.raises(
        ValueError,
        match=r"`demo` must hold actions in \{0, 1, 2\} before the goal; "
        r"got 3 at start 0, demo 0, step 1",
    ):
        mc.validate_actions(model, jnp.asarray([0, 3, 1]), STARTS[0], name="demo")
    with pytest.raises(
        ValueError,
        match=r"`actions` must hold -1 after the goal is reached; got 2 "
        r"at start 0, demo 0, step 1",
    ):
        mc.validate_actions(model, jnp.asarray([2, 2, 1]), np.array([0.47, 0.04]))


def test_alive_mask_stays_off_after_the_goal():
    """From just below the goal, one push reaches it; the car may then roll back out of the goal
    region under the following actions, but the episode has ended: nothing after counts."""
    model = mc.MountainCarMaxEnt(horizon=5)
    x0 = jnp.array([0.4995, 0.0008])
    actions = jnp.array([2, 0, 0, 0, 0])
    states, alive = model.rollout(actions, x0)
    goal = np.asarray(mc.mountaincar_terminated(states[:-1], model.dynamics))
    assert goal[1] and not goal.all()  # reached at t = 1, left again later
    np.testing.assert_array_equal(np.asarray(alive), [True, False, False, False, False])
    assert int(model.num_decisions(actions, x0)) == 1
