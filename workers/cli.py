"""`python -m workers …`: the GPU owner's agent."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click

from workers import logs, runtimes
from workers.config import DEFAULT_PATH, AgentConfig
from workers.contract import LIMITS, ContractError, RenderManifest
from workers.runtimes_cli import runtimes_group

Command = TypeVar("Command", bound=Callable[..., Any])
DEVICE_CHOICES = click.Choice(["auto", "cpu", "cuda", "optix", "hip"], case_sensitive=False)


def _gpus(value: str | None) -> list[int]:
    if not value:
        return []
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError as exc:
        raise click.BadParameter("use a comma-separated list of GPU indices, e.g. 0,1") from exc


def _overrides(config: AgentConfig, **options: Any) -> AgentConfig:
    given = {k: v for k, v in options.items() if v not in (None, ())}
    if "gpus" in given:
        given["gpus"] = _gpus(given["gpus"])
    if "max_vram" in given:
        given["max_vram_mb"] = given.pop("max_vram")
    return replace(config, **given)


def render_options(f: Command) -> Command:
    for option in reversed(
        [
            click.option("--device", type=DEVICE_CHOICES, help="Cycles device; auto picks the best one found"),
            click.option("--gpus", help="GPU indices to use, e.g. 0,1"),
            click.option("--threads", type=click.IntRange(0, 1024), help="CPU threads (0 = all)"),
            click.option("--max-vram", type=click.IntRange(0), help="refuse frames estimated above this VRAM (MB)"),
            click.option("--cache-dir", type=click.Path(file_okay=False), help="where scenes are cached by hash"),
            click.option("--max-render-seconds", type=click.IntRange(1), help="kill a frame after this long"),
            click.option("--schedule", help="only work inside this daily window, e.g. 22:00-07:00"),
        ]
    ):
        f = option(f)
    return f


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_PATH,
    show_default=True,
    help="agent config file",
)
@click.option("-v", "--verbose", is_flag=True)
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    envvar="LOG_FORMAT",
    default="console",
    show_default=True,
    help="console: key=value for people; json: one object a line for a log collector",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path, verbose: bool, log_format: str) -> None:
    """Render marketplace agent: rent out this machine's GPU (or CPU) to render Blender frames."""
    logs.configure(level=logging.DEBUG if verbose else logging.INFO, fmt=log_format)
    ctx.obj = {"config_path": config_path}


def _config(ctx: click.Context) -> AgentConfig:
    try:
        return AgentConfig.load(ctx.obj["config_path"])
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.option("--server", required=True, help="marketplace URL, e.g. https://render.example.com")
@click.option("--token", required=True, help="the node token shown once when you created the node")
@render_options
@click.pass_context
def register(ctx: click.Context, /, server: str, token: str, **options: Any) -> None:
    """Store the server URL and node token, and check them with the marketplace."""
    from workers.client import ApiError, MarketClient

    config = _overrides(AgentConfig(server=server, token=token), **options)
    try:
        with MarketClient(server, token) as client:
            client.beat(leases=[])
    except ApiError as exc:
        raise click.ClickException(f"the marketplace refused this token: {exc}") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot reach {server}: {exc}") from exc
    config.save(ctx.obj["config_path"])
    click.echo(f"registered with {server}; config saved to {ctx.obj['config_path']}")


ALLOW_UNSANDBOXED_HELP = (
    "render strangers' scenes even where the scene sandbox (Landlock) cannot be applied; "
    "only the path policy then keeps a scene from reading this machine's files"
)


def _sandbox_or_refuse(allow_unsandboxed: bool) -> dict[str, str]:
    """The scene sandbox works here, or the owner said to go on without it; else a clear refusal."""
    from workers.blend.sandbox import check_isolation

    iso = check_isolation()
    if iso["works"]:
        return {"sandbox": "enforced", "sandbox_detail": iso["detail"]}
    if not allow_unsandboxed:
        raise click.ClickException(
            f"the scene sandbox cannot be applied on this machine ({iso['detail']}): refusing to render "
            "strangers' scenes. See `python -m workers doctor`; to run anyway, pass --allow-unsandboxed."
        )
    logging.getLogger("agent").warning(
        "event=unsandboxed: rendering WITHOUT the scene sandbox (--allow-unsandboxed)",
        extra={"sandbox_detail": iso["detail"]},
    )
    return {"sandbox": "unsandboxed", "sandbox_detail": iso["detail"]}


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """List the devices Cycles sees, explain why a GPU is not used, and say whether the sandbox works."""
    from workers.blend.sandbox import check_isolation
    from workers.devices import diagnose

    report = diagnose()
    report["sandbox"] = check_isolation()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"Blender {report['blender_version']}")
    for d in report["devices"]:
        click.echo(f"  {d['type']:7} {d['name']}" + (f"  {d['vram_mb']} MB" if d.get("vram_mb") else ""))
    for line in report["explanations"]:
        click.echo(f"- {line}")
    click.echo(f"pycuda: {report['pycuda']}")
    click.echo(f"will render on: {report['chosen']}")
    if report["sandbox"]["works"]:
        click.echo(f"scene sandbox: works ({report['sandbox']['detail']})")
    else:
        click.echo(
            f"scene sandbox: NOT WORKING ({report['sandbox']['detail']}); `run` refuses work unless "
            "started with --allow-unsandboxed"
        )


