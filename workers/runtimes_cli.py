"""`python -m workers runtimes list|install SERIES|remove SERIES`: the Blender series this agent can render."""

from __future__ import annotations

from pathlib import Path

import click

from workers import runtimes
from workers.config import DEFAULT_CACHE_DIR, AgentConfig


def _cache_dir(ctx: click.Context, cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    path = ctx.find_root().obj["config_path"]
    return AgentConfig.load(path).cache_dir if Path(path).exists() else DEFAULT_CACHE_DIR


cache_option = click.option("--cache-dir", type=click.Path(file_okay=False), help="default: the agent config's")


@click.group("runtimes")
def runtimes_group() -> None:
    """Blender series (bpy runtimes) this agent renders with."""


@runtimes_group.command("list")
@cache_option
@click.pass_context
def list_runtimes(ctx: click.Context, cache_dir: str | None) -> None:
    """Supported series, and which are installed here."""
    have = runtimes.installed(_cache_dir(ctx, cache_dir))
    for series in runtimes.SUPPORTED:
        runtime = have.get(series.name)
        where = "not installed" if runtime is None else ("built in" if runtime.builtin else str(runtime.python))
        click.echo(f"{series.name:5} {series.label:18} bpy {series.bpy:8} Python {series.python:5} {where}")


@runtimes_group.command("install")
@click.argument("series")
@click.option(
    "--python",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the interpreter to build it on (default: python<version> on PATH, or pyenv's)",
)
@cache_option
@click.pass_context
def install_runtime(ctx: click.Context, series: str, python: Path | None, cache_dir: str | None) -> None:
    """Download and install a series' bpy into the agent's cache dir (a few hundred MB)."""
    try:
        runtime = runtimes.install(series, _cache_dir(ctx, cache_dir), python=python)
    except (runtimes.SeriesRefused, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{runtime.series.label} installed: {runtime.python}")


@runtimes_group.command("remove")
@click.argument("series")
@cache_option
@click.pass_context
def remove_runtime(ctx: click.Context, series: str, cache_dir: str | None) -> None:
    """Delete a series' runtime from the cache dir."""
    if not runtimes.remove(series, _cache_dir(ctx, cache_dir)):
        raise click.ClickException(f"no runtime for {series} in the cache dir")
    click.echo(f"removed {series}")
