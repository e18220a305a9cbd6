"""Make the Pendulum-v1 demonstrations once: ``tests/data/pendulum_demos.npz``.

Draws ``--num-demos`` torque sequences per start state from the MaxEnt model
:math:`p_{w^*}(u\\mid x_0)` of :mod:`ebm_ppl.models.pendulum` (``T = --horizon``, true weights
``TRUE_WEIGHTS``) by long NUTS runs (:func:`~ebm_ppl.models.pendulum.sample_demonstrations`:
BlackJAX NUTS with window adaptation, ``--num-chains`` chains per start state of
``--num-warmup`` + ``--num-samples`` steps, demos evenly spaced in the pooled draws), prints
the diagnostics (split R-hat and bulk ESS of every torque and of the energy, divergences, tree
depth, step size) and writes them with the demos and the settings into the npz file.

Before that it checks the sampler itself at ``T = 2`` (:func:`sampler_self_check`: first two
moments of both torques from 2 chains x 1000 draws against quadrature, as z-scores) and stops if
any exceeds 4; the z-scores are stored too (``selfcheck_z``), and the test suite asserts them
(running NUTS in the suite would cost its compilation, 15-40 s on 2 shared cores).

The default settings (``--seed 0``, 10 start states x 10 demos, ``T = 50``, 4 chains of 1000 +
1000 steps, target acceptance 0.9) are the configuration that
``ebm_ppl.models.pendulum.make_problem()`` loads without sampling (its ``rng_key = None`` is
``key(0)``: ``key_starts, key_demos = split(key(0))``). The whole script (self-check included)
ran in 60 s on 2 shared CPU cores (measured: 41 s of NUTS for the demos, compilation included).

Usage::

    PYTHONPATH=. python scripts/make_pendulum_demos.py [--output tests/data/pendulum_demos.npz]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.diagnostics import effective_sample_size

from ebm_ppl.envs.classic_control import pendulum_step
from ebm_ppl.models import pendulum

SELFCHECK_NAMES = ("u0", "u0^2", "u1", "u1^2")


def sampler_self_check(rng_key, weights, settings) -> tuple[np.ndarray, np.ndarray]:
    """Check :func:`~ebm_ppl.models.pendulum.sample_demonstrations` at ``T = 2`` by quadrature.

    At ``T = 2`` the energy is :math:`c(x_0) + w_3 (u_0/2)^2 + c(x_1(u_0)) + w_3 (u_1/2)^2`
    (:math:`c` the angle and velocity terms), so :math:`u_1` is independent of :math:`u_0`
    (a truncated Gaussian) and :math:`u_0`'s marginal is a 1-D density: their first two moments
    by the trapezoid rule (20,001 nodes) are exact to ~1e-9. All ``num_chains * num_samples``
    pooled draws give the estimates; MCSE = sd / sqrt(ESS) with NumPyro's ESS.

    Returns:
        ``(start, z)``: the start state ``(2,)`` and z-scores (estimate - exact) / MCSE for
        :data:`SELFCHECK_NAMES`.
    """
    key_start, key_draws = jax.random.split(rng_key)
    x0 = np.asarray(pendulum.start_states(key_start, 1)[0])
    model = pendulum.PendulumMaxEnt(horizon=2)
    params = {"log_weights": jnp.log(jnp.asarray(weights))}
    total = settings.num_chains * settings.num_samples
    draws, _ = pendulum.sample_demonstrations(
        key_draws, model, params, jnp.asarray(x0)[None], total, settings
    )
    draws = np.asarray(draws[0])  # chain after chain

    def state_cost(states):
        angle = ((states[..., 0] + np.pi) % (2 * np.pi)) - np.pi
        return weights[0] * (angle / np.pi) ** 2 + weights[1] * (states[..., 1] / 8) ** 2

    grid = np.linspace(-2, 2, 20001)
    x1 = np.asarray(pendulum_step(np.broadcast_to(x0, (grid.size, 2)), grid))
    density_u0 = np.exp(-(weights[2] * (grid / 2) ** 2 + state_cost(x1)))
    density_u0 /= np.trapezoid(density_u0, grid)
    density_u1 = np.exp(-weights[2] * (grid / 2) ** 2)
    density_u1 /= np.trapezoid(density_u1, grid)
    exact = [
        np.trapezoid(grid * density_u0, grid),
        np.trapezoid(grid**2 * density_u0, grid),
        0.0,
        np.trapezoid(grid**2 * density_u1, grid),
    ]
    values = [draws[:, 0], draws[:, 0] ** 2, draws[:, 1], draws[:, 1] ** 2]
    z = []
    for value, target in zip(values, exact, strict=True):
        chains = value.reshape(settings.num_chains, settings.num_samples, 1)
        mcse = value.std() / np.sqrt(effective_sample_size(chains)[0])
        z.append((value.mean() - target) / mcse)
    return x0, np.asarray(z)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=pendulum.HORIZON)
    parser.add_argument("--num-starts", type=int, default=10)
    parser.add_argument("--num-demos", type=int, default=10)
    settings = pendulum.DemoSettings()
    parser.add_argument("--num-chains", type=int, default=settings.num_chains)
    parser.add_argument("--num-warmup", type=int, default=settings.num_warmup)
    parser.add_argument("--num-samples", type=int, default=settings.num_samples)
    parser.add_argument("--target-accept-prob", type=float, default=settings.target_accept_prob)
    parser.add_argument("--output", type=pathlib.Path, default=pendulum.DEMOS_PATH)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # before any array is made

    settings = pendulum.DemoSettings(
        num_chains=args.num_chains,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        target_accept_prob=args.target_accept_prob,
    )
    energy_model = pendulum.PendulumMaxEnt(horizon=args.horizon)
    log_weights = jnp.log(jnp.asarray(pendulum.TRUE_WEIGHTS))
    params = {"log_weights": log_weights}
    key_starts, key_demos = jax.random.split(jax.random.key(args.seed))
    starts = pendulum.start_states(key_starts, args.num_starts)

    key_check = jax.random.fold_in(jax.random.key(args.seed), 1_000_003)
    check_settings = pendulum.DemoSettings(num_chains=2, num_warmup=300, num_samples=1000)
    check_start, check_z = sampler_self_check(key_check, pendulum.TRUE_WEIGHTS, check_settings)
    print(
        f"self-check at T = 2 (x0 = {check_start}): z-scores "
        + ", ".join(f"{name} {z:+.2f}" for name, z in zip(SELFCHECK_NAMES, check_z, strict=True))
    )
    if np.any(np.abs(check_z) > 4):
        print("self-check failed: the sampler does not reproduce the quadrature moments")
        return 1

    start = time.perf_counter()
    demos, info = pendulum.sample_demonstrations(
        key_demos, energy_model, params, starts, args.num_demos, settings
    )
    seconds = time.perf_counter() - start

    np.set_printoptions(precision=4, suppress=True, linewidth=100)
    for i, x0 in enumerate(np.asarray(starts)):
        print(
            f"start {i}: x0 = {x0}, R-hat max {info['rhat_max'][i]:.4f}, ESS min "
            f"{info['ess_min'][i]:.0f}, energy R-hat {info['rhat_energy'][i]:.4f} ESS "
            f"{info['ess_energy'][i]:.0f}, divergences {int(info['divergences'][i])}, "
            f"tree depth {info['mean_tree_depth'][i]:.2f}, step size {info['step_size'][i]:.3f}"
        )
    summary = {
        "name": "pendulum_demos",
        "seconds": round(seconds, 1),
        "num_starts": args.num_starts,
        "num_demos": args.num_demos,
        "horizon": args.horizon,
        "rhat_max": float(np.max(np.concatenate([info["rhat_max"], info["rhat_energy"]]))),
        "ess_min": float(np.min(np.concatenate([info["ess_min"], info["ess_energy"]]))),
        "divergences": int(np.sum(info["divergences"])),
        "draws_per_start": settings.num_chains * settings.num_samples,
    }
    print(json.dumps(summary))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        demos=np.asarray(demos),
        start_states=np.asarray(starts),
        log_weights=np.asarray(log_weights),
        horizon=np.asarray(args.horizon),
        seed=np.asarray(args.seed),
        num_chains=np.asarray(settings.num_chains),
        num_warmup=np.asarray(settings.num_warmup),
        num_samples=np.asarray(settings.num_samples),
        target_accept_prob=np.asarray(settings.target_accept_prob),
        seconds=np.asarray(seconds),
        selfcheck_names=np.asarray(SELFCHECK_NAMES),
        selfcheck_z=check_z,
        selfcheck_start=check_start,
        versions=np.asarray(
            f"jax {jax.__version__}, numpyro {numpyro.__version__}, blackjax {blackjax.__version__}"
        ),
        **{name: np.asarray(value) for name, value in info.items()},
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
