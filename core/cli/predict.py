"""``tl predict`` and ``tl evaluate``: use a saved model on any installed backend."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tl.errors import UsageError


def _pick_backend(registry, requested: str | None, model_dir: str) -> str:
    """The requested backend, else the one the model was trained with, else any installed one."""
    from tl.checkpoint import read_meta

    if requested:
        return requested
    trained = read_meta(model_dir).get("backend")
    names = registry.names("backend")
    if trained in names and registry.get("backend", trained).is_available():
        return trained
    for name in names:
        if registry.get("backend", name).is_available():
            return name
    raise UsageError("no backend is installed: pip install 'tl[torch]' or 'tl[tensorflow]'")


def _load(model_dir: str, backend_name: str | None):
    from tl.cli.common import load_registry
    from tl.modelio import load_saved
    from tl.runner import get_backend

    registry, pm = load_registry()
    backend = get_backend(registry, _pick_backend(registry, backend_name, model_dir))
    model, meta = load_saved(model_dir, backend)
    return model, meta, registry, pm


def _read_inputs(path: str, text_column: str) -> list[str]:
    from tl.data import read_table, show_names

    if path == "-":
        return [ln.rstrip("\r\n") for ln in sys.stdin if ln.strip()]
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"input file {p} not found")
    if p.suffix.lower() in (".txt", ".text", ""):
        try:
            return [ln.rstrip("\r\n") for ln in p.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
        except UnicodeDecodeError as exc:
            raise UsageError(f"{p} is not valid UTF-8 (byte {exc.start})") from None
    df = read_table(p)
    if text_column not in df.columns:
        raise UsageError(f"column {text_column!r} not found in {p.name}; columns are: "
                         f"{show_names(df.columns)}. Pass --text-column.")
    return [str(x) for x in df[text_column].tolist()]


@click.command()
@click.argument("texts", nargs=-1)
@click.option("--model", "-m", "model_dir", required=True, help="A model directory saved by tl (runs/<id>/model).")
@click.option("--input", "-i", "input_path", help="File of texts: .txt (one per line), .csv/.tsv/.jsonl/.parquet, or - for stdin.")
@click.option("--text-column", default="text", show_default=True, help="Text column for tabular --input files.")
@click.option("--backend", help="Backend to run on (default: the one that trained the model, if installed).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def predict(texts: tuple[str, ...], model_dir: str, input_path: str | None, text_column: str,
            backend: str | None, batch_size: int, as_json: bool) -> None:
    """Predict labels for TEXTS (or --input) with a saved model."""
    from tl.modelio import predict as run_predict

    inputs = list(texts) + (_read_inputs(input_path, text_column) if input_path else [])
    if not inputs:
        raise UsageError("nothing to predict: pass texts as arguments or --input FILE")
    model, meta, _, _ = _load(model_dir, backend)
    preds = run_predict(model, inputs, max_length=int(meta.get("max_length", 128)), batch_size=batch_size)
    if as_json:
        for p in preds:
            click.echo(json.dumps({"text": p.text, "label": p.label, "probability": round(p.probability, 6),
                                   "probabilities": {k: round(v, 6) for k, v in p.probabilities.items()}},
                                  ensure_ascii=False))
        return
    width = max(len(lab) for lab in model.head.labels)
    for p in preds:
        text = p.text if len(p.text) <= 80 else p.text[:77] + "..."
        click.echo(f"{p.label:<{width}}  {p.probability:.3f}  {text}")


@click.command()
@click.option("--model", "-m", "model_dir", required=True, help="A model directory saved by tl.")
@click.option("--dataset", required=True, help="A data file (all rows are scored) or a dataset name (its eval split).")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--backend", help="Backend to run on (default: the one that trained the model, if installed).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--max-eval-samples", type=click.IntRange(min=1), help="Score a fixed random subset of this size.")
@click.option("--output", "-o", help="Where to write the metrics JSON. Default: evaluation-<dataset>.json beside the model.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(model_dir: str, dataset: str, text_column: str, label_column: str, backend: str | None,
             batch_size: int, max_eval_samples: int | None, output: str | None, as_json: bool) -> None:
    """Score a saved model on labelled data; print and write the metrics."""
    from tl.errors import DataError
    from tl.modelio import encode
    from tl.resolve import resolve_eval_file
    from tl.runner import evaluate as score
    from tl.runner import label_ids, subset
    from tl.runs import write_json_atomic

    model, meta, registry, pm = _load(model_dir, backend)
    examples = subset(resolve_eval_file(dataset, registry, text_column, label_column), max_eval_samples)
    labels = model.head.labels
    unknown = sorted(set(examples.labels) - set(labels))
    if unknown:
        raise DataError(f"labels {', '.join(map(repr, unknown))} in {dataset} are not labels of this model "
                        f"({', '.join(labels)})")
    task = registry.get("task", meta["task"]) if meta.get("task") in registry.items["task"] else None
    if task is None:
        from tl.interfaces import Task

        task = Task()
    enc = encode(model.tokenizer, examples.texts, examples.pairs, int(meta.get("max_length", 128)),
                 label_ids(examples.labels, labels))
    metrics = score(model, enc, labels, task, batch_size)
    metrics.update({"num_eval_samples": len(enc), "dataset": dataset, "backend": model.backend,
                    "model": str(model_dir)})
    target = Path(output) if output else Path(model_dir).resolve().parent / f"evaluation-{Path(dataset).stem}.json"
    write_json_atomic(target, metrics)
    pm.hook.tl_on_evaluate(run_dir=target.parent, metrics=metrics)
    if as_json:
        click.echo(json.dumps(metrics))
        return
    click.echo(f"eval_accuracy {metrics['eval_accuracy']:.4f} | eval_loss {metrics['eval_loss']:.4f} | "
               f"eval_macro_f1 {metrics['eval_macro_f1']:.4f} | {len(enc)} examples | backend {model.backend}")
    for label, row in metrics["eval_per_class"].items():
        click.echo(f"  {label:<12} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
                   f"f1 {row['f1']:.3f}  support {row['support']}")
    click.echo(f"metrics written to {target}")
