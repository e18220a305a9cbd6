r"""Energy (cost) models over tabular states as NumPyro models.

Sign convention (DESIGN §3): :math:`p(\tau)\propto e^{-c(\tau)}` with per-step cost
:math:`c = -r`. Each model exposes

* ``prior()``: a NumPyro model that samples named sites and returns the ``params`` dict;
* ``reward(params)``: the reward table, shape ``(S,)`` or ``(S, A)`` (pure, jit-safe);
* ``cost(params) = -reward(params)``;
* ``init_params()``: a deterministic starting point for optimisation (the prior's centre).

Models are registered pytrees: feature arrays are leaves (jit arguments), settings are static.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from ebm_ppl._validation import check_features, is_host_data

__all__ = ["LinearReward", "TabularReward", "MLPReward"]


def _positive(name: str, value: float) -> float:
    if not float(value) > 0:
        raise ValueError(f"`{name}` must be > 0; got {value!r}.")
    return float(value)


@dataclasses.dataclass(frozen=True)
class LinearReward:
    """Reward linear in features, :math:`r_\\theta(s[,a]) = \\phi(s[,a])^\\top\\theta`.

    Prior: :math:`\\theta \\sim \\mathcal N(0, \\sigma^2 I_F)` (``prior_scale`` = :math:`\\sigma`).

    Args:
        features: ``(S, F)`` or ``(S, A, F)``.
        prior_scale: prior standard deviation :math:`\\sigma > 0`.
        site: the NumPyro site name of :math:`\\theta`.
    """

    features: jax.Array
    prior_scale: float = 1.0
    site: str = "theta"

    def __post_init__(self):
        if is_host_data(self.features):
            object.__setattr__(self, "features", check_features("features", self.features))
        _positive("prior_scale", self.prior_scale)

    @property
    def num_features(self) -> int:
        return self.features.shape[-1]

    def prior_distribution(self) -> dist.Distribution:
        return dist.Normal(0.0, self.prior_scale).expand([self.num_features]).to_event(1)

    def prior(self) -> dict:
        return {self.site: numpyro.sample(self.site, self.prior_distribution())}

    def reward(self, params) -> jax.Array:
        theta = jnp.asarray(params[self.site])
        if theta.shape[-1:] != (self.num_features,):
            raise ValueError(
                f"`params['{self.site}']` must have shape (F,) = ({self.num_features},); "
                f"got {theta.shape}."
            )
        return self.features @ theta

    def cost(self, params) -> jax.Array:
        return -self.reward(params)

    def init_params(self) -> dict:
        return {self.site: jnp.zeros((self.num_features,), self.features.dtype)}


jax.tree_util.register_dataclass(
    LinearReward, data_fields=["features"], meta_fields=["prior_scale", "site"]
)


@dataclasses.dataclass(frozen=True)
class TabularReward:
    """A free reward per state (``shape=(S,)``) or state-action (``shape=(S, A)``).

    Prior: i.i.d. :math:`\\mathcal N(0, \\sigma^2)`. A state-only table has no potential-shaping
    direction (THEORY §1.6), but it is identified only up to the model's invariances (constant
    shifts for the trajectory-level models); the proper prior keeps the posterior proper.
    """

    shape: tuple
    prior_scale: float = 1.0
    site: str = "reward"

    def __post_init__(self):
        shape = tuple(int(n) for n in self.shape)
        if len(shape) not in (1, 2) or min(shape) < 1:
            raise ValueError(
                f"`shape` must be (S,) or (S, A) with positive sizes; got {self.shape}."
            )
        object.__setattr__(self, "shape", shape)
        _positive("prior_scale", self.prior_scale)

    def prior(self) -> dict:
        prior = (
            dist.Normal(0.0, self.prior_scale).expand(list(self.shape)).to_event(len(self.shape))
        )
        return {self.site: numpyro.sample(self.site, prior)}

    def reward(self, params) -> jax.Array:
        table = jnp.asarray(params[self.site])
        if table.shape != self.shape:
            raise ValueError(
                f"`params['{self.site}']` must have shape {self.shape}; got {table.shape}."
            )
        return table

    def cost(self, params) -> jax.Array:
        return -self.reward(params)

    def init_params(self) -> dict:
        return {self.site: jnp.zeros(self.shape)}


jax.tree_util.register_dataclass(
    TabularReward, data_fields=[], meta_fields=["shape", "prior_scale", "site"]
)


@dataclasses.dataclass(frozen=True)
class MLPReward:
    """A small MLP on features with **no free output bias** (THEORY §3.6).

    :math:`r(s) = w_{out}^\\top \\tanh(W_L \\cdots \\tanh(W_1\\phi(s) + b_1) \\cdots + b_L)`.
    A constant added to the reward is not identifiable (it trades off against :math:`\\log Z`), so
    the output layer has no bias. Prior: i.i.d. :math:`\\mathcal N(0, \\sigma^2)` on every weight.

    Args:
        features: ``(S, F)`` or ``(S, A, F)``.
        hidden: hidden layer widths.
        prior_scale: prior standard deviation.
    """

    features: jax.Array
    hidden: tuple = (16,)
    prior_scale: float = 1.0

    def __post_init__(self):
        if is_host_data(self.features):
            object.__setattr__(self, "features", check_features("features", self.features))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        _positive("prior_scale", self.prior_scale)

    def _shapes(self) -> dict:
        sizes = (self.features.shape[-1], *self.hidden)
        shapes = {}
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            shapes[f"w{i}"] = (n_in, n_out)
            shapes[f"b{i}"] = (n_out,)
        shapes["w_out"] = (sizes[-1],)
        return shapes

    def prior(self) -> dict:
        return {
            name: numpyro.sample(
                name, dist.Normal(0.0, self.prior_scale).expand(list(shape)).to_event(len(shape))
            )
            for name, shape in self._shapes().items()
        }

    def reward(self, params) -> jax.Array:
        hidden = self.features
        for i in range(len(self.hidden)):
            hidden = jnp.tanh(hidden @ params[f"w{i}"] + params[f"b{i}"])
        return hidden @ params["w_out"]

    def cost(self, params) -> jax.Array:
        return -self.reward(params)

    def init_params(self, rng_key=None) -> dict:
        """Small random weights (zeros would be a saddle); ``rng_key`` defaults to ``key(0)``."""
        rng_key = jax.random.key(0) if rng_key is None else rng_key
        shapes = self._shapes()
        keys = jax.random.split(rng_key, len(shapes))
        return {
            name: 0.1 * jax.random.normal(key, shape, self.features.dtype)
            for key, (name, shape) in zip(keys, shapes.items(), strict=True)
        }


jax.tree_util.register_dataclass(
    MLPReward, data_fields=["features"], meta_fields=["hidden", "prior_scale"]
)
