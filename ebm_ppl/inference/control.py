r"""Reward posteriors of action-sequence problems (Pendulum, MountainCar) with a plug-in
:math:`\log\hat Z` (THEORY §7.4).

.. math::

    \pi(\theta\mid\mathcal D)\propto\pi(\theta)\prod_{i=1}^n\prod_{j=1}^m
    \frac{e^{-E_\theta(a_{ij}; x_0^i)}}{Z_\theta(x_0^i)},

densities w.r.t. the problem's base measure :math:`b` (uniform torques for the pendulum,
counting measure on trajectories for the mountain car). :math:`Z_\theta(x_0^i)` has no closed form,
so the likelihood plugs in :math:`\log\hat Z_\theta(x_0^i)` from a per-start estimator
(:func:`ebm_ppl.logz.control.per_start`) run with **one fixed key** at every :math:`\theta`
(common random numbers). With importance sampling or IWAE under a proposal that does not depend on
:math:`\theta` (``estimator.smooth``) this is a deterministic smooth surrogate that NUTS can
sample; it targets a **biased** posterior: the likelihood is inflated by about
:math:`m\,\chi^2(p_\theta\|q)/(2K)` per start state, most where the proposal fits worst
(THEORY §7.4). It is not pseudo-marginal and not exact. Report the estimator's PSIS
:math:`\hat k` at the posterior draws (``sample_stats["khat"]``) with the result.

:func:`posterior_model` is plain NumPyro; :func:`sample_posterior` runs BlackJAX NUTS (window
adaptation, chains vmapped) on it through the same adapter as :mod:`ebm_ppl.inference.nuts`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.handlers import seed, trace
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

from ebm_ppl.envs.classic_control import ActionSequenceProblem
from ebm_ppl.inference.base import PosteriorDraws
from ebm_ppl.inference.nuts import _sample_steps, _warmup
from ebm_ppl.inference.posterior import check_draws
from ebm_ppl.logz.base import LogZEstimator

__all__ = ["log_likelihood", "plug_in_khat", "posterior_model", "sample_posterior"]


def _check(problem, estimator, demos):
    if not isinstance(problem, ActionSequenceProblem):
        raise TypeError(
            f"`problem` must be an ActionSequenceProblem; got {type(problem).__name__}."
        )
    if not isinstance(estimator, LogZEstimator) or "trajectory" not in estimator.models:
        raise TypeError(
            "`estimator` must be a LogZEstimator serving 'trajectory' on action sequences (e.g. "
            f"ebm_ppl.logz.control.per_start(...)); got {estimator!r}."
        )
    demos = problem.demos if demos is None else demos
    if demos is None:
        raise ValueError(f"problem {problem.name!r} has no demonstrations; pass `demos=`.")
    demos = jnp.asarray(demos)
    expected = (problem.num_starts, problem.horizon)
    if demos.ndim != 3 or (demos.shape[0], demos.shape[2]) != expected or demos.shape[1] < 1:
        raise ValueError(
            f"`demos` must have shape (n, m, T) = ({expected[0]}, m >= 1, {expected[1]}); got "
            f"{demos.shape}."
        )
    return demos


def log_likelihood(problem, params, demos, estimator, estimator_key) -> jax.Array:
    """Plug-in per-demonstration log-likelihoods
    :math:`-E_\\theta(a_{ij}; x_0^i) - \\log\\hat Z_\\theta(x_0^i)`, shape ``(n, m)``.

    Biased upward by about :math:`\\chi^2/(2K)` per demonstration (THEORY §7.4).

    Args:
        problem: the :class:`~ebm_ppl.envs.classic_control.ActionSequenceProblem`.
        params: energy-model parameters.
        demos: ``(n, m, T)`` action sequences, ``m`` per start state.
        estimator: a per-start estimator (serves ``"trajectory"``).
        estimator_key: its fixed key.
    """
    model = problem.energy_model
    log_z = estimator.run(estimator_key, problem, params, data=demos).log_z
    energy = jax.vmap(jax.vmap(model.energy, in_axes=(None, 0, None)), in_axes=(None, 0, 0))(
        params, demos, problem.start_states
    )
    return -energy - log_z[:, None].astype(energy.dtype)


def posterior_model(problem, demos, estimator_key, *, estimator):
    """NumPyro model of the plug-in posterior (module docstring).

    Sites: the energy model's parameter sites (its ``prior()``) and the factor
    ``"log_likelihood"`` (the sum of :func:`log_likelihood`). Pass the problem, the demos and the
    key as model arguments (pytrees: a jitted sampler compiles once per shape); ``estimator`` is
    static.
    """
    params = problem.energy_model.prior()
    numpyro.factor(
        "log_likelihood", jnp.sum(log_likelihood(problem, params, demos, estimator, estimator_key))
    )


def _prior_sites(problem) -> dict:
    with trace() as tr, seed(rng_seed=0):
        problem.energy_model.prior()
    return {name: site["value"] for name, site in tr.items() if site["type"] == "sample"}


def plug_in_khat(problem, positions: dict, estimator, estimator_key, *, demos=None) -> np.ndarray:
    """The estimator's PSIS :math:`\\hat k` at every draw, largest over the start states (NaN where
    the estimator reports none), shape ``(chains, draws)``.

    Args:
        positions: constrained site values ``(chains, draws, ...)``.
    """
    demos = _check(problem, estimator, demos)
    chains, draws = next(iter(positions.values())).shape[:2]
    flat = {k: jnp.asarray(v).reshape((chains * draws, *v.shape[2:])) for k, v in positions.items()}

    @jax.jit
    def one(params, problem, demos, key):
        info = estimator.run(key, problem, params, data=demos).info
        khat = getattr(info, "khat", jnp.full((), jnp.nan))
        return jnp.nanmax(jnp.atleast_1d(khat))

    khat = jax.lax.map(lambda p: one(p, problem, demos, estimator_key), flat, batch_size=64)
    return np.asarray(khat).reshape(chains, draws)


@functools.lru_cache(maxsize=16)
def _nuts_program(estimator, num_warmup: int, num_samples: int, target_accept_prob: float):
    """Compiled NUTS chains (vmapped) for one estimator and settings; the problem, the demos and
    the estimator's key are arguments, so repeated runs of the same shapes compile once."""
    kwargs = {"estimator": estimator}

    @jax.jit
    def chains(keys, start, problem, demos, key_estimator):
        def logdensity(position):
            return -potential_energy(
                posterior_model, (problem, demos, key_estimator), kwargs, position
            )

        def one(key, position):
            key_warmup, key_draws = jax.random.split(key)
            state, parameters = _warmup(
                key_warmup, logdensity, position, num_warmup, target_accept_prob
            )
            steps = jax.random.split(key_draws, num_samples)
            _, (positions, stats) = _sample_steps(steps, logdensity, state, parameters)
            return positions, stats

        return jax.vmap(one)(keys, start)

    return chains


