"""``tl runs``: the runs under a folder as a table, one run in full (``show``), runs side by side
(``compare``); ``--json`` for each. Reads run directories only (tl.training.runs)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence, Set
from pathlib import Path
from typing import Any

import click

from tl.errors import UsageError

COLUMNS = ("id", "task", "backend", "model", "dataset", "epochs", "accuracy", "macro-F1", "samples/s", "status",
           "started")
NUMERIC = {"accuracy", "macro-F1", "samples/s"}
SORT_KEYS = ("started", "id", "accuracy", "macro_f1", "samples_per_second", "status", "backend", "model")
STATUSES = ("finished", "interrupted", "failed", "running", "pruned")


def print_table(rows: Sequence[Sequence[str]], header: Sequence[str], right: Set[int] = frozenset()) -> None:
    """Plain aligned columns, two spaces apart; columns in ``right`` right-aligned (numbers)."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    click.echo(line(header))
    for row in rows:
        click.echo(line(row))


def _number(value: Any, key: str = "") -> str:
    """A metric as the tables show it: throughput to 0.1, seconds to 0.01, scores to 4 decimals."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value) if not isinstance(value, (list, dict)) else json.dumps(value)
    if key.endswith("per_second"):
        return f"{value:.1f}"
    if key.endswith("_s"):
        return f"{value:.2f}"
    if value == 0 or 1e-3 <= abs(value) < 1000:
        return f"{value:.4f}"
    return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.3g}"


def _setting(value: Any) -> str:
    if value is None:
        return "-"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


class RunsGroup(click.Group):
    """``tl runs [DIR]`` lists; ``tl runs show|compare ...`` are subcommands (``list`` is the default)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=RunsGroup)
def runs() -> None:
    """The runs under a folder: a table (default), one run in full, runs side by side.

    \b
      tl runs [DIR]                   the runs under DIR (default runs/), oldest first
                                      [--json] [--sort KEY] [--status STATUS]...
      tl runs show ID [--dir DIR]     one run: status, options, plan, metrics, warnings, files
      tl runs compare ID ID...        the options that differ and the metrics side by side
    ID is an id as `tl runs` shows it (or its start), or a run directory's path.
    """


@runs.command("list")
@click.argument("directory", required=False, default="runs", metavar="[DIR]")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of the runs, one object each.")
@click.option("--sort", "sort_key", type=click.Choice(SORT_KEYS), default="started", show_default=True,
              help="Order of the rows (metrics: best first).")
@click.option("--status", "statuses", type=click.Choice(STATUSES), multiple=True,
              help="Only runs with this status (repeat for several).")
def list_(directory: str, as_json: bool, sort_key: str, statuses: tuple[str, ...]) -> None:
    """The runs under DIR (default runs/; a `tl tune` folder or its trials/ too), oldest first: id,
    task, backend, model, dataset, epochs (done/planned while unfinished), accuracy, macro-F1,
    samples/s, status (finished, interrupted, failed, running, pruned) and start time."""
    from tl.training.runs import list_runs, summary, table_row

    rows = [summary(r) for r in list_runs(Path(directory))]
    if statuses:
        rows = [r for r in rows if r["status"] in statuses]
    if sort_key in ("accuracy", "macro_f1", "samples_per_second"):  # best first, runs without one last
        rows.sort(key=lambda r: -r[sort_key] if isinstance(r[sort_key], (int, float)) else float("inf"))
    elif sort_key != "started":
        rows.sort(key=lambda r: (r[sort_key] is None, str(r[sort_key])))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        what = f" with status {', '.join(statuses)}" if statuses else ""
        click.echo(f"no runs{what} under {directory}")
        return
    shown = [table_row(r) for r in rows]
    print_table([[s[c] for c in COLUMNS] for s in shown], COLUMNS,
                right={i for i, c in enumerate(COLUMNS) if c in NUMERIC})
    damaged = [r for r in rows if r["problems"]]
    for r in damaged:
        click.echo(f"note: {r['id']}: {'; '.join(r['problems'])}", err=True)


def _dir_option(f: Any) -> Any:
    return click.option("--dir", "directory", default="runs", show_default=True, metavar="DIR",
                        help="The folder that holds the runs (for ids).")(f)


