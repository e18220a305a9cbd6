"""PolicyWalk (THEORY §7.5) against the enumerated grid posterior of a tiny MDP.

The reference is computed independently in NumPy: at each of the 9 x 9 = 81 grid points of the
box [-2, 2]^2 with step 0.5, log N(theta; 0, I) plus the BIRL log-likelihood of the demonstrations,
with Q from plain value iteration (hard: max backups; soft: log-sum-exp backups of alpha R), then
normalised over the grid. PolicyWalk targets exactly this discrete distribution.

MCMC frequencies are compared per cell with |f - p| <= 4 MCSE (DESIGN §5), the MCSE from batch
means: each chain's kept draws are cut into 20 consecutive batches, and the MCSE of a cell is the
standard deviation of its per-batch frequencies over all chains' batches divided by
sqrt(#batches). The integrated autocorrelation time of the cell indicators is about 2-5 steps on
this problem (measured while writing the test), so batches of 400-1000 draws are far longer than it
and nearly independent, and 320 batches give a well-estimated standard deviation (a t-quantile
with 319 dof is the normal one to 1 %). Cells with p < 0.005 are pooled into one cell: a rare
cell's batch frequencies are mostly 0, so their spread is not a trustworthy MCSE; the pool keeps
their total mass under test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.energy import LinearReward
from ebm_ppl.inference import policywalk
from ebm_ppl.inference.policywalk import (
    PolicyWalkInfo,
    PolicyWalkState,
    birl_log_posterior,
    init,
    sample_policywalk,
    step,
)
from ebm_ppl.likelihood.birl import BoltzmannTrajectories
from ebm_ppl.problems import Problem
from ebm_ppl.spaces.tabular import TabularMDP

STEP = 0.5
BOUND = 2.0
DISCOUNT = 0.7
NEXT = np.array([[3, 2], [2, 1], [1, 0], [0, 0]])  # main successor of (s, a); 10 % slip
FEATURES = np.array([[-0.54, 0.36], [1.3, 0.95], [-0.7, -1.27], [-0.62, 0.04]])
# three demonstrations of a Boltzmann-rational (hard Q, alpha = 1) expert with theta = (1, -0.5)
DEMOS = np.array(
    [
        [[3, 1], [0, 1], [2, 1], [0, 1], [2, -1]],
        [[2, 0], [1, 0], [2, 0], [1, 1], [1, -1]],
        [[2, 0], [1, 1], [1, 0], [2, 0], [0, -1]],
    ]
)
GRID = np.arange(-4, 5) * STEP
CELLS = np.stack(np.meshgrid(GRID, GRID, indexing="ij"), -1).reshape(-1, 2)  # (81, 2)
P_MIN = 0.005
NUM_BATCHES = 20  # per chain


def transitions() -> np.ndarray:
    num_states, num_actions = NEXT.shape
    out = np.full((num_states, num_actions, num_states), 0.1 / num_states)
    out[np.arange(num_states)[:, None], np.arange(num_actions)[None], NEXT] += 0.9
    return out


def tiny_problem(demos=DEMOS) -> Problem:
    mdp = TabularMDP.from_dense(transitions(), np.full(4, 0.25), 4, features=FEATURES)
    return Problem(
        name="tiny",
        mdp=mdp,
        energy_model=LinearReward(jnp.asarray(FEATURES), prior_scale=1.0),
        demos=demos,
        birl_discount=DISCOUNT,
    )


# ---------------------------------------------------------------------- NumPy reference
def numpy_log_policy(reward, q, alpha=1.0, sweeps=400) -> np.ndarray:
    """Stationary (S, A) log-policy of the BIRL likelihood by plain value iteration."""
    probs = transitions()
    r_sa = np.broadcast_to(np.asarray(reward)[:, None], probs.shape[:2])
    if q == "hard":
        values = np.zeros(probs.shape[0])
        for _ in range(sweeps):
            values = (r_sa + DISCOUNT * probs @ values).max(axis=1)
        logits = alpha * (r_sa + DISCOUNT * probs @ values)
    else:
        values = np.zeros(probs.shape[0])
        for _ in range(sweeps):
            q_values = alpha * r_sa + DISCOUNT * probs @ values
            values = np.log(np.exp(q_values).sum(axis=1))
        logits = alpha * r_sa + DISCOUNT * probs @ values
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def grid_posterior(q, *, likelihood=True) -> np.ndarray:
    """(81,) exact grid posterior (or the prior alone) in the order of CELLS."""
    counts = np.zeros((4, 2))
    for demo in DEMOS:
        for s, a in demo[:-1]:
            counts[s, a] += 1
    log_post = -0.5 * np.sum(CELLS**2, axis=1)
    if likelihood:
        log_post += np.array(
            [np.sum(counts * numpy_log_policy(FEATURES @ theta, q)) for theta in CELLS]
        )
    weights = np.exp(log_post - log_post.max())
    return weights / weights.sum()


# ---------------------------------------------------------------------- frequency check
def cell_ids(theta) -> np.ndarray:
    index = np.round(np.asarray(theta) / STEP).astype(int) + 4
    return index[..., 0] * GRID.size + index[..., 1]


def batch_frequencies(ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(chains * NUM_BATCHES, #kept cells + 1) cell frequencies per batch; last column: pool."""
    chains, draws = ids.shape
    batches = ids[:, : draws - draws % NUM_BATCHES].reshape(chains * NUM_BATCHES, -1)
    freq = np.stack([(batches == c).mean(axis=1) for c in range(CELLS.shape[0])], axis=1)
    return np.concatenate([freq[:, keep], freq[:, ~keep].sum(axis=1, keepdims=True)], axis=1)


