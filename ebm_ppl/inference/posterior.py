r"""The reward posterior as a NumPyro model, and :func:`infer_reward`: one call, three samplers.

.. math::

    \pi(\theta, \alpha \mid \mathcal D) \propto \pi(\theta)\,\pi(\alpha)
    \prod_{i=1}^N p_{\theta,\alpha}(\tau_i),

with :math:`p` one of the exact likelihoods of
:func:`~ebm_ppl.likelihood.problem.trajectory_distribution` (THEORY §7.1, §7.5): ``causal``
(the default), ``trajectory`` (:math:`s_0`-conditional, normalised by the trajectory-level
:math:`W_0(s_0)`), ``trajectory_global`` or ``birl``. Each :math:`p(\tau_i)` is the probability of
the whole observed array, dynamics and :math:`\rho_0` included, so the per-demonstration
log-likelihoods of different likelihoods are on the same scale and can be compared by PSIS-LOO.

The posterior is plain NumPyro (:func:`posterior_model`), so users can condition, predict and
reparameterise it like any other model. :func:`infer_reward` validates every input before any
sampling starts, runs NumPyro NUTS, BlackJAX NUTS or PolicyWalk, rejects non-finite draws with
their chain, draw and parameter, and returns an ArviZ DataTree
(:func:`ebm_ppl.diagnostics.to_datatree`).

Identifiability (THEORY §1.6): a constant shift of the reward is invisible to the
:math:`s_0`-conditional and causal likelihoods without termination, and only
:math:`\alpha R` is identified by ``birl``; proper priors keep the posterior proper, and the
DataTree carries ``reward_canonical`` (mean pinned to zero) beside the raw reward.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.handlers import seed, trace
from numpyro.infer.util import constrain_fn, unconstrain_fn

from ebm_ppl._validation import check_choice
from ebm_ppl.exact.tabular import start_states
from ebm_ppl.likelihood.problem import LIKELIHOODS, trajectory_distribution
from ebm_ppl.likelihood.tabular import MaxEntTrajectories
from ebm_ppl.spaces.tabular import TabularMDP, validate_trajectories

__all__ = [
    "LIKELIHOODS",
    "METHODS",
    "NonFiniteDrawsError",
    "PlugIn",
    "check_demos",
    "infer_reward",
    "posterior_model",
]

METHODS = ("nuts", "blackjax-nuts", "policywalk", "exchange")
"""Samplers behind :func:`infer_reward`."""


class NonFiniteDrawsError(ValueError):
    """Raised when a sampler returned NaN or infinite draws (they are never summarised)."""


@dataclasses.dataclass(frozen=True)
class PlugIn:
    """A plug-in likelihood's estimator and start states (static, hashable).

    The trajectory-level likelihood then uses :math:`\\log\\hat Z(\\theta)` from ``estimator``
    run with one **fixed** key (the model argument ``estimator_key``) at every :math:`\\theta`
    (common random numbers): a deterministic, smooth surrogate that NUTS can sample, targeting a
    **biased** posterior (THEORY §7.4). The key is an argument, not part of this static object,
    so runs with other keys reuse the compiled sampler.
    """

    estimator: Any
    starts: tuple

    @classmethod
    def build(cls, estimator, mdp):
        return cls(estimator, tuple(int(s) for s in np.asarray(start_states(mdp))))


def likelihood_distribution(
    problem,
    params,
    *,
    likelihood: str,
    rationality=1.0,
    q: str = "soft",
    plug_in=None,
    estimator_key=None,
):
    """The likelihood of :func:`posterior_model`: exact, or the plug-in surrogate."""
    if plug_in is None:
        return trajectory_distribution(
            problem, params, model=likelihood, rationality=rationality, q=q
        )
    return MaxEntTrajectories.from_estimator(
        estimator_key,
        plug_in.estimator,
        problem,
        params,
        model=likelihood,
        s0=jnp.asarray(plug_in.starts, jnp.int32),
    )


def posterior_model(
    problem,
    demos,
    estimator_key=None,
    *,
    likelihood: str = "causal",
    rationality=1.0,
    q="soft",
    plug_in=None,
):
    """NumPyro model of the reward posterior.

    Sites: the energy model's parameter sites (its ``prior()``), ``"rationality"`` when
    ``rationality`` is a distribution (``birl`` only), and the observed site ``"demos"`` in a plate
    ``"demo"`` of size :math:`N` (so the per-demonstration log-likelihood is available to
    ``numpyro.infer.log_likelihood`` and ArviZ).

    Args:
        problem: a :class:`~ebm_ppl.problems.Problem` (a pytree: pass it as a model argument so
            a jitted sampler compiles once for every problem of the same shapes).
        demos: observed arrays ``(N, T + 1, 2)``.
        likelihood: one of :data:`LIKELIHOODS`.
        rationality: ``birl`` only: a fixed :math:`\\alpha > 0`, or a NumPyro distribution on
            :math:`(0, \\infty)` to sample it. The likelihood identifies only :math:`\\alpha R`;
            the energy model's prior fixes the scale of :math:`R`.
        q: ``birl`` only: ``"soft"`` or ``"hard"``.
        estimator_key: the fixed key of a plug-in likelihood's estimator (with ``plug_in``).
        plug_in: a :class:`PlugIn` for a trajectory-level likelihood with estimated
            :math:`\\log Z` (biased, THEORY §7.4); default the exact likelihood.
    """
    params = problem.energy_model.prior()
    if isinstance(rationality, dist.Distribution):
        rationality = numpyro.sample("rationality", rationality)
    distribution = likelihood_distribution(
        problem,
        params,
        likelihood=likelihood,
        rationality=rationality,
        q=q,
        plug_in=plug_in,
        estimator_key=estimator_key,
    )
    with numpyro.plate("demo", demos.shape[0]):
        numpyro.sample("demos", distribution, obs=demos)


def check_demos(problem, demos) -> jax.Array:
    """Validate demonstrations against ``problem.mdp`` and return them as int32 ``(N, T+1, 2)``.

    Raises:
        ValueError: no demonstrations, an empty batch, or arrays whose shape, horizon, state or
            action range, or transitions do not fit the problem (the demo and step are named).
    """
    if demos is None:
        demos = problem.demos
    if demos is None:
        raise ValueError(
            f"problem {problem.name!r} has no demonstrations; pass `demos=` of shape "
            f"(N, T + 1, 2) = (N, {problem.mdp.horizon + 1}, 2)."
        )
    if np.ndim(demos) == 3 and np.shape(demos)[0] == 0:
        raise ValueError("`demos` is empty (N = 0): the posterior would be the prior.")
    observed, _ = validate_trajectories(problem.mdp, demos, name="demos")
    return jnp.asarray(observed)


def _check_rationality(rationality, likelihood):
    if isinstance(rationality, dist.Distribution):
        if likelihood != "birl":
            raise ValueError(
                f"a `rationality` prior applies to likelihood='birl' only; got "
                f"likelihood={likelihood!r}."
            )
        support = rationality.support
        if support is not dist.constraints.positive and not isinstance(
            support, dist.constraints._GreaterThan | dist.constraints._Interval
        ):
            raise ValueError(
                f"the `rationality` prior must live on (0, inf); got support {support}."
            )
        return rationality
    if likelihood != "birl" and rationality != 1.0:
        raise ValueError(
            f"`rationality` applies to likelihood='birl' only; got {rationality!r} with "
            f"likelihood={likelihood!r}."
        )
    value = float(rationality)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`rationality` must be a finite float > 0; got {rationality!r}.")
    return value


def _check_estimator(estimator, likelihood, method):
    """Validate a log Z estimator for the likelihood; return whether it makes a plug-in."""
    if estimator is None:
        return False
    if likelihood not in estimator.models:
        raise ValueError(
            f"log Z estimator {estimator.name!r} serves models {estimator.models}; it cannot "
            f"serve likelihood={likelihood!r}."
        )
    if estimator.name.startswith("exact"):
        return False
    if method not in ("nuts", "blackjax-nuts"):
        raise ValueError(
            f"an estimated log Z (estimator {estimator.name!r}) makes a plug-in likelihood for "
            f"NUTS; method={method!r} does not take one."
        )
    if not estimator.smooth:
        raise ValueError(
            f"estimator {estimator.name!r} is not a smooth function of the parameters with its "
            "key fixed (resampling or adaptive tempering is piecewise constant in theta), so NUTS "
            "on its plug-in likelihood is unsound (THEORY §7.4). Use importance sampling or IWAE "
            "with a fixed proposal."
        )
    return True


def _model_kwargs(likelihood, rationality, q, plug_in=None):
    return {"likelihood": likelihood, "rationality": rationality, "q": q, "plug_in": plug_in}


def _prior_sites(problem, model_kwargs) -> dict:
    """Trace the prior once: site name -> (distribution, value) for the latent sites."""
    demos = jnp.zeros((1, problem.mdp.horizon + 1, 2), jnp.int32)
    with trace() as tr, seed(rng_seed=0):
        _prior_only(problem, demos, **model_kwargs)
    return {
        name: site
        for name, site in tr.items()
        if site["type"] == "sample" and not site["is_observed"]
    }


def _prior_only(problem, demos, estimator_key=None, *, likelihood, rationality, q, plug_in=None):
    del demos, estimator_key, likelihood, q, plug_in
    problem.energy_model.prior()
    if isinstance(rationality, dist.Distribution):
        numpyro.sample("rationality", rationality)


def check_init_params(problem, init_params, model_kwargs, num_chains: int) -> dict:
    """Validate constrained initial values: finite, the right shapes, inside the prior's support.

    Args:
        init_params: site -> value ``site_shape`` (shared by every chain) or
            ``(num_chains, *site_shape)``.

    Returns:
        site -> ``(num_chains, *site_shape)`` constrained values.
    """
    sites = _prior_sites(problem, model_kwargs)
    unknown = sorted(set(init_params) - set(sites))
    missing = sorted(set(sites) - set(init_params))
    if unknown or missing:
        raise ValueError(
            f"`init_params` must have exactly the latent sites {sorted(sites)}; "
            f"unknown {unknown}, missing {missing}."
        )
    out = {}
    for name, site in sites.items():
        shape = tuple(site["value"].shape)
        value = jnp.asarray(init_params[name], dtype=site["value"].dtype)
        if value.shape == shape:
            value = jnp.broadcast_to(value, (num_chains, *shape))
        if value.shape != (num_chains, *shape):
            raise ValueError(
                f"`init_params[{name!r}]` must have shape {shape} or ({num_chains}, "
                f"*{shape}); got {value.shape}."
            )
        array = np.asarray(value)
        if not np.isfinite(array).all():
            index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
            raise ValueError(
                f"`init_params[{name!r}]` must be finite; got {array[index]} at index {index}."
            )
        inside = np.asarray(site["fn"].support(value)).reshape(num_chains, -1).all(axis=1)
        if inside.all():
            log_prior = np.asarray(site["fn"].log_prob(value)).reshape(num_chains, -1)
            inside = np.isfinite(log_prior).all(axis=1)
        if not inside.all():
            chain = int(np.argwhere(~inside)[0][0])
            raise ValueError(
                f"`init_params[{name!r}]` (chain {chain}) lies outside the support of its prior "
                f"{type(site['fn']).__name__} (support {site['fn'].support}); the prior density "
                "there is zero."
            )
        out[name] = value
    return out


def _default_init(rng_key, problem, model_kwargs, num_chains):
    """Stan's default: unconstrained values uniform on (-2, 2), one draw per chain."""
    sites = _prior_sites(problem, model_kwargs)
    unconstrained = unconstrain_fn(
        _prior_only, (problem, None), model_kwargs, {k: s["value"] for k, s in sites.items()}
    )
    keys = jax.random.split(rng_key, len(unconstrained))
    return {
        name: jax.random.uniform(key, (num_chains, *jnp.shape(value)), minval=-2.0, maxval=2.0)
        for key, (name, value) in zip(keys, sorted(unconstrained.items()), strict=True)
    }


