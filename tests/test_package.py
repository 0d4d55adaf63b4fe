"""framefill as users install it: a wheel of this checkout, installed (not editable) into a fresh virtual environment,
runs ``framefill interp`` with the shipped weights from a folder outside the checkout.

The environment reuses the packages already installed (torch above all) instead of downloading them: it sees the
running interpreter's site-packages, and pip installs the wheel with ``--no-index``, so a dependency that is declared
but not installed fails here. Building the wheel fetches setuptools from the package registry (pip's build isolation,
as for ``pip install .``), nothing else. About 13 s of CPU time (two Python start-ups with torch among them).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import make_clip

from framefill.video import probe

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.package


def run(*args: str | Path, cwd: Path, env: dict[str, str]) -> str:
    """Run a command; fail the test with its output if it fails. Returns stdout."""
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(tmp_path: Path, env: dict[str, str]) -> Path:
    """The wheel of the working tree, built from a copy of what the build reads (an in-tree build would leave
    ``build/`` behind in the checkout, and files that linger there from older builds would go into the wheel)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("framefill", "weights"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", src, cwd=tmp_path, env=env)
    (wheel,) = (tmp_path / "dist").glob("framefill-*.whl")
    return wheel


def fresh_venv(path: Path, env: dict[str, str]) -> Path:
    """A virtual environment without pip of its own that sees this interpreter's packages; its python."""
    run(sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", path, cwd=path.parent, env=env)
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if sys.prefix != sys.base_prefix:  # running in a virtual environment: --system-site-packages skips its packages
        purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=path, env=env)
        outer = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if p in sys.path]
        (Path(purelib.strip()) / "_outer_site.pth").write_text("".join(f"{p}\n" for p in outer))
    return python


def test_wheel_installs_and_interpolates_from_any_folder(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FRAMEFILL_WEIGHTS", "FRAMEFILL_DEBUG")}
    wheel = build_wheel(tmp_path, env)
    names = set(zipfile.ZipFile(wheel).namelist())
    # Every module of the package and the shipped weights are in it (the package list in pyproject is explicit).
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "framefill").rglob("*.py")}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    weights = {f"framefill/weights/{p.name}" for p in (ROOT / "weights").glob("*.safetensors")}
    assert {"framefill/weights/film.safetensors", "framefill/weights/README.md"} | weights <= names

    python = fresh_venv(tmp_path / "venv", env)
    run(python, "-m", "pip", "install", "--no-index", "-q", wheel, cwd=tmp_path, env=env)
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert ROOT not in work.parents
    # The installed copy is the one imported, and its weights are its own package data.
    where = run(python, "-c", "import framefill, framefill.models as m; print(framefill.__file__); "
                "print(m.default_weights('film'))", cwd=work, env=env).split()
    venv = (tmp_path / "venv").resolve()
    assert all(venv in Path(p).resolve().parents for p in where), where
    assert Path(where[1]).is_file()

    make_clip(work / "clip.mp4", n=4, audio=False)
    framefill = Path(python).with_name("framefill.exe" if os.name == "nt" else "framefill")
    run(framefill, "interp", "clip.mp4", "smooth.mp4", "--device", "cpu", cwd=work, env=env)  # the shipped film
    assert probe(work / "smooth.mp4").n_frames == 7
