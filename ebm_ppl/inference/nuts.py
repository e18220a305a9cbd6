"""NUTS on the reward posterior: NumPyro's ``MCMC`` and BlackJAX (the one place using their APIs).

Both take the same unconstrained starting points and return
:class:`~ebm_ppl.inference.base.PosteriorDraws` in the constrained space.

* :func:`sample_numpyro_nuts`: ``numpyro.infer.MCMC`` with ``NUTS``; chains run in parallel when
  the host has enough devices (``numpyro.set_host_device_count`` before JAX starts, as the CLI
  does), else sequentially. ``MCMC.run`` recompiles on every call (DESIGN §7).
* :func:`sample_blackjax_nuts`: Stan-style window adaptation and NUTS, vmapped over chains. The
  compiled programs take the problem and the demonstrations as **arguments** and are cached by
  configuration, so repeated runs on problems of the same shapes compile once.
  :func:`nuts_chain` is the same chain as one pure function (warm-up + sampling) for batching
  whole posteriors with ``jax.vmap`` (simulation-based calibration, the harness).
"""

from __future__ import annotations

import functools
import math

import blackjax
import jax
import numpy as np
from blackjax.adaptation.base import get_filter_adapt_info_fn
from numpyro.infer import MCMC, NUTS

from ebm_ppl.inference.base import PosteriorDraws
from ebm_ppl.inference.posterior import log_density_fn, posterior_model, to_constrained

__all__ = ["nuts_chain", "sample_blackjax_nuts", "sample_numpyro_nuts"]

_PROGRESS_CHUNKS = 20


def _num_chains(start) -> int:
    return int(jax.tree.leaves(start)[0].shape[0])


def sample_numpyro_nuts(
    rng_key,
    problem,
    demos,
    start,
    *,
    model_kwargs,
    num_warmup,
    num_samples,
    target_accept_prob=0.8,
    progress_bar=True,
    chain_method=None,
    estimator_key=None,
) -> PosteriorDraws:
    """NumPyro NUTS with ``num_chains`` = the leading axis of ``start`` (unconstrained sites)."""
    num_chains = _num_chains(start)
    if chain_method is None:
        chain_method = "parallel" if jax.local_device_count() >= num_chains else "sequential"
    mcmc = MCMC(
        NUTS(posterior_model, target_accept_prob=target_accept_prob),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress_bar,
    )
    init = start if num_chains > 1 else jax.tree.map(lambda x: x[0], start)
    mcmc.run(
        rng_key,
        problem,
        demos,
        estimator_key,
        init_params=init,
        extra_fields=(
            "diverging",
            "energy",
            "num_steps",
            "accept_prob",
            "adapt_state.step_size",
            "potential_energy",
        ),
        **model_kwargs,
    )
    positions = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    num_steps = np.asarray(extra["num_steps"])
    stats = {
        "diverging": np.asarray(extra["diverging"]),
        "energy": np.asarray(extra["energy"]),
        "step_size": np.asarray(extra["adapt_state.step_size"]),
        # a tree of depth d has at most 2^d - 1 leapfrog steps
        "tree_depth": np.ceil(np.log2(num_steps + 1)).astype(np.int64),
        "n_steps": num_steps,
        "acceptance_rate": np.asarray(extra["accept_prob"]),
        "lp": -np.asarray(extra["potential_energy"]),
    }
    positions = {name: np.asarray(value) for name, value in positions.items()}
    return PosteriorDraws(
        positions=positions, sample_stats=stats, info={"chain_method": chain_method}
    )


# ------------------------------------------------------------------------------------- BlackJAX
def _warmup(rng_key, logdensity, position, num_warmup, target_accept_prob):
    adaptation = blackjax.window_adaptation(
        blackjax.nuts,
        logdensity,
        target_acceptance_rate=target_accept_prob,
        adaptation_info_fn=get_filter_adapt_info_fn(),
    )
    (state, parameters), _ = adaptation.run(rng_key, position, num_steps=num_warmup)
    return state, parameters


def _sample_steps(keys, logdensity, state, parameters):
    kernel = blackjax.nuts(logdensity, **parameters)

    def one_step(state, key):
        state, info = kernel.step(key, state)
        stats = {
            "diverging": info.is_divergent,
            "energy": info.energy,
            "step_size": parameters["step_size"],
            "tree_depth": info.num_trajectory_expansions,
            "n_steps": info.num_integration_steps,
            "acceptance_rate": info.acceptance_rate,
            "lp": state.logdensity,
        }
        return state, (state.position, stats)

    return jax.lax.scan(one_step, state, keys)