def to_unconstrained(problem, constrained: dict, model_kwargs) -> dict:
    """Map ``(chains, ...)`` constrained values to the sampler's unconstrained space."""
    return jax.vmap(lambda c: unconstrain_fn(_prior_only, (problem, None), model_kwargs, c))(
        constrained
    )


def to_constrained(problem, unconstrained: dict, model_kwargs, batch_ndim: int) -> dict:
    """Map unconstrained values with ``batch_ndim`` leading axes back to the model's sites."""
    fn = lambda u: constrain_fn(_prior_only, (problem, None), model_kwargs, u)
    for _ in range(batch_ndim):
        fn = jax.vmap(fn)
    return fn(unconstrained)


def check_draws(positions: dict) -> None:
    """Raise :class:`NonFiniteDrawsError` naming the first non-finite chain, draw and parameter."""
    problems = []
    for name, value in sorted(positions.items()):
        array = np.asarray(value)
        bad = ~np.isfinite(array)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            chain, draw, element = index[0], index[1], index[2:]
            label = f"{name}{list(element)}" if element else name
            problems.append(
                f"{int(bad.sum())} non-finite value(s) in {name!r}, first at chain {chain}, "
                f"draw {draw}, parameter {label} = {array[index]}"
            )
    if problems:
        raise NonFiniteDrawsError(
            "the sampler returned non-finite draws; they are not summarised: "
            + "; ".join(problems)
            + "."
        )