def z_scores(ids, exact, reference) -> np.ndarray:
    """(f - p) / MCSE per kept cell and the pool, with cells and pool chosen from ``exact``."""
    keep = exact >= P_MIN
    freq = batch_frequencies(ids, keep)
    estimate = freq.mean(axis=0)
    mcse = freq.std(axis=0, ddof=1) / np.sqrt(freq.shape[0])
    target = np.append(reference[keep], reference[~keep].sum())
    return (estimate - target) / mcse


def check_on_grid(draws):
    theta = np.asarray(draws.positions["theta"])
    np.testing.assert_allclose(theta / STEP, np.round(theta / STEP), atol=1e-9)
    assert np.all(np.abs(theta) <= BOUND + 1e-12)
    return theta


# ---------------------------------------------------------------------- the acceptance tests
def test_hard_policywalk_matches_enumerated_grid_posterior():
    problem = tiny_problem()
    settings = dict(
        q="hard",
        step_size=STEP,
        bounds=(-BOUND, BOUND),
        num_chains=16,
        num_samples=20_000,
        num_warmup=500,
    )
    draws = sample_policywalk(jax.random.key(0), problem, DEMOS, **settings)
    theta = check_on_grid(draws)
    assert theta.shape == (16, 20_000, 2)
    exact = grid_posterior("hard")
    ids = cell_ids(theta)
    z = z_scores(ids, exact, exact)
    assert z.size > 20  # most of the mass sits in well-populated cells
    assert np.max(np.abs(z)) <= 4, np.round(z, 2)
    # negative controls: the same frequencies fail against a wrong target
    assert np.max(np.abs(z_scores(ids, exact, grid_posterior("hard", likelihood=False)))) > 4
    assert np.max(np.abs(z_scores(ids, exact, grid_posterior("soft")))) > 4
    # lp is the log posterior up to a constant: prior normalisation only
    lp = np.asarray(draws.sample_stats["lp"])
    offset = lp - np.log(exact)[ids]
    np.testing.assert_allclose(offset, offset.flat[0], atol=1e-8)
    accept = np.asarray(draws.sample_stats["acceptance_rate"])
    assert accept.shape == (16, 20_000) and 0.2 < accept.mean() < 0.95
    assert draws.info == {
        "method": "policywalk",
        "step_size": STEP,
        "q": "hard",
        "rationality": 1.0,
        "discount": DISCOUNT,
        "bounds": (-BOUND, BOUND),
        "num_warmup": 500,
        "thinning": 1,
    }
    # a second run with other demonstrations of the same shape does not compile again
    sizes = (policywalk._init_chains._cache_size(), policywalk._advance._cache_size())
    other = DEMOS[::-1].copy()
    sample_policywalk(jax.random.key(1), tiny_problem(other), other, **settings)
    assert (policywalk._init_chains._cache_size(), policywalk._advance._cache_size()) == sizes


