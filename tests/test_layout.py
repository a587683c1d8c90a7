"""The layout's rules, checked: importing core changes nothing and pulls in no framework, and the
backends keep the same module names for the same concerns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "tensorflow", "keras", "keras_hub", "transformers", "peft", "onnxruntime", "onnx", "onnxscript")


def test_importing_every_core_module_imports_no_framework_and_changes_nothing():
    code = f"""
import importlib, os, pkgutil, sys, warnings
warnings.simplefilter("ignore")
environ, meta_path, path = dict(os.environ), list(sys.meta_path), list(sys.path)
import tl
names = [m.name for m in pkgutil.walk_packages(tl.__path__, "tl.")] + ["tl_torch.backend", "tl_torch.plugin",
         "tl_tensorflow.backend", "tl_tensorflow.plugin", "tl_tensorflow.runtime", "tl_onnx.backend", "tl_onnx.plugin",
         "tl_sentiment.plugin"]
for name in names:
    if name != "tl.__main__":
        importlib.import_module(name)
loaded = sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)
assert not loaded, loaded
assert dict(os.environ) == environ, set(os.environ.items()) ^ set(environ.items())
assert sys.meta_path == meta_path and sys.path == path
print(len(names))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 40  # every module of every core package was imported


def test_backends_have_the_same_module_for_the_same_concern():
    torch = {p.stem for p in (ROOT / "backends" / "torch").glob("*.py")}
    tensorflow = {p.stem for p in (ROOT / "backends" / "tensorflow").glob("*.py")}
    shared = {"__init__", "plugin", "backend", "runtime", "model", "network", "train", "strategies", "distributed"}
    assert shared <= torch and shared <= tensorflow
    # what only one backend has is a concern only it has (the Keras weight map); each exports its own format
    assert torch - shared == {"export"} and tensorflow - shared == {"weights", "export"}
    # the ONNX Runtime backend runs exports only: the same names for the concerns it has
    assert {p.stem for p in (ROOT / "backends" / "onnx").glob("*.py")} == {"__init__", "plugin", "backend", "model"}
