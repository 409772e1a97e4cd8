"""`al image build` and `al image ls`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from action_llama.cli.common import ProjectOption, project_at
from action_llama.cli.render import ConsoleEvents, QuietEvents

app = typer.Typer(help="Build and list the project's image chain.", no_args_is_help=True)


@app.command("build")
def build(
    project_dir: Path = ProjectOption,
    no_cache: bool = typer.Option(False, "--no-cache", help="Rebuild every layer."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the full build output."),
) -> None:
    """Build the image chain (only the layers whose inputs changed) and show it."""
    from action_llama.engine import connect
    from action_llama.images.build import ChainBuilder
    from action_llama.images.plan import parent_of
    from action_llama.runtimes.registry import image_agents

    project = project_at(project_dir)
    events = QuietEvents() if quiet else ConsoleEvents(verbose=verbose)
    result = ChainBuilder(connect(), project, events, no_cache=no_cache).ensure()
    if quiet:
        return
    typer.echo("")
    for layer in result.layers:
        parent = parent_of(layer, result.layers)
        depth = 0 if parent is None else (1 if parent.kind == "base" else 2)
        mark = "built" if layer.tag in result.built else "up to date"
        short = result.image_ids[layer.tag].removeprefix("sha256:")[:12]
        typer.echo(f"{'   ' * depth}{'└─ ' if depth else ''}{layer.tag}  {short}  ({mark})")
    plain = [name for name in image_agents(project) if project.agents[name].dockerfile is None]
    if plain:
        top = (
            result.layers[1].tag
            if len(result.layers) > 1 and result.layers[1].kind == "project-base"
            else result.layers[0].tag
        )
        typer.echo(f"\nAgents without a Dockerfile run {top}: {', '.join(plain)}")


@app.command("ls")
def ls(project_dir: Path = ProjectOption) -> None:
    """List the project's images with their layer and parent."""
    from action_llama.engine import connect
    from action_llama.images.inventory import project_images

    project = project_at(project_dir)
    rows = project_images(connect(), project)
    if not rows:
        typer.echo("No images yet. Build them with: al image build")
        return
    header = f"{'IMAGE':<32} {'LAYER':<13} {'PARENT':<32} {'ID':<12} {'SIZE':>8}  CREATED"
    typer.echo(header)
    for row in rows:
        created = datetime.fromtimestamp(row.created).strftime("%Y-%m-%d %H:%M")
        typer.echo(
            f"{row.tag:<32} {row.layer:<13} {row.parent:<32} {row.short_id:<12} "
            f"{row.size_mb:>6.0f}MB  {created}"
        )