def test_soft_policywalk_matches_enumerated_grid_posterior():
    draws = sample_policywalk(
        jax.random.key(3),
        tiny_problem(),
        DEMOS,
        q="soft",
        step_size=STEP,
        bounds=(-BOUND, BOUND),
        num_chains=16,
        num_samples=8_000,
        num_warmup=500,
    )
    ids = cell_ids(check_on_grid(draws))
    exact = grid_posterior("soft")
    z = z_scores(ids, exact, exact)
    assert z.size > 20
    assert np.max(np.abs(z)) <= 4, np.round(z, 2)
    assert np.max(np.abs(z_scores(ids, exact, grid_posterior("soft", likelihood=False)))) > 4
    assert np.max(np.abs(z_scores(ids, exact, grid_posterior("hard")))) > 4


# ---------------------------------------------------------------------- target and kernel
@pytest.mark.parametrize("q", ["hard", "soft"])
def test_log_posterior_is_prior_plus_boltzmann_policy_likelihood(q):
    problem = tiny_problem()
    fn = jax.jit(birl_log_posterior(problem, DEMOS, q=q, rationality=1.3, bounds=(-BOUND, BOUND)))
    energy = problem.energy_model
    for theta in ([0.5, -1.0], [2.0, 2.0], [-1.5, 0.0]):
        theta = jnp.asarray(theta)
        likelihood = BoltzmannTrajectories(
            problem.mdp,
            energy.reward({"theta": theta}),
            rationality=1.3,
            discount=DISCOUNT,
            q=q,
        )
        expected = energy.prior_distribution().log_prob(theta) + jnp.sum(
            likelihood.log_prob_policy(DEMOS)
        )
        value, policy, iterations = fn(theta)
        np.testing.assert_allclose(value, expected, rtol=1e-10)
        np.testing.assert_array_equal(policy, jnp.argmax(likelihood.q_values, axis=-1))
        assert int(iterations) >= 1
    assert fn(jnp.array([2.5, 0.0]))[0] == -jnp.inf
    assert fn(jnp.array([0.0, -2.5]))[0] == -jnp.inf


def test_kernel_moves_one_coordinate_on_the_grid_and_respects_bounds():
    problem = tiny_problem()
    fn = birl_log_posterior(problem, DEMOS, q="hard", bounds=(-BOUND, BOUND))

    @jax.jit
    def run(key, position):
        state = init(position, fn)

        def body(state, key):
            new, info = step(key, state, fn, STEP)
            return new, (new, info)

        return state, jax.lax.scan(body, state, jax.random.split(key, 400))[1]

    start, (states, info) = run(jax.random.key(5), jnp.array([BOUND, -BOUND]))
    assert isinstance(start, PolicyWalkState) and isinstance(info, PolicyWalkInfo)
    path = np.concatenate([np.asarray(start.position)[None], np.asarray(states.position)])
    moves = np.abs(np.diff(path, axis=0))
    np.testing.assert_allclose(moves.sum(axis=1)[np.asarray(info.is_accepted)], STEP)
    assert np.all(moves.sum(axis=1)[~np.asarray(info.is_accepted)] == 0)
    assert np.all(np.abs(path) <= BOUND)
    # proposals that leave the box have acceptance probability 0
    assert np.any(np.asarray(info.acceptance_rate) == 0)
    # the kept policy is the optimal one at the kept position (warm starts change nothing)
    for position, policy in zip(states.position[::50], states.policy[::50], strict=True):
        reward = problem.energy_model.reward({"theta": position})
        cold = BoltzmannTrajectories(problem.mdp, reward, discount=DISCOUNT, q="hard")
        np.testing.assert_array_equal(policy, jnp.argmax(cold.q_values, axis=-1))
    assert np.asarray(info.policy_iterations).min() >= 1


