r"""Thermodynamic integration (path sampling): :math:`\log Z` on :math:`\mathbb R^d`.

Serves the ``"ebm"`` model of a :class:`~ebm_ppl.problems.DensityProblem`,
:math:`p_\theta(x) = e^{-E_\theta(x)}/Z(\theta)`, along the same geometric path as
:func:`~ebm_ppl.logz.ais.ais` and :func:`~ebm_ppl.logz.ais.tempered_smc`: a normalised reference
:math:`q` (default :math:`\mathcal N(0, 3^2 I_d)`), :math:`\ell(x) = e^{-E(x)}/q(x)` and

.. math::

    \pi_\beta(x) = q(x)\,\ell(x)^\beta / Z_\beta,\qquad Z_0 = 1,\quad Z_1 = Z.

Differentiating :math:`\log Z_\beta` under the integral gives the path-sampling identity
(Gelman & Meng 1998; Friel & Pettitt 2008)

.. math::

    \log Z = \log Z_{\text{ref}} + \int_0^1 g(\beta)\,d\beta,\qquad
    g(\beta) = \mathbb E_{\pi_\beta}\big[\log\tilde p(x) - \log q(x)\big]
    = \mathbb E_{\pi_\beta}\big[-E(x) - \log q(x)\big],

with :math:`\log Z_{\text{ref}} = 0` for a normalised :math:`q`, and
:math:`g'(\beta) = \mathrm{Var}_{\pi_\beta}(\log\ell) \ge 0` (the integrand increases, steeply
near :math:`\beta = 0` when :math:`q` is much wider than the target). Hence the default
``"power"`` ladder :math:`\beta_k = (k/(L-1))^5` (Friel & Pettitt 2008), whose first rungs sit at
:math:`10^{-8}`-ish: AIS's ``"geometric"`` spacing starts at :math:`\beta_1 = 10^{-3}` and leaves
the steepest part of :math:`g` to one interval (``toy2d`` double well, :math:`L = 33`, Simpson,
exact :math:`g`: error :math:`-0.051` geometric, :math:`+0.004` power).

**Estimator.** On a ladder :math:`0 = \beta_0 < \dots < \beta_{L-1} = 1` of ``num_rungs``
:math:`L` rungs, ``num_chains`` independent MCMC chains (a BlackJAX kernel from
:func:`ebm_ppl.mcmc.chains.mcmc_kernel`, chains vmapped, steps a ``lax.scan``) anneal up the
ladder: they start from independent draws of :math:`q` (exact at :math:`\beta_0 = 0`), and at
each rung take ``num_warmup`` discarded steps targeting :math:`\pi_{\beta_k}` from where the
previous rung left them, then ``num_samples`` kept steps (starting every rung from :math:`q`
instead strands chains in the far tails of peaked targets, where a fixed-step kernel rejects
everything: about 120 nats low on the banana). :math:`\bar g_k` is the mean of
:math:`\log\ell` over the kept draws, and

.. math::

    \widehat{\log Z} = \sum_{k=0}^{L-1} w_k\,\bar g_k

with the weights :math:`w` of the trapezoid or the (non-uniform, composite) Simpson rule.

**Errors reported.**

* ``stderr``, the Monte Carlo standard error:
  :math:`\big(\sum_k w_k^2\,\mathrm{SE}_k^2\big)^{1/2}`, where :math:`\mathrm{SE}_k` is the
  batch-means standard error of :math:`\bar g_k` (``num_batches`` contiguous batches per chain;
  the default, one batch per chain, makes the batches exactly independent chains). The rungs'
  errors are added as independent: consecutive rungs share chains, but ``num_warmup`` steps
  separate one rung's kept draws from the next's, so their covariance is negligible when the
  warm-up is long against the autocorrelation time (the tests check the standard error
  against the spread over replicates).
* ``info.discretisation_error``, :math:`|\mathrm{TI}(L) - \mathrm{TI}(L/2)|`: the same rule on
  every other rung (``info.coarse_log_z``), from the same draws. For a rule of order :math:`p`
  the coarse error is about :math:`2^p` times the fine one, so this over-estimates the
  discretisation error of the returned value (by about 3 for the trapezoid rule, 15 for
  Simpson's) **when the ladder resolves** :math:`g`. When it does not (both ladders miss the
  same steep stretch of :math:`g`), the difference can be smaller than the error: with the
  geometric ladder above, trapezoid error :math:`-0.10`, difference :math:`0.07`.

**Bias.** Not unbiased in :math:`Z`; it estimates :math:`\log Z` directly, so there is no Jensen
term. Two biases remain:

* *discretisation*: the quadrature error of the rule on the ladder, deterministic given
  :math:`g`; :math:`O(h^2)` for the trapezoid rule (whose sign is that of :math:`-g''`: the
  usual concave :math:`g` gives an estimate biased **low**), :math:`O(h^4)` for Simpson's on a
  smoothly graded ladder (:math:`h_0 - h_1 = O(h^2)` within each pair), for smooth :math:`g`.
  It vanishes as :math:`L \to \infty`.
* *MCMC*: finite warm-up from :math:`q`, and non-ergodic chains. A local kernel does not move
  mass between well-separated modes, so on multimodal targets (``toy2d`` ``"mixture"``) the
  chains' split between modes freezes early on the ladder, is never corrected (no weights, no
  resampling) and the estimate is inconsistent; the standard error does not see this. On
  unimodal targets the estimate is consistent as ``num_samples`` and :math:`L` grow.

Cost: ``L * num_chains * (num_warmup + num_samples)`` transitions, plus one :math:`\log\ell`
per kept draw. Not a smooth function of ``params`` (accept/reject steps), so it must not feed a
plug-in likelihood for NUTS (THEORY §7.4).

References: THEORY §6 (the reference path), §8.3 (anchors); Gelman & Meng 1998, "Simulating
normalizing constants: from importance sampling to bridge sampling to path sampling"; Friel &
Pettitt 2008, "Marginal likelihood estimation via power posteriors".
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl._validation import check_choice
from ebm_ppl.logz.ais import (
    _check_reference,
    _density_target,
    _draw_reference,
    _positive,
    _positive_int,
    temperature_schedule,
)
from ebm_ppl.logz.base import LogZEstimator, LogZResult
from ebm_ppl.mcmc.chains import KERNELS, Kernel, mcmc_kernel

__all__ = [
    "POWER_EXPONENT",
    "RULES",
    "SCHEDULES",
    "TIInfo",
    "quadrature_weights",
    "thermodynamic_integration",
]

RULES = ("trapezoid", "simpson")
"""Quadrature rules in :math:`\\beta`."""
SCHEDULES = ("power", "geometric", "linear", "sigmoid")
"""Ladders: ``"power"`` here, the others from :func:`~ebm_ppl.logz.ais.temperature_schedule`."""
POWER_EXPONENT = 5
"""Exponent :math:`p` of the ``"power"`` ladder :math:`\\beta_k = (k/(L-1))^p`."""


class TIInfo(NamedTuple):
    """Info of :func:`thermodynamic_integration`.

    Attributes:
        temperatures: ``(L,)`` the ladder :math:`\\beta_0 = 0, \\dots, \\beta_{L-1} = 1`.
        weights: ``(L,)`` the quadrature weights :math:`w_k`.
        rung_means: ``(L,)`` :math:`\\bar g_k`, the mean of :math:`\\log\\ell` at each rung.
        rung_stderr: ``(L,)`` batch-means standard error of each :math:`\\bar g_k`.
        rung_ess: ``(L,)`` effective sample size implied by it,
            :math:`\\widehat{\\mathrm{Var}}(\\log\\ell)/\\mathrm{SE}_k^2` (draws).
        acceptance_rate: ``(L,)`` mean acceptance probability of the kept steps per rung.
        coarse_log_z: ``()`` the same rule on every other rung, :math:`\\mathrm{TI}(L/2)`.
        discretisation_error: ``()`` :math:`|\\mathrm{TI}(L) - \\mathrm{TI}(L/2)|`.
    """

    temperatures: jax.Array
    weights: jax.Array
    rung_means: jax.Array
    rung_stderr: jax.Array
    rung_ess: jax.Array
    acceptance_rate: jax.Array
    coarse_log_z: jax.Array
    discretisation_error: jax.Array


def quadrature_weights(temperatures, rule: str = "simpson") -> np.ndarray:
    """Weights :math:`w` with :math:`\\int_0^1 g \\approx \\sum_k w_k g(\\beta_k)`, shape ``(L,)``.

    * ``"trapezoid"``: :math:`w_k = (h_{k-1} + h_k)/2` (:math:`h_k = \\beta_{k+1} - \\beta_k`),
      exact for linear :math:`g`; any ``L >= 2``.
    * ``"simpson"``: composite Simpson on consecutive pairs of intervals, for unequal spacing:
      on :math:`[\\beta_{2j}, \\beta_{2j+2}]` with :math:`h_0, h_1`,
      :math:`\\frac{h_0 + h_1}{6}\\big[(2 - \\tfrac{h_1}{h_0})g_0
      + \\tfrac{(h_0 + h_1)^2}{h_0h_1}g_1 + (2 - \\tfrac{h_0}{h_1})g_2\\big]`, exact for
      quadratic :math:`g` (cubic too where :math:`h_0 = h_1`); needs an even number of
      intervals (odd ``L >= 3``).

    Args:
        temperatures: ``(L,)`` strictly increasing.
        rule: one of :data:`RULES`.

    Raises:
        ValueError: naming ``rule`` or ``temperatures``.
    """
    check_choice("rule", rule, RULES)
    betas = np.asarray(temperatures, dtype=np.float64)
    if betas.ndim != 1 or betas.shape[0] < 2 or np.any(np.diff(betas) <= 0):
        raise ValueError(
            "`temperatures` must be 1-D, of length >= 2 and strictly increasing; got "
            f"{temperatures!r}."
        )
    steps = np.diff(betas)
    weights = np.zeros_like(betas)
    if rule == "trapezoid":
        weights[:-1] += steps / 2
        weights[1:] += steps / 2
        return weights
    if steps.shape[0] % 2:
        raise ValueError(
            "`temperatures` must have an odd length (an even number of intervals) for "
            f"rule='simpson'; got length {betas.shape[0]}."
        )
    h0, h1 = steps[0::2], steps[1::2]
    scale = (h0 + h1) / 6
    weights[0:-1:2] += scale * (2 - h1 / h0)
    weights[1::2] += scale * (h0 + h1) ** 2 / (h0 * h1)
    weights[2::2] += scale * (2 - h0 / h1)
    return weights


def _ladder(num_rungs: int, schedule, rule: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ladder (float64) and the fine and coarse (every other rung) weights."""
    multiple = 4 if rule == "simpson" else 2
    if (num_rungs - 1) % multiple or num_rungs < multiple + 1:
        raise ValueError(
            f"`num_rungs` must be {multiple}m + 1 (m >= 1) for rule={rule!r}, so that the rule "
            f"also applies to every other rung (the discretisation check); got {num_rungs}."
        )
    if not isinstance(schedule, str) and np.shape(schedule) != (num_rungs,):
        raise ValueError(
            f"`schedule` as an array must have length num_rungs = {num_rungs}; got shape "
            f"{np.shape(schedule)}."
        )
    if isinstance(schedule, str):
        check_choice("schedule", schedule, SCHEDULES)
    if schedule == "power":
        betas = (np.arange(num_rungs, dtype=np.float64) / (num_rungs - 1)) ** POWER_EXPONENT
    else:  # AIS's schedules (and its validation of an explicit array)
        betas = np.asarray(temperature_schedule(num_rungs - 1, schedule), dtype=np.float64)
        if not isinstance(schedule, str):
            betas = np.asarray(schedule, dtype=np.float64)
    fine = quadrature_weights(betas, rule)
    coarse = np.zeros_like(fine)
    coarse[::2] = quadrature_weights(betas[::2], rule)
    return betas, fine, coarse