def nuts_chain(
    rng_key,
    problem,
    demos,
    position,
    *,
    model_kwargs,
    num_warmup: int,
    num_samples: int,
    target_accept_prob: float = 0.8,
    estimator_key=None,
):
    """One BlackJAX NUTS chain (window adaptation, then ``num_samples`` draws): pure, vmappable.

    Args:
        rng_key: JAX key.
        problem, demos: the model's arguments (traced).
        position: unconstrained starting point (site dict).
        model_kwargs: static model settings (``likelihood``, ``rationality``, ``q``,
            ``plug_in``).
        estimator_key: the plug-in estimator's fixed key (traced), if any.

    Returns:
        ``(unconstrained positions with a leading (num_samples,) axis, sample-stat dict)``.
    """
    key_warmup, key_sample = jax.random.split(rng_key)
    logdensity = log_density_fn(problem, demos, model_kwargs, estimator_key)
    state, parameters = _warmup(key_warmup, logdensity, position, num_warmup, target_accept_prob)
    keys = jax.random.split(key_sample, num_samples)
    _, (positions, stats) = _sample_steps(keys, logdensity, state, parameters)
    return positions, stats


@functools.lru_cache(maxsize=32)
def _blackjax_programs(likelihood, rationality, q, plug_in, num_warmup, target_accept_prob):
    model_kwargs = {
        "likelihood": likelihood,
        "rationality": rationality,
        "q": q,
        "plug_in": plug_in,
    }

    @jax.jit
    def warmup(keys, positions, problem, demos, estimator_key):
        logdensity = log_density_fn(problem, demos, model_kwargs, estimator_key)
        run = lambda key, position: _warmup(
            key, logdensity, position, num_warmup, target_accept_prob
        )
        return jax.vmap(run)(keys, positions)

    @jax.jit
    def sample(keys, states, parameters, problem, demos, estimator_key):
        logdensity = log_density_fn(problem, demos, model_kwargs, estimator_key)
        run = lambda chain_keys, state, params: _sample_steps(chain_keys, logdensity, state, params)
        return jax.vmap(run)(keys, states, parameters)

    return warmup, sample


def sample_blackjax_nuts(
    rng_key,
    problem,
    demos,
    start,
    *,
    model_kwargs,
    num_warmup,
    num_samples,
    target_accept_prob=0.8,
    progress_bar=True,
    estimator_key=None,
) -> PosteriorDraws:
    """BlackJAX NUTS: window adaptation and sampling, vmapped over the chains of ``start``.

    Sampling runs in up to 20 equal compiled chunks when ``progress_bar`` is on (the last chunk's
    surplus draws are discarded), so the bar moves without a host callback in the hot loop.
    """
    num_chains = _num_chains(start)
    warmup, sample = _blackjax_programs(
        model_kwargs["likelihood"],
        model_kwargs["rationality"],
        model_kwargs["q"],
        model_kwargs.get("plug_in"),
        int(num_warmup),
        float(target_accept_prob),
    )
    key_warmup, key_sample = jax.random.split(rng_key)
    bar = _progress(progress_bar, num_warmup, num_samples, num_chains)
    states, parameters = warmup(
        jax.random.split(key_warmup, num_chains), start, problem, demos, estimator_key
    )
    jax.block_until_ready(states)
    chunk = math.ceil(num_samples / _PROGRESS_CHUNKS) if progress_bar else num_samples
    num_chunks = math.ceil(num_samples / chunk)
    bar.update(num_warmup)
    keys = jax.random.split(key_sample, (num_chains, num_chunks * chunk))
    pieces = []
    for i in range(num_chunks):
        states, piece = sample(
            keys[:, i * chunk : (i + 1) * chunk], states, parameters, problem, demos, estimator_key
        )
        pieces.append(jax.device_get(piece))
        bar.update(min(chunk, num_samples - i * chunk))
    bar.close()
    positions, stats = jax.tree.map(
        lambda *xs: np.concatenate(xs, axis=1)[:, :num_samples], *pieces
    )
    constrained = to_constrained(problem, positions, model_kwargs, batch_ndim=2)
    constrained = {name: np.asarray(value) for name, value in constrained.items()}
    stats = {name: np.asarray(value) for name, value in stats.items()}
    return PosteriorDraws(positions=constrained, sample_stats=stats, info={})


class _NoBar:
    def update(self, _):
        pass

    def close(self):
        pass


def _progress(enabled, num_warmup, num_samples, num_chains):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(
        total=num_warmup + num_samples,
        desc=f"blackjax NUTS ({num_chains} chains, warm-up {num_warmup})",
        unit="step",
    )
