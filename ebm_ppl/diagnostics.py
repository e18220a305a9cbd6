r"""The one place that knows ArviZ's API: DataTrees, summaries, PSIS-LOO, saving and loading.

:func:`to_datatree` turns a sampler's :class:`~ebm_ppl.inference.base.PosteriorDraws` into an
ArviZ 1.x ``xarray.DataTree`` with these groups:

* ``posterior``: the energy model's parameter sites (and ``rationality`` where sampled), the
  reward table per draw ``reward`` (dims ``state[, action[, next_state]]``) and
  ``reward_canonical``, the same table with its mean over all entries pinned to 0 (a constant
  shift is not identified by the trajectory-level likelihoods, THEORY §1.6; state-only tables have
  no shaping direction; for full EPIC canonicalisation of state-action rewards see
  :func:`ebm_ppl.metrics.canonicalize_reward`).
* ``sample_stats``: what the sampler has of ``diverging``, ``energy``, ``step_size``,
  ``tree_depth``, ``n_steps``, ``acceptance_rate``, ``lp``.
* ``log_likelihood``: ``demos`` (chain, draw, demo), the exact log-probability of each whole
  demonstration (dynamics and :math:`\rho_0` included), so PSIS-LOO compares likelihoods.
* ``prior``: prior draws of the same variables (one chain).
* ``observed_data``: ``demos`` (demo, step, column).
* ``constant_data``: ``empirical_occupancy`` (state): the demonstrations' mean number of
  decisions taken in each state; ``true_reward`` and the true parameters for synthetic problems.
* ``posterior_predictive``: ``state_occupancy`` (chain, draw, state), the expected number of
  decisions taken in each state over the horizon under the draw's likelihood model, and ``evd``
  (chain, draw), the hard expected value difference of the draw's reward against the truth
  (THEORY §9.2), where the truth is known.
* attributes: problem, likelihood, method, seed (key data), discount(s), rationality, library
  versions, ``parameter_sites`` and ``grid_shape`` for grid problems.

:func:`summary` states its interval (default: 90 % equal-tailed); :func:`reward_recovery`
reports EPIC and EVD of the posterior against the truth; :func:`loo` and :func:`compare` run
ArviZ's PSIS-LOO with Pareto k-hat; :func:`save` / :func:`load` round-trip through netCDF.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from ebm_ppl.exact.tabular import _probs, _push, occupancy_measures
from ebm_ppl.inference.base import PosteriorDraws
from ebm_ppl.likelihood.problem import trajectory_distribution

__all__ = [
    "compare",
    "empirical_occupancy",
    "load",
    "loo",
    "parameter_sites",
    "psis_reweight",
    "reward_recovery",
    "save",
    "summary",
    "to_datatree",
]

_VERSIONED = ("ebm-ppl", "jax", "numpyro", "blackjax", "arviz", "gymnasium", "optax")
_DRAW_BATCH = 256


def _versions() -> str:
    found = []
    for package in _VERSIONED:
        try:
            found.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{package}==unknown")
    return " ".join(found)


def empirical_occupancy(mdp, demos) -> np.ndarray:
    """Mean number of decisions taken in each state per demonstration, ``(S,)``."""
    demos = np.asarray(demos)
    states, actions = demos[:, :-1, 0], demos[:, :-1, 1]
    decided = actions >= 0
    counts = np.bincount(states[decided], minlength=mdp.num_states)
    return counts / demos.shape[0]


def _decision_occupancy(problem, params, likelihood, rationality, q):
    """Expected decisions per state over the horizon under the draw's likelihood model."""
    mdp = problem.mdp
    if likelihood != "birl":
        reward = problem.energy_model.reward(params)
        discount = problem.discount if likelihood == "causal" else 1.0
        state = occupancy_measures(mdp, reward, model=likelihood, discount=discount).state
        # decisions are taken at live states before the horizon (terminal mass is absorbed)
        return jnp.where(mdp.terminal[None], 0, state[:-1]).sum(axis=0)
    distribution = trajectory_distribution(
        problem, params, model="birl", rationality=rationality, q=q
    )
    policy = jnp.exp(distribution.log_policy) * (~mdp.terminal)[:, None]

    def step(mass, _):
        sa_mass = mass[:, None] * policy
        return _push(mdp, sa_mass, _probs(mdp)), sa_mass.sum(axis=1)

    _, visits = jax.lax.scan(step, mdp.initial_dist.astype(policy.dtype), None, mdp.horizon)
    return visits.sum(axis=0)


