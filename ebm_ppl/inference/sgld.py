r"""SGLD and SGHMC over the parameters of an EBM, with :math:`\nabla\log Z` by persistent chains.

The posterior of an energy model on :math:`\mathbb R^d` given data :math:`x_{1:N}` (THEORY §7)

.. math::

    \pi(\theta\mid x_{1:N}) \propto \pi(\theta)\prod_{i=1}^N \frac{e^{-E_\theta(x_i)}}{Z(\theta)}

is doubly intractable: :math:`Z(\theta)` changes with :math:`\theta`. Its gradient is not,
because :math:`\nabla_\theta\log Z = -\mathbb E_{p_\theta}[\nabla_\theta E_\theta]`
(THEORY §1.5):

.. math::

    \nabla_\theta\log\pi(\theta\mid x_{1:N}) = \nabla_\theta\log\pi(\theta)
    - \sum_{i=1}^N\nabla_\theta E_\theta(x_i)
    + N\,\mathbb E_{p_\theta}[\nabla_\theta E_\theta(x)].

This module runs stochastic-gradient MCMC on it (in the prior's unconstrained space, the
Jacobian of the transform included), with

* the **data term** exact (``batch_size=None``, the default) or on a random minibatch of
  ``batch_size`` points scaled by :math:`N/n` (unbiased);
* the **expectation** from ``num_particles`` persistent Markov chains on :math:`x`
  (:func:`ebm_ppl.mcmc.chains.pcd_gradient`), moved ``num_mcmc_steps`` transitions of a
  BlackJAX kernel under the current :math:`\theta` before every gradient evaluation, started at
  data points and carried along the whole run (one set per SGMCMC chain);
* the update of BlackJAX's SGLD (``blackjax.sgld``: Euler–Maruyama for the overdamped Langevin
  diffusion, :math:`\theta' = \theta + \epsilon\hat g + \sqrt{2\epsilon}\,\xi`) or SGHMC
  (BlackJAX's ``sgmcmc.diffusions.sghmc`` solver with friction :math:`\alpha`, one gradient per
  step and a persistent momentum; BlackJAX's ``blackjax.sghmc`` kernel resamples the momentum
  and takes several gradients per call, which would reuse one :math:`\nabla\log Z` estimate at
  several positions).

**The result is approximate**, and the DataTree says so (``attrs["approximate"] = 1`` and
``attrs["likelihood_kind"]``). The biases, none of which the Monte Carlo error shows:

* *discretisation*: a constant step :math:`\epsilon` and no Metropolis correction leave an
  :math:`O(\epsilon)` bias in the stationary law (for a Gaussian posterior of variance
  :math:`\sigma^2`, SGLD inflates the variance by the factor :math:`1/(1 - \epsilon/2\sigma^2)`);
* *gradient noise*: the persistent-chain and minibatch noise is not corrected for (no
  :math:`\hat B` term), which inflates the variance further, by about
  :math:`\epsilon N^2\mathrm{Var}(\nabla E)/(2M)` per step relative to the injected noise for
  :math:`M` particles; it vanishes as :math:`\epsilon \to 0`;
* *persistent-chain lag*: the particles follow :math:`p_{\theta_{t-1}}, p_{\theta_{t-2}},
  \dots` rather than :math:`p_{\theta_t}`; the lag shrinks as :math:`\epsilon` falls and as
  ``num_mcmc_steps`` grows, and a kernel that mixes poorly on :math:`p_\theta` (multimodal
  energies) biases :math:`\nabla\log Z` with no warning but a low ``sample_stats.pcd_ess``.

Check a run by halving ``step_size`` (the posterior should not move beyond its Monte Carlo
error) and, where :math:`\log Z(\theta)` is known, against NUTS on the exact likelihood.

References: Welling & Teh 2011 (SGLD); Chen, Fox & Guestrin 2014 (SGHMC); Ma, Chen & Fox 2015
(the SGHMC parameterisation BlackJAX follows); Younes 1999 and Tieleman 2008 (persistent
chains); THEORY §1.5, §7.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import blackjax
import blackjax.sgmcmc.diffusions
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

from ebm_ppl._validation import check_choice
from ebm_ppl.mcmc.chains import (
    KERNELS,
    ChainInfo,
    Kernel,
    PersistentChains,
    init_chains_from_data,
    mcmc_kernel,
    nll_gradient,
    pcd_gradient,
)

__all__ = [
    "METHODS",
    "SGMCMCInfo",
    "SGMCMCState",
    "infer_sgmcmc",
    "init",
    "log_posterior_gradient",
    "step",
]

METHODS = ("sgld", "sghmc")
"""Stochastic-gradient samplers of :func:`infer_sgmcmc`."""


class SGMCMCState(NamedTuple):
    """State of one SGMCMC chain (no keys inside).

    Attributes:
        position: site -> unconstrained value (the prior's sites).
        momentum: site -> momentum of SGHMC, like ``position`` (zeros, unused, for SGLD).
        chains: the persistent chains on :math:`x`, positions ``(M, d)``.
    """

    position: Any
    momentum: Any
    chains: PersistentChains


class SGMCMCInfo(NamedTuple):
    """Diagnostics of one step.

    Attributes:
        acceptance_rate: ``()`` mean acceptance of the persistent chains' kernel this step.
        pcd_ess: ``()`` ESS of the persistent chains' energy trace this step (NaN for fewer
            than 4 steps per gradient, :data:`ebm_ppl.mcmc.chains.MIN_STEPS_FOR_ESS`).
    """

    acceptance_rate: jax.Array
    pcd_ess: jax.Array


# ----------------------------------------------------------------------------- the gradient
def _prior_model(energy_model):
    energy_model.prior()


def _constrain(energy_model, position):
    return constrain_fn(_prior_model, (energy_model,), {}, position)


def log_posterior_gradient(energy_model, position, batch, grad_log_z, num_data):
    r"""Gradient of the log posterior in the unconstrained space, with :math:`\nabla\log Z` given.

    .. math::

        \nabla_u\Big[\log\pi(\theta(u)) + \log|J(u)|\Big] - N\,J(u)^\top\Big(\frac1n
        \sum_{i\in\text{batch}}\nabla_\theta E_\theta(x_i) + \widehat{\nabla_\theta\log Z}\Big)

    (:math:`\theta = \theta(u)` the prior's constraining transform, :math:`J` its Jacobian).

    Args:
        energy_model: the problem's energy model (``prior()``, ``energy(params, x)``).
        position: site -> unconstrained value :math:`u`.
        batch: ``(n, d)`` data points (all ``N`` for the exact data term).
        grad_log_z: estimate of :math:`\nabla_\theta\log Z` at :math:`\theta(u)`, a pytree like
            the constrained parameters.
        num_data: :math:`N`.

    Returns:
        site -> gradient, like ``position``.
    """
    params, pullback = jax.vjp(functools.partial(_constrain, energy_model), position)
    nll = nll_gradient(params, batch, energy_model.energy, grad_log_z)
    (likelihood,) = pullback(jax.tree.map(lambda g: -num_data * g, nll))
    prior = jax.grad(lambda u: -potential_energy(_prior_model, (energy_model,), {}, u))(position)
    return jax.tree.map(jnp.add, prior, likelihood)


# ----------------------------------------------------------------------------- init / step
def init(rng_key, position, data, num_particles: int) -> SGMCMCState:
    """SGMCMC state at an unconstrained ``position``, with persistent chains started at data."""
    return SGMCMCState(
        position=position,
        momentum=jax.tree.map(jnp.zeros_like, position),
        chains=init_chains_from_data(rng_key, data, num_particles),
    )


def step(
    rng_key,
    state: SGMCMCState,
    problem,
    *,
    method: str,
    step_size,
    kernel: Kernel,
    num_mcmc_steps: int,
    batch_size: int | None = None,
    friction: float = 1.0,
) -> tuple[SGMCMCState, SGMCMCInfo]:
    """One SGLD or SGHMC step on the posterior of ``problem`` (module docstring).

    Moves the persistent chains ``num_mcmc_steps`` transitions at the current :math:`\\theta`,
    forms the gradient (:func:`log_posterior_gradient`) and takes one BlackJAX SGLD step or one
    step of BlackJAX's SGHMC solver with friction ``friction``.
    """
    key_pcd, key_batch, key_move = jax.random.split(rng_key, 3)
    energy_model, data = problem.energy_model, problem.data
    num_data = data.shape[0]
    params = _constrain(energy_model, state.position)
    grad_log_z, chains, chain_info = pcd_gradient(
        key_pcd, params, state.chains, energy_model.energy, kernel, num_mcmc_steps
    )
    if batch_size is None or batch_size == num_data:
        batch = data
    else:
        batch = data[jax.random.choice(key_batch, num_data, (batch_size,), replace=False)]

    def grad_estimator(position, minibatch):
        return log_posterior_gradient(energy_model, position, minibatch, grad_log_z, num_data)

    if method == "sgld":
        position = blackjax.sgld.build_kernel()(
            key_move, state.position, grad_estimator, batch, step_size
        )
        momentum = state.momentum
    else:
        solver = blackjax.sgmcmc.diffusions.sghmc(alpha=friction)
        position, momentum = solver(
            key_move,
            state.position,
            state.momentum,
            grad_estimator(state.position, batch),
            step_size,
        )
    # BlackJAX's injected noise comes out in JAX's default float under x64, which promotes
    # float32 positions: keep the state's dtype.
    position, momentum = jax.tree.map(
        lambda new, old: new.astype(old.dtype),
        (position, momentum),
        (state.position, state.momentum),
    )
    info = _info(chain_info)
    return SGMCMCState(position=position, momentum=momentum, chains=chains), info


def _info(chain_info: ChainInfo) -> SGMCMCInfo:
    return SGMCMCInfo(acceptance_rate=chain_info.acceptance_rate, pcd_ess=chain_info.ess)


# ----------------------------------------------------------------------------- the driver
@functools.partial(
    jax.jit,
    static_argnames=(
        "method",
        "kernel",
        "num_mcmc_steps",
        "num_particles",
        "batch_size",
        "friction",
        "num_warmup",
        "num_samples",
        "thinning",
    ),
)
def _run(
    keys,
    problem,
    start,
    step_size,
    *,
    method,
    kernel,
    num_mcmc_steps,
    num_particles,
    batch_size,
    friction,
    num_warmup,
    num_samples,
    thinning,
):
    transition = _build_kernel(kernel)

    def chain(rng_key, position):
        key_init, key_run = jax.random.split(rng_key)
        state = init(key_init, position, problem.data, num_particles)

        def one(state, key):  # one scan over burn-in and kept steps: one step to compile
            state, info = step(
                key,
                state,
                problem,
                method=method,
                step_size=step_size,
                kernel=transition,
                num_mcmc_steps=num_mcmc_steps,
                batch_size=batch_size,
                friction=friction,
            )
            return state, (state.position, info)

        num_steps = num_warmup + num_samples * thinning
        _, (positions, infos) = jax.lax.scan(one, state, jax.random.split(key_run, num_steps))

        def kept(values):  # the last step of each block of `thinning` after burn-in
            return values[num_warmup + thinning - 1 :: thinning]

        def block_mean(values):  # statistics averaged over each kept draw's steps
            return values[num_warmup:].reshape(num_samples, thinning).mean(axis=1)

        stats = {
            "acceptance_rate": block_mean(infos.acceptance_rate),
            "pcd_ess": block_mean(infos.pcd_ess),
        }
        return jax.tree.map(kept, positions), stats

    draws, stats = jax.vmap(chain)(keys, start)
    constrained = jax.vmap(jax.vmap(functools.partial(_constrain, problem.energy_model)))(draws)
    return constrained, stats


def _build_kernel(kernel) -> Kernel:
    """``kernel`` is a Kernel, or a hashable ``(name, step_size, num_integration_steps)``."""
    if isinstance(kernel, Kernel):
        return kernel
    name, size, leapfrog = kernel
    return mcmc_kernel(name, step_size=size, num_integration_steps=leapfrog)


# ----------------------------------------------------------------------------- validation
def _int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"`{name}` must be a finite number > 0; got {value!r}.")
    if not (math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"`{name}` must be a finite number > 0; got {value!r}.")
    return float(value)


def _check_problem(problem, data):
    energy_model = getattr(problem, "energy_model", None)
    dim = getattr(problem, "dim", None)
    if (
        not isinstance(dim, int)
        or not callable(getattr(energy_model, "energy", None))
        or not callable(getattr(energy_model, "prior", None))
    ):
        raise TypeError(
            "infer_sgmcmc needs a DensityProblem (`dim` and an energy model with "
            f"`energy(params, x)` and `prior()`); got {type(problem).__name__}."
        )
    data = problem.data if data is None else data
    if data is None:
        raise ValueError(
            f"problem {getattr(problem, 'name', '')!r} has no data; pass `data=` of shape "
            f"(N, d) = (N, {dim})."
        )
    data = jnp.asarray(data)
    if data.ndim != 2 or data.shape[1] != dim or data.shape[0] < 1:
        raise ValueError(f"`data` must have shape (N, d) = (N >= 1, {dim}); got {data.shape}.")
    if not jnp.issubdtype(data.dtype, jnp.floating):
        data = data.astype(jnp.result_type(float))
    if not bool(jnp.all(jnp.isfinite(data))):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(np.asarray(data)))[0])
        raise ValueError(f"`data` must be finite; got a non-finite value at index {index}.")
    return data


def _sites(energy_model) -> dict:
    """site -> a prior draw (shapes, dtypes) of the energy model's prior."""
    from numpyro.handlers import seed, trace

    with trace() as tr, seed(rng_seed=0):
        _prior_model(energy_model)
    return {
        name: site["value"]
        for name, site in tr.items()
        if site["type"] == "sample" and not site["is_observed"]
    }


def _check_init(energy_model, init_params, num_chains: int, dtype) -> dict:
    """Constrained initial values -> site -> ``(num_chains, *shape)`` unconstrained values."""
    sites = _sites(energy_model)
    if set(init_params) != set(sites):
        raise ValueError(
            f"`init_params` must have exactly the prior's sites {sorted(sites)}; got "
            f"{sorted(init_params)}."
        )
    out = {}
    for name, template in sites.items():
        shape = tuple(jnp.shape(template))
        value = jnp.asarray(init_params[name], dtype)
        if value.shape == shape:
            value = jnp.broadcast_to(value, (num_chains, *shape))
        if value.shape != (num_chains, *shape):
            raise ValueError(
                f"`init_params[{name!r}]` must have shape {shape} or ({num_chains}, *{shape}); "
                f"got {value.shape}."
            )
        if not bool(jnp.all(jnp.isfinite(value))):
            raise ValueError(f"`init_params[{name!r}]` must be finite.")
        out[name] = value
    unconstrained = jax.vmap(lambda c: unconstrain_fn(_prior_model, (energy_model,), {}, c))(out)
    for name, value in unconstrained.items():
        if not bool(jnp.all(jnp.isfinite(value))):
            raise ValueError(
                f"`init_params[{name!r}]` lies outside the support of its prior (its "
                "unconstrained value is not finite)."
            )
    return unconstrained


def _default_init(rng_key, energy_model, num_chains: int, dtype) -> dict:
    """Stan's default: unconstrained values uniform on (-2, 2), one draw per chain."""
    sites = _sites(energy_model)
    unconstrained = unconstrain_fn(_prior_model, (energy_model,), {}, sites)
    keys = jax.random.split(rng_key, len(unconstrained))
    return {
        name: jax.random.uniform(
            key, (num_chains, *jnp.shape(value)), dtype=dtype, minval=-2.0, maxval=2.0
        )
        for key, (name, value) in zip(keys, sorted(unconstrained.items()), strict=True)
    }


# ----------------------------------------------------------------------------- public API
def infer_sgmcmc(
    rng_key,
    problem,
    *,
    method: str = "sgld",
    data=None,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    thinning: int = 1,
    step_size: float = 1e-3,
    batch_size: int | None = None,
    friction: float = 1.0,
    num_particles: int = 64,
    num_mcmc_steps: int = 2,
    kernel="hmc",
    kernel_step_size: float = 0.1,
    num_integration_steps: int = 5,
    init_params: dict | None = None,
):
    """SGLD or SGHMC over the parameters of an EBM on R^d: an approximate posterior.

    The gradient of the log posterior uses the exact data term (or a minibatch) and persistent
    MCMC chains for :math:`\\nabla_\\theta\\log Z` (module docstring, which also states the
    biases). Serves the ``"ebm"`` model of a :class:`~ebm_ppl.problems.DensityProblem`; the
    prior is the energy model's ``prior()``, sampled in its unconstrained space.

    Args:
        rng_key: JAX key.
        problem: a :class:`~ebm_ppl.problems.DensityProblem`.
        method: ``"sgld"`` or ``"sghmc"``.
        data: ``(N, d)`` observed points (default ``problem.data``).
        num_chains: independent SGMCMC chains (vmapped; each has its own persistent chains).
        num_warmup: discarded steps per chain (burn-in; nothing is adapted).
        num_samples: kept draws per chain.
        thinning: steps per kept draw.
        step_size: the constant step (bias :math:`O(\\text{step})`). SGLD: :math:`\\epsilon`
            in :math:`\\theta' = \\theta + \\epsilon\\hat g + \\sqrt{2\\epsilon}\\,\\xi`.
            SGHMC: the time step :math:`h` of the dynamics (:math:`\\theta' = \\theta + hp`,
            unit mass; forward Euler, as BlackJAX's solver), so a different scale: on the
            tests' posterior (sd 0.16 to 0.22) :math:`h = 0.01` and :math:`\\epsilon = 2.5
            \\cdot 10^{-3}` give comparable biases (sd 3 to 9 % high).
        batch_size: data points per gradient (default all: the exact data term).
        friction: SGHMC's friction :math:`\\alpha` per unit time (``"sghmc"`` only); about
            the inverse posterior scale damps it critically.
        num_particles: persistent chains :math:`M` per SGMCMC chain, started at data points.
        num_mcmc_steps: transitions of the persistent chains per gradient.
        kernel: the persistent chains' kernel, ``"hmc"``, ``"mala"`` or ``"nuts"``
            (:func:`ebm_ppl.mcmc.chains.mcmc_kernel`), or a :class:`~ebm_ppl.mcmc.chains.Kernel`.
        kernel_step_size: that kernel's step size (a named kernel only).
        num_integration_steps: its HMC leapfrog steps (a named kernel only).
        init_params: constrained starting values per site (shared, or one per chain);
            default Stan's uniform(-2, 2) in the unconstrained space.

    Returns:
        ``xarray.DataTree`` with ``posterior`` (the prior's sites, ``(chain, draw, ...)``),
        ``sample_stats`` (``step_size``, the persistent chains' ``acceptance_rate`` and
        ``pcd_ess``, averaged over the steps of each kept draw), ``observed_data`` (``data``,
        dims ``point, dim``), ``constant_data`` (``true_<site>`` where the problem has them)
        and attributes (``approximate = 1``, ``likelihood_kind``, ``method``, the settings,
        ``seed``, ``parameter_sites``, versions).

    Raises:
        ValueError: naming the argument, on any bad setting, data or initial value (before any
            sampling); a :class:`~ebm_ppl.inference.posterior.NonFiniteDrawsError` if draws
            are not finite (the step size is too large).
        TypeError: a problem that is not a DensityProblem, or a bad ``kernel``.
    """
    from ebm_ppl.inference.posterior import check_draws

    check_choice("method", method, METHODS)
    data = _check_problem(problem, data)
    num_chains = _int("num_chains", num_chains)
    num_warmup = _int("num_warmup", num_warmup, minimum=0)
    num_samples = _int("num_samples", num_samples)
    thinning = _int("thinning", thinning)
    step_size = _positive("step_size", step_size)
    friction = _positive("friction", friction)
    num_particles = _int("num_particles", num_particles)
    num_mcmc_steps = _int("num_mcmc_steps", num_mcmc_steps)
    if batch_size is not None:
        batch_size = _int("batch_size", batch_size)
        if batch_size > data.shape[0]:
            raise ValueError(
                f"`batch_size` must be at most the number of data points N = {data.shape[0]}; "
                f"got {batch_size}."
            )
    if isinstance(kernel, Kernel):
        kernel_spec = kernel
    elif isinstance(kernel, str):
        check_choice("kernel", kernel, KERNELS)
        kernel_spec = (
            kernel,
            _positive("kernel_step_size", kernel_step_size),
            _int("num_integration_steps", num_integration_steps),
        )
        _build_kernel(kernel_spec)  # validate eagerly
    else:
        raise TypeError(
            f"`kernel` must be one of {KERNELS} or an ebm_ppl.mcmc.Kernel; got "
            f"{type(kernel).__name__}."
        )
    dtype = data.dtype
    key_init, key_run = jax.random.split(rng_key)
    energy_model = problem.energy_model
    if init_params is None:
        start = _default_init(key_init, energy_model, num_chains, dtype)
    else:
        start = _check_init(energy_model, init_params, num_chains, dtype)
    run_problem = problem.replace(data=data) if hasattr(problem, "replace") else problem
    draws, stats = _run(
        jax.random.split(key_run, num_chains),
        run_problem,
        start,
        jnp.asarray(step_size, dtype),
        method=method,
        kernel=kernel_spec,
        num_mcmc_steps=num_mcmc_steps,
        num_particles=num_particles,
        batch_size=batch_size,
        friction=friction,
        num_warmup=num_warmup,
        num_samples=num_samples,
        thinning=thinning,
    )
    positions = {name: np.asarray(value) for name, value in draws.items()}
    check_draws(positions)
    stats = {name: np.asarray(value) for name, value in stats.items()}
    if np.all(np.isnan(stats["pcd_ess"])):  # fewer steps per gradient than an ESS needs
        del stats["pcd_ess"]
    stats["step_size"] = np.full((num_chains, num_samples), step_size)
    settings = {
        "step_size": step_size,
        "batch_size": int(data.shape[0]) if batch_size is None else batch_size,
        "num_particles": num_particles,
        "num_mcmc_steps": num_mcmc_steps,
        "num_warmup": num_warmup,
        "thinning": thinning,
        "kernel": kernel.name if isinstance(kernel, Kernel) else kernel,
    }
    if method == "sghmc":
        settings["friction"] = friction
    return _to_datatree(positions, stats, problem, data, method, rng_key, settings)


def _to_datatree(positions, stats, problem, data, method, rng_key, settings):
    """The ArviZ DataTree of an SGMCMC run (the only ArviZ call in this module)."""
    from arviz_base import from_dict

    from ebm_ppl.diagnostics import _key_data, _versions

    sites = sorted(positions)
    groups = {
        "posterior": positions,
        "sample_stats": stats,
        "observed_data": {"data": np.asarray(data)},
    }
    dims = {"data": ["point", "dim"]}
    true_params = getattr(problem, "true_params", None)
    if true_params is not None:
        constant = {}
        for name, value in true_params.items():
            value = np.asarray(value)
            constant[f"true_{name}"] = value
            dims[f"true_{name}"] = [f"{name}_dim_{i}" for i in range(value.ndim)]
        groups["constant_data"] = constant
    tree = from_dict(groups, dims=dims)
    data_term = "exact data term" if settings["batch_size"] == data.shape[0] else "minibatch"
    tree.attrs.update(
        {
            "problem": str(getattr(problem, "name", "")),
            "model": "ebm",
            "method": method,
            "approximate": 1,
            "likelihood_kind": (
                f"approximate ({method}, constant step, no MH correction: O(step) bias; "
                f"{data_term}; grad log Z by {settings['num_particles']} persistent "
                f"{settings['kernel']} chains: gradient-noise and lag bias)"
            ),
            "seed": _key_data(rng_key),
            "parameter_sites": sites,
            "versions": _versions(),
            **{f"sampler_{key}": value for key, value in settings.items()},
        }
    )
    return tree
