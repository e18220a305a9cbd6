"""Test-session set-up: CPU only, float64 on, a non-interactive matplotlib backend.

The environment variables must be set before JAX or matplotlib is first imported, so this module
sets them at import time (pytest imports conftest.py before any test module). ``setdefault`` lets
a caller override them, e.g. ``JAX_PLATFORMS=cuda`` for a run on a GPU machine.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax

# Library code never flips this flag (DESIGN §4); tests run in float64 unless a test says otherwise.
jax.config.update("jax_enable_x64", True)
