"""No pickle in anything tl writes: a torch run's checkpoints (weights, optimizer, schedule, loss scaler
and RNG states) and its model are safetensors and JSON; a checkpoint of an earlier tl (``trainer.pt``,
``torch.save``) still resumes, read tensors-only, to the same final metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import BACKENDS
from tinybert import synthetic_rows, write_csv

pytestmark = pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")

PICKLE_PROTOCOLS = {bytes([0x80, p]) for p in range(2, 6)}
ZIP = b"PK\x03\x04"  # torch.save's zip container (a pickle inside)


def _resume(run_dir: Path):
    from tl.plugins import build_registry, get_plugin_manager
    from tl.training.config import RunConfig
    from tl.training.pipeline import run

    pm = get_plugin_manager()
    saved = json.loads((run_dir / "config.json").read_text())["config"]
    config = RunConfig(**{k: v for k, v in saved.items() if k in RunConfig.__dataclass_fields__})
    return run(config, build_registry(pm), pm, quiet=True, resume_dir=run_dir)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_checkpoint):
    """A short uninterrupted torch run, one thread: 52 train rows, 2 epochs of 4 steps, a checkpoint
    every 3 steps, all kept."""
    from tl.plugins import build_registry, get_plugin_manager
    from tl.training.config import resolve
    from tl.training.pipeline import run

    d = tmp_path_factory.mktemp("nopickle")
    data = write_csv(d / "reviews.csv", synthetic_rows(64, seed=2))
    options = {"backend": "torch", "model": str(tiny_checkpoint), "dataset": str(data), "epochs": 2,
               "batch_size": 16, "lr": 5e-3, "precision": "fp32", "max_length": 16, "threads": 1,
               "save_every": 3, "keep_checkpoints": 100, "output": str(d / "run")}
    pm = get_plugin_manager()
    return run(resolve(options, {}, {}), build_registry(pm), pm, quiet=True)


def _rewind(run_dir: Path, to: Path, step: int) -> Path:
    """A copy of ``run_dir`` as a run killed just after its checkpoint of ``step``."""
    shutil.copytree(run_dir, to)
    for name in ("model", "plots", "metrics.json"):
        shutil.rmtree(to / name, ignore_errors=True) if (to / name).is_dir() else (to / name).unlink(missing_ok=True)
    for ckpt in (to / "checkpoints").glob("step-*"):
        if int(ckpt.name.split("-")[1]) > step:
            shutil.rmtree(ckpt)
    return to


def _to_legacy(ckpt: Path) -> None:
    """Rewrite a checkpoint as tl wrote it before: the same dict torch.save'd into trainer.pt."""
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(ckpt / "trainer.safetensors"))
    meta = json.loads((ckpt / "trainer.json").read_text())
    groups = [{**g, "betas": tuple(g["betas"])} for g in meta["optimizer"]["param_groups"]]
    state = {int(p): {n: tensors[f"optimizer/{p}/{n}"] for n in entry["tensors"]} | entry["values"]
             for p, entry in meta["optimizer"]["state"].items()}
    rng = {"torch": tensors["rng/torch"], "cuda": [], "numpy": meta["rng"]["numpy"], "python": meta["rng"]["python"]}
    torch.save({"optimizer": {"state": state, "param_groups": groups}, "scheduler": meta["scheduler"],
                "scaler": meta["scaler"], "rng": rng}, ckpt / "trainer.pt")
    (ckpt / "trainer.safetensors").unlink()
    (ckpt / "trainer.json").unlink()
    record = json.loads((ckpt / "state.json").read_text())
    record["files"] = {f.name: f.stat().st_size for f in sorted(ckpt.iterdir()) if f.name != "state.json"}
    record.pop("sha256", None)  # an earlier tl's state.json records sizes only
    (ckpt / "state.json").write_text(json.dumps(record))


def _same(a: dict, b: dict) -> None:
    for key in ("eval_loss", "eval_accuracy", "eval_macro_f1", "train_loss", "train_steps"):
        assert a[key] == b[key], (key, a[key], b[key])


@pytest.mark.guarantee(fault="A run's checkpoints and model opened by someone else's tl",
                       tl="writes safetensors and JSON only: no pickle, nothing that runs code when loaded",
                       kept="exact resume (every tensor and RNG state)")
def test_nothing_tl_writes_is_a_pickle(finished):
    written = [p for p in finished.run_dir.rglob("*") if p.is_file()]
    checkpoints = sorted((finished.run_dir / "checkpoints").glob("step-*"))
    assert checkpoints and (finished.run_dir / "model" / "tl.json").is_file()
    assert not [p for p in written if p.suffix in (".pt", ".bin", ".pkl", ".pickle", ".npy", ".ckpt")]
    for path in written:
        head = path.read_bytes()[:4]
        assert head[:2] not in PICKLE_PROTOCOLS and head != ZIP, f"{path} is a pickle"
        if path.suffix == ".safetensors":  # an 8-byte header length, then the JSON header
            assert path.read_bytes()[8:9] == b"{", path
    from safetensors import safe_open

    for ckpt in checkpoints:
        assert {"model.safetensors", "trainer.safetensors", "trainer.json", "state.json"} <= {
            p.name for p in ckpt.iterdir()}
        meta = json.loads((ckpt / "trainer.json").read_text())
        with safe_open(str(ckpt / "trainer.safetensors"), "pt") as f:
            keys = set(f.keys())
        expected = {f"optimizer/{p}/{n}" for p, e in meta["optimizer"]["state"].items() for n in e["tensors"]}
        assert keys == expected | {"rng/torch"} | {f"rng/cuda/{i}" for i in range(meta["rng"]["cuda"])}
        assert all({"exp_avg", "exp_avg_sq", "step"} <= set(e["tensors"]) for e in meta["optimizer"]["state"].values())


@pytest.mark.guarantee(fault="Resuming a checkpoint written by an earlier tl (trainer.pt)",
                       tl="reads it tensors-only (torch.load weights_only) and continues",
                       kept="the final metrics, bit for bit")
@pytest.mark.parametrize("layout", ["legacy", "safetensors"])
def test_legacy_trainer_pt_checkpoint_resumes_to_the_same_metrics(finished, tmp_path, layout):
    """The run rewound to its checkpoint of step 3 (in epoch 1 of 2, mid-epoch), as written and rewritten
    the old way: both resume to the uninterrupted run's final metrics (tests/test_resume.py shows the same
    after SIGKILL)."""
    step = 3
    run_dir = _rewind(finished.run_dir, tmp_path / layout, step)
    ckpt = run_dir / "checkpoints" / f"step-{step:08d}"
    assert json.loads((ckpt / "state.json").read_text())["micro"] > 0  # mid-epoch: the data position matters too
    if layout == "legacy":
        _to_legacy(ckpt)
        assert (ckpt / "trainer.pt").read_bytes()[:4] == ZIP and not (ckpt / "trainer.safetensors").exists()
    _same(_resume(run_dir).metrics, finished.metrics)