def _split_rationality(params_flat, rationality):
    params = {k: v for k, v in params_flat.items() if k != "rationality"}
    return params, params_flat.get("rationality", rationality)


@partial(jax.jit, static_argnames=("likelihood", "rationality", "q", "plug_in"))
def _draw_quantities(problem, demos, flat, estimator_key, *, likelihood, rationality, q, plug_in):
    """Reward table and per-demonstration log-likelihood at each draw (compiled once per shape)."""
    from ebm_ppl.inference.posterior import likelihood_distribution

    def one(params_flat):
        params, alpha = _split_rationality(params_flat, rationality)
        distribution = likelihood_distribution(
            problem,
            params,
            likelihood=likelihood,
            rationality=alpha,
            q=q,
            plug_in=plug_in,
            estimator_key=estimator_key,
        )
        return problem.energy_model.reward(params), distribution.log_prob(demos)

    return jax.lax.map(one, flat, batch_size=_DRAW_BATCH)


@partial(jax.jit, static_argnames=("likelihood", "rationality", "q", "with_evd"))
def _predictive_quantities(problem, flat, *, likelihood, rationality, q, with_evd):
    """Decision occupancy per state and (with the truth) hard EVD at each draw."""
    from ebm_ppl.metrics import expected_value_difference

    def one(params_flat):
        params, alpha = _split_rationality(params_flat, rationality)
        occupancy = _decision_occupancy(problem, params, likelihood, alpha, q)
        if not with_evd:
            return occupancy, jnp.zeros((), occupancy.dtype)
        evd = expected_value_difference(
            problem.true_reward(),
            problem.energy_model.reward(params),
            problem.mdp,
            policy="hard",
            discount=problem.discount,
        )
        return occupancy, evd

    return jax.lax.map(one, flat, batch_size=_DRAW_BATCH)


def _reward_dims(ndim: int) -> list[str]:
    return ["state", "action", "next_state"][:ndim]


def _key_data(rng_key) -> list[int]:
    data = (
        jax.random.key_data(rng_key)
        if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key)
        else rng_key
    )
    return [int(v) for v in np.asarray(data).ravel()]


