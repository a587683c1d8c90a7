"""``tl export``: write a saved model in a serving format."""

from __future__ import annotations

from pathlib import Path

import click

from tl.errors import UsageError


@click.command()
@click.option("--model", "-m", "model_dir", required=True, help="A model directory saved by tl.")
@click.option("--format", "fmt", required=True, help="Export format, e.g. savedmodel (TensorFlow Serving).")
@click.option("--output", "-o", help="Target directory. Default: <model dir>-<format> beside the model.")
def export(model_dir: str, fmt: str, output: str | None) -> None:
    """Export a saved model (trained on any backend) for serving."""
    from tl.cli.common import load_registry
    from tl.models.saved import load_saved
    from tl.plugins.registry import get_backend

    registry, _ = load_registry()
    able = [n for n in registry.names("backend") if fmt in registry.items["backend"][n].capabilities.exports]
    if not able:
        formats = sorted({f for b in registry.items["backend"].values() for f in b.capabilities.exports})
        raise UsageError(f"unknown export format {fmt!r}; formats: {', '.join(formats) or 'none'}")
    backend = get_backend(registry, able[0])
    target = Path(output) if output else Path(model_dir).resolve().with_name(f"{Path(model_dir).resolve().name}-{fmt}")
    if target.exists():
        raise UsageError(f"{target} already exists; pass another --output")
    model, _ = load_saved(model_dir, backend)
    backend.export(model, target, fmt)
    click.echo(f"exported {fmt} to {target}")
