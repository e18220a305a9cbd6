"""Argument checks for the public boundary.

Every check raises ``ValueError`` (or ``TypeError``) whose message names the argument, what was
expected and what came, so a user never meets a silent NaN deep inside a ``lax.scan``. Checks run
on concrete (NumPy-convertible) values only; inside ``jit`` they are skipped, which is why public
constructors validate eagerly and hot paths never do.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = [
    "is_host_data",
    "check_features",
    "is_concrete",
    "check_shape",
    "check_finite",
    "check_probabilities",
    "check_choice",
]


def is_concrete(*values: Any) -> bool:
    """Whether every leaf of ``values`` can be read on the host (is not a tracer)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(values))


def is_host_data(value: Any) -> bool:
    """Whether ``value`` is user data to validate: a NumPy/JAX array or a list, not a tracer.

    Pytree dataclasses re-run ``__post_init__`` when JAX rebuilds them, with tracers or with
    placeholder leaves (``None``, ints, ``ShapeDtypeStruct``); those must pass through unchecked.
    """
    if isinstance(value, jax.core.Tracer):
        return False
    return isinstance(value, (np.ndarray, jax.Array, list))


def check_features(name: str, value: Any):
    """Validate a ``(S, F)`` or ``(S, A, F)`` finite feature array; returns it as a JAX array."""
    import jax.numpy as jnp

    features = jnp.asarray(value)
    if features.ndim not in (2, 3):
        raise ValueError(
            f"`{name}` must have shape (S, F) or (S, A, F); got shape {features.shape}."
        )
    check_finite(name, features)
    return features


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None:
        return f"{type(value).__name__} {value!r}"
    return f"array of shape {tuple(shape)} and dtype {dtype}"


def check_shape(name: str, value: Any, expected: tuple, description: str) -> None:
    """Raise unless ``value.shape`` matches ``expected`` (``None`` entries match any size).

    Args:
        name: the argument's name, as the user wrote it.
        value: the array.
        expected: the expected shape; ``None`` matches any size along that axis.
        description: the expected shape in words, e.g. ``"(S, A, S) = (num_states, num_actions,
            num_states)"``.
    """
    shape = getattr(value, "shape", None)
    if (
        shape is None
        or len(shape) != len(expected)
        or any(e is not None and e != s for e, s in zip(expected, shape, strict=True))
    ):
        raise ValueError(f"`{name}` must have shape {description}; got {_describe(value)}.")


def check_finite(name: str, value: Any) -> None:
    """Raise if a concrete array holds NaN or infinite entries, naming the first bad index."""
    if not is_concrete(value):
        return
    array = np.asarray(value)
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"`{name}` must be finite everywhere; got {array[index]} at index {index} "
            f"({int(bad.sum())} non-finite entries in {_describe(value)})."
        )


def check_probabilities(
    name: str, value: Any, *, axis: int = -1, atol: float | None = None
) -> None:
    """Raise unless a concrete array is non-negative and sums to one along ``axis``."""
    if not is_concrete(value):
        return
    array = np.asarray(value)
    check_finite(name, array)
    if (array < 0).any():
        index = tuple(int(i) for i in np.argwhere(array < 0)[0])
        raise ValueError(
            f"`{name}` must hold probabilities >= 0; got {array[index]} at index {index}."
        )
    if atol is None:
        atol = 1e-6 if array.dtype == np.float32 else 1e-10
        atol = max(atol, 10 * np.finfo(array.dtype).eps * array.shape[axis] if array.ndim else 0)
    totals = array.sum(axis=axis)
    bad = np.abs(totals - 1.0) > atol
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"`{name}` must sum to 1 along axis {axis} (tolerance {atol:g}); the slice at index "
            f"{index} sums to {totals[index]!r}."
        )


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; got {value!r}.")
