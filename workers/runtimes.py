"""Blender series the market renders with, and the agent's runtimes: one virtualenv per series with that bpy.

A *series* is a Blender minor release line ("4.5"); files saved by one series open in it exactly as the
artist saw them. bpy wheels exist per series and each needs its own Python (5.1 and later: 3.13), so a
runtime is a virtualenv with that Python and that bpy, kept in the agent's cache dir
(`<cache>/runtimes/<series>/`). The series whose bpy is installed in the agent's own interpreter needs no
runtime: `make run` works with that one alone.

Choosing a series for a file (`pick_series`): the series that saved it; else the nearest newer supported
one (Blender opens older files, with a warning that it may look different); newer than every supported
series: the newest, with a warning that features may be lost; older than the oldest: refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Series:
    name: str  # "4.5"
    bpy: str  # the pinned bpy release of the series
    python: str  # the Python minor version its wheels are built for
    lts: bool = False

    @property
    def key(self) -> tuple[int, int]:
        major, minor = self.name.split(".")
        return int(major), int(minor)

    @property
    def label(self) -> str:
        return f"Blender {self.name}{' LTS' if self.lts else ''}"


# Newest release of each series on PyPI on 2026-12-02 (`pip index versions bpy`, on 3.11 and 3.13).
SUPPORTED: tuple[Series, ...] = (
    Series("4.2", "4.2.23", "3.11", lts=True),
    Series("4.5", "4.5.15", "3.11", lts=True),
    Series("5.0", "5.0.1", "3.11"),
    Series("5.3", "5.3.0", "3.13"),
)
BY_NAME = {s.name: s for s in SUPPORTED}


class SeriesRefused(ValueError):
    """A file no supported series can open faithfully."""


@dataclass(frozen=True)
class SeriesChoice:
    series: Series
    warning: str | None = None


def pick_series(saved: tuple[int, int], available: Iterable[Series] = SUPPORTED) -> SeriesChoice:
    """The series among `available` (the runtimes at hand) that a file saved by Blender `saved` renders with.
    Refused only when older than every series the market supports at all."""
    ordered = sorted(available, key=lambda s: s.key)
    saved_name = f"{saved[0]}.{saved[1]}"
    if saved < SUPPORTED[0].key:
        raise SeriesRefused(
            f"saved with Blender {saved_name}, older than the oldest series the market renders "
            f"({SUPPORTED[0].label}): open it in {SUPPORTED[0].label} or newer and save it again"
        )
    for series in ordered:
        if series.key == saved:
            return SeriesChoice(series)
    newer = [s for s in ordered if s.key > saved]
    if newer:
        return SeriesChoice(
            newer[0],
            (
                f"saved with Blender {saved_name}, which the market does not run: it renders with {newer[0].label}, "
                "the nearest newer series; check a test frame, as newer Blender may shade some features differently"
            ),
        )
    return SeriesChoice(
        ordered[-1],
        (
            f"saved with Blender {saved_name}, newer than every series the market runs: it renders with "
            f"{ordered[-1].label}, and features added since may be lost"
        ),
    )


def series_of_version(version: str) -> str:
    """ "5.0.1" -> "5.0"."""
    major, minor, *_ = version.split(".")
    return f"{int(major)}.{int(minor)}"


@dataclass(frozen=True)
class Runtime:
    series: Series
    python: Path  # the interpreter that has this series' bpy

    @property
    def builtin(self) -> bool:
        return self.python == Path(sys.executable)

    @property
    def interpreter(self) -> Path | None:
        """What a sandboxed child runs with (`Limits.python`): None for the running interpreter's own bpy."""
        return None if self.builtin else self.python


def _own_bpy_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("bpy")
    except metadata.PackageNotFoundError:
        return None


def own_series() -> str | None:
    """The series of the bpy installed in this interpreter (read from package metadata: no bpy import)."""
    own = _own_bpy_version()
    return series_of_version(own) if own else None


def runtimes_dir(cache_dir: str | os.PathLike[str]) -> Path:
    return Path(cache_dir) / "runtimes"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed(cache_dir: str | os.PathLike[str]) -> dict[str, Runtime]:
    """Series this agent can render: its own interpreter's bpy plus every complete runtime in the cache."""
    found: dict[str, Runtime] = {}
    own = own_series()
    if own in BY_NAME:
        found[own] = Runtime(BY_NAME[own], Path(sys.executable))
    for series in SUPPORTED:
        venv = runtimes_dir(cache_dir) / series.name
        if series.name not in found and (venv / ".complete").exists():
            found[series.name] = Runtime(series, _venv_python(venv))
    return found


def python_for(series: str | None, cache_dir: str | os.PathLike[str]) -> Path | None:
    """The interpreter for a manifest's series: None for the agent's own (or an unpinned manifest)."""
    if not series:
        return None
    runtime = installed(cache_dir).get(series)
    if runtime is None:
        raise RuntimeError(f"no runtime for Blender {series} here: python -m workers runtimes install {series}")
    return runtime.interpreter


def find_python(version: str) -> Path | None:
    """An interpreter of this minor version: this one, a pyenv build, else one on PATH (not a pyenv shim,
    which answers only where a .python-version asks for it)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(sys.executable)
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True):
        return candidate
    on_path = shutil.which(f"python{version}")
    if on_path and "/shims/" not in on_path:
        return Path(on_path)
    return None


def install(
    series_name: str, cache_dir: str | os.PathLike[str], *, python: Path | None = None, progress: bool = True
) -> Runtime:
    """Create `<cache>/runtimes/<series>` with the series' Python and bpy; pip shows its progress bar."""
    series = BY_NAME.get(series_name)
    if series is None:
        raise SeriesRefused(f"unknown series {series_name}: supported are {', '.join(BY_NAME)}")
    interpreter = python or find_python(series.python)
    if interpreter is None:
        raise RuntimeError(
            f"{series.label} needs Python {series.python}: install it (e.g. `pyenv install {series.python}`) "
            "or pass --python"
        )
    venv = runtimes_dir(cache_dir) / series.name
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([str(interpreter), "-m", "venv", str(venv)], check=True)
    bar = ["--progress-bar", "on"] if progress else ["-q"]
    subprocess.run([str(_venv_python(venv)), "-m", "pip", "install", *bar, f"bpy=={series.bpy}"], check=True)
    check = [str(_venv_python(venv)), "-c", "import bpy, sys; sys.stdout.write(bpy.app.version_string)"]
    version = subprocess.run(check, check=True, capture_output=True, text=True).stdout.strip()
    if series_of_version(version) != series.name:
        raise RuntimeError(f"the runtime for {series.label} reports Blender {version}")
    (venv / ".complete").write_text(version)
    return Runtime(series, _venv_python(venv))


def remove(series_name: str, cache_dir: str | os.PathLike[str]) -> bool:
    venv = runtimes_dir(cache_dir) / series_name
    if not venv.exists():
        return False
    shutil.rmtree(venv)
    return True
