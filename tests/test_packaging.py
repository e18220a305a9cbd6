"""Packaging: the wheel ships ``ebm_ppl`` with ``models/`` as ``ebm_ppl.models``, and nothing else.

The wheel is built from a copy of the source tree (so the build writes nothing into the checkout),
unpacked, and imported in a fresh interpreter that finds ``ebm_ppl`` only in the unpacked wheel.
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST_NAME = "ebm-ppl"
SOURCE_ITEMS = ("pyproject.toml", "setup.py", "README.md", "ebm_ppl", "models")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def _package_dirs(top: Path, installed_as: str) -> set[str]:
    """Wheel paths ``.../__init__.py`` of the packages under ``top``, with ``top`` renamed."""
    return {
        "/".join((installed_as, *init.parent.relative_to(top).parts, "__init__.py"))
        for init in top.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Builds the wheel once for this module and returns its path."""
    src = tmp_path_factory.mktemp("src")
    for item in SOURCE_ITEMS:
        path = ROOT / item
        if path.is_dir():
            shutil.copytree(path, src / item, ignore=IGNORE)
        else:
            shutil.copy2(path, src / item)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert proc.returncode == 0, f"build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    (whl,) = out.glob("*.whl")
    return whl


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "ebm_ppl/__init__.py" in names
    assert "ebm_ppl/models/__init__.py" in names
    assert "ebm_ppl/models/objectworld.py" in names
    top_level = {name.split("/", 1)[0] for name in names}
    dist_info = {t for t in top_level if t.endswith(".dist-info")}
    assert top_level - dist_info == {"ebm_ppl"}, f"unexpected top-level entries: {top_level}"
    assert not any("/tests/" in f"/{name}" for name in names), "the wheel ships test files"
    # Every package in the source tree (a directory with __init__.py) is in the wheel.
    expected = _package_dirs(ROOT / "ebm_ppl", "ebm_ppl") | _package_dirs(
        ROOT / "models", "ebm_ppl/models"
    )
    assert expected <= names, f"packages missing from the wheel: {sorted(expected - names)}"
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "ebm-ppl = ebm_ppl.cli:main" in text


def test_wheel_imports_models_from_the_wheel(wheel, tmp_path):
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    code = "import ebm_ppl.models.objectworld as m; print(m.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    module_file = Path(proc.stdout.strip().splitlines()[-1])
    assert module_file.is_relative_to(unpacked), f"imported from {module_file}, not the wheel"


def test_console_script_entry_point():
    dist = importlib.metadata.distribution(DIST_NAME)
    scripts = [ep for ep in dist.entry_points if ep.group == "console_scripts"]
    assert [(ep.name, ep.value) for ep in scripts] == [("ebm-ppl", "ebm_ppl.cli:main")]
