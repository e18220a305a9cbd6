r"""Annealed importance sampling and adaptive tempered SMC: :math:`\log Z` on :math:`\mathbb R^d`.

Both estimators serve the ``"ebm"`` model of a :class:`~ebm_ppl.problems.DensityProblem`,
:math:`p_\theta(x) = e^{-E_\theta(x)}/Z(\theta)`, and both anneal along the geometric path from a
normalised reference density :math:`q` (default the broad Gaussian :math:`\mathcal N(0, 3^2 I_d)`,
:data:`DEFAULT_REFERENCE_SCALE`; any NumPyro distribution with event shape ``(d,)``) to the target:

.. math::

    \pi_\beta(x) \propto q(x)^{1-\beta}\,e^{-\beta E(x)}
    = q(x)\,\ell(x)^\beta,\qquad \ell(x) = e^{-E(x)}/q(x),\qquad 0 = \beta_0 < \dots < \beta_K = 1.

* :func:`ais` (Neal 2001; THEORY §7.4): a schedule fixed in advance and fixed MCMC kernels, so
  :math:`\hat Z = \frac1N\sum_i w_i` with
  :math:`\log w_i = \sum_{k=1}^K(\beta_k - \beta_{k-1})\log\ell(x^i_{k-1})` is **unbiased** in
  :math:`Z`; the particles are independent, and ``stderr`` is the delta-method standard error of
  :math:`\log\hat Z` from the final weights, :math:`\sqrt{1/\mathrm{ESS} - 1/N}` (a first-order
  estimate, unreliable when the weights are heavy-tailed: check their PSIS :math:`\hat k`).
* :func:`tempered_smc`: BlackJAX's adaptive tempered SMC (resample, move with ``num_mcmc_steps``
  MCMC steps at the current temperature, reweight; the next :math:`\beta` solves
  :math:`\mathrm{ESS} = ` ``target_ess`` :math:`\cdot N`). BlackJAX does not keep the evidence in
  its state: :math:`\log\hat Z = \sum_{\text{steps}}` ``info.log_likelihood_increment``
  (DESIGN §7). The schedule depends on the particles, so the estimate is **consistent**
  (:math:`N\to\infty`), not unbiased; ``stderr`` is NaN (use the spread over runs).

Both :math:`\log\hat Z` are biased low (Jensen, THEORY §6). The reference must be at least as
wide as the target: an under-dispersed one makes :math:`\ell` heavy-tailed where the target has
mass the reference barely reaches, and the estimates then fall short by far more than the Jensen
term at practical :math:`N` (the banana with :math:`\mathcal N(0, I_2)`: about 0.04 nats low at
:math:`N` = 128 to 512). A too-wide reference only costs annealing steps. Adaptive tempering
and resampling are discontinuous in :math:`\theta`, so neither is a smooth surrogate for NUTS
(THEORY §7.4).

BlackJAX is reached only through :func:`_mcmc_kernel`, :func:`_root_solver` (a dtype-safe copy
of its dichotomy) and :func:`tempered_smc` in this module
(one adapter, DESIGN §4). Transitions: ``"hmc"`` (identity mass matrix), ``"mala"`` or ``"rwm"``
(Gaussian random walk with standard deviation ``step_size`` per coordinate), all with fixed
settings.
"""

from __future__ import annotations

from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from blackjax.mcmc import random_walk
from blackjax.smc import resampling
from blackjax.smc.tempered import TemperedSMCState
from jax.scipy.special import logsumexp

from ebm_ppl._validation import check_choice
from ebm_ppl.logz.base import LogZEstimator, LogZResult

__all__ = ["AISInfo", "TemperedSMCInfo", "ais", "tempered_smc", "temperature_schedule"]

KERNELS = ("hmc", "mala", "rwm")
SCHEDULES = ("geometric", "linear", "sigmoid")
DEFAULT_REFERENCE_SCALE = 3.0
"""Standard deviation of the default reference :math:`\\mathcal N(0, \\sigma^2 I_d)`."""
GEOMETRIC_START = 1e-3
"""First positive temperature of the ``"geometric"`` schedule."""
SIGMOID_RATE = 4.0
"""Steepness :math:`\\delta` of the ``"sigmoid"`` schedule."""