def to_datatree(
    draws: PosteriorDraws,
    problem,
    demos,
    *,
    likelihood: str,
    rationality,
    q: str,
    method: str,
    rng_key,
    prior_key,
    plug_in=None,
    estimator_key=None,
    posterior_predictive: bool = True,
):
    """Build the ArviZ DataTree of a reward posterior (groups in the module docstring).

    Args:
        draws: the sampler's constrained draws and statistics.
        problem: the problem sampled.
        demos: the validated ``(N, T + 1, 2)`` demonstrations.
        likelihood, rationality, q, method: what was run (stored as attributes).
        rng_key: the key the run started from (its data is stored as ``seed``).
        prior_key: key for the prior draws.
        plug_in: the plug-in likelihood's settings when log Z was estimated (the
            ``log_likelihood`` group then holds the surrogate's values, as sampled).
        estimator_key: the plug-in estimator's fixed key.
        posterior_predictive: compute ``state_occupancy`` and ``evd`` per draw.
    """
    from arviz_base import from_dict
    from numpyro.infer import Predictive

    from ebm_ppl.inference.posterior import _prior_only

    mdp = problem.mdp
    positions = {name: np.asarray(value) for name, value in draws.positions.items()}
    sites = sorted(positions)
    num_chains, num_draws = next(iter(positions.values())).shape[:2]
    flat = {
        name: jnp.asarray(v.reshape((num_chains * num_draws, *v.shape[2:])))
        for name, v in positions.items()
    }

    def unflat(array):
        array = np.asarray(array)
        return array.reshape((num_chains, num_draws, *array.shape[1:]))

    demos = jnp.asarray(demos)
    static = {"likelihood": likelihood, "rationality": rationality, "q": q}
    rewards, log_lik = _draw_quantities(
        problem, demos, flat, estimator_key, plug_in=plug_in, **static
    )
    rewards = unflat(rewards)
    reward_dims = _reward_dims(rewards.ndim - 2)
    canonical = rewards - rewards.mean(axis=tuple(range(2, rewards.ndim)), keepdims=True)

    posterior = dict(positions)
    posterior["reward"] = rewards
    posterior["reward_canonical"] = canonical
    dims = {"reward": reward_dims, "reward_canonical": reward_dims, "demos": ["demo"]}

    model_kwargs = {"likelihood": likelihood, "rationality": rationality, "q": q}
    prior_draws = Predictive(_prior_only, num_samples=num_draws)(
        prior_key, problem, None, **model_kwargs
    )
    prior_rewards = jax.vmap(problem.energy_model.reward)(
        {k: v for k, v in prior_draws.items() if k != "rationality"}
    )
    prior = {name: np.asarray(value)[None] for name, value in prior_draws.items()}
    prior["reward"] = np.asarray(prior_rewards)[None]

    constant_data: dict[str, Any] = {"empirical_occupancy": empirical_occupancy(mdp, demos)}
    dims["empirical_occupancy"] = ["state"]
    true_reward = None
    if problem.true_params is not None:
        true_reward = np.asarray(problem.true_reward())
        constant_data["true_reward"] = true_reward
        dims["true_reward"] = reward_dims
        for name, value in problem.true_params.items():
            value = np.asarray(value)
            constant_data[f"true_{name}"] = value
            dims[f"true_{name}"] = [f"{name}_dim_{i}" for i in range(value.ndim)]

    groups = {
        "posterior": posterior,
        "sample_stats": {k: np.asarray(v) for k, v in draws.sample_stats.items()},
        "log_likelihood": {"demos": unflat(log_lik)},
        "prior": prior,
        "observed_data": {"demos": np.asarray(demos)},
        "constant_data": constant_data,
    }
    dims["observed_demos"] = ["demo", "step", "column"]

    if posterior_predictive:
        occupancy, evd = _predictive_quantities(
            problem, flat, with_evd=true_reward is not None, **static
        )
        groups["posterior_predictive"] = {"state_occupancy": unflat(occupancy)}
        dims["state_occupancy"] = ["state"]
        if true_reward is not None:
            groups["posterior_predictive"]["evd"] = unflat(evd)

    attrs = {
        "problem": problem.name,
        "likelihood": likelihood,
        "model": likelihood,
        "method": method,
        "seed": _key_data(rng_key),
        "discount": float(problem.discount),
        "birl_discount": float(problem.birl_discount),
        "rationality": "sampled"
        if isinstance(rationality, dist.Distribution)
        else float(rationality),
        "q": q,
        "num_demos": int(demos.shape[0]),
        "horizon": int(mdp.horizon),
        "parameter_sites": [s for s in sites],
        "versions": _versions(),
        "reward_canonical": "reward minus its mean over all entries (constant shift pinned)",
        "likelihood_kind": "exact"
        if plug_in is None
        else f"plug-in (biased, THEORY §7.4): log Z by {plug_in.estimator.name} with a fixed key",
    }
    grid_shape = getattr(problem, "grid_shape", None)
    if grid_shape is not None:
        attrs["grid_shape"] = [int(n) for n in grid_shape]
    for key, value in draws.info.items():
        attrs[f"sampler_{key}"] = value if isinstance(value, int | float | str) else str(value)

    observed_dims = {"demos": ["demo", "step", "column"]}
    tree = from_dict(
        {k: v for k, v in groups.items() if k != "observed_data"},
        dims=dims,
    )
    tree.attrs.update(attrs)
    observed = from_dict(
        {"observed_data": groups["observed_data"]},
        dims=observed_dims,
        coords={"column": ["state", "action"]},
    )
    tree["observed_data"] = observed["observed_data"]
    return tree


def parameter_sites(idata) -> list[str]:
    """The sampled parameter sites recorded in ``idata``'s attributes."""
    sites = idata.attrs.get("parameter_sites")
    if isinstance(sites, str):
        return [sites]
    return [str(s) for s in sites]


def summary(idata, *, var_names=None, ci_prob: float = 0.9, ci_kind: str = "eti"):
    """Posterior summary with R-hat, bulk/tail ESS and MCSE of the parameter sites.

    Args:
        idata: a reward-posterior DataTree.
        var_names: variables to summarise (default: the parameter sites).
        ci_prob: interval probability (default 0.9; ArviZ's own default would be 0.89).
        ci_kind: ``"eti"`` (equal-tailed, default) or ``"hdi"``.

    Returns:
        ``pandas.DataFrame``; ``.attrs["interval"]`` states the interval kind and probability.
    """
    from arviz_stats import summary as arviz_summary

    if not 0 < ci_prob < 1:
        raise ValueError(f"`ci_prob` must be in (0, 1); got {ci_prob!r}.")
    if ci_kind not in ("eti", "hdi"):
        raise ValueError(f"`ci_kind` must be 'eti' or 'hdi'; got {ci_kind!r}.")
    var_names = parameter_sites(idata) if var_names is None else var_names
    table = arviz_summary(idata, var_names=var_names, ci_prob=ci_prob, ci_kind=ci_kind)
    kind = "equal-tailed" if ci_kind == "eti" else "highest-density"
    table.attrs["interval"] = f"{ci_prob:.0%} {kind} interval"
    return table


