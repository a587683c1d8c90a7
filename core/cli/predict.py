"""``tl predict`` and ``tl evaluate``: use a saved model on any installed backend."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tl.errors import UsageError


def _load(registry, model_dir: str, runtime: str | None, precision: str = "auto", threads: int | None = None,
          base: str | None = None):
    from tl.models.saved import open_model

    model, meta, _ = open_model(model_dir, runtime, precision=precision, threads=threads, registry=registry,
                                base=base)
    return model, meta


def runtime_options(command):
    """--precision, --threads and --base of the commands that run a saved model."""
    from tl.training.config import PRECISIONS

    command = click.option("--base", type=click.Path(file_okay=False),
                           help="The base checkpoint directory of a model saved as LoRA adapters alone, when "
                                "tl.json's base_model is not found here (a local base on another machine); "
                                "its weights must have tl.json's base_sha256.")(command)
    command = click.option("--threads", type=click.IntRange(min=1),
                           help="CPU threads. Default: every usable core.")(command)
    return click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                        help="auto: bf16 where the hardware computes it natively (as in training), "
                             "fp16 on GPUs without bf16, else fp32.")(command)


#: ``--runtime NAME`` (``--backend`` is its older name, kept as an alias).
runtime_option = click.option(
    "--runtime", "--backend", "runtime",
    help="Runtime (backend) to run on: torch, tensorflow or onnx (an export directory of tl export "
         "--format onnx). Default: onnx for an ONNX export, else the backend that trained the model, if "
         "installed. --backend is an alias.")


def _is_table(path: str) -> bool:
    """A CSV/TSV/JSONL/Parquet --input (columns), not stdin or a file of one text per line."""
    return path != "-" and Path(path).suffix.lower() not in (".txt", ".text", "")


def _read_inputs(path: str, text_column: str, pair_column: str | None = None) -> tuple[list[str], list[str] | None]:
    """Texts (and from a table with ``pair_column``, their second texts) from a .txt file, stdin or a table."""
    from tl.data.tables import file_format, read_table, show_names, string_column

    if not _is_table(path):
        if path == "-":
            lines = [ln.rstrip("\r\n") for ln in sys.stdin if ln.strip()]
        else:
            p = Path(path)
            if not p.is_file():
                raise UsageError(f"input file {p} not found")
            try:
                lines = [ln.rstrip("\r\n") for ln in p.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
            except UnicodeDecodeError as exc:
                raise UsageError(f"{p} is not valid UTF-8 (byte {exc.start})") from None
        if not lines:
            raise UsageError(f"{'stdin (--input -)' if path == '-' else path} has no texts: one text per line")
        return lines, None  # a pair task reads FIRST<TAB>SECOND lines itself
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"input file {p} not found")
    df = read_table(p)
    for option, column in (("--text-column", text_column), ("--text-pair-column", pair_column)):
        if column is not None and column not in df.columns:
            raise UsageError(f"column {column!r} not found in {p.name}; columns are: "
                             f"{show_names(df.columns)}. Pass {option}.")
    if len(df) == 0:
        raise UsageError(f"{p} has no rows to predict")
    first = 2 if file_format(p) in ("csv", "tsv") else 1  # rows as a spreadsheet shows them: the header is row 1
    # a missing, null or empty cell is an error naming its row (not the text "nan" or "None" predicted)
    texts = string_column(df, text_column, p, "text", first)
    return texts, None if pair_column is None else string_column(df, pair_column, p, "text", first)


@click.command()
@click.argument("texts", nargs=-1)
@click.option("--model", "-m", "model_dir", required=True, help="A model directory saved by tl (runs/<id>/model).")
@click.option("--input", "-i", "input_path", help="File of texts: .txt (one per line), .csv/.tsv/.jsonl/.parquet, or - for stdin.")
@click.option("--text-column", help="Text column of tabular --input files. Default: the task's, else text.")
@click.option("--text-pair-column", help="Second-text column of tabular --input files, for pair tasks "
              "(default: the task's). Texts on the command line and .txt lines give a pair as FIRST<TAB>SECOND.")
@runtime_option
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@runtime_options
def predict(texts: tuple[str, ...], model_dir: str, input_path: str | None, text_column: str | None,
            text_pair_column: str | None, runtime: str | None, batch_size: int, as_json: bool, precision: str,
            threads: int | None, base: str | None = None) -> None:
    """Predict labels for TEXTS (or --input) with a saved model (for a token-classification model
    such as NER: the entity spans of each text)."""
    from tl.cli.common import load_registry
    from tl.models.hf_checkpoint import read_meta
    from tl.models.saved import task_of

    registry, _ = load_registry()
    task = task_of(read_meta(model_dir), registry)
    if text_pair_column and not (input_path and _is_table(input_path)):
        raise UsageError("--text-pair-column reads a column of a tabular --input file (.csv/.tsv/.jsonl/.parquet); "
                         "elsewhere give each pair as FIRST<TAB>SECOND")
    text_column = text_column or task.defaults.get("text_column") or "text"
    pair_column = text_pair_column or (task.defaults.get("text_pair_column") if task.requires_text_pair else None)
    pairs: list[str] | None = None
    inputs = list(texts)
    if input_path:
        read, read_pairs = _read_inputs(input_path, text_column, pair_column)
        if read_pairs is not None:
            if inputs:
                raise UsageError("texts on the command line cannot be mixed with a --text-pair-column input file")
            pairs = read_pairs
        inputs += read
    if not inputs:
        raise UsageError("nothing to predict: pass texts as arguments or --input FILE")
    model, meta = _load(registry, model_dir, runtime, precision, threads, base)
    max_length = int(meta.get("max_length", 128))
    if pairs is not None:
        preds = task.predict(model, inputs, max_length, batch_size, pairs=pairs)
    else:
        preds = task.predict(model, inputs, max_length, batch_size)
    for line in task.format_predictions(preds, model.head.labels, as_json):
        click.echo(line)


@click.command()
@click.option("--model", "-m", "model_dir", required=True, help="A model directory saved by tl.")
@click.option("--dataset", required=True, help="A data file (all rows are scored) or a dataset name (its eval split).")
@click.option("--text-column", help="Text column of a data file. Default: the task's, else text.")
@click.option("--label-column", help="Label column of a data file. Default: the task's, else label.")
@click.option("--text-pair-column", help="Second-text column of a data file, for pair tasks. Default: the task's.")
@runtime_option
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--max-eval-samples", type=click.IntRange(min=1), help="Score a fixed random subset of this size.")
@click.option("--output", "-o", help="Where to write the metrics JSON. Default: evaluation-<dataset>.json beside the model.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@runtime_options
def evaluate(model_dir: str, dataset: str, text_column: str | None, label_column: str | None,
             text_pair_column: str | None, runtime: str | None, batch_size: int, max_eval_samples: int | None,
             output: str | None, as_json: bool, precision: str, threads: int | None, base: str | None = None) -> None:
    """Score a saved model on labelled data; print and write the metrics."""
    from tl.assets.resolve import resolve_eval_file
    from tl.cli.common import load_registry
    from tl.data.examples import subset
    from tl.data.loading import require_pairs
    from tl.errors import DataError
    from tl.evaluation.evaluate import evaluate as score
    from tl.models.saved import task_of
    from tl.training.rundir import write_json_atomic

    registry, pm = load_registry()
    model, meta = _load(registry, model_dir, runtime, precision, threads, base)
    task = task_of(meta, registry)
    text_column = text_column or task.defaults.get("text_column") or "text"
    label_column = label_column or task.defaults.get("label_column") or "label"
    pair_column = text_pair_column or task.defaults.get("text_pair_column")
    examples = subset(resolve_eval_file(dataset, registry, text_column, label_column, pair_column, read=task.read),
                      max_eval_samples)
    require_pairs(task, examples)
    labels = model.head.labels
    unknown = sorted(set(task.observed_labels(examples)) - set(labels))
    if unknown:
        raise DataError(f"labels {', '.join(map(repr, unknown))} in {dataset} are not labels of this model "
                        f"({', '.join(labels)})")
    enc = task.encode(model.tokenizer, examples, int(meta.get("max_length", 128)), labels)
    metrics = score(model, enc, labels, task, batch_size)
    metrics.update({"num_eval_samples": len(examples), "dataset": dataset, "backend": model.backend,
                    "precision": model.precision, "model": str(model_dir)})
    target = Path(output) if output else Path(model_dir).resolve().parent / f"evaluation-{Path(dataset).stem}.json"
    write_json_atomic(target, metrics)
    from tl.plugins.events import call_hook

    call_hook(pm, "tl_on_evaluate", run_dir=target.parent, metrics=metrics)
    if as_json:
        click.echo(json.dumps(metrics))
        return
    shown = [f"eval_{k}" for k in task.summary_metrics]
    first, rest = shown[:1], shown[1:]  # the classification line reads: accuracy | loss | macro_f1
    click.echo(" | ".join(f"{k} {metrics[k]:.4f}" for k in (*first, "eval_loss", *rest))
               + f" | {len(examples)} examples | backend {model.backend}")
    per = metrics.get("eval_per_class") or metrics.get("eval_per_type") or {}
    for label, row in per.items():
        click.echo(f"  {label:<12} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
                   f"f1 {row['f1']:.3f}  support {row['support']}")
    click.echo(f"metrics written to {target}")
