r"""Optax-style trainers fitting an energy by MCMC maximum likelihood: CD-k and PCD.

Both minimise the negative log-likelihood per datum (THEORY §1.5, §5.1)

.. math::

    \mathrm{NLL}(\theta) = \frac1N\sum_iE_\theta(x_i) + \log Z(\theta),\qquad
    \nabla_\theta\mathrm{NLL} = \frac1N\sum_i\nabla_\theta E_\theta(x_i)
    - \mathbb E_{p_\theta}[\nabla_\theta E_\theta],

with the expectation replaced by an MCMC estimate (:mod:`ebm_ppl.mcmc.chains`), one optax step
per ``update``:

* :func:`cd` (contrastive divergence [H02]): chains start at the batch and run :math:`k` steps.
  **Biased** for finite :math:`k`: its fixed points are not the MLE in general (they are where
  :math:`k` kernel steps from the data leave :math:`\nabla E` unchanged on average), though it is
  often close when the kernel mixes fast relative to the model's misfit.
* :func:`pcd` (persistent CD / stochastic maximum likelihood [T08], [Y99]): ``num_chains``
  chains persist across updates, each update moving them :math:`k` steps under the current
  :math:`\theta`. With a step size decaying so that :math:`\sum\eta_t = \infty`,
  :math:`\sum\eta_t^2 < \infty` (e.g. ``optax.sgd(optax.polynomial_schedule(...))``) this is a
  Robbins–Monro scheme whose limit is the **MLE** (consistent); with a constant step the
  iterates fluctuate around it (average the last iterates).

The model served is ``"ebm"`` on :math:`\mathbb R^d` (``energy(params, x)``), and, with the
action-sequence kernel of :mod:`ebm_ppl.mcmc.tabular`, the :math:`s_0`-conditional
trajectory-level model of a deterministic tabular MDP (positions are observed trajectories and
keep their start state; PCD's gradient then averages :math:`\nabla\log Z(s_0)` over the chains'
starts, drawn from the data at ``init``).

Each update reports the kernel's acceptance rate and the ESS of the chains' energy trace
(:class:`MCMCTrainerInfo`).

Usage::

    kernel = mcmc_kernel("mala", step_size=0.05)
    trainer = pcd(problem.energy_model, kernel, num_chains=512, num_steps=5,
                  optimizer=optax.sgd(optax.polynomial_schedule(0.3, 0.01, 1.0, 2000)))
    state = trainer.init(jax.random.key(0), data=problem.data)
    state, infos = train(jax.random.key(1), trainer, state, problem.data, num_steps=2000)

References: [H02] Hinton 2002; [T08] Tieleman 2008; [Y99] Younes 1999; THEORY §1.5, §5.1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebm_ppl.adversarial.trainers import Trainer
from ebm_ppl.mcmc.chains import (
    Kernel,
    PersistentChains,
    cd_gradient,
    energy_gradients,
    init_chains,
    init_chains_from_data,
    pcd_gradient,
)

__all__ = ["CDState", "PCDState", "MCMCTrainerInfo", "cd", "pcd", "train"]


class CDState(NamedTuple):
    """State of :func:`cd`.

    Attributes:
        params: energy parameters :math:`\\theta`.
        opt_state: optax state.
        step: ``()`` int32, number of updates done.
    """

    params: Any
    opt_state: Any
    step: jax.Array


class PCDState(NamedTuple):
    """State of :func:`pcd`.

    Attributes:
        params: energy parameters :math:`\\theta`.
        chains: the :class:`~ebm_ppl.mcmc.chains.PersistentChains`.
        opt_state: optax state.
        step: ``()`` int32, number of updates done.
    """

    params: Any
    chains: PersistentChains
    opt_state: Any
    step: jax.Array


class MCMCTrainerInfo(NamedTuple):
    """Per-update diagnostics (scalars; stacked along steps by :func:`train`).

    Attributes:
        gradient_norm: global norm of the estimated :math:`\\nabla\\mathrm{NLL}` (before the
            step).
        acceptance_rate: mean acceptance probability of the update's chain moves.
        ess: ESS of the chains' energy trace over this update's :math:`k` steps (NaN when
            :math:`k < 4`; :class:`~ebm_ppl.mcmc.chains.ChainInfo`).
        data_energy: mean :math:`E_\\theta` on the batch (before the step).
        chain_energy: mean :math:`E_\\theta` at the chain ends (before the step); near
            ``data_energy`` when the model fits.
    """

    gradient_norm: jax.Array
    acceptance_rate: jax.Array
    ess: jax.Array
    data_energy: jax.Array
    chain_energy: jax.Array


# ----------------------------------------------------------------------------- validation
def _energy_parts(energy_model) -> tuple[Callable, Callable | None]:
    """``(energy_fn, init_params or None)`` from an energy model or a bare ``energy_fn``."""
    method = getattr(energy_model, "energy", None)
    if callable(method):
        init = getattr(energy_model, "init_params", None)
        return method, init if callable(init) else None
    if callable(energy_model):
        return energy_model, None
    raise TypeError(
        "`energy_model` must have an `energy(params, x)` method or be a callable "
        f"energy_fn(params, x); got {type(energy_model).__name__}."
    )


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _check_kernel(kernel) -> Kernel:
    if not isinstance(kernel, Kernel):
        raise TypeError(
            "`kernel` must be an ebm_ppl.mcmc.Kernel (mcmc_kernel(...) or "
            f"ebm_ppl.mcmc.tabular.gibbs_kernel(...)); got {type(kernel).__name__}."
        )
    return kernel


def _check_batch(batch):
    if batch is None:
        raise ValueError("`batch` must hold data with a leading (N,) axis; got None.")
    batch = jax.tree.map(jnp.asarray, batch)
    leaves = jax.tree.leaves(batch)
    if not leaves or any(jnp.ndim(leaf) < 1 or leaf.shape[0] < 1 for leaf in leaves):
        raise ValueError(
            "`batch` must have a leading (N,) axis with N >= 1 on every leaf; got shapes "
            f"{[jnp.shape(leaf) for leaf in leaves]}."
        )
    return batch


def _initial_params(params, init_params):
    if params is not None:
        return params
    if init_params is None:
        raise ValueError(
            "`params` must be given when the trainer was built from a bare energy_fn (no "
            "`init_params` to default to); got None."
        )
    return init_params()


def _mean_energy(energy_fn, params, points):
    return jnp.mean(jax.vmap(lambda x: energy_fn(params, x))(points))


def _step(optimizer, params, opt_state, data_grad, grad_log_z):
    grads = jax.tree.map(jnp.add, data_grad, grad_log_z)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, optax.tree.norm(grads)


def _data_term(energy_fn, params, batch):
    return jax.tree.map(lambda g: jnp.mean(g, axis=0), energy_gradients(params, batch, energy_fn))


# ----------------------------------------------------------------------------- trainers
def cd(
    energy_model,
    kernel: Kernel,
    *,
    num_steps: int = 1,
    optimizer: optax.GradientTransformation | None = None,
) -> Trainer:
    r"""Contrastive divergence CD-:math:`k` (module docstring; **biased** for finite :math:`k`).

    Args:
        energy_model: an energy model with ``energy(params, x)`` (and ``init_params()``), or a
            bare ``energy_fn(params, x)`` (e.g. :func:`ebm_ppl.mcmc.tabular.trajectory_energy`).
        kernel: a :class:`~ebm_ppl.mcmc.chains.Kernel`.
        num_steps: :math:`k` (int >= 1).
        optimizer: optax transformation; default ``adam(1e-2)``. Schedules (decaying steps)
            go through optax as usual.

    Returns:
        A :class:`~ebm_ppl.adversarial.trainers.Trainer`:

        * ``init(rng_key, params=None) -> CDState`` (``params`` default
          ``energy_model.init_params()``; the key is unused, kept for the interface);
        * ``update(rng_key, state, batch) -> (CDState, MCMCTrainerInfo)``, ``batch`` a pytree
          with a leading ``(N,)`` axis (one chain per datum); jit-compiled.

    Raises:
        ValueError / TypeError: naming the argument.
    """
    energy_fn, init_params = _energy_parts(energy_model)
    kernel = _check_kernel(kernel)
    num_steps = _check_int("num_steps", num_steps)
    opt = optax.adam(1e-2) if optimizer is None else optimizer

    def init(rng_key, params=None) -> CDState:
        del rng_key
        params = _initial_params(params, init_params)
        return CDState(params=params, opt_state=opt.init(params), step=jnp.zeros((), jnp.int32))

    @jax.jit
    def _update(rng_key, state, batch):
        params = state.params
        grad_log_z, chain_info = cd_gradient(rng_key, params, batch, energy_fn, kernel, num_steps)
        data_grad = _data_term(energy_fn, params, batch)
        new_params, opt_state, norm = _step(opt, params, state.opt_state, data_grad, grad_log_z)
        info = MCMCTrainerInfo(
            gradient_norm=norm,
            acceptance_rate=chain_info.acceptance_rate,
            ess=chain_info.ess,
            data_energy=_mean_energy(energy_fn, params, batch),
            chain_energy=chain_info.mean_energy,
        )
        return CDState(params=new_params, opt_state=opt_state, step=state.step + 1), info

    def update(rng_key, state, batch):
        if not isinstance(state, CDState):
            raise TypeError(f"`state` must be a CDState; got {type(state).__name__}.")
        return _update(rng_key, state, _check_batch(batch))

    return Trainer(init=init, update=update)


def pcd(
    energy_model,
    kernel: Kernel,
    *,
    num_chains: int = 256,
    num_steps: int = 1,
    optimizer: optax.GradientTransformation | None = None,
) -> Trainer:
    r"""Persistent contrastive divergence / stochastic maximum likelihood (module docstring).

    Consistent for the MLE with a Robbins–Monro decaying step; with a constant step the iterates
    fluctuate around it.

    Args:
        energy_model: an energy model with ``energy(params, x)`` (and ``init_params()``), or a
            bare ``energy_fn(params, x)``.
        kernel: a :class:`~ebm_ppl.mcmc.chains.Kernel`.
        num_chains: ``C`` persistent chains (int >= 1) when started from ``data``.
        num_steps: :math:`k` kernel steps per update (int >= 1).
        optimizer: optax transformation; default ``adam(1e-2)``.

    Returns:
        A :class:`~ebm_ppl.adversarial.trainers.Trainer`:

        * ``init(rng_key, params=None, *, data=None, positions=None) -> PCDState``: exactly one
          of ``data`` (chains start at ``num_chains`` data points drawn with replacement) and
          ``positions`` (leading ``(C,)`` axis) is given;
        * ``update(rng_key, state, batch) -> (PCDState, MCMCTrainerInfo)``; jit-compiled.

    Raises:
        ValueError / TypeError: naming the argument.
    """
    energy_fn, init_params = _energy_parts(energy_model)
    kernel = _check_kernel(kernel)
    num_chains = _check_int("num_chains", num_chains)
    num_steps = _check_int("num_steps", num_steps)
    opt = optax.adam(1e-2) if optimizer is None else optimizer

    def init(rng_key, params=None, *, data=None, positions=None) -> PCDState:
        if (data is None) == (positions is None):
            raise ValueError(
                "exactly one of `data` (chains start at data points) and `positions` must be "
                f"given; got data={type(data).__name__} and positions={type(positions).__name__}."
            )
        params = _initial_params(params, init_params)
        if data is not None:
            chains = init_chains_from_data(rng_key, _check_batch(data), num_chains)
        else:
            chains = init_chains(positions)
        return PCDState(
            params=params,
            chains=chains,
            opt_state=opt.init(params),
            step=jnp.zeros((), jnp.int32),
        )

    @jax.jit
    def _update(rng_key, state, batch):
        params = state.params
        grad_log_z, chains, chain_info = pcd_gradient(
            rng_key, params, state.chains, energy_fn, kernel, num_steps
        )
        data_grad = _data_term(energy_fn, params, batch)
        new_params, opt_state, norm = _step(opt, params, state.opt_state, data_grad, grad_log_z)
        info = MCMCTrainerInfo(
            gradient_norm=norm,
            acceptance_rate=chain_info.acceptance_rate,
            ess=chain_info.ess,
            data_energy=_mean_energy(energy_fn, params, batch),
            chain_energy=chain_info.mean_energy,
        )
        new_state = PCDState(
            params=new_params, chains=chains, opt_state=opt_state, step=state.step + 1
        )
        return new_state, info

    def update(rng_key, state, batch):
        if not isinstance(state, PCDState):
            raise TypeError(f"`state` must be a PCDState; got {type(state).__name__}.")
        return _update(rng_key, state, _check_batch(batch))

    return Trainer(init=init, update=update)


# ----------------------------------------------------------------------------- training loop
@functools.partial(jax.jit, static_argnames=("trainer", "num_steps", "batch_size"))
def _train(rng_key, trainer, state, data, num_steps, batch_size):
    size = jax.tree.leaves(data)[0].shape[0]

    def body(state, key):
        if batch_size is None:
            return trainer.update(key, state, data)
        key_batch, key_update = jax.random.split(key)
        index = jax.random.choice(key_batch, size, (batch_size,), replace=False)
        return trainer.update(key_update, state, jax.tree.map(lambda leaf: leaf[index], data))

    return jax.lax.scan(body, state, jax.random.split(rng_key, num_steps))


def train(rng_key, trainer, state, data, num_steps: int, *, batch_size: int | None = None):
    """Run ``num_steps`` updates of ``trainer`` in one jit-compiled ``lax.scan``.

    Args:
        rng_key: key, split into one key per step.
        trainer: from :func:`cd` or :func:`pcd`.
        state: its state.
        data: pytree with a leading ``(N,)`` axis (a jit argument).
        num_steps: number of updates (int >= 1; static).
        batch_size: minibatch drawn without replacement each step (static); default all data.

    Returns:
        The final state and the :class:`MCMCTrainerInfo` stacked along ``(num_steps,)``.
    """
    num_steps = _check_int("num_steps", num_steps)
    data = _check_batch(data)
    size = jax.tree.leaves(data)[0].shape[0]
    if batch_size is not None:
        batch_size = _check_int("batch_size", batch_size)
        if batch_size > size:
            raise ValueError(
                f"`batch_size` must be <= N = {size} (the number of data points); got {batch_size}."
            )
    return _train(rng_key, trainer, state, data, num_steps, batch_size)