def reward_recovery(idata, problem, *, reward=None, cost=None, ci_prob: float = 0.9) -> dict:
    """EPIC and EVD of the posterior against the true reward (THEORY §9).

    The truth is ``problem.true_reward()`` unless given, by keyword only, as ``reward=`` or as
    ``cost=`` (:math:`c = -r`), so a cost table can never be taken for a reward.

    Returns a dict with the EPIC distance of the posterior-mean reward, the mean and
    ``ci_prob`` equal-tailed interval of the per-draw EPIC and hard EVD, and the hard EVD of the
    posterior-mean reward.
    """
    from ebm_ppl.metrics import epic_distance, epic_distances, expected_value_difference

    if reward is not None and cost is not None:
        raise ValueError("pass the truth as either `reward=` or `cost=`, not both.")
    if reward is not None:
        true_reward = jnp.asarray(reward)
    elif cost is not None:
        true_reward = -jnp.asarray(cost)
    elif problem.true_params is None:
        raise ValueError(
            f"problem {problem.name!r} has no true parameters: pass `reward=` or `cost=`."
        )
    else:
        true_reward = problem.true_reward()
    rewards = np.asarray(idata["posterior"]["reward"])
    flat = jnp.asarray(rewards.reshape((-1, *rewards.shape[2:])))
    mean_reward = flat.mean(axis=0)
    epic = np.asarray(epic_distances(true_reward, flat, problem.mdp, problem.discount))
    lower, upper = (1 - ci_prob) / 2, (1 + ci_prob) / 2
    report = {
        "epic_posterior_mean": float(
            epic_distance(true_reward, mean_reward, problem.mdp, problem.discount)
        ),
        "epic_mean": float(epic.mean()),
        "epic_interval": [float(np.quantile(epic, lower)), float(np.quantile(epic, upper))],
        "evd_posterior_mean": float(
            expected_value_difference(
                true_reward, mean_reward, problem.mdp, policy="hard", discount=problem.discount
            )
        ),
        "interval": f"{ci_prob:.0%} equal-tailed",
    }
    if "posterior_predictive" in idata.children and "evd" in idata["posterior_predictive"]:
        evd = np.asarray(idata["posterior_predictive"]["evd"]).ravel()
        report["evd_mean"] = float(evd.mean())
        report["evd_interval"] = [float(np.quantile(evd, lower)), float(np.quantile(evd, upper))]
    return report


def loo(idata):
    """PSIS-LOO over demonstrations (ArviZ), with the Pareto k-hat of each left-out demo."""
    from arviz_stats import loo as arviz_loo

    return arviz_loo(idata, pointwise=True, var_name="demos")


def compare(posteriors: dict):
    """Compare reward posteriors fitted to the **same** demonstrations by PSIS-LOO.

    Args:
        posteriors: name -> DataTree (e.g. one per likelihood).

    Returns:
        ArviZ's comparison table (elpd, p, elpd differences, weights) with a ``pareto_k_max``
        column: the largest PSIS k-hat over left-out demonstrations (reliable below 0.7).
    """
    from arviz_stats import compare as arviz_compare

    observed = [np.asarray(tree["observed_data"]["demos"]) for tree in posteriors.values()]
    for name, demos in zip(posteriors, observed, strict=True):
        if demos.shape != observed[0].shape or not np.array_equal(demos, observed[0]):
            raise ValueError(
                f"posterior {name!r} was fitted to different demonstrations; LOO comparison "
                "needs the same data."
            )
    table = arviz_compare(posteriors, var_name="demos")
    table["pareto_k_max"] = [
        float(np.max(loo(posteriors[name]).pareto_k.values)) for name in table.index
    ]
    return table