@runs.command()
@click.argument("ident", metavar="ID")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(ident: str, directory: str, as_json: bool) -> None:
    """One run: its status (and error), options, plan, final metrics (per class too), warnings and
    files (model, TensorBoard events, plots)."""
    from tl.training.runs import details, resolve_run

    d = details(resolve_run(ident, Path(directory)))
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"run {d['id']}  ({d['path']})")
    status = d.get("status") or "-"
    if d.get("step") is not None and d.get("total_steps"):
        status += f" (step {d['step']} of {d['total_steps']})"
    if d.get("resumed"):
        status += " (resumed)"
    click.echo(f"  status   {status}")
    if d.get("error") and d.get("status") != "finished":
        click.echo(f"  {'error ' if d.get('status') == 'failed' else 'reason'}   {d['error']}")
    when = [f"started {d['started'].replace('T', ' ')}" if d["started"] else None,
            f"ended {d['ended'].replace('T', ' ')}" if d["ended"] else None]
    if any(when):
        click.echo(f"  time     {', '.join(w for w in when if w)}")
    if d["labels"]:
        click.echo(f"  labels   {', '.join(map(str, d['labels']))}")
    if d["plan"]:
        click.echo(f"  plan     {d['plan']}")
    if d["config"]:
        click.echo("options")
        w = max(len(k) for k in d["config"])
        for k, v in d["config"].items():
            click.echo(f"  {k:<{w}}  {_setting(v)}")
    if d["metrics"]:
        click.echo("metrics" if d.get("status") == "finished" else f"metrics (last epoch evaluated: {d['epochs_done']})")
        w = max(len(k) for k in d["metrics"])
        for k, v in d["metrics"].items():
            click.echo(f"  {k:<{w}}  {_number(v, k)}")
    if d["per_class"]:
        click.echo("per class")
        names = sorted({m for v in d["per_class"].values() if isinstance(v, dict) for m in v},
                       key=lambda m: ("precision", "recall", "f1", "support").index(m)
                       if m in ("precision", "recall", "f1", "support") else 9)
        rows = [[f"  {label}", *(_number(v.get(m)) if isinstance(v, dict) else "-" for m in names)]
                for label, v in d["per_class"].items()]
        print_table(rows, ["  label", *names], right=set(range(1, len(names) + 1)))
    if d["warnings"]:
        click.echo("warnings")
        for message in d["warnings"]:
            click.echo(f"  {message}")
    paths = {k: v for k, v in d["paths"].items() if k != "plots"}
    if paths or d["paths"]["plots"]:
        click.echo("files")
        w = max(len(k) for k in (*paths, "plots"))
        for k, v in paths.items():
            click.echo(f"  {k:<{w}}  {v}")
        if d["paths"]["plots"]:
            plots = [Path(p) for p in d["paths"]["plots"]]
            click.echo(f"  {'plots':<{w}}  {plots[0].parent}{os.sep} ({', '.join(p.name for p in plots)})")
        if "tensorboard" in paths:
            click.echo(f"  (view: tensorboard --logdir {paths['tensorboard']})")
    for problem in d["problems"]:
        click.echo(f"note: {problem}", err=True)


@runs.command(name="compare")
@click.argument("idents", nargs=-1, required=True, metavar="ID ID...")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare_(idents: tuple[str, ...], directory: str, as_json: bool) -> None:
    """Runs side by side: the options that differ between them (only those) and their metrics."""
    from tl.training.runs import compare, resolve_run

    if len(idents) < 2:
        raise UsageError(f"compare needs two runs or more, got {len(idents)}; `tl runs {directory}` lists the ids")
    records = [resolve_run(i, Path(directory)) for i in idents]
    c = compare(records)
    if as_json:
        click.echo(json.dumps(c, indent=2))
        return
    rows: list[list[str]] = [["status", *(s or "-" for s in c["status"])]]
    rows.append(["options that differ", *([""] * len(records))])
    if c["config"]:
        rows += [[f"  {k}", *map(_setting, v)] for k, v in c["config"].items()]
    else:
        rows.append(["  (none)", *([""] * len(records))])
    rows.append(["metrics", *([""] * len(records))])
    rows += [[f"  {k}", *(_number(x, k) for x in v)] for k, v in c["metrics"].items()]
    print_table(rows, ["run", *c["runs"]])
