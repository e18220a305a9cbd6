"""Benchmark of gradient estimators of log Z against compute (issue 8, item 1).

One energy and one parameter value: the toy2d banana (``BananaEnergy``), data = exact draws at
the reference parameters (``log_scale = (0, log 0.5)``, curvature 1), evaluated at the shifted
``theta = {log_scale: (0.2, -0.5), curvature: 0.6}`` (so the data do **not** follow
:math:`p_\\theta`: the regime where CD-k and the GCL fixed point are biased). The target is
:math:`\\nabla_\\theta\\log Z(\\theta)`, known in closed form (:math:`Z = 2\\pi s_1s_2`:
``(1, 1)`` for ``log_scale``, 0 for ``curvature``). Estimators, each over ``--seeds``
independent keys:

* ``exact``: closed form (reference; error 0).
* ``importance``: self-normalised IS with a Gaussian proposal moment-matched to the data,
  ``ebm_ppl.logz.importance.draw_weighted`` + ``self_normalized_expectation`` (consistent, O(1/K)
  bias). Compute: ``K`` energy gradients.
* ``gcl_mixture``: the GCL cost gradient minus its data term, i.e. :math:`\\nabla\\log\\hat Z`
  of the mixture of the ``N_d`` data and ``K`` proposal draws at the fixed point
  :math:`\\zeta^*` (``ebm_ppl.adversarial.facts.check_equivalence_ebm``, stop-gradient
  mixture). A fixed point: consistent only at the data's theta, so biased here.
* ``gan_discriminator``: the discriminator-loss gradient at :math:`\\zeta^*` minus the same
  data term (fact 2: equal to ``gcl_mixture`` to rounding; the record holds the max difference).
* ``cd``: CD-k (MALA, step 0.05), one chain per datum started at the ``N_d`` data, ``k`` in
  ``--cd-steps``. Biased for every finite k here. Compute: ``N_d * (k + 1)`` gradients.
* ``pcd``: persistent chains at this fixed theta: ``C`` chains started at data points, warmed up
  by ``--pcd-warmup`` steps (the amortised state a PCD run carries; not counted), then one
  ``pcd_gradient`` call of k = 5 steps. Compute: ``C * (k + 1)`` gradients.

For each (method, size): bias norm :math:`\\|\\bar g - g\\|`, spread (root of the summed
per-coordinate variances over seeds), RMSE, ``num_grad_evals`` and the median wall seconds of one
jitted call after warm-up over ``--repeats`` calls. JSON lines on stdout (and ``--out``); the
PNG (``--png``) plots RMSE and bias against gradient evaluations, from the same run. Every
record carries ``loadavg_1m`` (the 2 cores are shared: wall seconds are noisy). Peak memory is
not measured per cell (the problems are tiny).

Usage::

    PYTHONPATH=. python benchmarks/gradients.py \\
        --out benchmarks/reference_runs/gradients_2core_2026-12-05.jsonl \\
        --png benchmarks/reference_runs/gradients_2core_2026-12-05.png
    PYTHONPATH=. python benchmarks/gradients.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

jax.config.update("jax_enable_x64", True)

from ebm_ppl.adversarial.facts import check_equivalence_ebm
from ebm_ppl.logz.importance import draw_weighted, self_normalized_expectation
from ebm_ppl.mcmc.chains import (
    cd_gradient,
    data_energy_gradient,
    energy_gradients,
    init_chains_from_data,
    mcmc_kernel,
    pcd_gradient,
    run_chains,
)
from ebm_ppl.problems import DensityProblem
from models import toy2d

THETA = {"log_scale": jnp.asarray([0.2, -0.5]), "curvature": jnp.asarray(0.6)}
EXACT = {"log_scale": jnp.ones(2), "curvature": jnp.zeros(())}


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(tree[k])) for k in sorted(tree)])


def median_seconds(fn, key, repeats: int) -> float:
    jax.block_until_ready(fn(key))  # compile + warm-up
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(jax.random.fold_in(key, i + 1)))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def summarise(name, size_name, size, estimates, evals, seconds, extra=None) -> dict:
    estimates = np.asarray(estimates)
    exact = flat(EXACT)
    mean = estimates.mean(axis=0)
    bias = float(np.linalg.norm(mean - exact))
    spread = float(np.sqrt(np.sum(estimates.var(axis=0, ddof=1))))
    rmse = float(np.sqrt(np.mean(np.sum((estimates - exact) ** 2, axis=1))))
    record = {
        "name": f"gradients/{name}",
        "method": name,
        size_name: size,
        "num_seeds": int(estimates.shape[0]),
        "dtype": "float64",
        "num_grad_evals": int(evals),
        "median_seconds": seconds,
        "bias_norm": bias,
        "bias_stderr": float(np.sqrt(np.sum(estimates.var(axis=0, ddof=1)) / estimates.shape[0])),
        "spread": spread,
        "rmse": rmse,
        "mean_estimate": mean.round(6).tolist(),
        "exact": exact.tolist(),
        "loadavg_1m": loadavg(),
    }
    record.update(extra or {})
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-data", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024, 4096, 16384])
    parser.add_argument("--cd-steps", type=int, nargs="+", default=[1, 5, 25, 100])
    parser.add_argument("--pcd-chains", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--pcd-warmup", type=int, default=300)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out")
    parser.add_argument("--png")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.repeats, args.num_data = 5, 2, 200
        args.sizes, args.cd_steps, args.pcd_chains = [64, 256], [1, 5], [64, 256]
        args.pcd_warmup = 50

    records = []

    def emit(record):
        records.append(record)
        line = json.dumps(record)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(line + "\n")

    if args.out and os.path.exists(args.out):
        os.remove(args.out)

    model = toy2d.energy_model("banana")
    data = model.sample(jax.random.key(0), toy2d.reference_params("banana"), args.num_data)
    problem = DensityProblem(
        name="toy2d", energy_model=model, dim=2, true_params=THETA, data=data, log_z=None
    )
    energy_fn = model.energy
    batched = jax.vmap(energy_fn, in_axes=(None, 0))
    proposal = dist.MultivariateNormal(jnp.mean(data, 0), jnp.cov(data.T))
    data_term = data_energy_gradient(THETA, data, energy_fn)
    keys = jax.random.split(jax.random.key(1), args.seeds)

    emit(summarise("exact", "size", 0, np.tile(flat(EXACT), (args.seeds, 1)), 0, 0.0))

    # importance sampling
    for size in args.sizes:

        def importance_grad(key, size=size):
            drawn = draw_weighted(key, problem, THETA, size, proposal=proposal, model="ebm")
            grads = energy_gradients(THETA, drawn.samples, energy_fn)
            neg = jax.tree.map(lambda g: -g, grads)
            return jax.tree.map(lambda g: self_normalized_expectation(drawn.log_weights, g), neg)

        fn = jax.jit(importance_grad)
        estimates = [flat(fn(k)) for k in keys]
        emit(
            summarise(
                "importance",
                "num_samples",
                size,
                estimates,
                size,
                median_seconds(fn, keys[0], args.repeats),
            )
        )

    # GCL mixture and the GAN discriminator at zeta*
    for size in args.sizes:

        def facts_grads(key, size=size):
            samples = proposal.sample(key, (size,))
            eq = check_equivalence_ebm(
                batched, THETA, data, samples, proposal.log_prob(data), proposal.log_prob(samples)
            )
            minus = lambda g: jax.tree.map(jnp.subtract, g, data_term)  # noqa: E731
            return minus(eq.cost_grad), minus(eq.discriminator_grad)

        fn = jax.jit(facts_grads)
        pairs = [fn(k) for k in keys]
        gcl = [flat(p[0]) for p in pairs]
        gan = [flat(p[1]) for p in pairs]
        gap = float(np.max(np.abs(np.asarray(gcl) - np.asarray(gan))))
        seconds = median_seconds(fn, keys[0], args.repeats)
        evals = size + args.num_data
        nu = {"nu": size / args.num_data, "fact2_max_abs_difference": gap}
        emit(summarise("gcl_mixture", "num_samples", size, gcl, evals, seconds, nu))
        emit(summarise("gan_discriminator", "num_samples", size, gan, evals, seconds, nu))

    # CD-k from the data
    kernel = mcmc_kernel("mala", step_size=0.05)
    for steps in args.cd_steps:
        fn = jax.jit(
            lambda key, steps=steps: cd_gradient(key, THETA, data, energy_fn, kernel, steps)
        )
        outs = [fn(k) for k in keys]
        estimates = [flat(o[0]) for o in outs]
        acceptance = float(np.mean([o[1].acceptance_rate for o in outs]))
        emit(
            summarise(
                "cd",
                "num_steps",
                steps,
                estimates,
                args.num_data * (steps + 1),
                median_seconds(lambda k, fn=fn: fn(k)[0], keys[0], args.repeats),
                {"num_chains": args.num_data, "acceptance_rate": acceptance},
            )
        )

    # PCD: warmed persistent chains, one call of k = 5
    for chains_n in args.pcd_chains:

        def pcd_grad(key, chains_n=chains_n):
            key_init, key_warm, key_call = jax.random.split(key, 3)
            chains = init_chains_from_data(key_init, data, chains_n)
            positions, _, _ = run_chains(
                key_warm, THETA, chains.positions, energy_fn, kernel, args.pcd_warmup
            )
            chains = chains._replace(positions=positions)
            return pcd_gradient(key_call, THETA, chains, energy_fn, kernel, 5)

        fn = jax.jit(pcd_grad)
        outs = [fn(k) for k in keys]
        estimates = [flat(o[0]) for o in outs]
        acceptance = float(np.mean([o[2].acceptance_rate for o in outs]))
        ess = float(np.mean([o[2].ess for o in outs]))

        # time only the persistent call (the warm-up is the state a PCD run carries)
        warm = fn(keys[0])[1]
        call = jax.jit(
            lambda key, warm=warm: pcd_gradient(key, THETA, warm, energy_fn, kernel, 5)[0]
        )
        emit(
            summarise(
                "pcd",
                "num_chains",
                chains_n,
                estimates,
                chains_n * 6,
                median_seconds(call, keys[0], args.repeats),
                {
                    "num_steps": 5,
                    "warmup_steps": args.pcd_warmup,
                    "acceptance_rate": acceptance,
                    "ess_energy": ess,
                },
            )
        )

    if args.png:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for method in ("importance", "gcl_mixture", "gan_discriminator", "cd", "pcd"):
            rows = [r for r in records if r["method"] == method]
            x = [r["num_grad_evals"] for r in rows]
            style = "--" if method == "gan_discriminator" else "-o"
            axes[0].loglog(x, [r["rmse"] for r in rows], style, label=method)
            axes[1].loglog(x, [max(r["bias_norm"], 1e-4) for r in rows], style, label=method)
        axes[0].set(
            xlabel="energy-gradient evaluations",
            ylabel="RMSE of grad log Z",
            title="banana, theta off the data",
        )
        axes[1].set(
            xlabel="energy-gradient evaluations",
            ylabel="|bias| (floor 1e-4)",
            title=f"bias over {args.seeds} seeds",
        )
        for ax in axes:
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)


if __name__ == "__main__":
    main()
