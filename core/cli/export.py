"""``tl export``: write a saved model in a serving format, self-checked before it is written."""

from __future__ import annotations

from pathlib import Path

import click

from tl.errors import UsageError
from tl.models.export import TOLERANCE_HELP


@click.command()
@click.option("--model", "-m", "model_dir", required=True, help="A model directory saved by tl.")
@click.option("--format", "fmt", required=True,
              help="Export format: onnx (ONNX Runtime, `--runtime onnx`) or savedmodel (TensorFlow Serving).")
@click.option("--output", "-o", help="Target directory (must not exist). Default: <model dir>-<format>"
              "[-<quantize>] beside the model.")
@click.option("--quantize", type=click.Choice(["int8"]), help="onnx: int8 weights (ONNX Runtime dynamic "
              "quantization; about 4x smaller, usually faster on CPUs).")
@click.option("--tolerance", type=click.FloatRange(min=0), help="Self-check: the most the export's outputs "
              f"may differ from the model's before it is refused. {TOLERANCE_HELP}.")
@click.option("--base", type=click.Path(file_okay=False), help="The base checkpoint directory of a model saved as "
              "LoRA adapters alone, when tl.json's base_model is not found here (its weights must have base_sha256).")
def export(model_dir: str, fmt: str, output: str | None, quantize: str | None, tolerance: float | None,
           base: str | None = None) -> None:
    """Export a saved model (trained on any backend) for serving.

    The written model is run on fixed sample inputs (varied sentences, a text pair, random token
    ids up to the model's max length, in batches with padding) and compared with the model's
    float32 outputs; beyond the tolerance nothing is written."""
    from tl.cli.common import load_registry
    from tl.models.export import check_quantize, install_hint, require_exporter
    from tl.models.hf_checkpoint import read_meta
    from tl.models.saved import load_saved
    from tl.plugins.registry import get_backend

    registry, _ = load_registry()
    backends = [registry.items["backend"][n] for n in registry.names("backend")]
    able = [b for b in backends if fmt in b.capabilities.exports]
    if not able:
        formats = sorted({f for b in backends for f in b.capabilities.exports})
        raise UsageError(f"unknown export format {fmt!r}; formats: {', '.join(formats) or 'none'}")
    check_quantize(fmt, quantize)
    installed = [b for b in able if b.is_available()]
    if not installed:
        raise UsageError(f"--format {fmt} is written by {' or '.join(b.name for b in able)}, which is not "
                         f"installed: {install_hint(fmt, able[0].name)}")
    backend = get_backend(registry, installed[0].name)
    require_exporter(fmt, backend.name)
    exported = (read_meta(model_dir).get("export") or {}).get("format")
    if exported:
        raise UsageError(f"{model_dir} is already an {exported} export; export the tl model it came from")
    suffix = f"{fmt}-{quantize}" if quantize else fmt
    target = Path(output) if output else Path(model_dir).resolve().with_name(f"{Path(model_dir).resolve().name}-{suffix}")
    if target.exists():
        raise UsageError(f"{target} already exists; pass another --output")
    model, _ = load_saved(model_dir, backend, base=base, registry=registry)
    result = backend.export(model, target, fmt, quantize=quantize, tolerance=tolerance)
    check = f" (self-check: {result.metric} {result.max_abs_diff:.2g} <= {result.tolerance:g})" if result else ""
    click.echo(f"exported {fmt}{' ' + quantize if quantize else ''} to {target}{check}")
