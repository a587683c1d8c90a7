"""A damaged encoded store ($TL_ENCODE_CACHE_DIR/<key>/: tokens.arrow, rows.arrow, texts.arrow,
manifest.json): each way a disk, a person or a killed process can spoil one costs one warning line and
a second encoding; the store is replaced whole and the run's results are those of a run that built it
fresh. A builder killed mid-way leaves only a hidden temporary directory, removed by the next builder."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tl.cli import cli
from tl.data.store import open_store

from tinybert import synthetic_rows, write_csv

GUARANTEE = {"fault": "Encoded store damaged (a file cut short, garbled or missing, its manifest garbled or "
                      "another store's, columns that do not fit together), or left half-built by a killed process",
             "tl": "one warning line; encodes again and replaces the store whole (one process builds under a lock; "
                   "a killed builder's leftovers are removed)",
             "kept": "the run's results (equal to a run that built the store fresh)"}


def _texts_short(store: Path) -> None:
    import pyarrow as pa

    table = pa.ipc.open_file(pa.memory_map(str(store / "texts.arrow"))).read_all().slice(0, 10)
    (store / "texts.arrow").unlink()  # a new file: the open map of the first run stays valid
    with pa.OSFile(str(store / "texts.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _replace(path: Path, data: bytes) -> None:
    path.unlink()  # never rewrite a mapped file in place: a new file under the old name
    path.write_bytes(data)


def _manifest(store: Path, **changes) -> None:
    manifest = json.loads((store / "manifest.json").read_text())
    manifest.update(changes)
    (store / "manifest.json").write_text(json.dumps(manifest))


def _as_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


DAMAGE = {
    "tokens-cut-short": lambda s: _replace(s / "tokens.arrow", (s / "tokens.arrow").read_bytes()[:1000]),
    "tokens-garbage": lambda s: _replace(s / "tokens.arrow", np.random.default_rng(0).bytes(4096)),
    "manifest-garbled": lambda s: (s / "manifest.json").write_text("{\"format\": 1, "),
    "another-stores-manifest": lambda s: _manifest(s, key="0" * 32),
    "row-count-off": lambda s: _manifest(s, rows=7),
    "texts-short": _texts_short,
    "file-missing": lambda s: (s / "rows.arrow").unlink(),
    "directory-in-place": lambda s: _as_directory(s / "tokens.arrow"),
}


def _run(checkpoint, data, run_dir):
    result = CliRunner().invoke(cli, [
        "run", "--model", str(checkpoint), "--dataset", str(data), "--epochs", "1", "--batch-size", "16",
        "--lr", "5e-3", "--max-length", "32", "--precision", "fp32", "--threads", "1", "--max-train-samples", "96",
        "-q", "-o", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result, json.loads((run_dir / "metrics.json").read_text())


#: The default run spoils three ways; ``-m slow`` the rest.
DEFAULT = ("tokens-cut-short", "manifest-garbled", "texts-short")


@pytest.mark.guarantee(**GUARANTEE)
@pytest.mark.parametrize("damage", [d if d in DEFAULT else pytest.param(d, marks=pytest.mark.slow) for d in DAMAGE])
def test_a_run_over_a_damaged_store_warns_once_and_equals_a_fresh_one(damage, tiny_checkpoint, tiny_data, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("TL_ENCODE_CACHE_DIR", str(tmp_path / "stores"))
    _, fresh = _run(tiny_checkpoint, tiny_data, tmp_path / "first")  # builds the store
    (store,) = [p for p in (tmp_path / "stores").iterdir() if p.is_dir()]
    assert not fresh["tokenize_cached"]
    DAMAGE[damage](store)
    result, metrics = _run(tiny_checkpoint, tiny_data, tmp_path / "second")
    warnings = [line for line in result.output.splitlines() if line.startswith("tl: warning: the encoded store")]
    assert len(warnings) == 1 and warnings[0].endswith("; encoding again"), result.output
    assert str(store) in warnings[0]
    assert not metrics["tokenize_cached"]
    for name in ("eval_loss", "eval_accuracy", "eval_macro_f1", "train_loss", "train_steps"):
        assert metrics[name] == fresh[name], name
    assert open_store(store).manifest["rows"] == 400  # replaced by a whole store
    _, third = _run(tiny_checkpoint, tiny_data, tmp_path / "third")
    assert third["tokenize_cached"] and third["eval_loss"] == fresh["eval_loss"]


BUILDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tl.data.streaming import file_store
    from tl.data.tokenization import Tokenizer
    from tl.interfaces import Task
    data, checkpoint, root = (Path(a) for a in sys.argv[1:4])
    print("building", flush=True)
    store, hit = file_store(data, ("text", "label", None), Task(), "t", Tokenizer.from_dir(checkpoint), 32, root,
                            lambda _: None, None)
    print("hit" if hit else "built", store.texts, flush=True)
""")


@pytest.mark.guarantee(**GUARANTEE)
def test_a_builder_killed_mid_way_leaves_no_store_and_the_next_builds_it(tiny_checkpoint, tmp_path):
    data = write_csv(tmp_path / "big.csv", synthetic_rows(20_000, seed=13))
    root = tmp_path / "stores"
    killed = subprocess.Popen([sys.executable, "-c", BUILDER, str(data), str(tiny_checkpoint), str(root)],
                              stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(root.glob(".*-*/tokens.arrow")) and time.monotonic() < deadline:  # writing its first chunks
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert list(root.glob(".*-*")) and not [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    again = subprocess.run([sys.executable, "-c", BUILDER, str(data), str(tiny_checkpoint), str(root)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[-2:] == ["built", "20000"]  # the lock died with the killed process
    assert not list(root.glob(".*-*"))  # its leftovers are gone
    (store,) = [p for p in root.iterdir() if p.is_dir()]
    assert open_store(store).texts == 20_000