def test_init_position_and_progress_bar_chunks_give_the_same_draws():
    problem = tiny_problem()
    settings = dict(
        q="hard",
        step_size=STEP,
        bounds=(-BOUND, BOUND),
        num_chains=3,
        num_samples=40,
        num_warmup=0,
        init_position={"theta": jnp.array([[0.0, 0.5], [1.0, 1.0], [-2.0, 2.0]])},
    )
    plain = sample_policywalk(jax.random.key(7), problem, DEMOS, **settings)
    chunked = sample_policywalk(jax.random.key(7), problem, DEMOS, progress_bar=True, **settings)
    np.testing.assert_array_equal(plain.positions["theta"], chunked.positions["theta"])
    np.testing.assert_array_equal(plain.sample_stats["lp"], chunked.sample_stats["lp"])
    first = np.asarray(plain.positions["theta"])[:, 0]
    moved = np.abs(first - np.asarray(settings["init_position"]["theta"])).sum(axis=1)
    assert np.all(np.isin(np.round(moved, 12), [0.0, STEP]))


def test_bad_inputs():
    problem = tiny_problem()
    run = lambda **kw: sample_policywalk(jax.random.key(0), problem, DEMOS, **kw)  # noqa: E731
    with pytest.raises(ValueError, match="q"):
        run(q="optimal")
    with pytest.raises(ValueError, match="step_size"):
        run(step_size=0.0)
    with pytest.raises(ValueError, match="rationality"):
        run(rationality=-1.0)
    with pytest.raises(ValueError, match="num_samples"):
        run(num_samples=0)
    with pytest.raises(ValueError, match="thinning"):
        run(thinning=0)
    with pytest.raises(ValueError, match="bounds"):
        run(bounds=(1.0, -1.0))
    with pytest.raises(ValueError, match="bounds"):
        run(bounds=(0.1, 0.2), step_size=0.5)
    with pytest.raises(ValueError, match="bounds"):
        run(bounds=(0.0,))
    with pytest.raises(ValueError, match="init_position"):
        run(bounds=(-1.0, 1.0), init_position={"theta": jnp.array([0.0, 1.5])})
    with pytest.raises(ValueError, match="init_position"):
        run(init_position={"theta": jnp.zeros(3)})
    with pytest.raises(ValueError, match="init_position"):
        run(init_position={"other": jnp.zeros(2)})
    with pytest.raises(ValueError, match="demos"):
        sample_policywalk(jax.random.key(0), problem, DEMOS[:, :3])
    with pytest.raises(ValueError, match="rationality"):
        birl_log_posterior(problem, DEMOS, rationality=0.0)
    with pytest.raises(ValueError, match="q"):
        birl_log_posterior(problem, DEMOS, q="optimal")


def test_float32_problem_keeps_float32():
    """Conformance: a float32 problem gives float32 draws and statistics (x64 is on in tests)."""
    mdp = TabularMDP.from_dense(
        transitions().astype(np.float32),
        np.full(4, 0.25, np.float32),
        4,
        features=FEATURES.astype(np.float32),
    )
    problem = Problem(
        name="tiny32",
        mdp=mdp,
        energy_model=LinearReward(jnp.asarray(FEATURES, jnp.float32)),
        birl_discount=DISCOUNT,
    )
    draws = sample_policywalk(
        jax.random.key(0), problem, DEMOS, step_size=STEP, num_chains=2, num_samples=20
    )
    assert draws.positions["theta"].dtype == jnp.float32
    assert draws.sample_stats["lp"].dtype == jnp.float32
    assert np.all(np.isfinite(draws.sample_stats["lp"]))
