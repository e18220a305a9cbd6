r"""The exchange algorithm (Murray, Ghahramani & MacKay 2006; THEORY §7.2): exact posterior, no Z.

For a likelihood :math:`p_\theta(x) = f_\theta(x)/Z(\theta)` whose :math:`Z` does not depend on
:math:`x` (the trajectory-level models, :math:`f_\theta(\tau) = b(\tau)e^{R_\theta(\tau)}`), each
step proposes :math:`\theta' = \theta + \sigma\varepsilon` (a symmetric Gaussian random walk), draws
auxiliary data :math:`y_{1:N}\sim p_{\theta'}` **exactly** (one per demonstration; for the
:math:`s_0`-conditional model from the same :math:`s_0^i` as the data) and accepts with

.. math::

    \alpha = \min\Big\{1, \frac{\pi(\theta')\prod_i f_{\theta'}(x_i)\prod_i f_\theta(y_i)}
    {\pi(\theta)\prod_i f_\theta(x_i)\prod_i f_{\theta'}(y_i)}\Big\}.

Every :math:`Z` cancels (so do the base measures :math:`b`), and the chain targets the **exact**
posterior: no estimator, no bias. It is the reference sampler for checking approximate methods
when :math:`Z` is hard but exact simulation is easy. It does not apply to the causal model with
stochastic dynamics (that likelihood is already normalised and needs no exchange step).
Acceptance degrades as :math:`N` grows.

Problems: tabular ones (auxiliary data by the exact backward-recursion sampler) and
linear-Gaussian ones (:class:`~ebm_ppl.continuous.LinearGaussianProblem`, auxiliary
trajectories drawn exactly from the trajectory-level soft-Riccati solution from each
demonstration's :math:`x_0`, THEORY §8.1; :math:`f_\theta = e^{-c_\theta}` times the dynamics
density, which cancels). For LQR the ``"trajectory"`` model is the problem's likelihood when
``problem.model == "trajectory"`` or the dynamics are deterministic (then it equals the causal
one).

The random-walk scale adapts during warm-up only (Robbins–Monro on :math:`\log\sigma` toward an
acceptance rate of 0.3) and is then frozen, so the kept draws come from a fixed, valid kernel.
Samplers follow BlackJAX: :func:`init` / :func:`step` with NamedTuple state and info; the driver
:func:`sample_exchange` vmaps chains and scans steps in one compiled program.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import log_density

from ebm_ppl._validation import check_choice
from ebm_ppl.continuous import LinearGaussianProblem
from ebm_ppl.exact import lqr as exact_lqr
from ebm_ppl.exact.sampling import sample_trajectories
from ebm_ppl.exact.trajectory import _map_batch, trajectory_return
from ebm_ppl.inference.base import PosteriorDraws

__all__ = ["ExchangeInfo", "ExchangeState", "init", "sample_exchange", "step"]

MODELS = ("trajectory", "trajectory_global")
TARGET_ACCEPTANCE = 0.3


class ExchangeState(NamedTuple):
    """Position (flat parameter vector), its log prior and :math:`\\sum_i\\log f_\\theta(x_i)`."""

    position: jax.Array
    log_prior: jax.Array
    log_f_data: jax.Array


class ExchangeInfo(NamedTuple):
    """Acceptance probability of the proposal and whether it was accepted."""

    acceptance_rate: jax.Array
    is_accepted: jax.Array


def _log_prior(problem, unravel, position):
    params = unravel(position)
    value, _ = log_density(problem.energy_model.prior, (), {}, params)
    return value


def _log_f(problem, unravel, position, observed):
    """:math:`\\sum_i R_\\theta(\\tau_i)` (the base measure cancels in every ratio)."""
    params = unravel(position)
    if isinstance(problem, LinearGaussianProblem):
        return jnp.sum(problem.energy_model.reward(params, observed.states, observed.controls))
    reward = problem.energy_model.reward(params)
    return _map_batch(lambda tau: trajectory_return(problem.mdp, reward, tau), observed).sum()


def _auxiliary(rng_key, problem, params, demos, model):
    """Exact draws of :math:`p_{\\theta}`, one per demonstration (from its start state for the
    conditional model)."""
    if isinstance(problem, LinearGaussianProblem):
        solution = exact_lqr.soft_riccati(
            problem.system, problem.cost_matrices(params), model="trajectory"
        )
        return exact_lqr.sample_trajectories(rng_key, problem.system, solution, demos.states[:, 0])
    reward = problem.energy_model.reward(params)
    if model == "trajectory":
        return sample_trajectories(rng_key, problem.mdp, reward, model=model, s0=demos[:, 0, 0])
    return sample_trajectories(
        rng_key, problem.mdp, reward, model=model, num_samples=demos.shape[0]
    )


def init(position, problem, demos, unravel) -> ExchangeState:
    """Initial state at a flat ``position``."""
    return ExchangeState(
        position=position,
        log_prior=_log_prior(problem, unravel, position),
        log_f_data=_log_f(problem, unravel, position, demos),
    )


def step(rng_key, state: ExchangeState, problem, demos, unravel, *, model: str, scale):
    """One exchange move with a Gaussian random-walk proposal of scale ``scale``."""
    key_move, key_aux, key_accept = jax.random.split(rng_key, 3)
    proposal = state.position + scale * jax.random.normal(key_move, state.position.shape)
    aux = _auxiliary(key_aux, problem, unravel(proposal), demos, model)
    new_log_prior = _log_prior(problem, unravel, proposal)
    new_log_f_data = _log_f(problem, unravel, proposal, demos)
    log_ratio = (
        new_log_prior
        + new_log_f_data
        + _log_f(problem, unravel, state.position, aux)
        - state.log_prior
        - state.log_f_data
        - _log_f(problem, unravel, proposal, aux)
    )
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
    accepted = jnp.log(jax.random.uniform(key_accept, dtype=log_ratio.dtype)) < log_ratio
    new_state = ExchangeState(proposal, new_log_prior, new_log_f_data)
    state = jax.tree.map(lambda new, old: jnp.where(accepted, new, old), new_state, state)
    return state, ExchangeInfo(acceptance_rate=accept_prob, is_accepted=accepted)


@partial(jax.jit, static_argnames=("unravel", "model", "num_warmup", "num_samples"))
def _run(keys, positions, problem, demos, *, unravel, model, num_warmup, num_samples):
    def chain(key, position):
        key_warmup, key_sample = jax.random.split(key)
        state = init(position, problem, demos, unravel)
        dtype = position.dtype

        def adapt(carry, inputs):
            state, log_scale = carry
            i, step_key = inputs
            state, info = step(
                step_key, state, problem, demos, unravel, model=model, scale=jnp.exp(log_scale)
            )
            rate = (i + 1.0) ** -0.6
            log_scale = log_scale + rate * (info.acceptance_rate - TARGET_ACCEPTANCE)
            return (state, log_scale), None

        log_scale0 = jnp.log(jnp.asarray(0.5, dtype) / jnp.sqrt(position.shape[0]))
        (state, log_scale), _ = jax.lax.scan(
            adapt,
            (state, log_scale0),
            (jnp.arange(num_warmup, dtype=dtype), jax.random.split(key_warmup, num_warmup)),
        )
        scale = jnp.exp(log_scale)

        def sample(state, step_key):
            state, info = step(step_key, state, problem, demos, unravel, model=model, scale=scale)
            stats = {
                "acceptance_rate": info.acceptance_rate,
                "lp": state.log_prior + state.log_f_data,
                "step_size": scale,
            }
            return state, (state.position, stats)

        _, (draws, stats) = jax.lax.scan(sample, state, jax.random.split(key_sample, num_samples))
        return draws, stats

    return jax.vmap(chain)(keys, positions)


def sample_exchange(
    rng_key,
    problem,
    demos,
    start,
    *,
    model: str = "trajectory",
    num_warmup: int = 1000,
    num_samples: int = 1000,
) -> PosteriorDraws:
    """Exchange-algorithm chains on the trajectory-level posterior of ``problem``.

    Args:
        rng_key: JAX key.
        problem: a tabular :class:`~ebm_ppl.problems.Problem` or a
            :class:`~ebm_ppl.continuous.LinearGaussianProblem` (its energy model's prior must be
            on unconstrained parameters, as every built-in energy model's is).
        demos: validated ``(N, T + 1, 2)`` demonstrations (tabular), or
            :class:`~ebm_ppl.spaces.linear_gaussian.GaussianTrajectories` (LQR).
        start: site dict of ``(num_chains, *site_shape)`` starting values.
        model: ``"trajectory"`` (auxiliary data from the demos' start states) or
            ``"trajectory_global"``.
        num_warmup: steps adapting the random-walk scale (discarded).
        num_samples: kept draws per chain.

    Returns:
        :class:`~ebm_ppl.inference.base.PosteriorDraws`; ``sample_stats`` has
        ``acceptance_rate``, ``lp`` (log prior + :math:`\\sum_i R_\\theta(x_i)`, up to the
        :math:`Z` terms) and ``step_size`` (the frozen random-walk scale).
    """
    check_choice("model", model, MODELS)
    if isinstance(problem, LinearGaussianProblem):
        demos = _lqr_demos(problem, demos, model)
    else:
        demos = jnp.asarray(demos)
    template = problem.energy_model.init_params()
    _, unravel = ravel_pytree(template)
    flat_start = jax.vmap(lambda p: ravel_pytree(p)[0])(start)
    num_chains = flat_start.shape[0]
    keys = jax.random.split(rng_key, num_chains)
    draws, stats = _run(
        keys,
        flat_start,
        problem,
        demos,
        unravel=_Unravel(unravel, template),
        model=model,
        num_warmup=int(num_warmup),
        num_samples=int(num_samples),
    )
    positions = jax.vmap(jax.vmap(unravel))(draws)
    return PosteriorDraws(
        positions={name: np.asarray(value) for name, value in positions.items()},
        sample_stats={name: np.asarray(value) for name, value in stats.items()},
        info={"model": model, "target_acceptance": TARGET_ACCEPTANCE},
    )


def _lqr_demos(problem, demos, model):
    """Validated LQR demonstrations for the exchange step (the conditional model only)."""
    from ebm_ppl.spaces.linear_gaussian import validate_trajectories

    if model != "trajectory":
        raise ValueError(
            "an LQR problem's likelihood is conditional on x_0: `model` must be 'trajectory'; "
            f"got {model!r}."
        )
    if problem.model != "trajectory" and not problem.system.is_deterministic():
        raise ValueError(
            "the exchange algorithm needs a likelihood f(x)/Z(theta): for an LQR problem with "
            "noise that is the trajectory-level model; this problem's model is "
            f"{problem.model!r} (use NUTS on its exact likelihood, or problem.replace(model="
            "'trajectory'))."
        )
    demos = problem.demos if demos is None else demos
    if demos is None:
        raise ValueError(f"`demos` is None and problem {problem.name!r} has no demonstrations.")
    demos = validate_trajectories(problem.system, demos, name="demos")
    if jnp.ndim(demos.states) != 3:
        raise ValueError(
            f"`demos.states` must have one batch axis (N, T + 1, n); got {demos.states.shape}."
        )
    return jax.tree.map(jnp.asarray, demos)


class _Unravel:
    """A hashable ``unravel`` (static under jit), keyed by the parameter template's structure."""

    def __init__(self, unravel, template):
        self._unravel = unravel
        leaves, treedef = jax.tree.flatten(template)
        self._key = (treedef, tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves))

    def __call__(self, flat):
        return self._unravel(flat)

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Unravel) and self._key == other._key