def infer_reward(
    rng_key,
    problem,
    *,
    method: str = "nuts",
    likelihood: str | None = None,
    demos=None,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    rationality: Any = 1.0,
    q: str = "soft",
    init_params: dict | None = None,
    target_accept_prob: float = 0.8,
    step_size: float | None = None,
    bounds: tuple | None = None,
    thinning: int = 1,
    estimator=None,
    progress_bar: bool = True,
    posterior_predictive: bool = True,
):
    """Sample the reward posterior and return an ArviZ DataTree.

    Args:
        rng_key: JAX key.
        problem: a :class:`~ebm_ppl.problems.Problem` over a :class:`TabularMDP`.
        method: ``"nuts"`` (NumPyro), ``"blackjax-nuts"`` (window adaptation, vmapped chains,
            compiled once per shape), ``"policywalk"`` (grid Metropolis–Hastings,
            THEORY §7.5) or ``"exchange"`` (the exchange algorithm for the trajectory-level
            likelihoods: exact posterior from exact simulation, no Z; THEORY §7.2).
        likelihood: one of :data:`LIKELIHOODS` (default ``problem.model``, or ``"birl"`` for
            ``policywalk``, which needs it).
        demos: ``(N, T + 1, 2)`` observed arrays (default ``problem.demos``).
        num_chains, num_warmup, num_samples: chains, warm-up and kept draws per chain.
        rationality: ``birl``: fixed :math:`\\alpha` or a prior on it (NUTS only).
        q: ``birl``: ``"soft"`` (MCE Q, default) or ``"hard"`` (the paper's Q*; PolicyWalk only,
            since the hard Q is piecewise linear and NUTS needs gradients).
        init_params: constrained starting values per site (shared or one per chain); default
            Stan's uniform(-2, 2) in the unconstrained space (PolicyWalk: a prior draw on the grid).
        target_accept_prob: NUTS step-size adaptation target.
        step_size: PolicyWalk grid step :math:`\\delta` (required for PolicyWalk).
        bounds: PolicyWalk ``(low, high)`` box on the parameters (optional).
        thinning: PolicyWalk keeps every ``thinning``-th step.
        estimator: optional :class:`~ebm_ppl.logz.LogZEstimator` for the trajectory-level
            likelihoods; it must serve ``likelihood``. A non-exact one makes a **plug-in**
            likelihood (NUTS only; ``estimator.smooth`` required: importance sampling or IWAE with
            a fixed proposal), run with one key fixed for the whole run; the posterior is
            **biased** (THEORY §7.4), labelled so in the attributes, with the estimator's k-hat at
            every draw in ``sample_stats.khat``. :func:`ebm_ppl.diagnostics.psis_reweight`
            reweights its draws to the exact posterior.
        progress_bar: show progress while sampling.
        posterior_predictive: compute per-draw occupancy measures and EVD.

    Returns:
        ``xarray.DataTree`` with the groups described in :func:`ebm_ppl.diagnostics.to_datatree`.

    Raises:
        ValueError: on any bad input, before sampling; :class:`NonFiniteDrawsError` after.
    """
    from ebm_ppl.diagnostics import to_datatree

    check_choice("method", method, METHODS)
    if not isinstance(getattr(problem, "mdp", None), TabularMDP):
        raise TypeError(
            f"infer_reward needs a tabular problem (`problem.mdp` a TabularMDP); got a "
            f"{type(problem).__name__} {getattr(problem, 'name', '')!r}."
        )
    if likelihood is None:
        likelihood = "birl" if method == "policywalk" else problem.model
    check_choice("likelihood", likelihood, LIKELIHOODS)
    if likelihood != "birl" and likelihood != "causal":
        if problem.discount != 1.0:
            raise ValueError(
                f"likelihood={likelihood!r} needs discount 1; the problem has {problem.discount}."
            )
    check_choice("q", q, ("soft", "hard"))
    if q == "hard" and method != "policywalk":
        raise ValueError(
            "q='hard' (the hard-optimal Q*, piecewise linear in the reward) needs "
            f"method='policywalk'; got method={method!r}. Use q='soft' with NUTS."
        )
    if method == "exchange" and likelihood not in ("trajectory", "trajectory_global"):
        raise ValueError(
            "method='exchange' needs a likelihood f(x)/Z whose Z does not depend on x: "
            f"'trajectory' or 'trajectory_global'; got {likelihood!r} (the causal and birl "
            "likelihoods are normalised already: use NUTS)."
        )
    if method == "policywalk" and likelihood != "birl":
        raise ValueError(
            f"method='policywalk' samples the Bayesian-IRL posterior: it needs "
            f"likelihood='birl'; got {likelihood!r}."
        )
    for name, value in (
        ("num_chains", num_chains),
        ("num_samples", num_samples),
        ("thinning", thinning),
    ):
        if int(value) != value or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1; got {value!r}.")
    if int(num_warmup) != num_warmup or num_warmup < 0:
        raise ValueError(f"`num_warmup` must be an integer >= 0; got {num_warmup!r}.")
    if not 0.0 < float(target_accept_prob) < 1.0:
        raise ValueError(f"`target_accept_prob` must be in (0, 1); got {target_accept_prob!r}.")
    rationality = _check_rationality(rationality, likelihood)
    if method == "policywalk" and isinstance(rationality, dist.Distribution):
        raise ValueError("method='policywalk' takes a fixed float `rationality`.")
    is_plug_in = _check_estimator(estimator, likelihood, method)
    observed = check_demos(problem, demos)
    key_init, key_sample, key_prior, key_estimator = jax.random.split(rng_key, 4)
    plug_in = PlugIn.build(estimator, problem.mdp) if is_plug_in else None
    estimator_key = key_estimator if is_plug_in else None
    model_kwargs = _model_kwargs(likelihood, rationality, q, plug_in)

    if method == "policywalk":
        from ebm_ppl.inference.policywalk import sample_policywalk

        if step_size is None or not float(step_size) > 0:
            raise ValueError(f"`step_size` (the grid step delta) must be > 0; got {step_size!r}.")
        init_position = None
        if init_params is not None:
            init_position = check_init_params(problem, init_params, model_kwargs, num_chains)
        draws = sample_policywalk(
            key_sample,
            problem,
            observed,
            q=q,
            step_size=float(step_size),
            num_chains=num_chains,
            num_samples=num_samples,
            num_warmup=num_warmup,
            thinning=thinning,
            bounds=bounds,
            rationality=rationality,
            init_position=init_position,
            progress_bar=progress_bar,
        )
    elif method == "exchange":
        from ebm_ppl.inference.exchange import sample_exchange

        if init_params is None:
            unconstrained = _default_init(key_init, problem, model_kwargs, num_chains)
            start = to_constrained(problem, unconstrained, model_kwargs, batch_ndim=1)
        else:
            start = check_init_params(problem, init_params, model_kwargs, num_chains)
        draws = sample_exchange(
            key_sample,
            problem,
            observed,
            start,
            model=likelihood,
            num_warmup=num_warmup,
            num_samples=num_samples,
        )
    else:
        from ebm_ppl.inference.nuts import sample_blackjax_nuts, sample_numpyro_nuts

        if init_params is None:
            start = _default_init(key_init, problem, model_kwargs, num_chains)
        else:
            constrained = check_init_params(problem, init_params, model_kwargs, num_chains)
            start = to_unconstrained(problem, constrained, model_kwargs)
        check_initial_density(problem, observed, start, model_kwargs, estimator_key)
        sampler = sample_numpyro_nuts if method == "nuts" else sample_blackjax_nuts
        draws = sampler(
            key_sample,
            problem,
            observed,
            start,
            model_kwargs=model_kwargs,
            num_warmup=num_warmup,
            num_samples=num_samples,
            target_accept_prob=target_accept_prob,
            progress_bar=progress_bar,
            estimator_key=estimator_key,
        )
    check_draws(draws.positions)
    if plug_in is not None:
        draws = draws._replace(
            sample_stats={
                **draws.sample_stats,
                "khat": _plug_in_khat(problem, draws, plug_in, estimator_key),
            },
            info={**draws.info, "estimator": plug_in.estimator.name},
        )
    return to_datatree(
        draws,
        problem,
        observed,
        likelihood=likelihood,
        rationality=rationality,
        q=q,
        method=method,
        rng_key=rng_key,
        prior_key=key_prior,
        plug_in=plug_in,
        estimator_key=estimator_key,
        posterior_predictive=posterior_predictive,
    )


