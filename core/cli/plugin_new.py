"""``tl plugin new NAME``: write a task-plugin skeleton that is a distribution of its own
(pyproject.toml with the ``tl`` entry point, a package with a Task and its hook, a README and tests)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from string import Template

import click

from tl.errors import UsageError

#: Lower-case letters and digits, single ``-`` or ``_`` between them, a letter first: a valid
#: distribution name, entry point name and (with ``-`` as ``_``) Python identifier.
NAME_RE = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
MAX_NAME = 40


@click.group()
def plugin() -> None:
    """Write tl plugins."""


@plugin.command("new")
@click.argument("name")
@click.option("--dir", "directory", metavar="DIR",
              help="Directory to write; must not exist or be empty. Default: ./tl-NAME.")
def new(name: str, directory: str | None) -> None:
    """Write a task-plugin skeleton: task NAME in distribution tl-NAME.

    The skeleton (package tl_NAME, pyproject.toml with the `tl` entry point, README, tests) passes
    its own tests once installed.

    \b
    Then:  pip install -e tl-NAME  &&  python -m pytest tl-NAME  &&  tl plugins
    """
    names = plugin_names(name)
    check_unused(names)
    target = Path(directory) if directory else Path.cwd() / names["dist"]
    files = render(names)
    write_tree(target, files)
    click.echo(f"wrote {target}: task {names['task']!r}, distribution {names['dist']}, package {names['package']}")
    for rel in files:
        click.echo(f"  {rel}")
    click.echo(f"next: pip install -e {_shell_path(target)} && python -m pytest {_shell_path(target)} && tl plugins")


def plugin_names(name: str) -> dict[str, str]:
    """Task, entry point, distribution, package and class names for NAME (``tl-`` prefix optional)."""
    base = name[3:] if name.startswith(("tl-", "tl_")) else name
    if len(name) > MAX_NAME or not NAME_RE.fullmatch(base) or base == "tl":
        raise UsageError(f"invalid plugin name {name!r}: use lower-case letters, digits and single - or _ "
                         f"between them, starting with a letter, at most {MAX_NAME} characters (e.g. topics, news-topics)")
    parts = re.split(r"[-_]", base)
    return {
        "task": base,
        "entry_point": base,
        "dist": "tl-" + "-".join(parts),
        "package": "tl_" + "_".join(parts),
        "cls": "".join(p[:1].upper() + p[1:] for p in parts) + "Task",
    }


def check_unused(names: dict[str, str]) -> None:
    """Refuse names an installed plugin already uses: a second entry point of the same name would
    not load, and a second task of the same name is a conflict."""
    import importlib.metadata

    from tl.plugins import ENTRY_POINT_GROUP, build_registry, get_plugin_manager

    try:
        dist = importlib.metadata.distribution(names["dist"])
        raise UsageError(f"distribution {names['dist']} {dist.version} is already installed; choose another name")
    except importlib.metadata.PackageNotFoundError:
        pass
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == names["entry_point"]:
            owner = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "another distribution"
            raise UsageError(f"the plugin name {ep.name!r} is already used by {owner}; choose another name")
    registry = build_registry(get_plugin_manager())
    if names["task"] in registry.items["task"]:
        provider = registry.providers[("task", names["task"])]
        raise UsageError(f"a task named {names['task']!r} is already provided by {provider}; choose another name")


def write_tree(target: Path, files: dict[str, str]) -> None:
    """Write ``files`` under ``target`` all at once (a temp dir renamed into place), never over anything."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a directory; choose another --dir (nothing was written)")
    if target.is_dir() and any(target.iterdir()):
        raise UsageError(f"{target} already exists and is not empty; choose another --dir (nothing was written)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    try:
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if target.is_dir():
            target.rmdir()  # empty, checked above
        tmp.rename(target)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _shell_path(path: Path) -> str:
    import shlex

    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return shlex.quote(shown)


def render(names: dict[str, str]) -> dict[str, str]:
    from tl import __version__

    major_minor = ".".join(__version__.split(".")[:2])
    values = {**names, "tl_requirement": f"tl>={major_minor}"}
    package = names["package"]
    return {
        "pyproject.toml": Template(PYPROJECT).substitute(values),
        "README.md": Template(README).substitute(values),
        f"{package}/__init__.py": Template(INIT).substitute(values),
        f"{package}/plugin.py": Template(PLUGIN).substitute(values),
        f"{package}/task.py": Template(TASK).substitute(values),
        "tests/conftest.py": CONFTEST,
        "tests/test_plugin.py": Template(TEST).substitute(values),
    }


PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A tl task plugin: $task"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["$tl_requirement"]

[project.optional-dependencies]
test = ["pytest>=8"]

# tl finds the plugin through this entry point: group "tl", name "$entry_point", the module with the hooks.
[project.entry-points.tl]
$entry_point = "$package.plugin"

[tool.setuptools]
packages = ["$package"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

README = '''\
# $dist

A task plugin for tl: the task `$task`, in the package `$package`, found by tl through the entry point `$entry_point` in the group `tl` (see `pyproject.toml`).

```bash
pip install -e .            # into the environment that has tl
tl plugins                  # lists the task $task, provided by $dist 0.1.0
tl run --task $task --dataset data.csv --text-column text --label-column label
python -m pytest            # the tests in tests/
```

- `$package/task.py`: the task. `LABEL_ORDER` fixes the label ids when the data uses those names,
  `defaults` are the hyperparameters (a recipe and CLI options override them), `metrics` adds to
  tl's classification report. Set `default_dataset` to a registered dataset name to make
  `--dataset` optional.
- `$package/plugin.py`: the hook implementations (`tl_register_tasks`; add `tl_register_datasets`
  or `tl_register_models` to ship data or checkpoint aliases). Hooks take only the arguments they use.
- `tests/test_plugin.py`: registration, discovery through the installed entry point, label order,
  metrics, and a tiny training run on a random 1-layer BERT written by `tl.testing.tiny_bert`
  (skipped without a tl backend).

tl's plugin guide (docs/plugins.md in tl) lists every hook and when tl calls it.
'''

INIT = '''\
"""$dist: a tl task plugin providing the task ``$task``."""

__version__ = "0.1.0"
'''

PLUGIN = '''\
"""Entry point ``tl = $entry_point``: the hooks tl calls (any subset of each hook's arguments)."""

from __future__ import annotations

from tl import hookimpl


@hookimpl
def tl_register_tasks(register):
    from $package.task import $cls

    register($cls())
'''

TASK = '''\
"""The ``$task`` task: sequence classification with a fixed label order and an extra metric."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tl.interfaces import Task


class $cls(Task):
    name = "$task"
    description = "TODO: what $task learns"
    default_model = "minilm"
    #: A registered dataset name makes --dataset optional; empty: the user passes --dataset.
    default_dataset = ""
    #: Hyperparameter defaults; a recipe and then CLI options override them. Columns may be set too
    #: (text_column, label_column, text_pair_column for sentence pairs).
    defaults = {"epochs": 3, "batch_size": 32, "lr": 5e-5, "max_length": 128, "warmup_ratio": 0.1}
    #: Label names in id order, used when every label in the data is one of them (compared ignoring case).
    LABEL_ORDER = ("low", "medium", "high")

    def label_order(self, observed: Iterable[str]) -> tuple[str, ...]:
        observed = list(observed)
        names = set(observed)
        known = [n.lower() for n in self.LABEL_ORDER]
        if names and all(n.lower() in known for n in names):
            # end the key with the name: ties ("High", "high") must not follow set order, which
            # changes with PYTHONHASHSEED from one process to the next
            return tuple(sorted(names, key=lambda n: (known.index(n.lower()), n)))
        return super().label_order(observed)  # integers numerically, other names alphabetically

    def metrics(self, y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        """tl's report (accuracy, macro_f1, per_class, confusion_matrix) plus the worst class's F1."""
        out = super().metrics(y_true, y_pred, labels)
        present = [row["f1"] for row in out["per_class"].values() if row["support"]]
        out["worst_class_f1"] = min(present) if present else 0.0
        return out
'''

CONFTEST = '''\
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def tl_home(tmp_path, monkeypatch):
    """Keep tl's cache in a temp dir."""
    monkeypatch.setenv("TL_HOME", str(tmp_path / "tl_home"))
'''

TEST = '''\
"""Tests for $dist. Run ``python -m pytest`` after ``pip install -e .``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from tl.plugins import build_registry, get_plugin_manager
from tl.testing import tiny_bert

from $package import plugin
from $package.task import $cls


def test_the_hook_registers_the_task():
    registry = build_registry(get_plugin_manager(autoload=False, extra_plugins=(plugin,)))
    assert registry.names("task") == ["$task"]
    assert isinstance(registry.get("task", "$task"), $cls)


def test_discovered_through_the_installed_entry_point():
    registry = build_registry(get_plugin_manager(autoload=True))
    assert registry.providers[("task", "$task")].startswith("$dist ")
    assert not [f for f in registry.failures if f.name == "$entry_point"]


def test_tl_plugins_lists_the_task():
    out = subprocess.run([sys.executable, "-m", "tl", "plugins", "--json"], capture_output=True, text=True,
                         check=True)
    rows = [r for r in json.loads(out.stdout)["plugins"] if r["kind"] == "task" and r["name"] == "$task"]
    assert len(rows) == 1 and rows[0]["provider"].startswith("$dist ")


def test_label_order():
    task = $cls()
    assert task.label_order(["high", "low", "medium", "low"]) == ("low", "medium", "high")
    assert task.label_order(["High", "LOW"]) == ("LOW", "High")
    assert task.label_order(["10", "9"]) == ("9", "10")
    assert task.label_order(["spam", "ham"]) == ("ham", "spam")


def test_metrics():
    m = $cls().metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), ("low", "medium", "high"))
    assert m["accuracy"] == 0.75 and m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert m["worst_class_f1"] == pytest.approx(2 / 3)


CUES = {"low": ["later", "minor", "whenever"], "medium": ["soon", "today", "normal"],
        "high": ["now", "urgent", "outage"]}
FILLER = ["please", "fix", "the", "bug", "in", "this", "ticket", "it", "is", "a"]


def test_trains_a_tiny_model(tmp_path):
    """A real (tiny) run on the first installed backend: the labels keep the task's order."""
    from tl.training.config import resolve
    from tl.training.pipeline import run

    registry = build_registry(get_plugin_manager())
    backends = [b for b in registry.names("backend")
                if registry.get("backend", b).is_available() and registry.get("backend", b).capabilities.trains]
    if not backends:
        pytest.skip("no tl backend installed: pip install 'tl[torch]'")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        label = list(CUES)[i % 3]
        words = list(rng.choice(FILLER, size=4)) + [str(rng.choice(CUES[label]))]
        rows.append((" ".join(rng.permutation(words)), label))
    data = tmp_path / "tickets.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    checkpoint = tiny_bert(tmp_path / "bert", FILLER + [w for ws in CUES.values() for w in ws])
    task = registry.get("task", "$task")
    options = {"task": "$task", "backend": backends[0], "model": str(checkpoint), "dataset": str(data),
               "epochs": 2, "batch_size": 16, "lr": 1e-3, "max_length": 16, "precision": "fp32",
               "output": str(tmp_path / "run")}
    result = run(resolve(options, {}, dict(task.defaults)), registry, get_plugin_manager(), quiet=True)
    assert result.metrics["labels"] == ["low", "medium", "high"]
    assert 0.0 <= result.metrics["eval_worst_class_f1"] <= 1.0
    assert (result.run_dir / "model" / "tl.json").is_file()
'''
