r"""MCMC estimates of :math:`\nabla_\theta\log Z`: contrastive divergence and persistent chains.

For any energy model :math:`p_\theta(x) = e^{-E_\theta(x)}/Z(\theta)` (THEORY §1.5, §5.1)

.. math::

    \nabla_\theta\log Z(\theta) = -\mathbb E_{p_\theta}\big[\nabla_\theta E_\theta(x)\big],
    \qquad
    \nabla_\theta\,\mathrm{NLL}(\theta)
    = \frac1N\sum_i\nabla_\theta E_\theta(x_i) + \nabla_\theta\log Z(\theta)
    = \frac1N\sum_i\nabla_\theta E_\theta(x_i) - \mathbb E_{p_\theta}[\nabla_\theta E_\theta],

with :math:`\mathrm{NLL}(\theta) = \frac1N\sum_iE_\theta(x_i) + \log Z(\theta)` the negative
log-likelihood per datum. Both estimators below replace the expectation by an average of
:math:`\nabla_\theta E_\theta` over the end points of :math:`C` Markov chains that leave
:math:`p_\theta` invariant, run ``num_steps`` (:math:`k`) transitions:

* :func:`cd_gradient`: **contrastive divergence** CD-:math:`k` [H02]. One chain per datum,
  started **at the data**. With :math:`k` finite the chains have not mixed, so the estimate is
  **biased** for every finite :math:`k` (its expectation is
  :math:`-\mathbb E_{x\sim\hat p,\,x'\sim K^k(x,\cdot)}[\nabla E(x')]`, not
  :math:`\nabla\log Z`), unless the data already follow :math:`p_\theta`; the bias vanishes as
  :math:`k\to\infty` (consistent in :math:`k`).
* :func:`pcd_gradient`: **persistent chains** (stochastic maximum likelihood [Y99], PCD
  [T08]). The chains are carried over from one call to the next (:class:`PersistentChains`);
  each call moves them :math:`k` more steps under the current :math:`\theta`. At a fixed
  :math:`\theta` the estimate is consistent as the chains mix (biased by the chains' distance
  from :math:`p_\theta`, not by the data); along a stochastic-approximation run with a
  decaying step, :math:`\theta` converges to the MLE under the usual Robbins–Monro conditions
  [Y99].

:func:`long_run_gradient` is the reference version at a fixed :math:`\theta`: burn-in, then the
ergodic average over every kept state of every chain, with a standard error from the per-chain
averages (for thermodynamic integration and tests).

All return the estimate of :math:`\nabla_\theta\log Z` (a pytree shaped like ``params``);
:func:`nll_gradient` adds the data term. Each chain end contributes one
:math:`\nabla_\theta E_\theta(x_c)`; ``info.grad_stderr`` is their standard deviation over
chains divided by :math:`\sqrt C` (a valid Monte Carlo standard error when the chains are
independent, e.g. started from independent points; it ignores the bias of unmixed chains).

Kernels (:func:`mcmc_kernel`) are BlackJAX's HMC (MALA run as one-leapfrog HMC) and NUTS,
targeting the log density :math:`-E_\theta(x)` (the only place the sign flips, DESIGN §3).
A :class:`Kernel` is a pair ``init(position, logdensity_fn) -> state`` and
``step(rng_key, state, logdensity_fn) -> (state, info)``, where ``state`` has ``.position``
and ``.logdensity`` and ``info`` has ``.acceptance_rate`` (BlackJAX's conventions);
:mod:`ebm_ppl.mcmc.tabular` builds a discrete kernel with the same shape, so every function
here works on tabular trajectories too.

Because the BlackJAX state caches :math:`\log p` and its gradient at the **current**
:math:`\theta`, the persistent state keeps only the positions, and every call re-initialises
the kernel state at the new :math:`\theta` (one extra energy gradient per chain).

Nothing here is jit-compiled inside (BlackJAX style): jit the caller, closing over
``energy_fn`` and ``kernel`` (or marking them static). Chains are vmapped and steps are a
``lax.scan``.

Usage::

    kernel = mcmc_kernel("mala", step_size=0.05)
    chains = init_chains_from_data(jax.random.key(0), data, num_chains=256)
    step = jax.jit(lambda k, p, c: pcd_gradient(k, p, c, model.energy, kernel, 5))
    grad_log_z, chains, info = step(jax.random.key(1), params, chains)
    grad_nll = nll_gradient(params, data, model.energy, grad_log_z)

References: [H02] Hinton 2002 (contrastive divergence); [Y99] Younes 1999 (stochastic
approximation MLE); [T08] Tieleman 2008 (persistent CD); THEORY §1.5, §5.1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl._validation import check_choice, is_concrete

__all__ = [
    "KERNELS",
    "Kernel",
    "PersistentChains",
    "ChainInfo",
    "LongRunInfo",
    "mcmc_kernel",
    "init_chains",
    "init_chains_from_data",
    "run_chains",
    "energy_gradients",
    "data_energy_gradient",
    "cd_gradient",
    "pcd_gradient",
    "long_run_gradient",
    "nll_gradient",
]

KERNELS = ("mala", "hmc", "nuts")
"""Kernel names accepted by :func:`mcmc_kernel`."""

MIN_STEPS_FOR_ESS = 4
"""Fewer steps than this per call: ``info.ess`` is NaN (too short a trace)."""


class Kernel(NamedTuple):
    """A Markov kernel leaving :math:`\\propto e^{\\text{logdensity}}` invariant.

    Attributes:
        name: a label (``"mala"``, ``"hmc"``, ``"nuts"``, ``"gibbs_mh"``...).
        init: ``(position, logdensity_fn) -> state``; ``state.position`` and
            ``state.logdensity`` are read by this module.
        step: ``(rng_key, state, logdensity_fn) -> (state, info)``; ``info.acceptance_rate``
            is read by this module.
    """

    name: str
    init: Callable
    step: Callable


class PersistentChains(NamedTuple):
    """Persistent Markov chains (a pytree; no keys inside).

    Attributes:
        positions: the chains' current points, a pytree whose leaves have a leading
            ``(num_chains,)`` axis (e.g. ``(C, d)`` on :math:`\\mathbb R^d`).
        step: ``()`` int32, the number of :func:`pcd_gradient` calls that moved them.
    """

    positions: Any
    step: jax.Array


class ChainInfo(NamedTuple):
    """Diagnostics of one gradient estimate.

    Attributes:
        acceptance_rate: ``()`` mean acceptance probability over chains and steps.
        ess: ``()`` multi-chain effective sample size (BlackJAX, rank-free) of the energy
            trace :math:`E_\\theta(x_{c,t})` over the ``C`` chains and ``k`` steps of this call;
            NaN when ``k < 4`` (:data:`MIN_STEPS_FOR_ESS`).
        mean_energy: ``()`` mean :math:`E_\\theta` at the chain ends.
        grad_stderr: pytree like ``params``: standard deviation over chains of
            :math:`\\nabla_\\theta E_\\theta(x_c)` divided by :math:`\\sqrt C` (NaN if
            ``C = 1``): the Monte Carlo standard error of the returned gradient for
            independent chains.
    """

    acceptance_rate: jax.Array
    ess: jax.Array
    mean_energy: jax.Array
    grad_stderr: Any


class LongRunInfo(NamedTuple):
    """Diagnostics of :func:`long_run_gradient`.

    Attributes:
        acceptance_rate: ``()`` mean acceptance probability over chains and kept steps.
        ess: ``()`` multi-chain ESS (BlackJAX) of the energy trace over the kept steps.
        grad_stderr: pytree like ``params``: Monte Carlo standard error of the returned
            gradient from the spread of the per-chain time averages over the ``C``
            independent chains, ``sd_c / sqrt(C)`` (NaN if ``C = 1``); it accounts for the
            autocorrelation within chains but assumes the chains are independent and past
            burn-in.
        chain_means: pytree like ``params`` with a leading ``(C,)`` axis: each chain's time
            average of :math:`-\\nabla_\\theta E_\\theta` (for batch-means diagnostics).
    """

    acceptance_rate: jax.Array
    ess: jax.Array
    grad_stderr: Any
    chain_means: Any


# ----------------------------------------------------------------------------- validation
def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"`{name}` must be a number > 0; got {value!r}.")
    if not (np.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"`{name}` must be a finite number > 0; got {value!r}.")
    return float(value)


def _check_kernel(kernel) -> Kernel:
    if not isinstance(kernel, Kernel):
        raise TypeError(
            "`kernel` must be an ebm_ppl.mcmc.Kernel (from mcmc_kernel(...) or "
            f"ebm_ppl.mcmc.tabular); got {type(kernel).__name__}."
        )
    return kernel


def _check_energy_fn(energy_fn) -> Callable:
    if not callable(energy_fn):
        raise TypeError(
            "`energy_fn` must be callable as energy_fn(params, x) -> scalar for one point x; "
            f"got {type(energy_fn).__name__}."
        )
    return energy_fn


def _num_chains(name: str, positions) -> int:
    leaves = jax.tree.leaves(positions)
    if not leaves:
        raise ValueError(f"`{name}` must hold at least one array; got {positions!r}.")
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            f"`{name}` must have one leading (num_chains,) axis shared by every leaf; got "
            f"leaf shapes {[jnp.shape(leaf) for leaf in leaves]}."
        )
    (size,) = sizes
    if size < 1:
        raise ValueError(f"`{name}` must hold at least one chain; got a leading axis of 0.")
    return int(size)


def _check_positions(name: str, positions):
    positions = jax.tree.map(jnp.asarray, positions)
    _num_chains(name, positions)
    if is_concrete(positions):
        for leaf in jax.tree.leaves(positions):
            # NumPy, not jnp: under jit tracing a jnp op on a constant is staged (a tracer)
            host = np.asarray(leaf)
            if np.issubdtype(host.dtype, np.floating) and not np.isfinite(host).all():
                raise ValueError(f"`{name}` must be finite everywhere; got non-finite entries.")
    return positions


# ----------------------------------------------------------------------------- kernels
def _check_chain_state(chain_state) -> None:
    if not isinstance(chain_state, PersistentChains):
        raise TypeError(
            "`chain_state` must be a PersistentChains (from init_chains or "
            f"init_chains_from_data); got {type(chain_state).__name__}."
        )


def mcmc_kernel(
    name: str = "mala",
    *,
    step_size: float,
    num_integration_steps: int = 8,
    inverse_mass_matrix=None,
    max_num_doublings: int = 6,
    divergence_threshold: float = 1000.0,
) -> Kernel:
    r"""A BlackJAX kernel by name, targeting :math:`\propto e^{\text{logdensity}}`.

    * ``"mala"``: Metropolis-adjusted Langevin,
      :math:`x' = x + \epsilon\nabla\log p(x) + \sqrt{2\epsilon}\,\xi` then an MH correction
      (``step_size`` is :math:`\epsilon`, proposal variance :math:`2\epsilon`), run as
      ``blackjax.hmc`` with one leapfrog step of size :math:`\sqrt{2\epsilon}` and identity
      mass (the same proposal and acceptance probability; unlike ``blackjax.mala`` 1.7.1 it
      keeps float32 chains in float32 under x64). With ``inverse_mass_matrix`` it is
      preconditioned MALA.
    * ``"hmc"``: HMC with ``num_integration_steps`` leapfrog steps of ``step_size``.
    * ``"nuts"``: NUTS (multinomial, iterative) with at most ``max_num_doublings`` doublings.
      BlackJAX 1.7.1's NUTS fails on float32 positions when x64 is on (a dtype clash inside its
      trajectory builder); use float64 or ``"hmc"``/``"mala"`` for float32 chains.

    All three are exact MH corrections of their proposals, so they leave the target invariant for
    any step size; no adaptation is done here (a persistent chain's target moves with
    :math:`\theta`, and adapting on it would break the invariance).

    Args:
        name: one of :data:`KERNELS`.
        step_size: :math:`\epsilon > 0`.
        num_integration_steps: leapfrog steps of ``"hmc"`` (int >= 1).
        inverse_mass_matrix: ``(d,)`` diagonal or ``(d, d)``; default the identity (built from
            the position's shape, flat positions only).
        max_num_doublings: ``"nuts"`` tree depth limit (int >= 1).
        divergence_threshold: energy error flagging a divergence (``"hmc"``, ``"nuts"``).

    Returns:
        A :class:`Kernel`.

    Raises:
        ValueError: naming the argument, on an unknown ``name`` or a bad setting.
    """
    check_choice("name", name, KERNELS)
    step_size = _check_positive("step_size", step_size)
    num_integration_steps = _check_int("num_integration_steps", num_integration_steps)
    max_num_doublings = _check_int("max_num_doublings", max_num_doublings)
    divergence_threshold = _check_positive("divergence_threshold", divergence_threshold)
    if inverse_mass_matrix is not None:
        inverse_mass_matrix = jnp.asarray(inverse_mass_matrix)
        if inverse_mass_matrix.ndim not in (1, 2):
            raise ValueError(
                "`inverse_mass_matrix` must be (d,) or (d, d); got shape "
                f"{inverse_mass_matrix.shape}."
            )

    def size(position):
        """``step_size`` in the position's floating dtype (a Python float would promote a
        float32 chain to float64 inside BlackJAX's ``sqrt(2 * step_size)``)."""
        floats = [
            leaf.dtype
            for leaf in jax.tree.leaves(position)
            if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
        ]
        return jnp.asarray(step_size, floats[0] if floats else jnp.result_type(float))

    def metric(position):
        if inverse_mass_matrix is not None:
            return inverse_mass_matrix
        return jnp.ones(jnp.shape(position), jnp.result_type(position))

    if name == "mala":
        # MALA is HMC with one leapfrog step of size h = sqrt(2 eps): same proposal
        # x + eps grad + sqrt(2 eps) xi, same MH acceptance. BlackJAX's own `mala` promotes a
        # float32 chain to float64 when x64 is on (its noise is scaled by a Python float), so
        # the one-step HMC kernel is used: it keeps the input dtype.
        leapfrog = blackjax.hmc.build_kernel(divergence_threshold=divergence_threshold)

        def step(rng_key, state, logdensity_fn):
            position = state.position
            return leapfrog(
                rng_key, state, logdensity_fn, jnp.sqrt(2 * size(position)), metric(position), 1
            )

        return Kernel(name=name, init=blackjax.hmc.init, step=step)

    if name == "hmc":
        hmc_step = blackjax.hmc.build_kernel(divergence_threshold=divergence_threshold)

        def step(rng_key, state, logdensity_fn):
            return hmc_step(
                rng_key,
                state,
                logdensity_fn,
                size(state.position),
                metric(state.position),
                num_integration_steps,
            )

        return Kernel(name=name, init=blackjax.hmc.init, step=step)

    nuts_step = blackjax.nuts.build_kernel(divergence_threshold=divergence_threshold)

    def step(rng_key, state, logdensity_fn):
        return nuts_step(
            rng_key,
            state,
            logdensity_fn,
            size(state.position),
            metric(state.position),
            max_num_doublings,
        )

    return Kernel(name=name, init=blackjax.nuts.init, step=step)


# ----------------------------------------------------------------------------- chains
def init_chains(positions) -> PersistentChains:
    """Persistent chains at ``positions`` (leaves with a leading ``(num_chains,)`` axis).

    Raises:
        ValueError: if ``positions`` has no common leading axis or non-finite entries.
    """
    positions = _check_positions("positions", positions)
    return PersistentChains(positions=positions, step=jnp.zeros((), jnp.int32))


def init_chains_from_data(rng_key, data, num_chains: int) -> PersistentChains:
    """Persistent chains started at ``num_chains`` data points drawn with replacement.

    Starting at the data is the usual PCD choice: the chains begin near :math:`p_\\theta` once
    the model fits, and need no burn-in from a poor initial distribution.

    Args:
        rng_key: key for the draw.
        data: pytree of leaves with a leading ``(N,)`` axis.
        num_chains: ``C`` (int >= 1).
    """
    num_chains = _check_int("num_chains", num_chains)
    data = _check_positions("data", data)
    size = _num_chains("data", data)
    index = jax.random.choice(rng_key, size, (num_chains,), replace=True)
    return init_chains(jax.tree.map(lambda leaf: leaf[index], data))


def run_chains(rng_key, params, positions, energy_fn, kernel, num_steps: int):
    r"""Move chains ``num_steps`` transitions of ``kernel`` targeting :math:`e^{-E_\theta}`.

    Args:
        rng_key: key (split over steps and chains).
        params: energy parameters :math:`\theta`.
        positions: pytree with a leading ``(C,)`` axis.
        energy_fn: ``energy_fn(params, x) -> ()`` for one point.
        kernel: a :class:`Kernel`.
        num_steps: ``k`` (int >= 1; static).

    Returns:
        ``(positions, acceptance, energies)``: the new positions, the acceptance probabilities
        ``(k, C)`` and the energies ``(k, C)`` after each step.
    """
    num_steps = _check_int("num_steps", num_steps)
    kernel = _check_kernel(kernel)
    energy_fn = _check_energy_fn(energy_fn)
    num_chains = _num_chains("positions", positions)

    def logdensity_fn(x):
        return -energy_fn(params, x)

    states = jax.vmap(lambda x: kernel.init(x, logdensity_fn))(positions)

    def one_step(states, key):
        keys = jax.random.split(key, num_chains)
        states, infos = jax.vmap(lambda k, s: kernel.step(k, s, logdensity_fn))(keys, states)
        return states, (infos.acceptance_rate, -states.logdensity)

    states, (acceptance, energies) = jax.lax.scan(
        one_step, states, jax.random.split(rng_key, num_steps)
    )
    return states.position, acceptance, energies


def energy_gradients(params, positions, energy_fn):
    r""":math:`\nabla_\theta E_\theta(x_c)` for each chain: ``params``-shaped leaves with a
    leading ``(C,)`` axis."""
    return jax.vmap(jax.grad(energy_fn), in_axes=(None, 0))(params, positions)


def data_energy_gradient(params, data, energy_fn):
    r""":math:`\frac1N\sum_i\nabla_\theta E_\theta(x_i)`, the data term of the NLL gradient."""
    grads = energy_gradients(params, data, _check_energy_fn(energy_fn))
    return jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)


