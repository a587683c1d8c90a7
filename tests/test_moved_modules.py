"""Module names plugins used before core was grouped into packages still work, with a DeprecationWarning."""

from __future__ import annotations

import subprocess
import sys

import pytest

MOVED = {
    "tl.tokenization": ("Tokenizer", "tl.data.tokenization"),
    "tl.batching": ("Encoded", "tl.data.batching"),
    "tl.modelio": ("predict", "tl.models.inference"),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_names_warn_and_give_the_same_objects(old):
    name, new = MOVED[old]
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        f"assert getattr(old, {name!r}) is getattr(new, {name!r})\n"
        "print([str(w.message) for w in caught if w.category is DeprecationWarning])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"{old} is deprecated; import from {new}" in out.stdout


def test_old_modelio_keeps_saving_and_loading():
    code = ("import warnings\nwarnings.simplefilter('ignore')\n"
            "from tl.modelio import load_saved, save_model, task_of\n"
            "from tl.models import saved\n"
            "assert (load_saved, save_model, task_of) == (saved.load_saved, saved.save_model, saved.task_of)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_plugin_facing_package_names_import_without_warnings():
    code = ("import warnings\nwarnings.simplefilter('error')\n"
            "from tl.data import Examples, Splits, hash_split, load_examples, read_table\n"
            "from tl.plugins import build_registry, get_plugin_manager, Registry, ENTRY_POINT_GROUP\n"
            "from tl.interfaces import Task, Backend, Model\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
