"""NCE, GAN-EBM and flow contrastive estimation on a 2-D energy, with figures.

The energy-based half of Finn, Christiano, Abbeel & Levine (2016, §4; THEORY §5): a logistic
discriminator D = sigma(-E_theta(x) - zeta - log(nu q(x))) separates data from draws of q, with a
free scalar zeta in the place of log Z(theta). The three methods differ only in q:

* NCE: q is fixed noise (here a moment-matched logistic);
* GAN-EBM: q is a normalising flow trained on the log-odds loss, KL(q || p_theta) + const;
* FCE: the same flow trained on the minimax loss (approximately JSD(p || q)).

On a toy2d energy (the model class holds the truth, so all three are consistent) the script
prints, per method, the Pearson correlation of the learned and true energies on the grid where
p > 1e-3, and zeta against the quadrature log Z of the *learned* energy; it saves the true and
learned densities side by side, and zeta along training.

    python examples/ebm_2d.py [--energy banana|gaussian] [--steps 500] [--data 1000] [--out DIR]
"""

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import numpyro.distributions as dist
import optax

from ebm_ppl.adversarial import CouplingFlow, energies, fce, gan_ebm, nce
from ebm_ppl.adversarial.ebm import train
from ebm_ppl.exact.quadrature import quadrature_log_z
from ebm_ppl.models import toy2d

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METHODS = ("nce", "gan_ebm", "fce")


def make_trainer(method, model, data, num_steps, nu):
    """The trainer for ``method``: cosine-decayed Adam on (theta, zeta) and on the flow."""
    energy_opt = optax.adam(optax.cosine_decay_schedule(3e-2, num_steps, alpha=0.01))
    if method == "nce":
        noise = dist.Logistic(jnp.mean(data, 0), jnp.std(data, 0)).to_event(1)
        return nce(model, noise, nu=nu, optimizer=energy_opt)
    flow = CouplingFlow(dim=2, num_layers=4, hidden=(32,))
    generator_opt = optax.adam(optax.cosine_decay_schedule(5e-3, num_steps, alpha=0.01))
    factory = gan_ebm if method == "gan_ebm" else fce
    return factory(
        model, flow, nu=nu, energy_optimizer=energy_opt, generator_optimizer=generator_opt
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--energy", choices=("banana", "gaussian"), default="banana")
    parser.add_argument("--steps", type=int, default=500, help="training updates per method")
    parser.add_argument("--data", type=int, default=1000, help="exact draws from the truth")
    parser.add_argument("--nu", type=float, default=4.0, help="generated draws per data point")
    parser.add_argument("--grid", type=int, default=200, help="grid points per axis")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="directory for the figures")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)

    model = toy2d.energy_model(args.energy)
    true_params = toy2d.reference_params(args.energy)
    key_data, key_train = jax.random.split(jax.random.key(args.seed))
    data = model.sample(key_data, true_params, args.data)
    bounds = toy2d.reference_bounds(args.energy)
    axes = [jnp.linspace(lo, hi, args.grid) for lo, hi in bounds]
    grid = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    true_energy = np.asarray(energies(model, true_params, grid))
    support = -true_energy - float(model.log_z(true_params)) > np.log(1e-3)

    results = {}
    print(f"{args.energy}: {args.data} data points, {args.steps} updates, nu = {args.nu}")
    print(f"{'method':8s} {'pearson':>9s} {'zeta':>9s} {'log Z_quad':>11s} {'|diff|':>8s}")
    for index, method in enumerate(METHODS):
        trainer = make_trainer(method, model, data, args.steps, args.nu)
        key_init, key_run = jax.random.split(jax.random.fold_in(key_train, index))
        state = trainer.init(key_init, data=data)
        state, infos = train(key_run, trainer, state, data, args.steps)
        learned = np.asarray(energies(model, state.params, grid))
        pearson = float(np.corrcoef(true_energy[support], learned[support])[0, 1])
        quad = quadrature_log_z(
            lambda x, p=state.params: model.energy(p, x), bounds, 129, tol=1e-4, check=False
        )
        log_z = float(quad.log_z)
        if float(quad.refinement_error) > 1e-4 or float(quad.edge_mass) > 1e-6:
            print(  # a short run can leave mass at the box's edge: say so rather than fail
                f"  ({method}: quadrature unconverged, refinement error "
                f"{float(quad.refinement_error):.1e}, edge mass {float(quad.edge_mass):.1e})"
            )
        zeta = float(state.zeta)
        results[method] = {
            "pearson": pearson,
            "zeta": zeta,
            "log_z_quadrature": log_z,
            "energy": learned,
            "zeta_trace": np.asarray(infos.zeta),
        }
        print(f"{method:8s} {pearson:9.5f} {zeta:9.4f} {log_z:11.4f} {abs(zeta - log_z):8.4f}")

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        shape = (args.grid, args.grid)
        extent = (*bounds[0], *bounds[1])
        lows, highs = np.quantile(np.asarray(data), [0.001, 0.999], axis=0)
        lows, highs = lows - 0.5 * (highs - lows), highs + 0.5 * (highs - lows)
        fig, axs = plt.subplots(1, len(METHODS) + 1, figsize=(4 * (len(METHODS) + 1), 4))
        panels = [("truth", true_energy, float(model.log_z(true_params)))]
        panels += [(m, r["energy"], r["log_z_quadrature"]) for m, r in results.items()]
        for ax, (name, energy, log_z) in zip(axs, panels, strict=True):
            density = np.exp(-energy - log_z).reshape(shape).T
            ax.imshow(density, origin="lower", extent=extent, aspect="auto", cmap="viridis")
            ax.set_title(name)
            ax.set_xlim(lows[0], highs[0])  # the data's range: the grid also covers far tails
            ax.set_ylim(lows[1], highs[1])
        axs[0].scatter(*np.asarray(data[:300]).T, s=2, c="w", alpha=0.5)
        fig.tight_layout()
        fig.savefig(args.out / f"ebm_2d_{args.energy}_densities.png", dpi=100)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(6, 4))
        for method, r in results.items():
            label = f"{method} (final log Z_quad {r['log_z_quadrature']:.3f})"
            ax.plot(r["zeta_trace"], label=label)
        ax.axhline(float(model.log_z(true_params)), color="k", ls="--", label="log Z(true theta)")
        ax.set_xlabel("update")
        ax.set_ylabel("zeta")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out / f"ebm_2d_{args.energy}_zeta.png", dpi=100)
        plt.close(fig)
        print(f"figures in {args.out}")
    return results


if __name__ == "__main__":
    main()