def nll_gradient(params, data, energy_fn, grad_log_z):
    r""":math:`\nabla_\theta\mathrm{NLL} = \frac1N\sum_i\nabla_\theta E_\theta(x_i)
    + \nabla_\theta\log Z`, with ``grad_log_z`` an estimate (e.g. from :func:`pcd_gradient`)."""
    data_term = data_energy_gradient(params, data, energy_fn)
    return jax.tree.map(jnp.add, data_term, grad_log_z)


def _estimate(params, positions, energy_fn, acceptance, energies):
    grads = energy_gradients(params, positions, energy_fn)
    num_chains = acceptance.shape[1]
    grad_log_z = jax.tree.map(lambda g: -jnp.mean(g, axis=0), grads)
    if num_chains > 1:
        grad_stderr = jax.tree.map(
            lambda g: jnp.std(g, axis=0, ddof=1) / np.sqrt(num_chains), grads
        )
    else:
        grad_stderr = jax.tree.map(lambda g: jnp.full(g.shape[1:], jnp.nan, g.dtype), grads)
    num_steps = acceptance.shape[0]
    if num_steps >= MIN_STEPS_FOR_ESS:
        ess = blackjax.ess(energies.T, chain_axis=0, sample_axis=1)
    else:
        ess = jnp.full((), jnp.nan, energies.dtype)
    info = ChainInfo(
        acceptance_rate=jnp.mean(acceptance),
        ess=ess,
        mean_energy=jnp.mean(energies[-1]),
        grad_stderr=grad_stderr,
    )
    return grad_log_z, info


