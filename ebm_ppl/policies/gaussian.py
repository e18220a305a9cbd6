r"""Time-indexed policies over continuous states: Gaussian (continuous actions) and softmax
(discrete actions), the generators and proposals of the continuous adversarial layer.

A policy is a small bundle of pure functions (:class:`Policy`, optax style: the factory closes over
the static settings, the parameters are a plain pytree whose every leaf has a leading time axis
``T``, so :math:`\pi_t` reads slice ``t``):

* :func:`linear_gaussian` and :func:`mlp_gaussian`: :math:`\pi_t(u\mid x) = \mathcal
  N(\mu_t(x), \Sigma_t)` with :math:`\mu_t(x) = K_t\tilde x + k_t` (linear) or an MLP of
  :math:`\tilde x`, and a per-step covariance :math:`\Sigma_t = L_tL_t^\top`, either diagonal
  (:math:`L_t = \mathrm{diag}(e^{s_t})`, ``covariance="diagonal"``) or a full Cholesky factor
  (``covariance="cholesky"``). The log-density (Lebesgue on :math:`\mathbb R^m`) is

  .. math::

      \log\pi_t(u\mid x) = -\tfrac12\lVert L_t^{-1}(u - \mu_t(x))\rVert^2
      - \textstyle\sum_i\log(L_t)_{ii} - \tfrac m2\log 2\pi,

  and :meth:`Policy.sample` draws :math:`u = \mu_t(x) + L_t\varepsilon`,
  :math:`\varepsilon\sim\mathcal N(0, I_m)`, which is **reparameterised**: ``jax.grad`` through
  a rollout gives the pathwise gradient. With ``bound`` :math:`\bar u` (bounded torques, e.g.
  the pendulum's box) the action is squashed, :math:`u = \bar u\tanh z` with :math:`z` the
  Gaussian draw, and the log-density (Lebesgue on :math:`(-\bar u, \bar u)^m`) gains the
  Jacobian, :math:`\log\pi_t(u\mid x) = \log\mathcal N(z) - \sum_i\log(\bar u
  \operatorname{sech}^2 z_i)` with :math:`z = \operatorname{artanh}(u/\bar u)`.
* :func:`linear_softmax` and :func:`mlp_softmax`: :math:`\pi_t(a\mid x) =
  \mathrm{softmax}(\ell_t(x))_a` over ``A`` actions, with logits :math:`\ell_t(x) = W_t\tilde x +
  b_t` or an MLP of :math:`\tilde x`. Sampling (Gumbel-max) is not differentiable (use a
  score-function estimator). The action :data:`~ebm_ppl.spaces.PAD` ``= -1`` marks "no
  decision" (after termination) and has log-probability 0.

:math:`\tilde x = (x - \text{loc})/\text{scale}` is a fixed input normalisation (default the
identity); states of classic-control systems differ by orders of magnitude across coordinates,
and the reachable states of a short horizon lie close together, so a sensible ``loc``/``scale``
matters for the MLP variants. The linear Gaussian family with ``loc = 0``, ``scale = 1``
contains the soft-optimal policy of an LQR problem (THEORY §8.1b:
:math:`\pi_t = \mathcal N(-K_tx, M_{uu}^{-1})`); :func:`linear_gaussian_params` builds its
parameters.

**Rollouts.** :meth:`Policy.rollout` runs :math:`u_t\sim\pi_t(\cdot\mid x_t)`,
:math:`x_{t+1} = f(x_t, u_t)` with :func:`jax.lax.scan` over time, vmapped over start states (all
the noise, :math:`\varepsilon` or Gumbel, is drawn in one call before the loop), and returns
:class:`Rollout` ``(states, actions, log_q)`` where

.. math::

    \log q = \sum_{t=0}^{T-1}\log\pi_t(u_t\mid x_t)

is the policy's log-probability of the actions **only**: the dynamics factor :math:`b(\tau)`
cancels in the discriminator and in the sampler objective (THEORY §4), so it is never needed.
Dynamics are deterministic, ``step_fn(x, u) -> x'`` for one state.

Everything is pure, jit/vmap/grad-safe and computes in the dtype of the parameters and states
(``init_params(..., dtype=None)`` uses JAX's default float). ``rng_key`` comes first.

References: THEORY §4 (cancellation), §6 (ELBO), §8.1 (LQR); DESIGN §3–§4.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from ebm_ppl._math import log_sech2
from ebm_ppl._validation import check_choice, check_finite, is_concrete
from ebm_ppl.spaces.tabular import PAD  # -1: no decision (after termination), log-prob 0

__all__ = [
    "COVARIANCES",
    "Policy",
    "Rollout",
    "linear_gaussian",
    "linear_gaussian_params",
    "linear_softmax",
    "mlp_gaussian",
    "mlp_softmax",
]

COVARIANCES = ("diagonal", "cholesky")
"""The ``covariance`` values of the Gaussian policies."""

_LOG_2PI = math.log(2 * math.pi)


class Rollout(NamedTuple):
    """Output of :meth:`Policy.rollout` (batch shape ``B`` = that of the start states).

    Attributes:
        states: ``(B..., T + 1, n)`` :math:`x_0..x_T`.
        actions: ``(B..., T, m)`` floats (Gaussian) or ``(B..., T)`` int32 (softmax,
            :data:`~ebm_ppl.spaces.PAD` after termination).
        log_q: ``(B...,)`` :math:`\\sum_t\\log\\pi_t(u_t\\mid x_t)` (dynamics-free, THEORY §4).
    """

    states: Any
    actions: Any
    log_q: Any


class Policy(NamedTuple):
    """A time-indexed policy over continuous states: pure functions closed over its settings.

    Attributes:
        kind: ``"gaussian"`` (continuous actions ``(m,)``) or ``"softmax"`` (integer actions).
        state_dim: :math:`n`.
        action_dim: :math:`m` (Gaussian) or the number of actions ``A`` (softmax).
        init_params: ``(rng_key, horizon, dtype=None) -> params``, every leaf ``(T, ...)``.
        log_prob: ``(params, t, x, u) -> (...)``: :math:`\\log\\pi_t(u\\mid x)` for states
            ``(..., n)`` and actions ``(..., m)`` (Gaussian) or ``(...)`` (softmax), broadcast;
            ``t`` an int (may be traced).
        sample: ``(rng_key, params, t, x) -> u``: one action per state ``(..., n)``.
        rollout: ``(rng_key, params, x0, step_fn, horizon=None) -> Rollout`` (softmax also takes
            ``terminated=``); ``x0`` ``(n,)`` or ``(B, n)``.
        trajectory_log_prob: ``(params, states, actions) -> (...)``:
            :math:`\\sum_t\\log\\pi_t(u_t\\mid x_t)` of given trajectories (states ``(..., T + 1,
            n)`` or ``(..., T, n)``), e.g. at demonstrations.
        step_log_probs: ``(params, states, actions) -> (..., T)``: the terms
            :math:`\\log\\pi_t(u_t\\mid x_t)` of that sum, one per step (0 for
            :data:`~ebm_ppl.spaces.PAD`).
        bound: :math:`\\bar u` of a squashed Gaussian policy (actions in
            :math:`(-\\bar u, \\bar u)^m`), else ``None``.
    """

    kind: str
    state_dim: int
    action_dim: int
    init_params: Callable
    log_prob: Callable
    sample: Callable
    rollout: Callable
    trajectory_log_prob: Callable
    step_log_probs: Callable
    bound: float | None = None


# ---------------------------------------------------------------------------- checks
def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _check_positive(name: str, value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise ValueError(f"`{name}` must be a finite real number > 0; got {value!r}.")
    return float(value)


def _check_hidden(hidden_sizes) -> tuple[int, ...]:
    if not isinstance(hidden_sizes, Sequence) or isinstance(hidden_sizes, str):
        raise ValueError(f"`hidden_sizes` must be a sequence of ints >= 1; got {hidden_sizes!r}.")
    return tuple(_check_int("hidden_sizes", size) for size in hidden_sizes)


def _check_normalisation(loc, scale, state_dim: int):
    """``loc``/``scale`` as NumPy ``(n,)`` float64 (cast to the state dtype when used)."""
    out = []
    for name, value, default in (("loc", loc, 0.0), ("scale", scale, 1.0)):
        array = np.full((state_dim,), default) if value is None else np.asarray(value, float)
        if array.ndim == 0:
            array = np.full((state_dim,), float(array))
        if array.shape != (state_dim,):
            raise ValueError(
                f"`{name}` must be a scalar or have shape (n,) = ({state_dim},); got {array.shape}."
            )
        check_finite(name, array)
        out.append(array)
    if np.any(out[1] <= 0):
        raise ValueError(f"`scale` must be > 0 everywhere; got {out[1]}.")
    return out[0], out[1]


def _float_dtype(dtype):
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"`dtype` must be a floating dtype; got {dtype}.")
    return dtype


def _param_horizon(params) -> int:
    return int(jax.tree.leaves(params)[0].shape[0])


def _at(params, t):
    """The time slice :math:`t` of every leaf."""
    return jax.tree.map(lambda leaf: leaf[t], params)


def _check_states(name: str, x, state_dim: int, dtype) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != state_dim:
        raise ValueError(f"`{name}` must have shape (..., n) with n = {state_dim}; got {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(dtype)
    return x


# ---------------------------------------------------------------------------- building blocks
def _mlp_init(rng_key, sizes, horizon, dtype):
    """Time-stacked layers ``{"weight": (T, in, out), "bias": (T, out)}``; the last layer is zero
    (so the initial output is 0), the others :math:`\\mathcal N(0, 1/\\text{in})`."""
    layers = []
    keys = jax.random.split(rng_key, len(sizes) - 1)
    for i, (key, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        if i == len(sizes) - 2:
            weight = jnp.zeros((horizon, fan_in, fan_out), dtype)
        else:
            weight = jax.random.normal(key, (horizon, fan_in, fan_out), dtype) / math.sqrt(fan_in)
        layers.append({"weight": weight, "bias": jnp.zeros((horizon, fan_out), dtype)})
    return layers


def _mlp_apply(layers, x, activation):
    """The MLP of one time slice on ``x`` ``(..., in)``."""
    hidden = x
    for layer in layers[:-1]:
        hidden = activation(hidden @ layer["weight"] + layer["bias"])
    return hidden @ layers[-1]["weight"] + layers[-1]["bias"]


def _scale_tril(slice_params, covariance: str):
    """:math:`L_t` (``(m, m)``) of one time slice."""
    if covariance == "diagonal":
        return jnp.diag(jnp.exp(slice_params["log_std"]))
    raw = slice_params["raw_scale_tril"]
    return jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diagonal(raw)))


def _log_diag(slice_params, covariance: str):
    if covariance == "diagonal":
        return slice_params["log_std"]
    return jnp.diagonal(slice_params["raw_scale_tril"])


def _init_scale(horizon, action_dim, init_std, covariance, dtype) -> dict:
    log_std = jnp.full((horizon, action_dim), math.log(init_std), dtype)
    if covariance == "diagonal":
        return {"log_std": log_std}
    raw = jnp.zeros((horizon, action_dim, action_dim), dtype)
    return {"raw_scale_tril": raw + jax.vmap(jnp.diag)(log_std)}


class _Sampler(NamedTuple):
    """How a policy draws: ``noise(rng_key, batch, dtype) -> (*batch, k)`` (all the randomness at
    once) and the deterministic ``act(params, t, x, noise) -> (u, log pi_t(u | x))``."""

    noise: Callable
    act: Callable


def _rollout(
    sampler, params, rng_key, x0, step_fn, horizon, state_dim, terminated, discrete
) -> Rollout:
    """Shared scan/vmap of the rollouts (validation done by the callers), compiled once per
    policy, step function and shapes (the callables are static). The noise of every step is drawn
    in one call before the scan, so the compiled loop holds no random-number code."""
    try:
        hash((step_fn, terminated))
    except TypeError:  # an unhashable callable: trace it without the jit cache
        return _rollout_core(
            sampler, params, rng_key, x0, step_fn, horizon, state_dim, terminated, discrete
        )
    return _rollout_jit(
        sampler, params, rng_key, x0, step_fn, horizon, state_dim, terminated, discrete
    )


def _rollout_core(
    sampler, params, rng_key, x0, step_fn, horizon, state_dim, terminated, discrete
) -> Rollout:
    batch = x0.shape[:-1]
    flat = x0.reshape((-1, state_dim))
    dtype = jnp.result_type(*jax.tree.leaves(params))
    noise = sampler.noise(rng_key, (flat.shape[0], horizon), dtype)

    def one(start, eps):
        def body(carry, inputs):
            state, done = carry
            t, step_noise = inputs
            if terminated is not None:
                done = done | jnp.asarray(terminated(state), bool)
            action, log_pi = sampler.act(params, t, state, step_noise)
            following = jnp.asarray(step_fn(state, action), state.dtype)
            if discrete:
                following = jnp.where(done, state, following)
                action = jnp.where(done, PAD, action)
                log_pi = jnp.where(done, jnp.zeros_like(log_pi), log_pi)
            return (following, done), (state, action, log_pi)

        init = (start, jnp.zeros((), bool))
        (last, _), (states, actions, log_pi) = jax.lax.scan(body, init, (jnp.arange(horizon), eps))
        states = jnp.concatenate([states, last[None]], axis=0)
        return states, actions, jnp.sum(log_pi)

    states, actions, log_q = jax.vmap(one)(flat, noise)
    return Rollout(
        states=states.reshape(batch + states.shape[1:]),
        actions=actions.reshape(batch + actions.shape[1:]),
        log_q=log_q.reshape(batch),
    )


_rollout_jit = jax.jit(_rollout_core, static_argnums=(0, 4, 5, 6, 7, 8))


def _make_rollout(sampler: _Sampler, state_dim: int, discrete: bool):
    def check(params, x0, horizon, step_fn):
        if not callable(step_fn):
            raise TypeError(f"`step_fn` must be callable (x, u) -> x'; got {type(step_fn)}.")
        param_horizon = _param_horizon(params)
        if horizon is None:
            horizon = param_horizon
        horizon = _check_int("horizon", horizon)
        if horizon != param_horizon:
            raise ValueError(
                f"`horizon` must equal the number of time slices of `params` ({param_horizon}); "
                f"got {horizon}."
            )
        dtype = jax.tree.leaves(params)[0].dtype
        x0 = _check_states("x0", x0, state_dim, dtype)
        if x0.ndim > 2:
            raise ValueError(f"`x0` must have shape (n,) or (B, n); got {x0.shape}.")
        if is_concrete(x0):
            check_finite("x0", x0)
        return x0, horizon

    if discrete:

        def rollout(rng_key, params, x0, step_fn, horizon=None, *, terminated=None) -> Rollout:
            """Softmax-policy rollouts (module docstring); ``terminated(x) -> bool`` optional:
            from the first terminal state on, actions are :data:`~ebm_ppl.spaces.PAD`, add 0 to
            ``log_q``, and the state is frozen."""
            x0, horizon = check(params, x0, horizon, step_fn)
            if terminated is not None and not callable(terminated):
                raise TypeError(f"`terminated` must be callable or None; got {type(terminated)}.")
            return _rollout(
                sampler,
                params,
                rng_key,
                x0,
                step_fn,
                horizon,
                state_dim,
                terminated,
                True,
            )

    else:

        def rollout(rng_key, params, x0, step_fn, horizon=None) -> Rollout:
            """Gaussian-policy rollouts (module docstring); reparameterised in ``params``."""
            x0, horizon = check(params, x0, horizon, step_fn)
            return _rollout(sampler, params, rng_key, x0, step_fn, horizon, state_dim, None, False)

    return rollout


def _make_log_probs(log_prob, state_dim: int, action_dim: int, discrete: bool):
    """``(step_log_probs, trajectory_log_prob)`` of a policy (one validation, one vmap)."""

    @jax.jit
    def step_log_probs(params, states, actions):
        """:math:`\\log\\pi_t(u_t\\mid x_t)` per step, ``(..., T)``."""
        horizon = _param_horizon(params)
        dtype = jax.tree.leaves(params)[0].dtype
        states = _check_states("states", states, state_dim, dtype)
        actions = jnp.asarray(actions)
        if states.ndim < 2 or states.shape[-2] not in (horizon, horizon + 1):
            raise ValueError(
                f"`states` must have shape (..., T + 1, n) or (..., T, n) with T = {horizon}, "
                f"n = {state_dim}; got {states.shape}."
            )
        if discrete:
            ok = actions.ndim >= 1 and actions.shape[-1] == horizon
            ok = ok and jnp.issubdtype(actions.dtype, jnp.integer)
            want = f"an integer array of shape (..., T) = (..., {horizon})"
            time_axis = actions.ndim - 1
        else:
            ok = actions.ndim >= 2 and actions.shape[-2:] == (horizon, action_dim)
            want = f"shape (..., T, m) = (..., {horizon}, {action_dim})"
            time_axis = actions.ndim - 2
        if not ok:
            raise ValueError(f"`actions` must be {want}; got {actions.dtype} {actions.shape}.")
        states = states[..., :horizon, :]
        return jax.vmap(
            lambda t, x, u: log_prob(params, t, x, u),
            in_axes=(0, states.ndim - 2, time_axis),
            out_axes=-1,
        )(jnp.arange(horizon), states, actions)

    @jax.jit
    def trajectory_log_prob(params, states, actions):
        """:math:`\\sum_t\\log\\pi_t(u_t\\mid x_t)` (dynamics-free, THEORY §4)."""
        return jnp.sum(step_log_probs(params, states, actions), axis=-1)

    return step_log_probs, trajectory_log_prob


# ---------------------------------------------------------------------------- Gaussian
def _log_squash_jacobian(z, bound):
    """:math:`\\sum_i\\log(\\bar u\\operatorname{sech}^2 z_i)`, the log-Jacobian of
    :math:`u = \\bar u\\tanh z`."""
    return jnp.sum(math.log(bound) + log_sech2(z), axis=-1)


def _gaussian(
    mean_fn, init_mean, state_dim, action_dim, covariance, init_std, loc, scale, bound=None
):
    bound = None if bound is None else _check_positive("bound", bound)

    def normalise(x):
        return (x - jnp.asarray(loc, x.dtype)) / jnp.asarray(scale, x.dtype)

    def init_params(rng_key, horizon: int, dtype=None) -> dict:
        horizon = _check_int("horizon", horizon)
        dtype = _float_dtype(dtype)
        params = init_mean(rng_key, horizon, dtype)
        params.update(_init_scale(horizon, action_dim, init_std, covariance, dtype))
        return params

    def _mean(slice_params, x):
        return mean_fn(slice_params, normalise(x))

    def log_prob(params, t, x, u):
        slice_params = _at(params, t)
        dtype = jax.tree.leaves(params)[0].dtype
        x = _check_states("x", x, state_dim, dtype)
        u = jnp.asarray(u)
        if u.ndim < 1 or u.shape[-1] != action_dim:
            raise ValueError(f"`u` must have shape (..., m) with m = {action_dim}; got {u.shape}.")
        if bound is not None:  # z = artanh(u / bound); -inf outside the open box
            inside = jnp.all(jnp.abs(u) < bound, axis=-1)
            latent = jnp.arctanh(jnp.clip(u / bound, -1.0, 1.0))
            latent = jnp.where(inside[..., None], latent, 0.0)
            return jnp.where(
                inside,
                _gaussian_log_prob(slice_params, x, latent) - _log_squash_jacobian(latent, bound),
                -jnp.inf,
            )
        return _gaussian_log_prob(slice_params, x, u)

    def _gaussian_log_prob(slice_params, x, u):
        residual = u - _mean(slice_params, x)
        if covariance == "diagonal":
            z = residual * jnp.exp(-slice_params["log_std"])
        else:
            inverse = solve_triangular(
                _scale_tril(slice_params, covariance),
                jnp.eye(action_dim, dtype=residual.dtype),
                lower=True,
            )
            z = residual @ inverse.T
        log_det = jnp.sum(_log_diag(slice_params, covariance))
        return -0.5 * jnp.sum(z**2, axis=-1) - log_det - 0.5 * action_dim * _LOG_2PI

    def noise(rng_key, batch, dtype):
        return jax.random.normal(rng_key, tuple(batch) + (action_dim,), dtype)

    def act(params, t, x, eps):
        """:math:`u = \\mu_t(x) + L_t\\varepsilon` and :math:`\\log\\pi_t(u\\mid x) =
        -\\tfrac12\\lVert\\varepsilon\\rVert^2 - \\sum_i\\log(L_t)_{ii} - \\tfrac m2\\log2\\pi`."""
        slice_params = _at(params, t)
        mean = _mean(slice_params, x)
        if covariance == "diagonal":
            u = mean + eps * jnp.exp(slice_params["log_std"])
        else:
            u = mean + eps @ _scale_tril(slice_params, covariance).T
        log_det = jnp.sum(_log_diag(slice_params, covariance))
        log_pi = -0.5 * jnp.sum(eps**2, axis=-1) - log_det - 0.5 * action_dim * _LOG_2PI
        if bound is not None:
            return bound * jnp.tanh(u), log_pi - _log_squash_jacobian(u, bound)
        return u, log_pi

    def sample(rng_key, params, t, x):
        dtype = jax.tree.leaves(params)[0].dtype
        x = _check_states("x", x, state_dim, dtype)
        return act(params, t, x, noise(rng_key, x.shape[:-1], x.dtype))[0]

    log_prob, sample = jax.jit(log_prob), jax.jit(sample)
    sampler = _Sampler(noise=noise, act=act)
    step_log_probs, trajectory_log_prob = _make_log_probs(
        log_prob, state_dim, action_dim, discrete=False
    )

    return Policy(
        kind="gaussian",
        state_dim=state_dim,
        action_dim=action_dim,
        init_params=init_params,
        log_prob=log_prob,
        sample=sample,
        rollout=_make_rollout(sampler, state_dim, discrete=False),
        trajectory_log_prob=trajectory_log_prob,
        step_log_probs=step_log_probs,
        bound=bound,
    )


def linear_gaussian(
    state_dim: int,
    action_dim: int,
    *,
    covariance: str = "diagonal",
    init_std: float = 1.0,
    loc=None,
    scale=None,
    bound: float | None = None,
) -> Policy:
    r"""Time-indexed linear-Gaussian policy :math:`\pi_t(u\mid x) = \mathcal N(K_t\tilde x + k_t,
    L_tL_t^\top)` (module docstring).

    Contains the soft-optimal LQR policy of THEORY §8.1b (with the default identity
    normalisation): a generator family for which maximising the ELBO reaches :math:`\log Z`.

    Params: ``gain`` :math:`K` ``(T, m, n)``, ``bias`` :math:`k` ``(T, m)``, and ``log_std``
    ``(T, m)`` (``"diagonal"``: :math:`L_t = \mathrm{diag}(e^{\text{log\_std}_t})`) or
    ``raw_scale_tril`` ``(T, m, m)`` (``"cholesky"``: :math:`L_t` takes the strictly lower part
    as is and the exponential of the diagonal; the upper part is ignored). Initialised at
    :math:`K = 0`, :math:`k = 0`, :math:`L = \text{init\_std}\cdot I`.

    Args:
        state_dim: :math:`n \ge 1`.
        action_dim: :math:`m \ge 1`.
        covariance: ``"diagonal"`` or ``"cholesky"``.
        init_std: initial standard deviation of every action coordinate (> 0).
        loc: ``(n,)`` or scalar input shift (default 0).
        scale: ``(n,)`` or scalar input scale > 0 (default 1).
        bound: :math:`\bar u > 0`: squash the actions into :math:`(-\bar u, \bar u)^m`
            (module docstring); default unbounded.

    Returns:
        :class:`Policy` with ``kind="gaussian"``.
    """
    state_dim = _check_int("state_dim", state_dim)
    action_dim = _check_int("action_dim", action_dim)
    check_choice("covariance", covariance, COVARIANCES)
    init_std = _check_positive("init_std", init_std)
    loc, scale = _check_normalisation(loc, scale, state_dim)

    def init_mean(rng_key, horizon, dtype):
        del rng_key  # deterministic: a zero gain and bias
        return {
            "gain": jnp.zeros((horizon, action_dim, state_dim), dtype),
            "bias": jnp.zeros((horizon, action_dim), dtype),
        }

    def mean_fn(slice_params, x):
        return x @ slice_params["gain"].T + slice_params["bias"]

    return _gaussian(
        mean_fn, init_mean, state_dim, action_dim, covariance, init_std, loc, scale, bound
    )


def mlp_gaussian(
    state_dim: int,
    action_dim: int,
    *,
    hidden_sizes: Sequence[int] = (32,),
    activation: Callable = jnp.tanh,
    covariance: str = "diagonal",
    init_std: float = 1.0,
    loc=None,
    scale=None,
    bound: float | None = None,
) -> Policy:
    r"""Time-indexed Gaussian policy with an MLP mean, :math:`\pi_t(u\mid x) =
    \mathcal N(\mathrm{MLP}_t(\tilde x), L_tL_t^\top)` (module docstring).

    Params: ``layers``, a list of ``{"weight": (T, in, out), "bias": (T, out)}`` (one network per
    time step; hidden layers :math:`\mathcal N(0, 1/\text{in})`, the output layer zero, so the
    initial mean is 0), and the covariance parameters of :func:`linear_gaussian`.

    Args:
        state_dim: :math:`n \ge 1`.
        action_dim: :math:`m \ge 1`.
        hidden_sizes: widths of the hidden layers (ints >= 1; empty: a linear mean).
        activation: elementwise nonlinearity (default ``tanh``).
        covariance: ``"diagonal"`` or ``"cholesky"``.
        init_std: initial standard deviation (> 0).
        loc: input shift ``(n,)`` or scalar.
        scale: input scale ``(n,)`` or scalar (> 0).
        bound: :math:`\bar u > 0` squashes the actions (as :func:`linear_gaussian`).

    Returns:
        :class:`Policy` with ``kind="gaussian"``.
    """
    state_dim = _check_int("state_dim", state_dim)
    action_dim = _check_int("action_dim", action_dim)
    sizes = (state_dim,) + _check_hidden(hidden_sizes) + (action_dim,)
    if not callable(activation):
        raise TypeError(f"`activation` must be callable; got {type(activation).__name__}.")
    check_choice("covariance", covariance, COVARIANCES)
    init_std = _check_positive("init_std", init_std)
    loc, scale = _check_normalisation(loc, scale, state_dim)

    def init_mean(rng_key, horizon, dtype):
        return {"layers": _mlp_init(rng_key, sizes, horizon, dtype)}

    def mean_fn(slice_params, x):
        return _mlp_apply(slice_params["layers"], x, activation)

    return _gaussian(
        mean_fn, init_mean, state_dim, action_dim, covariance, init_std, loc, scale, bound
    )


def linear_gaussian_params(gain, bias, cov, *, covariance: str = "cholesky") -> dict:
    r"""Parameters of :func:`linear_gaussian` for given :math:`K_t`, :math:`k_t`, :math:`\Sigma_t`.

    For the soft-optimal LQR policy of :func:`ebm_ppl.exact.lqr.soft_riccati`
    (:math:`\pi_t = \mathcal N(-K_tx, M_{uu}^{-1})`, THEORY §8.1b) pass ``-solution.gain``,
    zeros and ``solution.control_cov``.

    Args:
        gain: ``(T, m, n)``.
        bias: ``(T, m)``.
        cov: ``(T, m, m)`` symmetric positive definite (diagonal for ``"diagonal"``: only its
            diagonal is used).
        covariance: the policy's ``covariance`` setting.

    Returns:
        ``{"gain", "bias", "raw_scale_tril" | "log_std"}`` in the dtype of ``gain``.
    """
    check_choice("covariance", covariance, COVARIANCES)
    gain = jnp.asarray(gain)
    if gain.ndim != 3:
        raise ValueError(f"`gain` must have shape (T, m, n); got {gain.shape}.")
    horizon, m, _ = gain.shape
    bias = jnp.asarray(bias, gain.dtype)
    cov = jnp.asarray(cov, gain.dtype)
    if bias.shape != (horizon, m):
        raise ValueError(f"`bias` must have shape (T, m) = ({horizon}, {m}); got {bias.shape}.")
    if cov.shape != (horizon, m, m):
        raise ValueError(
            f"`cov` must have shape (T, m, m) = ({horizon}, {m}, {m}); got {cov.shape}."
        )
    if covariance == "diagonal":
        scale = {"log_std": 0.5 * jnp.log(jnp.diagonal(cov, axis1=-2, axis2=-1))}
    else:
        chol = jnp.linalg.cholesky(0.5 * (cov + jnp.swapaxes(cov, -1, -2)))
        log_diag = jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))
        raw = jnp.tril(chol, -1) + jax.vmap(jnp.diag)(log_diag)
        scale = {"raw_scale_tril": raw}
    return {"gain": gain, "bias": bias, **scale}


# ---------------------------------------------------------------------------- softmax
def _softmax(logits_fn, init_logits, state_dim, num_actions, loc, scale):
    def normalise(x):
        return (x - jnp.asarray(loc, x.dtype)) / jnp.asarray(scale, x.dtype)

    def init_params(rng_key, horizon: int, dtype=None) -> dict:
        horizon = _check_int("horizon", horizon)
        return init_logits(rng_key, horizon, _float_dtype(dtype))

    def _log_probs(slice_params, x):
        return jax.nn.log_softmax(logits_fn(slice_params, normalise(x)), axis=-1)

    def log_prob(params, t, x, u):
        dtype = jax.tree.leaves(params)[0].dtype
        x = _check_states("x", x, state_dim, dtype)
        u = jnp.asarray(u)
        if not jnp.issubdtype(u.dtype, jnp.integer):
            raise ValueError(f"`u` must hold integer actions; got dtype {u.dtype}.")
        log_probs = _log_probs(_at(params, t), x)
        batch = jnp.broadcast_shapes(log_probs.shape[:-1], u.shape)
        log_probs = jnp.broadcast_to(log_probs, batch + (num_actions,))
        u = jnp.broadcast_to(u, batch)
        picked = jnp.take_along_axis(log_probs, jnp.clip(u, 0, num_actions - 1)[..., None], -1)
        return jnp.where(u == PAD, jnp.zeros_like(picked[..., 0]), picked[..., 0])

    def noise(rng_key, batch, dtype):
        return jax.random.gumbel(rng_key, tuple(batch) + (num_actions,), dtype)

    def act(params, t, x, gumbel):
        """Gumbel-max: :math:`a = \\arg\\max_a(\\log\\pi_t(a\\mid x) + g_a)`."""
        log_probs = _log_probs(_at(params, t), x)
        u = jnp.argmax(log_probs + gumbel, axis=-1).astype(jnp.int32)
        return u, jnp.take_along_axis(log_probs, u[..., None], axis=-1)[..., 0]

    def sample(rng_key, params, t, x):
        dtype = jax.tree.leaves(params)[0].dtype
        x = _check_states("x", x, state_dim, dtype)
        return act(params, t, x, noise(rng_key, x.shape[:-1], x.dtype))[0]

    log_prob, sample = jax.jit(log_prob), jax.jit(sample)
    sampler = _Sampler(noise=noise, act=act)
    step_log_probs, trajectory_log_prob = _make_log_probs(
        log_prob, state_dim, num_actions, discrete=True
    )

    return Policy(
        kind="softmax",
        state_dim=state_dim,
        action_dim=num_actions,
        init_params=init_params,
        log_prob=log_prob,
        sample=sample,
        rollout=_make_rollout(sampler, state_dim, discrete=True),
        trajectory_log_prob=trajectory_log_prob,
        step_log_probs=step_log_probs,
    )


def linear_softmax(state_dim: int, num_actions: int, *, loc=None, scale=None) -> Policy:
    r"""Time-indexed softmax policy with linear logits, :math:`\pi_t(a\mid x) =
    \mathrm{softmax}(W_t\tilde x + b_t)_a` (module docstring).

    Params: ``weight`` ``(T, A, n)`` and ``bias`` ``(T, A)``, initialised at zero (uniform).

    Args:
        state_dim: :math:`n \ge 1`.
        num_actions: :math:`A \ge 2`.
        loc: input shift ``(n,)`` or scalar.
        scale: input scale ``(n,)`` or scalar (> 0).

    Returns:
        :class:`Policy` with ``kind="softmax"``.
    """
    state_dim = _check_int("state_dim", state_dim)
    num_actions = _check_int("num_actions", num_actions, 2)
    loc, scale = _check_normalisation(loc, scale, state_dim)

    def init_logits(rng_key, horizon, dtype):
        del rng_key
        return {
            "weight": jnp.zeros((horizon, num_actions, state_dim), dtype),
            "bias": jnp.zeros((horizon, num_actions), dtype),
        }

    def logits_fn(slice_params, x):
        return x @ slice_params["weight"].T + slice_params["bias"]

    return _softmax(logits_fn, init_logits, state_dim, num_actions, loc, scale)


def mlp_softmax(
    state_dim: int,
    num_actions: int,
    *,
    hidden_sizes: Sequence[int] = (32,),
    activation: Callable = jnp.tanh,
    loc=None,
    scale=None,
) -> Policy:
    r"""Time-indexed softmax policy with MLP logits, :math:`\pi_t(a\mid x) =
    \mathrm{softmax}(\mathrm{MLP}_t(\tilde x))_a` (module docstring).

    Params: ``layers`` as in :func:`mlp_gaussian` (output layer zero: uniform at
    initialisation).

    Args:
        state_dim: :math:`n \ge 1`.
        num_actions: :math:`A \ge 2`.
        hidden_sizes: widths of the hidden layers.
        activation: elementwise nonlinearity (default ``tanh``).
        loc: input shift ``(n,)`` or scalar.
        scale: input scale ``(n,)`` or scalar (> 0).

    Returns:
        :class:`Policy` with ``kind="softmax"``.
    """
    state_dim = _check_int("state_dim", state_dim)
    num_actions = _check_int("num_actions", num_actions, 2)
    sizes = (state_dim,) + _check_hidden(hidden_sizes) + (num_actions,)
    if not callable(activation):
        raise TypeError(f"`activation` must be callable; got {type(activation).__name__}.")
    loc, scale = _check_normalisation(loc, scale, state_dim)

    def init_logits(rng_key, horizon, dtype):
        return {"layers": _mlp_init(rng_key, sizes, horizon, dtype)}

    def logits_fn(slice_params, x):
        return _mlp_apply(slice_params["layers"], x, activation)

    return _softmax(logits_fn, init_logits, state_dim, num_actions, loc, scale)