@cli.command()
@click.option("--upload/--no-upload", default=True, help="send the result to the marketplace")
@render_options
@click.pass_context
def bench(ctx: click.Context, /, upload: bool, **options: Any) -> None:
    """Render the bundled benchmark scene and report samples per second per device."""
    from workers.devices import benchmark

    config = _overrides(_config(ctx), **options) if upload else None
    device = options.get("device") or (config.device if config else "auto")
    results = benchmark(device=device, threads=options.get("threads") or 0)
    for name, score in results.items():
        click.echo(f"{name}: {score:,.0f} samples/s")
    if upload and config is not None:
        from workers.client import MarketClient

        with MarketClient(config.server, config.token) as client:
            client.bench(results)
        click.echo("uploaded")


@cli.command()
@click.argument("scene", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--frame", type=click.IntRange(*LIMITS.frame), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--samples", type=click.IntRange(*LIMITS.samples))
@click.option("--resolution", help="WxH, default: the scene's")
@click.option("--seed", type=click.IntRange(*LIMITS.seed), default=0)
@click.option("--allow-unsandboxed", is_flag=True, help=ALLOW_UNSANDBOXED_HELP)
@render_options
def render(
    scene: Path,
    frame: int,
    out: Path,
    samples: int | None,
    resolution: str | None,
    seed: int,
    allow_unsandboxed: bool,
    **options: Any,
) -> None:
    """Render one frame locally with the same sandboxed renderer the agent uses."""
    from workers.blend.renderer import Renderer
    from workers.devices import resolve_device, scene_defaults

    facts = scene_defaults(scene)
    width, height = facts["effective_width"], facts["effective_height"]
    if resolution:
        try:
            width, height = (int(v) for v in resolution.lower().split("x"))
        except ValueError as exc:
            raise click.BadParameter("use WxH, e.g. 1920x1080") from exc
    try:
        manifest = RenderManifest(
            frame=frame,
            samples=samples or facts["samples"],
            seed=seed,
            resolution_x=width,
            resolution_y=height,
            file_format="OPEN_EXR" if out.suffix.lower() == ".exr" else "PNG",
            use_denoising=bool(facts.get("use_denoising", False)),
            camera=facts.get("active_camera") or "",
            device=resolve_device(options.get("device") or "auto"),
            threads=options.get("threads") or 0,
        )
    except ContractError as exc:
        raise click.ClickException(str(exc)) from exc
    from workers.blend.sandbox import SandboxUnavailable

    try:
        with Renderer(
            timeout_s=options.get("max_render_seconds") or 3600,
            gpu=manifest.device != "CPU",
            allow_unsandboxed=allow_unsandboxed,
        ) as renderer:
            renderer.load(scene.resolve(), scene.resolve().parent)
            stats = renderer.render(manifest, out.resolve())
    except SandboxUnavailable as exc:
        raise click.ClickException(f"{exc.message}; if you trust this scene, pass --allow-unsandboxed") from exc
    click.echo(f"wrote {out} in {stats.get('seconds', 0):.2f}s on {manifest.device}")


@cli.command()
@click.option("--once", is_flag=True, help="exit after one frame (for tests and support)")
@click.option("--allow-unsandboxed", is_flag=True, help=ALLOW_UNSANDBOXED_HELP)
@render_options
@click.pass_context
def run(ctx: click.Context, /, once: bool, allow_unsandboxed: bool, **options: Any) -> None:
    """Take frames from this node's queue and render them until stopped (Ctrl-C twice to abort)."""
    from workers.agent import Agent
    from workers.blend.renderer import Renderer
    from workers.devices import diagnose, resolve_device

    config = _overrides(_config(ctx), **options)
    sandbox = _sandbox_or_refuse(allow_unsandboxed)
    report = diagnose()
    device = resolve_device(config.device, report=report)
    devices = [d for d in report["devices"] if d["type"] == device] or [{"type": "CPU", "name": "CPU", "use": True}]

    def factory(timeout_s: float, series: str | None = None) -> Renderer:
        return Renderer(
            timeout_s=timeout_s,
            gpu=device != "CPU",
            threads=config.threads,
            python=runtimes.python_for(series, config.cache_dir),
            allow_unsandboxed=allow_unsandboxed,
        )

    device_ids = [d["id"] for i, d in enumerate(devices) if d.get("id") and (not config.gpus or i in config.gpus)]
    agent = Agent(
        config,
        renderer_factory=factory,
        devices=devices,
        blender_version=report["blender_version"],
        once=once,
        device_ids=device_ids if device != "CPU" else None,
        sandbox=sandbox,
    )
    agent.install_signals()
    click.echo(f"agent running on {device} against {config.server}; Ctrl-C finishes the current frame")
    with agent.client:  # hangs up on the market when the agent stops, however it stops
        code = agent.run()
    sys.exit(code)


def main() -> None:
    cli(prog_name="python -m workers")


cli.add_command(runtimes_group)