def save(idata, path) -> pathlib.Path:
    """Write the DataTree to netCDF (``.nc``, h5netcdf engine) or zarr (``.zarr``)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zarr":
        try:
            import zarr  # noqa: F401
        except ImportError as error:
            raise ImportError(
                "saving to `.zarr` needs the optional `zarr` package; install it or save to `.nc`."
            ) from error
        idata.to_zarr(path, mode="w")
    else:
        idata.to_netcdf(path, engine="h5netcdf")
    return path


def load(path):
    """Read a DataTree written by :func:`save` fully into memory."""
    import xarray as xr

    path = pathlib.Path(path)
    engine = "zarr" if path.suffix == ".zarr" else "h5netcdf"
    with xr.open_datatree(path, engine=engine) as tree:
        return tree.load()


def psis_reweight(rng_key, idata, problem, *, num_draws: int | None = None):
    """Reweight a surrogate posterior's draws to the exact posterior by PSIS (THEORY §7.4, §7.6).

    For draws :math:`\\theta_s` of a surrogate posterior :math:`\\tilde\\pi` (a plug-in
    likelihood with estimated :math:`\\log Z`), the log weights
    :math:`\\log w_s = \\log\\pi(\\theta_s\\mid\\mathcal D)
    - \\log\\tilde\\pi(\\theta_s\\mid\\mathcal D) = \\sum_i \\log p_{\\theta_s}(\\tau_i)
    - \\sum_i \\log\\tilde p_{\\theta_s}(\\tau_i)` (the priors cancel) are Pareto-smoothed and
    the draws resampled (systematic resampling) into a posterior for the **exact** likelihood.
    Consistent as the number of draws grows; reliable only when :math:`\\hat k` is below the
    threshold of THEORY §7.6 (reported, with ``ok``).

    Args:
        rng_key: key for the resampling.
        idata: a reward-posterior DataTree whose ``log_likelihood`` holds the surrogate's values.
        problem: the problem it was fitted to (the exact likelihood must be computable).
        num_draws: draws in the output (default: all the input's draws).

    Returns:
        A DataTree with ``posterior`` (one chain of resampled draws: parameter sites and
        ``reward``), ``sample_stats.log_weight`` (the smoothed, normalised log weight of each
        input draw) and attributes ``khat``, ``khat_threshold``, ``ok``, ``ess`` (of the smoothed
        weights), ``method`` and ``likelihood_kind``.
    """
    from arviz_base import from_dict
    from arviz_stats import ess as arviz_ess

    from ebm_ppl.logz.psis import khat_threshold, psis_smooth

    sites = parameter_sites(idata)
    posterior = idata["posterior"]
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    total = chains * draws
    flat = {
        name: jnp.asarray(np.asarray(posterior[name]).reshape((total, *posterior[name].shape[2:])))
        for name in sites
    }
    likelihood = str(idata.attrs["likelihood"])
    rationality = idata.attrs["rationality"]
    if rationality == "sampled":
        raise ValueError("psis_reweight needs a fixed `rationality` (it was sampled).")
    demos = jnp.asarray(idata["observed_data"]["demos"].values)
    static = {"likelihood": likelihood, "rationality": float(rationality), "q": idata.attrs["q"]}
    _, exact = _draw_quantities(problem, demos, flat, None, plug_in=None, **static)
    surrogate = np.asarray(idata["log_likelihood"]["demos"]).reshape(total, -1).sum(axis=1)
    log_weights = np.asarray(exact).sum(axis=1) - surrogate
    relative = arviz_ess(log_weights.reshape(chains, draws), relative=True)
    r_eff = float(np.clip(np.asarray(relative), 1e-3, 1.0))
    smoothed = psis_smooth(jnp.asarray(log_weights), r_eff=r_eff)
    normalised = np.asarray(
        smoothed.log_weights - jax.scipy.special.logsumexp(smoothed.log_weights)
    )
    probs = np.exp(normalised)
    num_draws = total if num_draws is None else int(num_draws)
    offset = float(jax.random.uniform(rng_key))
    positions = (offset + np.arange(num_draws)) / num_draws
    index = np.minimum(np.searchsorted(np.cumsum(probs), np.asarray(positions)), total - 1)
    resampled = {name: np.asarray(value)[index][None] for name, value in flat.items()}
    rewards = np.asarray(posterior["reward"]).reshape((total, *posterior["reward"].shape[2:]))
    resampled["reward"] = rewards[index][None]
    khat = float(smoothed.khat)
    threshold = khat_threshold(total)
    tree = from_dict(
        {
            "posterior": resampled,
            "sample_stats": {"log_weight": normalised.reshape(1, total)},
        },
        dims={"reward": _reward_dims(rewards.ndim - 1)},
    )
    tree.attrs.update(
        {
            key: value
            for key, value in idata.attrs.items()
            if key not in ("method", "likelihood_kind")
        }
    )
    tree.attrs.update(
        {
            "method": f"psis-reweighted({idata.attrs.get('method', '')})",
            "likelihood_kind": "exact, by PSIS reweighting of the surrogate's draws",
            "khat": khat,
            "khat_threshold": float(threshold),
            "ok": int(khat < threshold),
            "ess": float(1.0 / np.sum(probs**2)),
            "r_eff": r_eff,
        }
    )
    return tree