class AISInfo(NamedTuple):
    """Info of :func:`ais`.

    Attributes:
        ess: ``()`` effective sample size of the final weights, in particles.
        log_weights: ``(N,)`` final log importance weights (for PSIS :math:`\\hat k`).
        acceptance_rate: ``(K,)`` mean MCMC acceptance rate at each temperature.
        temperatures: ``(K + 1,)`` the schedule :math:`\\beta_0..\\beta_K`.
    """

    ess: jax.Array
    log_weights: jax.Array
    acceptance_rate: jax.Array
    temperatures: jax.Array


class TemperedSMCInfo(NamedTuple):
    """Info of :func:`tempered_smc`.

    Attributes:
        num_steps: ``()`` number of tempering steps taken.
        tempering_param: ``()`` the final :math:`\\beta` (1 when converged).
        converged: ``()`` whether :math:`\\beta` reached 1 within ``max_steps``.
        acceptance_rate: ``()`` mean MCMC acceptance rate of the last step.
    """

    num_steps: jax.Array
    tempering_param: jax.Array
    converged: jax.Array
    acceptance_rate: jax.Array


# ---------------------------------------------------------------------- checks and helpers
def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1; got {value!r}.")
    return int(value)


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"`{name}` must be a number > 0; got {value!r}.")
    return float(value)


def _check_reference(reference) -> None:
    if reference is not None and not isinstance(reference, dist.Distribution):
        raise TypeError(
            "`reference` must be a NumPyro distribution with event shape (d,) (or None for "
            f"N(0, 3^2 I_d)); got {type(reference).__name__}."
        )