def cd_gradient(rng_key, params, data, energy_fn, kernel, num_steps: int):
    r"""CD-:math:`k` estimate of :math:`\nabla_\theta\log Z`: one chain per datum, started there.

    .. math::

        \widehat{\nabla\log Z}_{\mathrm{CD}\text{-}k}
        = -\frac1N\sum_i\nabla_\theta E_\theta(x_i^{(k)}),\qquad
        x_i^{(0)} = x_i,\quad x_i^{(t+1)}\sim K_\theta(x_i^{(t)},\cdot).

    **Biased** for finite :math:`k` (it estimates
    :math:`-\mathbb E_{\hat p K^k}[\nabla E]`, which equals :math:`\nabla\log Z` only if
    :math:`\hat pK^k = p_\theta`); consistent as :math:`k\to\infty`. The CD-:math:`k` update
    direction is ``nll_gradient(params, data, energy_fn, grad_log_z)``.

    Args:
        rng_key: key.
        params: :math:`\theta` (pytree).
        data: ``(N, ...)`` pytree of data points (the chains' starts).
        energy_fn: ``energy_fn(params, x) -> ()`` for one point.
        kernel: a :class:`Kernel`.
        num_steps: :math:`k` (int >= 1; static).

    Returns:
        ``(grad_log_z, info)``: a pytree like ``params`` and a :class:`ChainInfo`.

    Raises:
        ValueError / TypeError: naming the argument.
    """
    data = _check_positions("data", data)
    positions, acceptance, energies = run_chains(
        rng_key, params, data, energy_fn, kernel, num_steps
    )
    return _estimate(params, positions, energy_fn, acceptance, energies)


