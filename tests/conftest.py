from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tinybert import make_checkpoint, synthetic_rows, write_csv

BACKENDS = [b for b, mod in (("torch", "torch"), ("tensorflow", "tensorflow")) if importlib.util.find_spec(mod)]


@pytest.fixture(scope="session", autouse=True)
def tl_home(tmp_path_factory):
    """Keep the asset cache inside pytest's temp dirs, unless TL_HOME is set (reuse a warm cache)."""
    if not os.environ.get("TL_HOME"):
        os.environ["TL_HOME"] = str(tmp_path_factory.mktemp("tl_home"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return Path(os.environ["TL_HOME"])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    return write_csv(d / "train.csv", synthetic_rows(400, seed=1))


@pytest.fixture(params=BACKENDS)
def backend_name(request) -> str:
    return request.param


@pytest.fixture
def registry():
    from tl.plugins import build_registry, get_plugin_manager

    return build_registry(get_plugin_manager())
