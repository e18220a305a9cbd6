"""Package list for setuptools; all other metadata lives in pyproject.toml.

The top-level ``models/`` directory is installed as ``ebm_ppl.models`` (the mapping is
``[tool.setuptools.package-dir]`` in pyproject.toml). pyproject's ``packages.find`` cannot name a
directory's packages under another prefix, so the list is computed here: every package under
``ebm_ppl/`` plus every package under ``models/`` with ``models`` renamed to ``ebm_ppl.models``.
"""

from setuptools import find_packages, setup

_LIBRARY = find_packages(where=".", include=["ebm_ppl", "ebm_ppl.*"])
_MODELS = ["ebm_ppl." + name for name in find_packages(where=".", include=["models", "models.*"])]

setup(packages=[*_LIBRARY, *_MODELS])