def _plug_in_khat(problem, draws, plug_in, estimator_key) -> np.ndarray:
    """The estimator's PSIS k-hat at every draw (largest over start states; NaN where the
    estimator has none), ``(chains, draws)``."""
    positions = {k: v for k, v in draws.positions.items() if k != "rationality"}
    chains, num_draws = next(iter(positions.values())).shape[:2]
    flat = jax.tree.map(
        lambda v: jnp.asarray(v).reshape((chains * num_draws, *v.shape[2:])), positions
    )
    starts = jnp.asarray(plug_in.starts, jnp.int32)
    serves_start_states = plug_in.estimator.models[0] == "trajectory"

    def one(params):
        s0 = starts if serves_start_states else None
        info = plug_in.estimator.run(estimator_key, problem, params, s0=s0).info
        khat = getattr(info, "khat", jnp.full((), jnp.nan))
        return jnp.nanmax(jnp.atleast_1d(khat))

    khat = jax.lax.map(jax.jit(one), flat, batch_size=256)
    return np.asarray(khat).reshape(chains, num_draws)


def log_density_fn(problem, demos, model_kwargs, estimator_key=None):
    """Unconstrained log posterior density (up to a constant) as a function of a site dict."""
    from numpyro.infer.util import potential_energy

    return lambda position: (
        -potential_energy(posterior_model, (problem, demos, estimator_key), model_kwargs, position)
    )


@partial(jax.jit, static_argnames=("likelihood", "rationality", "q", "plug_in"))
def _initial_density(problem, demos, start, estimator_key, *, likelihood, rationality, q, plug_in):
    model_kwargs = _model_kwargs(likelihood, rationality, q, plug_in)
    logdensity = log_density_fn(problem, demos, model_kwargs, estimator_key)
    values, grads = jax.vmap(jax.value_and_grad(logdensity))(start)
    finite = jnp.isfinite(values)
    for leaf in jax.tree.leaves(grads):
        finite &= jnp.isfinite(leaf).reshape(finite.shape[0], -1).all(axis=1)
    return values, finite


def check_initial_density(problem, demos, start, model_kwargs, estimator_key=None) -> None:
    """Raise if the log posterior or its gradient is not finite at a chain's starting point."""
    values, finite = _initial_density(problem, demos, start, estimator_key, **model_kwargs)
    finite = np.asarray(finite)
    if not finite.all():
        chain = int(np.argwhere(~finite)[0][0])
        raise ValueError(
            f"the log posterior (or its gradient) is not finite at the initial position of chain "
            f"{chain} (log density {float(np.asarray(values)[chain])}); pass other `init_params`."
        )