def long_run_gradient(
    rng_key,
    params,
    chain_state,
    energy_fn,
    kernel,
    num_steps: int,
    *,
    num_burnin: int = 0,
):
    r"""Long-run MCMC estimate of :math:`\nabla_\theta\log Z` at a **fixed** :math:`\theta`.

    Runs the chains ``num_burnin`` steps (discarded), then ``num_steps`` steps, averaging
    :math:`-\nabla_\theta E_\theta` over every kept state of every chain:

    .. math::

        \widehat{\nabla\log Z} = -\frac1{Ck}\sum_c\sum_{t=1}^k\nabla_\theta
        E_\theta(x_c^{(t)}).

    Consistent as ``num_steps`` grows (ergodic average); its standard error comes from the
    spread of the per-chain averages (:class:`LongRunInfo`). Meant for reference values and for
    estimators that need :math:`\nabla\log Z` at fixed points (thermodynamic integration).
    Cost: one energy gradient per chain and kept step on top of the kernel.

    Args:
        rng_key: key.
        params: :math:`\theta`.
        chain_state: :class:`PersistentChains`.
        energy_fn: ``energy_fn(params, x) -> ()`` for one point.
        kernel: a :class:`Kernel`.
        num_steps: kept steps ``k`` (int >= 1; static).
        num_burnin: discarded steps first (int >= 0; static).

    Returns:
        ``(grad_log_z, new_chain_state, info)``: a pytree like ``params``, the moved
        :class:`PersistentChains` (``step`` + 1) and a :class:`LongRunInfo`.

    Raises:
        ValueError / TypeError: naming the argument.
    """
    _check_chain_state(chain_state)
    num_steps = _check_int("num_steps", num_steps)
    num_burnin = _check_int("num_burnin", num_burnin, minimum=0)
    kernel = _check_kernel(kernel)
    energy_fn = _check_energy_fn(energy_fn)
    positions = chain_state.positions
    num_chains = _num_chains("chain_state.positions", positions)

    def logdensity_fn(x):
        return -energy_fn(params, x)

    states = jax.vmap(lambda x: kernel.init(x, logdensity_fn))(positions)
    sums = jax.tree.map(lambda g: jnp.zeros_like(g), energy_gradients(params, positions, energy_fn))

    def accumulate(sums, positions):
        return jax.tree.map(jnp.add, sums, energy_gradients(params, positions, energy_fn))

    def one_step(carry, inputs):
        # one scan for burn-in and kept steps: the kernel is compiled once
        states, sums = carry
        key, t = inputs
        keys = jax.random.split(key, num_chains)
        states, infos = jax.vmap(lambda k, s: kernel.step(k, s, logdensity_fn))(keys, states)
        if num_burnin > 0:
            sums = jax.lax.cond(
                t >= num_burnin, accumulate, lambda sums, _: sums, sums, states.position
            )
        else:
            sums = accumulate(sums, states.position)
        return (states, sums), (infos.acceptance_rate, -states.logdensity)

    total = num_burnin + num_steps
    inputs = (jax.random.split(rng_key, total), jnp.arange(total))
    (states, sums), (acceptance, energies) = jax.lax.scan(one_step, (states, sums), inputs)
    acceptance, energies = acceptance[num_burnin:], energies[num_burnin:]
    chain_means = jax.tree.map(lambda s: -s / num_steps, sums)
    grad_log_z = jax.tree.map(lambda m: jnp.mean(m, axis=0), chain_means)
    if num_chains > 1:
        grad_stderr = jax.tree.map(
            lambda m: jnp.std(m, axis=0, ddof=1) / np.sqrt(num_chains), chain_means
        )
    else:
        grad_stderr = jax.tree.map(lambda m: jnp.full(m.shape[1:], jnp.nan, m.dtype), chain_means)
    if num_steps >= MIN_STEPS_FOR_ESS:
        ess = blackjax.ess(energies.T, chain_axis=0, sample_axis=1)
    else:
        ess = jnp.full((), jnp.nan, energies.dtype)
    info = LongRunInfo(
        acceptance_rate=jnp.mean(acceptance),
        ess=ess,
        grad_stderr=grad_stderr,
        chain_means=chain_means,
    )
    new_state = PersistentChains(positions=states.position, step=chain_state.step + 1)
    return grad_log_z, new_state, info