def _float_dtype(params):
    """The floating dtype of ``params`` (the default float if it holds none)."""
    leaves = [jnp.asarray(leaf) for leaf in jax.tree.leaves(params)]
    floats = [leaf.dtype for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


def _density_target(problem, params, reference, s0):
    """``(dim, dtype, energy, reference)`` for a :class:`DensityProblem` (validated)."""
    energy_model = getattr(problem, "energy_model", None)
    dim = getattr(problem, "dim", None)
    if not isinstance(dim, int) or not callable(getattr(energy_model, "energy", None)):
        raise TypeError(
            "this estimator serves model 'ebm' and needs a DensityProblem (`dim` and an "
            f"`energy_model.energy(params, x)`); got {type(problem).__name__}."
        )
    if s0 is not None:
        raise ValueError("`s0` must be None for model 'ebm' (one global Z).")
    dtype = _float_dtype(params)
    if reference is None:
        scale = jnp.asarray(DEFAULT_REFERENCE_SCALE, dtype)
        reference = dist.Normal(jnp.zeros((dim,), dtype), scale).to_event(1)
    if tuple(reference.event_shape) != (dim,) or tuple(reference.batch_shape) != ():
        raise ValueError(
            f"`reference` must have event shape (d,) = ({dim},) and batch shape (); got event "
            f"shape {tuple(reference.event_shape)} and batch shape {tuple(reference.batch_shape)}."
        )

    def energy(x):
        return jnp.asarray(energy_model.energy(params, x)).astype(dtype)

    return dim, dtype, energy, reference


def _draw_reference(rng_key, reference, num: int, dim: int, dtype):
    x = jnp.asarray(reference.sample(rng_key, (num,))).astype(dtype)
    if x.shape != (num, dim):
        raise ValueError(
            f"`reference` draws must have shape (N, d) = ({num}, {dim}); got {x.shape}."
        )
    return x


def _log_ess(log_weights):
    return 2 * logsumexp(log_weights) - logsumexp(2 * log_weights)


def _root_solver(fun, min_delta, max_delta, eps: float = 1e-4, max_iter: int = 100):
    """BlackJAX's ``smc.solver.dichotomy``, written to keep the dtype of ``max_delta``.

    The same rule: ``max_delta`` if ``fun(max_delta) > 0``; else bisection for the root of the
    decreasing ``fun`` if ``fun(min_delta) > 0``; else NaN. BlackJAX's version mixes a Python
    ``0.0`` and ``np.nan`` with the particles' dtype, which fails under x64 with float32 particles.
    """
    max_delta = jnp.asarray(max_delta)
    dtype = max_delta.dtype
    min_delta = jnp.asarray(min_delta, dtype)
    f_min, f_max = fun(min_delta), fun(max_delta)

    def body(carry):
        i, a, b, f_a, f_b = carry
        mid = 0.5 * (a + b)
        f_mid = fun(mid)
        left = f_mid < 0
        return (
            i + 1,
            jnp.where(left, a, mid),
            jnp.where(left, mid, b),
            jnp.where(left, f_a, f_mid),
            jnp.where(left, f_mid, f_b),
        )

    def cond(carry):
        i, _, _, f_a, f_b = carry
        return (i < max_iter) & (f_a - f_b > eps)

    def bisect(_):
        return jax.lax.while_loop(cond, body, (0, min_delta, max_delta, f_min, f_max))[1]

    def fail(_):
        return jnp.asarray(jnp.nan, dtype)

    return jax.lax.cond(
        f_max > 0,
        lambda _: max_delta,
        lambda _: jax.lax.cond(f_min > 0, bisect, fail, None),
        None,
    )


def _mcmc_kernel(kernel: str, step_size: float, num_integration_steps: int, dim: int, dtype):
    """The BlackJAX transition ``(step_fn, init_fn, parameters)``.

    ``step_fn(rng_key, state, logdensity_fn, **parameters) -> (state, info)`` and
    ``init_fn(position, logdensity_fn) -> state``: the kernel-level API that both AIS and
    BlackJAX's SMC use. Returns also the energy evaluations (value or value-and-gradient) per step.
    """
    size = jnp.asarray(step_size, dtype)
    if kernel == "hmc":
        parameters = dict(
            step_size=size,
            inverse_mass_matrix=jnp.ones((dim,), dtype),
            num_integration_steps=jnp.asarray(num_integration_steps, jnp.int32),
        )
        return blackjax.hmc.build_kernel(), blackjax.hmc.init, parameters, num_integration_steps
    if kernel == "mala":
        # BlackJAX draws MALA's noise in JAX's default float (the unit `sigma` of
        # `generate_gaussian_noise`), which clashes with float32 states when x64 is on: run the
        # chain in the promoted dtype; callers cast the positions back.
        wide = jnp.promote_types(dtype, jnp.result_type(float))

        def init_fn(position, logdensity_fn):
            return blackjax.mala.init(jnp.asarray(position, wide), logdensity_fn)

        return blackjax.mala.build_kernel(), init_fn, dict(step_size=size), 1
    walk = random_walk.build_additive_step()

    def step_fn(rng_key, state, logdensity_fn, sigma):
        return walk(rng_key, state, logdensity_fn, random_walk.normal(sigma))

    parameters = dict(sigma=size * jnp.ones((dim,), dtype))
    return step_fn, random_walk.init, parameters, 1


# ---------------------------------------------------------------------- schedules
def temperature_schedule(num_temperatures: int, schedule="geometric", *, dtype=None) -> jax.Array:
    """Inverse temperatures :math:`0 = \\beta_0 < \\dots < \\beta_K = 1`, shape ``(K + 1,)``.

    * ``"geometric"``: :math:`\\beta_k = \\beta_1^{(K-k)/(K-1)}` for :math:`k \\ge 1`, geometric
      spacing from :data:`GEOMETRIC_START` to 1 (dense where :math:`\\beta` is small);
    * ``"linear"``: :math:`\\beta_k = k/K`;
    * ``"sigmoid"``: :math:`\\tilde\\beta_k = \\sigma(\\delta(2k/K - 1))` rescaled to
      :math:`[0, 1]` (dense at both ends; :math:`\\delta` = :data:`SIGMOID_RATE`);
    * an explicit 1-D array from 0 to 1, strictly increasing (``num_temperatures`` must equal its
      length minus 1).

    "Geometric" names the spacing of :math:`\\beta`; the path itself is always the geometric mixture
    :math:`q^{1-\\beta}e^{-\\beta E}`.
    """
    num = _positive_int("num_temperatures", num_temperatures)
    dtype = jnp.result_type(float) if dtype is None else dtype
    if not isinstance(schedule, str):
        betas = np.asarray(schedule, dtype=np.float64)
        if (
            betas.ndim != 1
            or betas.shape[0] != num + 1
            or betas[0] != 0
            or betas[-1] != 1
            or np.any(np.diff(betas) <= 0)
        ):
            raise ValueError(
                "`schedule` as an array must be 1-D, of length num_temperatures + 1 = "
                f"{num + 1}, strictly increasing from 0 to 1; got {schedule!r}."
            )
        return jnp.asarray(betas, dtype)
    check_choice("schedule", schedule, SCHEDULES)
    k = np.arange(num + 1, dtype=np.float64)
    if schedule == "linear":
        betas = k / num
    elif schedule == "geometric":
        tail = np.geomspace(GEOMETRIC_START, 1.0, num) if num > 1 else np.ones(1)
        betas = np.concatenate([[0.0], tail])
    else:
        raw = 1.0 / (1.0 + np.exp(-SIGMOID_RATE * (2 * k / num - 1)))
        betas = (raw - raw[0]) / (raw[-1] - raw[0])
    betas[0], betas[-1] = 0.0, 1.0
    return jnp.asarray(betas, dtype)


# ---------------------------------------------------------------------- AIS
def ais(
    num_particles: int,
    num_temperatures: int,
    *,
    kernel: str = "hmc",
    reference=None,
    schedule="geometric",
    step_size: float = 0.1,
    num_integration_steps: int = 10,
    num_mcmc_steps: int = 1,
) -> LogZEstimator:
    """Annealed importance sampling for :math:`\\log Z` of an EBM on :math:`\\mathbb R^d`.

    .. math::

        \\log w_i = \\sum_{k=1}^{K}(\\beta_k - \\beta_{k-1})\\big(-E(x^i_{k-1}) -
        \\log q(x^i_{k-1})\\big),\\qquad x^i_0 \\sim q,\\quad
        x^i_k \\sim T_k(x^i_{k-1}, \\cdot),

    :math:`T_k` leaving :math:`\\pi_{\\beta_k}` invariant; :math:`\\log\\hat Z =
    \\log\\frac1N\\sum_i w_i`.

    Bias: unbiased in :math:`Z` (fixed schedule and kernel settings); :math:`\\log\\hat Z` biased
    low. ``stderr``: the delta-method standard error :math:`\\sqrt{1/\\mathrm{ESS} - 1/N}` of
    :math:`\\log\\hat Z` (the particles are independent). Serves ``"ebm"``.

    Args:
        num_particles: independent AIS chains ``N``.
        num_temperatures: annealing steps ``K`` (the schedule has ``K + 1`` temperatures).
        kernel: ``"hmc"``, ``"mala"`` or ``"rwm"`` (BlackJAX transitions).
        reference: normalised reference :math:`q`, a NumPyro distribution with event shape
            ``(d,)`` (default :math:`\\mathcal N(0, 3^2 I_d)`); it should be at least as wide
            as the target (module docstring).
        schedule: ``"geometric"``, ``"linear"``, ``"sigmoid"`` or an explicit array
            (:func:`temperature_schedule`).
        step_size: HMC/MALA step size, or the random walk's standard deviation.
        num_integration_steps: leapfrog steps per HMC transition.
        num_mcmc_steps: MCMC transitions per temperature.

    Returns:
        A :class:`~ebm_ppl.logz.base.LogZEstimator`; ``run(rng_key, problem, params, *, data=None,
        s0=None)`` returns ``log_z`` ``()``, ``stderr`` ``()``, ``num_energy_evals`` (energy or
        energy-and-gradient evaluations: ``N * K * (2 + num_mcmc_steps * L)``, ``L`` the
        leapfrog steps for HMC and 1 otherwise) and :class:`AISInfo`.

    Raises:
        ValueError: bad settings; at ``run``, a reference of the wrong shape or ``s0`` given.
        TypeError: a problem that is not a :class:`~ebm_ppl.problems.DensityProblem`.
    """
    num = _positive_int("num_particles", num_particles)
    num_steps = _positive_int("num_temperatures", num_temperatures)
    check_choice("kernel", kernel, KERNELS)
    _check_reference(reference)
    temperature_schedule(num_steps, schedule)  # validate eagerly
    size = _positive("step_size", step_size)
    leapfrog = _positive_int("num_integration_steps", num_integration_steps)
    moves = _positive_int("num_mcmc_steps", num_mcmc_steps)
    per_move = leapfrog if kernel == "hmc" else 1
    evals = num * num_steps * (2 + moves * per_move)

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        del data
        dim, dtype, energy, ref = _density_target(problem, params, reference, s0)
        betas = temperature_schedule(num_steps, schedule, dtype=dtype)
        step_fn, init_fn, parameters, _ = _mcmc_kernel(kernel, size, leapfrog, dim, dtype)

        def log_ref(x):
            return jnp.asarray(ref.log_prob(x)).astype(dtype)

        def log_ratio(x):  # log l(x) = -E(x) - log q(x)
            return -energy(x) - log_ref(x)

        def move(rng_key, x, beta):
            def logdensity(y):
                return log_ref(y) + beta * log_ratio(y)

            def one(state, key):
                state, info = step_fn(key, state, logdensity, **parameters)
                return state, jnp.asarray(info.acceptance_rate).astype(dtype)

            state, accept = jax.lax.scan(
                one, init_fn(x, logdensity), jax.random.split(rng_key, moves)
            )
            return state.position.astype(x.dtype), jnp.mean(accept)

        def anneal(carry, inputs):
            x, log_w = carry
            beta_prev, beta, key = inputs
            log_w = log_w + (beta - beta_prev) * jax.vmap(log_ratio)(x)
            x, accept = jax.vmap(move, in_axes=(0, 0, None))(jax.random.split(key, num), x, beta)
            return (x, log_w), jnp.mean(accept)

        key_init, key_anneal = jax.random.split(rng_key)
        x0 = _draw_reference(key_init, ref, num, dim, dtype)
        inputs = (betas[:-1], betas[1:], jax.random.split(key_anneal, num_steps))
        (_, log_w), accept = jax.lax.scan(anneal, (x0, jnp.zeros((num,), dtype)), inputs)
        log_z = logsumexp(log_w) - jnp.log(jnp.asarray(num, dtype))
        log_ess = _log_ess(log_w)
        variance = jnp.maximum(jnp.exp(-log_ess) - 1.0 / num, 0.0)
        return LogZResult(
            log_z=log_z,
            stderr=jnp.sqrt(variance).astype(dtype),
            num_energy_evals=jnp.asarray(evals),
            info=AISInfo(
                ess=jnp.exp(log_ess),
                log_weights=log_w,
                acceptance_rate=accept,
                temperatures=betas,
            ),
        )

    return LogZEstimator(name=f"ais[{kernel}]", models=("ebm",), run=run)


# ---------------------------------------------------------------------- adaptive tempered SMC
def tempered_smc(
    num_particles: int,
    *,
    kernel: str = "hmc",
    num_mcmc_steps: int = 10,
    target_ess: float = 0.5,
    reference=None,
    step_size: float = 0.1,
    num_integration_steps: int = 10,
    max_steps: int = 500,
) -> LogZEstimator:
    """Adaptive tempered SMC (BlackJAX) for :math:`\\log Z` of an EBM on :math:`\\mathbb R^d`.

    BlackJAX's ``adaptive_tempered_smc`` with prior :math:`q` and log-likelihood
    :math:`\\log\\ell = -E - \\log q`; each step picks :math:`\\beta_{k}` so that the ESS of the
    incremental weights :math:`\\ell^{\\beta_k - \\beta_{k-1}}` is ``target_ess`` :math:`\\cdot N`,
    resamples (systematic), moves with ``num_mcmc_steps`` transitions at :math:`\\beta_{k-1}` and
    reweights; :math:`\\log\\hat Z = \\sum_k` ``log_likelihood_increment``:math:`_k` (DESIGN §7).

    Bias: consistent (the schedule adapts to the particles, so not unbiased); :math:`\\log\\hat Z`
    biased low. ``stderr`` is NaN: one run has no error estimate (use the spread over runs).
    If :math:`\\beta` has not reached 1 after ``max_steps`` steps, ``log_z`` is NaN and
    ``info.converged`` is False. Serves ``"ebm"``.

    Needs a BlackJAX whose ``smc.ess.ess_solver`` has the fix of issue #914 (PR #915; the project
    pins ``blackjax>=1.7``): with the sign bug the next :math:`\\beta` is solved for the wrong
    weights, and on asymmetric log-likelihoods the schedule crawls (or stalls at
    :math:`\\beta \\approx 0`). ``tests/logz/test_ais.py`` reproduces #914 as a regression test.

    Args:
        num_particles: particles ``N``.
        kernel: ``"hmc"``, ``"mala"`` or ``"rwm"``.
        num_mcmc_steps: MCMC transitions per tempering step.
        target_ess: the ESS fraction each step keeps, in ``(0, 1)``.
        reference: the normalised reference :math:`q` (default :math:`\\mathcal N(0, 3^2 I_d)`).
        step_size: HMC/MALA step size, or the random walk's standard deviation.
        num_integration_steps: leapfrog steps per HMC transition.
        max_steps: cap on tempering steps.

    Returns:
        A :class:`~ebm_ppl.logz.base.LogZEstimator`; ``run`` returns ``log_z`` ``()``, ``stderr``
        NaN, ``num_energy_evals`` (``N * steps * (3 + num_mcmc_steps * L)``: the ESS solve, the
        move's initialisation and the reweighting, plus the transitions) and
        :class:`TemperedSMCInfo`.
    """
    num = _positive_int("num_particles", num_particles)
    check_choice("kernel", kernel, KERNELS)
    _check_reference(reference)
    moves = _positive_int("num_mcmc_steps", num_mcmc_steps)
    if isinstance(target_ess, bool) or not 0 < float(target_ess) < 1:
        raise ValueError(f"`target_ess` must lie in (0, 1); got {target_ess!r}.")
    size = _positive("step_size", step_size)
    leapfrog = _positive_int("num_integration_steps", num_integration_steps)
    cap = _positive_int("max_steps", max_steps)

    def run(rng_key, problem, params, *, data=None, s0=None) -> LogZResult:
        del data
        dim, dtype, energy, ref = _density_target(problem, params, reference, s0)
        step_fn, init_fn, parameters, per_move = _mcmc_kernel(kernel, size, leapfrog, dim, dtype)

        def log_ref(x):
            return jnp.asarray(ref.log_prob(x)).astype(dtype)

        def log_likelihood(x):
            return -energy(x) - log_ref(x)

        algorithm = blackjax.adaptive_tempered_smc(
            log_ref,
            log_likelihood,
            step_fn,
            init_fn,
            blackjax.smc.extend_params(parameters),
            resampling.systematic,
            float(target_ess),
            root_solver=_root_solver,
            num_mcmc_steps=moves,
        )
        key_init, key_steps = jax.random.split(rng_key)
        x0 = _draw_reference(key_init, ref, num, dim, dtype)
        state = TemperedSMCState(x0, jnp.full((num,), 1.0 / num, dtype), jnp.zeros((), dtype))

        def cond(carry):
            state, count, _, _ = carry
            return (state.tempering_param < 1) & (count < cap)

        def body(carry):
            state, count, log_z, _ = carry
            new_state, info = algorithm.step(jax.random.fold_in(key_steps, count), state)
            new_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, state)
            accept = jnp.mean(info.update_info.acceptance_rate).astype(dtype)
            increment = jnp.asarray(info.log_likelihood_increment).astype(dtype)
            return new_state, count + 1, log_z + increment, accept

        init = (state, jnp.zeros((), jnp.int32), jnp.zeros((), dtype), jnp.zeros((), dtype))
        state, count, log_z, accept = jax.lax.while_loop(cond, body, init)
        converged = state.tempering_param >= 1
        log_z = jnp.where(converged, log_z, jnp.nan)
        return LogZResult(
            log_z=log_z,
            stderr=jnp.full_like(log_z, jnp.nan),
            num_energy_evals=num * count * (3 + moves * per_move),
            info=TemperedSMCInfo(
                num_steps=count,
                tempering_param=state.tempering_param,
                converged=converged,
                acceptance_rate=accept,
            ),
        )

    return LogZEstimator(name=f"tempered_smc[{kernel}]", models=("ebm",), run=run)