def sample_posterior(
    rng_key,
    problem: ActionSequenceProblem,
    *,
    estimator: LogZEstimator,
    demos=None,
    num_chains: int = 2,
    num_warmup: int = 500,
    num_samples: int = 500,
    target_accept_prob: float = 0.8,
    khat: bool = True,
) -> PosteriorDraws:
    """BlackJAX NUTS on the plug-in posterior of an action-sequence problem (module docstring).

    Keys: ``key_init, key_sample, key_estimator = split(rng_key, 3)``; the estimator runs with
    ``key_estimator`` at every :math:`\\theta` (fixed draws). Chains start from Stan's default,
    uniform on :math:`(-2, 2)` in the unconstrained space.

    Args:
        rng_key: JAX key.
        problem: the problem (``demos`` default ``problem.demos``, ``(n, m, T)``).
        estimator: a per-start estimator with ``smooth`` True (importance sampling or IWAE under a
            fixed proposal, wrapped by :func:`ebm_ppl.logz.control.per_start`).
        demos: ``(n, m, T)`` action sequences.
        num_chains, num_warmup, num_samples: NUTS settings (chains vmapped).
        target_accept_prob: the step-size adaptation target.
        khat: add the estimator's :math:`\\hat k` at every draw (:func:`plug_in_khat`).

    Returns:
        :class:`~ebm_ppl.inference.base.PosteriorDraws` with constrained positions
        ``(chains, draws, ...)``, NUTS statistics (plus ``"khat"``), and ``info`` naming the
        estimator and the bias (``"likelihood": "plug-in (biased, THEORY 7.4)"``).

    Raises:
        ValueError: a non-smooth estimator (NUTS on it is unsound, THEORY §7.4), bad demos or
            settings; :class:`~ebm_ppl.inference.posterior.NonFiniteDrawsError` after sampling.
    """
    demos = _check(problem, estimator, demos)
    if not estimator.smooth:
        raise ValueError(
            f"estimator {estimator.name!r} is not a smooth function of the parameters with its key "
            "fixed (resampling or adaptive tempering is piecewise constant in theta), so NUTS on "
            "its plug-in likelihood is unsound (THEORY §7.4). Use importance sampling or IWAE with "
            "a fixed proposal."
        )
    for name, value, minimum in (
        ("num_chains", num_chains, 1),
        ("num_warmup", num_warmup, 0),
        ("num_samples", num_samples, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    if not 0.0 < float(target_accept_prob) < 1.0:
        raise ValueError(f"`target_accept_prob` must be in (0, 1); got {target_accept_prob!r}.")
    key_init, key_sample, key_estimator = jax.random.split(rng_key, 3)
    kwargs = {"estimator": estimator}
    args = (problem, demos, key_estimator)
    sites = _prior_sites(problem)
    unconstrained = unconstrain_fn(posterior_model, args, kwargs, sites)
    keys = jax.random.split(key_init, len(unconstrained))
    start = {
        name: jax.random.uniform(
            key, (num_chains, *jnp.shape(value)), jnp.result_type(value), -2.0, 2.0
        )
        for key, (name, value) in zip(keys, sorted(unconstrained.items()), strict=True)
    }

    chains = _nuts_program(estimator, int(num_warmup), int(num_samples), float(target_accept_prob))
    positions, stats = chains(
        jax.random.split(key_sample, num_chains), start, problem, demos, key_estimator
    )
    constrain = lambda u: constrain_fn(posterior_model, args, kwargs, u)
    constrained = jax.vmap(jax.vmap(constrain))(positions)
    constrained = {name: np.asarray(value) for name, value in constrained.items()}
    check_draws(constrained)
    stats = {name: np.asarray(value) for name, value in stats.items()}
    if khat:
        stats["khat"] = plug_in_khat(problem, constrained, estimator, key_estimator, demos=demos)
    info = {"estimator": estimator.name, "likelihood": "plug-in (biased, THEORY 7.4)"}
    return PosteriorDraws(positions=constrained, sample_stats=stats, info=info)
