r"""Energy-based models on :math:`\mathbb R^d` by contrastive classification: NCE, GAN-EBM, FCE.

All three fit :math:`p_\theta(x) = e^{-E_\theta(x)}/Z(\theta)` (model ``"ebm"``) with the
discriminator of [FCAL] §4 (THEORY §5.1), a logistic classifier of data against draws of a
density :math:`q` that it can evaluate, with a **free** scalar :math:`\zeta` in the place of
:math:`\log Z`:

.. math::

    \ell_{\theta,\zeta}(x) = -E_\theta(x) - \zeta - \log\nu - \log q(x),\qquad D = \sigma(\ell),
    \qquad \nu = N_g/N_d,

    \hat{\mathcal L}_D(\theta,\zeta) = \frac1{N_d}\Big[\sum_{\mathcal D}\mathrm{softplus}(-\ell)
    + \sum_{\mathcal G}\mathrm{softplus}(\ell)\Big]

(:func:`~ebm_ppl.adversarial.discriminator.ebm_discriminator_loss`). Each ``update`` takes one
optimiser step on :math:`(\theta,\zeta)` of :math:`\hat{\mathcal L}_D` with fresh draws
:math:`\mathcal G\sim q`, then (for an adaptive :math:`q`) ``generator_steps`` steps on the
generator. The three methods differ only in :math:`q` and its loss:

* :func:`nce` [NCE] (THEORY §5.2): :math:`q = p_n` is **fixed** noise (a NumPyro distribution);
  no generator step. :math:`\hat{\mathcal L}_D` is exactly NCE's logistic loss with
  :math:`\log p_m = -E_\theta - \zeta`.
* :func:`gan_ebm` [FCAL] §4 (THEORY §5.1, §3.5): :math:`q = q_\phi` a normalising flow,
  generator loss the discriminator's **log-odds**,

  .. math::

      \mathcal L_G(\phi) = \mathbb E_{q_\phi}[\log(1-D) - \log D]
      = \mathbb E_{q_\phi}[E_\theta(x) + \log q_\phi(x)] + \zeta + \log\nu
      = \mathrm{KL}(q_\phi\,\|\,p_\theta) + \zeta - \log Z(\theta) + \log\nu,

  estimated with reparameterised draws :math:`x = f_\phi(z)` (fact 3: the sampler loss, i.e.
  minus the ELBO, plus a constant in :math:`\phi`; the generator chases :math:`p_\theta` by
  mode-seeking reverse KL, and equals the KL only when :math:`\zeta = \log Z(\theta)` and
  :math:`\nu=1`).
* :func:`fce` [FCE] (THEORY §5.3): the same flow, generator loss **minimax** on the shared value
  function, :math:`\min_\phi V` with :math:`V = -\hat{\mathcal L}_D`:

  .. math::

      V(\theta,\zeta,\phi) = \frac1{N_d}\sum_{\mathcal D}\log D(x)
      + \frac{1}{N_d}\sum_{\mathcal G}\log(1 - D(x)),

  differentiated through the reparameterised draws **and** through :math:`\log q_\phi` at the
  data (the data term depends on :math:`\phi` because :math:`D` does). When
  :math:`p_\theta\approx p` this approximately minimises :math:`\mathrm{JSD}(p\,\|\,q_\phi)`, not
  the KL to :math:`p_\theta`.

**What is estimated, and the bias.** With a well-specified energy class and :math:`q > 0`
wherever :math:`p > 0`, the population optimum of :math:`\hat{\mathcal L}_D` is
:math:`e^{-E_\theta - \zeta} = p`: :math:`\theta` is **consistent** (the NCE theorem) for any fixed
or adaptive :math:`q`, and :math:`\zeta\to\log Z(\theta)`. In finite samples, at the optimum in
:math:`\zeta` for the current :math:`\theta` the intercept condition
:math:`\sum_{\mathcal M}D = N_d` holds and :math:`e^{\zeta}` is the mixture importance estimate
of :math:`Z(\theta)` with :math:`\tilde p = p_\theta` (fact 1, THEORY §3.3): a **fixed point**,
not an unbiased estimate, and equal to :math:`\log Z(\theta)` only where the data follow
:math:`p_\theta`. Adaptive :math:`q` helps efficiency (NCE is most efficient with noise near the
data), not consistency. With a misspecified class the optimum is the NCE projection, not the MLE
(THEORY §3.6).

**Errata of [FCAL] §4** (THEORY §5.1, §10.5, §10.2):

1. *Sign.* The paper writes the discriminator as :math:`\sigma(E_\theta(x) - \log q(x))` with a
   trainable bias. With :math:`p_\theta\propto e^{-E_\theta}` the logit must be
   :math:`-E_\theta(x) - \log q(x) - \log Z`; the code uses that form.
2. *"Unbiased".* The paper calls the partition-function estimate unbiased and the procedure
   consistent even with an imperfect generator. The discriminator optimum is consistent (above,
   needs :math:`q>0` on the support of :math:`p`). :math:`Z` is unbiased only if :math:`\tilde p`
   is the true data density, which fails in this :math:`\tilde p = p_\theta` form away from the
   optimum; and :math:`\log\hat Z` (so :math:`\zeta`) is biased in every case (Jensen, THEORY §6).

Diagnostics (:class:`EBMInfo`) are cheap by-products of the discriminator batch: the Monte Carlo
ELBO :math:`\frac1{N_g}\sum_{\mathcal G}[-E_\theta - \log q]` (a lower bound on
:math:`\log Z(\theta)` in expectation), the importance estimate
:math:`\log\frac1{N_g}\sum_{\mathcal G}e^{-E_\theta - \log q}` (consistent, biased low), and the
intercept residual :math:`\sum_{\mathcal M}D/N_d - 1` (zero at :math:`\zeta^*`, fact 1).

Usage::

    problem = toy2d.make_problem(jax.random.key(0), energy="banana", num_data=4000)
    trainer = gan_ebm(problem.energy_model, CouplingFlow(dim=2), nu=1.0)
    state = trainer.init(jax.random.key(1), data=problem.data)
    state, infos = train(jax.random.key(2), trainer, state, problem.data, num_steps=1000)

References: [FCAL] §4; [NCE] Gutmann & Hyvärinen 2010/2012; [FCE] Gao et al. 2020; THEORY §3,
§5, §6, §8.3.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp
from numpyro.distributions import Distribution

from ebm_ppl._validation import check_choice
from ebm_ppl.adversarial.discriminator import (
    discriminator_logits,
    ebm_discriminator_loss,
    generator_loss,
)
from ebm_ppl.adversarial.flows import CouplingFlow
from ebm_ppl.adversarial.trainers import Trainer

__all__ = [
    "EBM_GENERATOR_LOSSES",
    "EBMState",
    "EBMInfo",
    "contrastive_ebm",
    "nce",
    "gan_ebm",
    "fce",
    "train",
    "energies",
]

EBM_GENERATOR_LOSSES = ("logodds", "minimax")
"""Generator losses of the adaptive trainers: ``"logodds"`` (GAN-EBM) and ``"minimax"`` (FCE)."""

NUM_INIT_SAMPLES = 4096
"""Draws of the initial generator for the default :math:`\\zeta` (importance estimate)."""


class EBMState(NamedTuple):
    """State of the contrastive EBM trainers.

    Attributes:
        params: energy parameters :math:`\\theta` (the energy model's pytree).
        zeta: ``()`` the free normaliser :math:`\\zeta` (plays :math:`\\log Z`).
        generator_params: flow parameters :math:`\\phi`; ``()`` for fixed noise (NCE).
        energy_opt_state: optimiser state of :math:`(\\theta, \\zeta)`.
        generator_opt_state: optimiser state of :math:`\\phi` (``()`` for NCE).
        step: ``()`` int32, number of updates done.
    """

    params: Any
    zeta: jax.Array
    generator_params: Any
    energy_opt_state: Any
    generator_opt_state: Any
    step: jax.Array


class EBMInfo(NamedTuple):
    """Per-update diagnostics (scalars; stacked along steps by :func:`train`).

    Attributes:
        discriminator_loss: :math:`\\hat{\\mathcal L}_D(\\theta,\\zeta)` before the step.
        generator_loss: the generator's loss at its last step (before that step's update):
            log-odds :math:`\\mathbb E_q[E + \\log q] + \\zeta + \\log\\nu` or minimax
            :math:`V = -\\hat{\\mathcal L}_D`; NaN for fixed noise.
        zeta: :math:`\\zeta` after the step.
        elbo: Monte Carlo ELBO :math:`\\frac1{N_g}\\sum_{\\mathcal G}[-E_\\theta - \\log q]` on the
            discriminator batch (before the step); a lower bound on :math:`\\log Z(\\theta)` in
            expectation.
        log_z_importance: :math:`\\log\\frac1{N_g}\\sum_{\\mathcal G}e^{-E_\\theta-\\log q}`
            on the same batch; consistent for :math:`\\log Z(\\theta)`, biased low (THEORY §6).
        intercept_residual: :math:`\\sum_{\\mathcal M}D / N_d - 1` before the step; zero at
            the optimal :math:`\\zeta^*` (fact 1).
        mean_d_data: mean :math:`D` on the data (before the step).
        mean_d_samples: mean :math:`D` on the draws (before the step).
    """

    discriminator_loss: jax.Array
    generator_loss: jax.Array
    zeta: jax.Array
    elbo: jax.Array
    log_z_importance: jax.Array
    intercept_residual: jax.Array
    mean_d_data: jax.Array
    mean_d_samples: jax.Array


class _Generator(NamedTuple):
    """The density :math:`q` behind one trainer: a flow (adaptive) or fixed NumPyro noise."""

    init: Callable  # (rng_key, data | None) -> params
    sample_and_log_prob: Callable  # (rng_key, params, n) -> ((n, d), (n,))
    log_prob: Callable  # (params, (n, d)) -> (n,)
    adaptive: bool


# ----------------------------------------------------------------------------- validation
def _check_energy_model(energy_model) -> int:
    for method in ("energy", "init_params"):
        if not callable(getattr(energy_model, method, None)):
            raise TypeError(
                f"`energy_model` must have an `{method}` method (ebm_ppl.energy conventions); "
                f"got {type(energy_model).__name__}."
            )
    dim = getattr(energy_model, "dim", None)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise TypeError(
            f"`energy_model` must have an int attribute `dim` >= 1; got {dim!r} on "
            f"{type(energy_model).__name__}."
        )
    return int(dim)


def _check_nu(nu) -> float:
    if isinstance(nu, bool) or not isinstance(nu, (int, float, np.integer, np.floating)):
        raise ValueError(f"`nu` must be a number > 0 (nu = N_g / N_d); got {nu!r}.")
    if not (math.isfinite(float(nu)) and float(nu) > 0):
        raise ValueError(f"`nu` must be a finite number > 0 (nu = N_g / N_d); got {nu!r}.")
    return float(nu)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1; got {value!r}.")
    return int(value)


def _check_data(data, dim: int) -> jax.Array:
    data = jnp.asarray(data)
    if data.ndim != 2 or data.shape[1] != dim or data.shape[0] < 1:
        raise ValueError(
            f"`data` must have shape (N, d) = (N, {dim}) with N >= 1; got shape {data.shape}."
        )
    if not jnp.issubdtype(data.dtype, jnp.floating):
        raise ValueError(f"`data` must be a floating array; got dtype {data.dtype}.")
    return data


def _num_generated(nu: float, num_data: int) -> int:
    num_gen = int(round(nu * num_data))
    if num_gen < 1:
        raise ValueError(
            f"`nu` * N_d must round to at least one draw; got nu = {nu!r} and N_d = {num_data}."
        )
    return num_gen


# ----------------------------------------------------------------------------- generators
def _flow_generator(flow, dim: int) -> _Generator:
    for method in ("init_params", "sample_and_log_prob", "log_prob"):
        if not callable(getattr(flow, method, None)):
            raise TypeError(
                f"`flow` must have a `{method}` method (e.g. CouplingFlow); got "
                f"{type(flow).__name__}."
            )
    if getattr(flow, "dim", dim) != dim:
        raise ValueError(
            f"`flow.dim` must equal the energy model's dimension {dim}; got {flow.dim}."
        )

    def init(rng_key, data):
        if data is None:
            return flow.init_params(rng_key)
        return flow.init_params(rng_key, loc=jnp.mean(data, 0), scale=jnp.std(data, 0))

    return _Generator(
        init=init,
        sample_and_log_prob=flow.sample_and_log_prob,
        log_prob=flow.log_prob,
        adaptive=True,
    )


def _noise_generator(noise, dim: int) -> _Generator:
    if not isinstance(noise, Distribution):
        raise TypeError(
            f"`noise` must be a numpyro Distribution with event_shape (d,) = ({dim},); got "
            f"{type(noise).__name__}."
        )
    if tuple(noise.event_shape) != (dim,) or tuple(noise.batch_shape) != ():
        raise ValueError(
            f"`noise` must have event_shape (d,) = ({dim},) and batch_shape (); got "
            f"event_shape {tuple(noise.event_shape)} and batch_shape {tuple(noise.batch_shape)}."
        )

    def sample_and_log_prob(rng_key, params, num_samples):
        del params
        x = noise.sample(rng_key, (num_samples,))
        return x, noise.log_prob(x)

    return _Generator(
        init=lambda rng_key, data: (),
        sample_and_log_prob=sample_and_log_prob,
        log_prob=lambda params, x: noise.log_prob(x),
        adaptive=False,
    )


def energies(energy_model, params, points) -> jax.Array:
    """:math:`E_\\theta` at a batch of points ``(n, d)``: ``(n,)`` (vmap of ``energy``)."""
    return jax.vmap(lambda x: energy_model.energy(params, x))(points)


# ----------------------------------------------------------------------------- the trainer
def contrastive_ebm(
    energy_model,
    *,
    flow=None,
    noise=None,
    generator_loss_kind: str = "logodds",
    nu: float = 1.0,
    energy_optimizer: optax.GradientTransformation | None = None,
    generator_optimizer: optax.GradientTransformation | None = None,
    generator_steps: int = 1,
) -> Trainer:
    r"""The contrastive EBM trainer behind :func:`nce`, :func:`gan_ebm` and :func:`fce`.

    Exactly one of ``flow`` (adaptive generator, trained with ``generator_loss_kind``) and
    ``noise`` (fixed, NCE) is given. See the module docstring for the math and the bias.

    Args:
        energy_model: energy model on :math:`\mathbb R^d` (``energy(params, x)`` for one point,
            ``init_params()``, ``dim``), with **no free output bias** (THEORY §3.6).
        flow: generator with ``init_params``, ``sample_and_log_prob(rng_key, params, n)`` and
            ``log_prob(params, x)`` (e.g. :class:`~ebm_ppl.adversarial.flows.CouplingFlow`).
        noise: fixed noise, a NumPyro distribution with ``event_shape`` ``(d,)``, positive
            wherever the data density is.
        generator_loss_kind: ``"logodds"`` (GAN-EBM: reverse KL to :math:`p_\theta`) or
            ``"minimax"`` (FCE: :math:`\min_\phi V`); ignored with ``noise``.
        nu: :math:`\nu > 0`; each update draws :math:`N_g = \mathrm{round}(\nu N_d)` points
            and uses the exact ratio :math:`N_g/N_d` in the logit.
        energy_optimizer: optax transformation for :math:`(\theta,\zeta)`; default
            ``adam(1e-2)``.
        generator_optimizer: optax transformation for the flow; default ``adam(1e-3)``.
        generator_steps: generator steps per update (int >= 1; each with fresh draws).

    Returns:
        :class:`~ebm_ppl.adversarial.trainers.Trainer` with

        * ``init(rng_key, params=None, *, zeta=None, generator_params=None, data=None)
          -> EBMState``: ``params`` default ``energy_model.init_params()``; the flow starts as
          the Gaussian with the moments of ``data`` when given (else standard normal); ``zeta``
          defaults to the importance estimate of :math:`\log Z(\theta_0)` from
          :data:`NUM_INIT_SAMPLES` draws of the initial generator (biased low, THEORY §6).
        * ``update(rng_key, state, data) -> (EBMState, EBMInfo)``: ``data`` ``(N_d, d)`` (a full
          batch or a minibatch); pure and jit-compiled.

    Raises:
        ValueError / TypeError: naming the argument, on a bad ``nu``, ``generator_loss_kind``,
        ``generator_steps``, a ``flow``/``noise`` of the wrong kind or dimension, or both/neither.
    """
    dim = _check_energy_model(energy_model)
    nu = _check_nu(nu)
    generator_steps = _check_positive_int("generator_steps", generator_steps)
    if (flow is None) == (noise is None):
        raise ValueError(
            "exactly one of `flow` (adaptive generator) and `noise` (fixed, NCE) must be given; "
            f"got flow={type(flow).__name__} and noise={type(noise).__name__}."
        )
    if flow is not None:
        check_choice("generator_loss_kind", generator_loss_kind, EBM_GENERATOR_LOSSES)
        generator = _flow_generator(flow, dim)
    else:
        generator = _noise_generator(noise, dim)
    energy_opt = optax.adam(1e-2) if energy_optimizer is None else energy_optimizer
    generator_opt = optax.adam(1e-3) if generator_optimizer is None else generator_optimizer

    @jax.jit
    def initial_state(rng_key, params, zeta, generator_params, data) -> EBMState:
        """One compiled program for every default (``None`` arguments are empty pytrees)."""
        key_flow, key_zeta = jax.random.split(rng_key)
        if generator_params is None:
            generator_params = generator.init(key_flow, data)
        if zeta is None:
            x, log_q = generator.sample_and_log_prob(key_zeta, generator_params, NUM_INIT_SAMPLES)
            log_w = -energies(energy_model, params, x) - log_q
            zeta = logsumexp(log_w) - math.log(NUM_INIT_SAMPLES)
        adaptive = generator.adaptive
        return EBMState(
            params=params,
            zeta=zeta,
            generator_params=generator_params if adaptive else (),
            energy_opt_state=energy_opt.init((params, zeta)),
            generator_opt_state=generator_opt.init(generator_params) if adaptive else (),
            step=jnp.zeros((), jnp.int32),
        )

    def init(rng_key, params=None, *, zeta=None, generator_params=None, data=None) -> EBMState:
        if data is not None:
            data = _check_data(data, dim)
        params = energy_model.init_params() if params is None else params
        if zeta is not None:
            zeta = jnp.asarray(zeta)
            if zeta.shape != ():
                raise ValueError(f"`zeta` must be a scalar on R^d; got shape {zeta.shape}.")
            if not jnp.issubdtype(zeta.dtype, jnp.floating):
                zeta = zeta.astype(jnp.result_type(float))
        return initial_state(rng_key, params, zeta, generator_params, data)

    def generator_objective(generator_params, rng_key, params, zeta, data, energy_data, ratio):
        num_gen = _num_generated(nu, data.shape[0])
        x, log_q = generator.sample_and_log_prob(rng_key, generator_params, num_gen)
        energy_samples = energies(energy_model, params, x)
        if generator_loss_kind == "logodds":
            logits = discriminator_logits(-energy_samples, log_q, zeta, ratio)
            return generator_loss(logits, "logodds")
        # minimax (FCE): V = -L_D, with log q differentiated at the data too
        log_q_data = generator.log_prob(generator_params, data)
        return -ebm_discriminator_loss(zeta, energy_data, energy_samples, log_q_data, log_q, ratio)

    def generator_update(rng_key, state, params, zeta, data):
        energy_data = jax.lax.stop_gradient(energies(energy_model, params, data))
        ratio = _num_generated(nu, data.shape[0]) / data.shape[0]
        grad_fn = jax.value_and_grad(generator_objective)

        def one_step(carry, key):
            gen_params, opt_state = carry
            loss, grads = grad_fn(gen_params, key, params, zeta, data, energy_data, ratio)
            updates, opt_state = generator_opt.update(grads, opt_state, gen_params)
            return (optax.apply_updates(gen_params, updates), opt_state), loss

        carry = (state.generator_params, state.generator_opt_state)
        if generator_steps == 1:  # no inner scan: a smaller program to compile
            (gen_params, opt_state), loss = one_step(carry, rng_key)
            return gen_params, opt_state, loss
        keys = jax.random.split(rng_key, generator_steps)
        (gen_params, opt_state), losses = jax.lax.scan(one_step, carry, keys)
        return gen_params, opt_state, losses[-1]

    @jax.jit
    def _update(rng_key, state, data):
        key_disc, key_gen = jax.random.split(rng_key)
        num_data = data.shape[0]
        num_gen = _num_generated(nu, num_data)
        ratio = num_gen / num_data
        gen_params = jax.lax.stop_gradient(state.generator_params)
        samples, log_q_samples = generator.sample_and_log_prob(key_disc, gen_params, num_gen)
        samples = jax.lax.stop_gradient(samples)
        log_q_samples = jax.lax.stop_gradient(log_q_samples)
        log_q_data = generator.log_prob(gen_params, data)

        def loss_fn(params_and_zeta):
            params, zeta = params_and_zeta
            energy_data = energies(energy_model, params, data)
            energy_samples = energies(energy_model, params, samples)
            loss = ebm_discriminator_loss(
                zeta, energy_data, energy_samples, log_q_data, log_q_samples, ratio
            )
            return loss, (energy_data, energy_samples)

        params_and_zeta = (state.params, state.zeta)
        loss_and_grad = jax.value_and_grad(loss_fn, has_aux=True)
        (d_loss, (energy_data, energy_samples)), grads = loss_and_grad(params_and_zeta)
        updates, energy_opt_state = energy_opt.update(
            grads, state.energy_opt_state, params_and_zeta
        )
        params, zeta = optax.apply_updates(params_and_zeta, updates)

        d_data = jax.nn.sigmoid(discriminator_logits(-energy_data, log_q_data, state.zeta, ratio))
        d_samples = jax.nn.sigmoid(
            discriminator_logits(-energy_samples, log_q_samples, state.zeta, ratio)
        )
        log_w = -energy_samples - log_q_samples

        if generator.adaptive:
            gen_params, gen_opt_state, g_loss = generator_update(key_gen, state, params, zeta, data)
        else:
            gen_params, gen_opt_state = (), ()
            g_loss = jnp.full((), jnp.nan, d_loss.dtype)

        new_state = EBMState(
            params=params,
            zeta=zeta,
            generator_params=gen_params,
            energy_opt_state=energy_opt_state,
            generator_opt_state=gen_opt_state,
            step=state.step + 1,
        )
        info = EBMInfo(
            discriminator_loss=d_loss,
            generator_loss=g_loss,
            zeta=zeta,
            elbo=jnp.mean(log_w),
            log_z_importance=logsumexp(log_w) - jnp.log(jnp.asarray(num_gen, log_w.dtype)),
            intercept_residual=(jnp.sum(d_data) + jnp.sum(d_samples)) / num_data - 1,
            mean_d_data=jnp.mean(d_data),
            mean_d_samples=jnp.mean(d_samples),
        )
        return new_state, info

    def update(rng_key, state, data):
        data = _check_data(data, dim)
        _num_generated(nu, data.shape[0])
        return _update(rng_key, state, data)

    return Trainer(init=init, update=update)


def nce(
    energy_model,
    noise,
    *,
    nu: float = 1.0,
    optimizer: optax.GradientTransformation | None = None,
) -> Trainer:
    r"""Noise-contrastive estimation with **fixed** noise [NCE] (THEORY §5.2).

    Logistic regression of the data against :math:`\nu N_d` fresh noise draws per update, with
    :math:`\log p_m = -E_\theta - \zeta`. Consistent for :math:`(\theta, \log Z(\theta))` if the
    energy class is well specified and the noise is positive wherever the data density is; most
    efficient when the noise is close to the data (a moment-matched Gaussian or Student-t is a
    safe default; heavier tails than the data keep the density ratio bounded).

    Args:
        energy_model: energy model on :math:`\mathbb R^d` (no free output bias).
        noise: NumPyro distribution with ``event_shape`` ``(d,)``.
        nu: :math:`\nu = N_g/N_d > 0`.
        optimizer: optax transformation for :math:`(\theta,\zeta)`; default ``adam(1e-2)``.

    Returns:
        A :class:`~ebm_ppl.adversarial.trainers.Trainer` (:func:`contrastive_ebm`).
    """
    return contrastive_ebm(energy_model, noise=noise, nu=nu, energy_optimizer=optimizer)


def gan_ebm(
    energy_model,
    flow=None,
    *,
    nu: float = 1.0,
    energy_optimizer: optax.GradientTransformation | None = None,
    generator_optimizer: optax.GradientTransformation | None = None,
    generator_steps: int = 1,
) -> Trainer:
    r"""The GAN-EBM of [FCAL] §4 (THEORY §5.1): adaptive flow, log-odds generator loss.

    The generator minimises :math:`\mathbb E_{q_\phi}[E_\theta + \log q_\phi]` (reparameterised),
    which is :math:`\mathrm{KL}(q_\phi\|p_\theta)` up to the constant
    :math:`\zeta - \log Z(\theta) + \log\nu` (fact 3): the flow tracks the current model, so the
    discriminator's noise improves as :math:`p_\theta` approaches the data.

    Args:
        energy_model: energy model on :math:`\mathbb R^d` (no free output bias).
        flow: the generator (default :class:`~ebm_ppl.adversarial.flows.CouplingFlow` of the
            model's dimension).
        nu, energy_optimizer, generator_optimizer, generator_steps: as :func:`contrastive_ebm`.

    Returns:
        A :class:`~ebm_ppl.adversarial.trainers.Trainer` (:func:`contrastive_ebm`).
    """
    flow = CouplingFlow(dim=_check_energy_model(energy_model)) if flow is None else flow
    return contrastive_ebm(
        energy_model,
        flow=flow,
        generator_loss_kind="logodds",
        nu=nu,
        energy_optimizer=energy_optimizer,
        generator_optimizer=generator_optimizer,
        generator_steps=generator_steps,
    )


def fce(
    energy_model,
    flow=None,
    *,
    nu: float = 1.0,
    energy_optimizer: optax.GradientTransformation | None = None,
    generator_optimizer: optax.GradientTransformation | None = None,
    generator_steps: int = 1,
) -> Trainer:
    r"""Flow contrastive estimation [FCE] (THEORY §5.3): adaptive flow, minimax generator loss.

    Same discriminator as :func:`gan_ebm`; the flow minimises the shared value function
    :math:`V = -\hat{\mathcal L}_D` (through its draws and its density at the data), i.e. it
    makes the classification hardest, approximately minimising :math:`\mathrm{JSD}(p\|q_\phi)`
    when :math:`p_\theta\approx p`.

    Args and returns as :func:`gan_ebm`.
    """
    flow = CouplingFlow(dim=_check_energy_model(energy_model)) if flow is None else flow
    return contrastive_ebm(
        energy_model,
        flow=flow,
        generator_loss_kind="minimax",
        nu=nu,
        energy_optimizer=energy_optimizer,
        generator_optimizer=generator_optimizer,
        generator_steps=generator_steps,
    )


# ----------------------------------------------------------------------------- training loop
@functools.partial(jax.jit, static_argnames=("trainer", "num_steps", "batch_size"))
def _train(rng_key, trainer, state, data, num_steps, batch_size):
    def body(state, key):
        if batch_size is None:
            return trainer.update(key, state, data)
        key_batch, key_update = jax.random.split(key)
        index = jax.random.choice(key_batch, data.shape[0], (batch_size,), replace=False)
        return trainer.update(key_update, state, data[index])

    return jax.lax.scan(body, state, jax.random.split(rng_key, num_steps))


def train(rng_key, trainer, state, data, num_steps: int, *, batch_size: int | None = None):
    """Run ``num_steps`` updates of ``trainer`` in one jit-compiled ``lax.scan``.

    Args:
        rng_key: key, split into one key per step.
        trainer: a :class:`~ebm_ppl.adversarial.trainers.Trainer` (e.g. from :func:`nce`).
        state: its state (from ``trainer.init``).
        data: ``(N, d)`` data (a jit argument, not a compile-time constant).
        num_steps: number of updates (int >= 1; static).
        batch_size: minibatch size drawn without replacement each step (static); default the
            full data every step.

    Returns:
        The final state and the infos stacked along a leading ``(num_steps,)`` axis.
    """
    num_steps = _check_positive_int("num_steps", num_steps)
    data = jnp.asarray(data)
    if data.ndim != 2 or data.shape[0] < 1:
        raise ValueError(f"`data` must have shape (N, d) with N >= 1; got shape {data.shape}.")
    if batch_size is not None:
        batch_size = _check_positive_int("batch_size", batch_size)
        if batch_size > data.shape[0]:
            raise ValueError(
                f"`batch_size` must be <= N = {data.shape[0]} (the number of data points); got "
                f"{batch_size}."
            )
    return _train(rng_key, trainer, state, data, num_steps, batch_size)
