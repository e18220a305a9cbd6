"""Small numerically stable special functions shared across the library (private)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def log_sech2(z) -> jax.Array:
    """:math:`\\log\\operatorname{sech}^2 z = 2\\log 2 - 2|z| - 2\\log(1 + e^{-2|z|})`, elementwise,
    stable for large :math:`|z|`: the log-Jacobian of :math:`z \\mapsto \\tanh z`."""
    abs_z = jnp.abs(z)
    return 2 * math.log(2.0) - 2 * abs_z - 2 * jnp.log1p(jnp.exp(-2 * abs_z))