def pcd_gradient(rng_key, params, chain_state, energy_fn, kernel, num_steps: int):
    r"""Persistent-chain (SML / PCD) estimate of :math:`\nabla_\theta\log Z`.

    Moves the persistent chains :math:`k` steps under the current :math:`\theta` and averages
    over their end points:

    .. math::

        \widehat{\nabla\log Z} = -\frac1C\sum_c\nabla_\theta E_\theta(x_c^{(k)}).

    Consistent at fixed :math:`\theta` as the chains mix (the bias is the chains' distance from
    :math:`p_\theta`, shrinking with every call); no dependence on the data. Used inside a
    stochastic-approximation loop (:func:`ebm_ppl.mcmc.trainers.pcd`), or at a fixed
    :math:`\theta` with repeated calls for a long-run average (thermodynamic integration).

    Args:
        rng_key: key.
        params: :math:`\theta` (pytree).
        chain_state: :class:`PersistentChains` (from :func:`init_chains` or
            :func:`init_chains_from_data`).
        energy_fn: ``energy_fn(params, x) -> ()`` for one point.
        kernel: a :class:`Kernel`.
        num_steps: :math:`k` (int >= 1; static).

    Returns:
        ``(grad_log_z, new_chain_state, info)``: a pytree like ``params``, the moved
        :class:`PersistentChains` (``step`` + 1) and a :class:`ChainInfo`.

    Raises:
        ValueError / TypeError: naming the argument.
    """
    _check_chain_state(chain_state)
    positions, acceptance, energies = run_chains(
        rng_key, params, chain_state.positions, energy_fn, kernel, num_steps
    )
    grad_log_z, info = _estimate(params, positions, energy_fn, acceptance, energies)
    new_state = PersistentChains(positions=positions, step=chain_state.step + 1)
    return grad_log_z, new_state, info