def _kernel(kernel, step_size: float, num_integration_steps: int) -> Kernel:
    if isinstance(kernel, Kernel):
        return kernel
    check_choice("kernel", kernel, KERNELS)
    return mcmc_kernel(kernel, step_size=step_size, num_integration_steps=num_integration_steps)


def thermodynamic_integration(
    num_rungs: int = 33,
    *,
    num_chains: int = 16,
    num_samples: int = 256,
    num_warmup: int = 128,
    kernel="hmc",
    step_size: float = 0.1,
    num_integration_steps: int = 10,
    reference=None,
    schedule="power",
    rule: str = "simpson",
    num_batches: int = 1,
) -> LogZEstimator:
    """Thermodynamic integration (path sampling) for :math:`\\log Z` of an EBM on R^d.

    .. math::

        \\widehat{\\log Z} = \\sum_{k=0}^{L-1} w_k\\,\\bar g_k,\\qquad
        \\bar g_k \\approx \\mathbb E_{\\pi_{\\beta_k}}[-E(x) - \\log q(x)],\\qquad
        \\pi_\\beta \\propto q^{1-\\beta}e^{-\\beta E}.

    Bias: discretisation (quadrature in :math:`\\beta`, reported as
    ``info.discretisation_error``) and MCMC (warm-up, non-ergodic chains on multimodal
    targets); no Jensen term. ``stderr`` is the Monte Carlo standard error only (batch means per
    rung, propagated through the weights). Serves ``"ebm"``. Module docstring for the details.

    Args:
        num_rungs: ladder length ``L`` (``2m + 1`` for the trapezoid rule, ``4m + 1`` for
            Simpson's, so the rule also applies to every other rung).
        num_chains: independent chains, annealed up the ladder (``>= 2`` for a standard error).
        num_samples: kept steps per chain and rung (divisible by ``num_batches``).
        num_warmup: discarded steps per chain at each rung (from the previous rung's states).
        kernel: ``"hmc"``, ``"mala"`` or ``"nuts"`` (:func:`ebm_ppl.mcmc.chains.mcmc_kernel`,
            identity mass matrix), or a :class:`~ebm_ppl.mcmc.chains.Kernel`.
        step_size: the kernel's step size (a named kernel only).
        num_integration_steps: HMC leapfrog steps (a named kernel only).
        reference: normalised reference :math:`q`, a NumPyro distribution with event shape
            ``(d,)`` (default :math:`\\mathcal N(0, 3^2 I_d)`, as in AIS); at least as wide as the
            target.
        schedule: ``"power"`` (default, :math:`\\beta_k = (k/(L-1))^5`, Friel & Pettitt 2008),
            ``"geometric"``, ``"linear"``, ``"sigmoid"``
            (:func:`~ebm_ppl.logz.ais.temperature_schedule`), or an explicit ``(L,)`` array from 0
            to 1 (strictly increasing).
        rule: ``"simpson"`` (default) or ``"trapezoid"`` (:func:`quadrature_weights`).
        num_batches: contiguous batches per chain for the batch-means standard error (1: the
            chain means, exactly independent).

    Returns:
        A :class:`~ebm_ppl.logz.base.LogZEstimator`; ``run(rng_key, problem, params, *,
        data=None, s0=None)`` returns ``log_z`` ``()``, ``stderr`` ``()``, ``num_energy_evals``
        (energy-and-gradient evaluations of the transitions and kernel initialisations, plus one
        energy per kept draw) and :class:`TIInfo`.

    Raises:
        ValueError: bad settings (naming the argument); at ``run``, a reference of the wrong
            shape or ``s0`` given.
        TypeError: a problem that is not a :class:`~ebm_ppl.problems.DensityProblem`, or a
            reference that is not a NumPyro distribution.
    """
    num_rungs = _positive_int("num_rungs", num_rungs)
    check_choice("rule", rule, RULES)
    num_chains = _positive_int("num_chains", num_chains)
    num_samples = _positive_int("num_samples", num_samples)
    if isinstance(num_warmup, bool) or not isinstance(num_warmup, int) or num_warmup < 0:
        raise ValueError(f"`num_warmup` must be an int >= 0; got {num_warmup!r}.")
    num_batches = _positive_int("num_batches", num_batches)
    if num_chains * num_batches < 2:
        raise ValueError(
            "`num_chains` * `num_batches` must be >= 2 for a batch-means standard error; got "
            f"num_chains={num_chains}, num_batches={num_batches}."
        )
    if num_samples % num_batches:
        raise ValueError(
            f"`num_samples` ({num_samples}) must be divisible by `num_batches` ({num_batches})."
        )
    size = _positive("step_size", step_size)
    leapfrog = _positive_int("num_integration_steps", num_integration_steps)
    transition = _kernel(kernel, size, leapfrog)
    _check_reference(reference)
    betas64, fine64, coarse64 = _ladder(num_rungs, schedule, rule)
    num_draws = num_chains * num_samples

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        del data
        dim, dtype, energy, ref = _density_target(problem, params, reference, s0)
        betas = jnp.asarray(betas64, dtype)
        weights = jnp.asarray(fine64, dtype)
        coarse_weights = jnp.asarray(coarse64, dtype)

        def log_ref(x):
            return jnp.asarray(ref.log_prob(x)).astype(dtype)

        def log_ratio(x):  # log l(x) = -E(x) - log q(x)
            return -energy(x) - log_ref(x)

        def move(states, key, logdensity):
            keys = jax.random.split(key, num_chains)
            states, info = jax.vmap(lambda k, s: transition.step(k, s, logdensity))(keys, states)
            evals = getattr(info, "num_integration_steps", jnp.ones((num_chains,), jnp.int32))
            accept = jnp.asarray(info.acceptance_rate).astype(dtype)
            return states, accept, jnp.sum(jnp.asarray(evals, jnp.int32))

        def rung(positions, inputs):
            beta, rng_key = inputs

            def logdensity(x):
                return log_ref(x) + beta * log_ratio(x)

            states = jax.vmap(lambda x: transition.init(x, logdensity))(positions)

            def one(states, key):  # one scan over warm-up and kept steps: one kernel to compile
                states, accept, evals = move(states, key, logdensity)
                position = states.position.astype(dtype)
                return states, (jax.vmap(log_ratio)(position), accept, evals)

            keys = jax.random.split(rng_key, num_warmup + num_samples)
            states, (values, accept, evals) = jax.lax.scan(one, states, keys)
            values, accept = values[num_warmup:], accept[num_warmup:]
            # values (S, C) -> batch means over contiguous segments of each chain
            batches = values.T.reshape(num_chains * num_batches, num_samples // num_batches)
            batch_means = jnp.mean(batches, axis=1)
            mean = jnp.mean(batch_means)
            stderr = jnp.std(batch_means, ddof=1) / jnp.sqrt(
                jnp.asarray(num_chains * num_batches, dtype)
            )
            ess = jnp.minimum(jnp.var(values) / jnp.square(stderr), num_draws)
            total = jnp.sum(evals) + num_chains + num_draws
            out = (mean, stderr, ess.astype(dtype), jnp.mean(accept), total)
            return states.position, out

        key_init, key_rungs = jax.random.split(rng_key)
        x0 = _draw_reference(key_init, ref, num_chains, dim, dtype)
        if transition.name in ("mala", "nuts"):
            # BlackJAX MALA and NUTS mix in JAX's default float, which clashes with float32
            # positions under x64 (as in AIS): run those chains in the promoted dtype.
            x0 = x0.astype(jnp.promote_types(dtype, jnp.result_type(float)))
        inputs = (betas, jax.random.split(key_rungs, num_rungs))
        _, (means, stderrs, ess, accept, evals) = jax.lax.scan(rung, x0, inputs)
        log_z = jnp.sum(weights * means)
        coarse = jnp.sum(coarse_weights * means)
        stderr = jnp.sqrt(jnp.sum(jnp.square(weights * stderrs)))
        return LogZResult(
            log_z=log_z,
            stderr=stderr,
            num_energy_evals=jnp.sum(evals),
            info=TIInfo(
                temperatures=betas,
                weights=weights,
                rung_means=means,
                rung_stderr=stderrs,
                rung_ess=ess,
                acceptance_rate=accept,
                coarse_log_z=coarse,
                discretisation_error=jnp.abs(log_z - coarse),
            ),
        )

    name = transition.name if isinstance(kernel, Kernel) else kernel
    return LogZEstimator(name=f"ti[{name}]", models=("ebm",), run=run)
