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


#: The tiny-model training run that several test modules check from different sides (test_training,
#: test_interop): 4 epochs on ``tiny_data``, where the tiny BERT reaches >= 0.9 accuracy.
FAST = {"epochs": 4, "batch_size": 16, "lr": 5e-3, "warmup_ratio": 0.1, "precision": "fp32", "max_length": 32}

#: The real-MiniLM budget (test_integration, test_interop): 480 Rotten Tomatoes snippets, one epoch of
#: 30 steps, scored on 400 held-out ones. Measured (accuracy, pretrained / scratch): torch 0.75 / 0.60,
#: tensorflow 0.74 / 0.60 (scratch predicts the majority class); 800 snippets x 2 epochs at lr 1e-4
#: gave torch 0.77 / 0.60 at 3.3x the cost.
MINILM_BUDGET = {"epochs": 1, "batch_size": 16, "lr": 3e-4, "max_train_samples": 480, "max_eval_samples": 400,
                 "precision": "fp32"}


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory, tiny_checkpoint, tiny_data):
    """``fast_run(backend)``: the FAST run of the tiny BERT on ``tiny_data``, trained once per backend and
    session; tests only read its run directory."""
    from tl.plugins import build_registry, get_plugin_manager
    from tl.training.config import resolve
    from tl.training.pipeline import run

    cache = {}

    def get(backend: str):
        if backend not in cache:
            options = {**FAST, "backend": backend, "model": str(tiny_checkpoint), "dataset": str(tiny_data),
                       "output": str(tmp_path_factory.mktemp("fast") / backend)}
            pm = get_plugin_manager()
            cache[backend] = run(resolve(options, {}, {}), build_registry(pm), pm, quiet=True)
        return cache[backend]

    return get


@pytest.fixture(scope="session")
def minilm_run(tmp_path_factory, tl_home):
    """``minilm_run(backend, init)``: MiniLM fine-tuned on Rotten Tomatoes with MINILM_BUDGET, once per
    (backend, init) and session (the assets are pulled on first use); tests only read its run directory."""
    from tl.plugins import build_registry, get_plugin_manager
    from tl.training.config import resolve
    from tl.training.pipeline import run

    cache = {}

    def get(backend: str, init: str = "pretrained"):
        if (backend, init) not in cache:
            options = {**MINILM_BUDGET, "backend": backend, "model": "minilm", "dataset": "rotten_tomatoes",
                       "init": init, "output": str(tmp_path_factory.mktemp("minilm") / f"{backend}-{init}")}
            pm = get_plugin_manager()
            cache[(backend, init)] = run(resolve(options, {}, {}), build_registry(pm), pm, quiet=True)
        return cache[(backend, init)]

    return get


@pytest.fixture(scope="session")
def exported(fast_run, tmp_path_factory):
    """``exported(trained_on, quantize=None)``: the fast_run model of ``trained_on`` exported once per
    session through ``tl export --format onnx`` (test_export, test_serve); returns (model dir, export dir)."""
    from click.testing import CliRunner

    from tl.cli import cli

    cache = {}

    def get(trained_on: str, quantize: str | None = None):
        if (trained_on, quantize) not in cache:
            model_dir = fast_run(trained_on).run_dir / "model"
            target = tmp_path_factory.mktemp("onnx") / f"{trained_on}-{quantize or 'fp32'}"
            out = CliRunner().invoke(cli, ["export", "--model", str(model_dir), "--format", "onnx", "-o", str(target),
                                           *(["--quantize", quantize] if quantize else [])])
            assert out.exit_code == 0, out.output
            assert out.output.startswith(f"exported onnx{' ' + quantize if quantize else ''} to {target} (self-check:")
            cache[(trained_on, quantize)] = model_dir, target
        return cache[(trained_on, quantize)]

    return get


def slow_on(*names: str) -> list:
    """BACKENDS as parameters, those in ``names`` marked ``slow`` (run with -m slow): for a case whose
    other backend's variant covers what the default run needs, e.g.
    ``@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))``."""
    return [pytest.param(b, marks=pytest.mark.slow) if b in names else b for b in BACKENDS]


@pytest.fixture(params=BACKENDS)
def backend_name(request) -> str:
    return request.param


@pytest.fixture
def registry():
    from tl.plugins import build_registry, get_plugin_manager

    return build_registry(get_plugin_manager())


# --- the fault suite's results (tests/faults/, README "Guarantees") -----------------------------------
# A test marked ``@pytest.mark.guarantee(fault=..., tl=..., kept=...)`` proves one row of README's
# Guarantees table. ``--guarantees PATH`` writes every such test's outcome to PATH as JSON;
# ``scripts/guarantees.py`` runs the suite that way and renders the table from that file.

def pytest_addoption(parser):
    parser.addoption("--guarantees", metavar="PATH", default=None,
                     help="write the outcome of every @pytest.mark.guarantee test to PATH (JSON)")


GUARANTEE_RESULTS = pytest.StashKey[list]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    mark = item.get_closest_marker("guarantee")
    if mark is not None and item.config.getoption("--guarantees") and (report.when == "call" or report.outcome != "passed"):
        results = item.config.stash.setdefault(GUARANTEE_RESULTS, [])
        results.append({"test": item.nodeid, "function": item.originalname, "file": item.location[0],
                        "params": getattr(getattr(item, "callspec", None), "id", ""), "outcome": report.outcome,
                        "when": report.when, "duration_s": round(report.duration, 2), **mark.kwargs})
    return report


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--guarantees")
    if path:
        import json

        results = session.config.stash.get(GUARANTEE_RESULTS, [])
        Path(path).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


#: End-to-end cases the default run leaves to ``-m slow`` (README lists them), to keep it under CI's 15
#: minutes on two cores: mostly second-backend variants, whose other backend's case runs by default.
SLOW_VARIANTS = {
    "tests/faults/test_fault_kill.py::test_sigkill_then_resume_gives_identical_metrics[tensorflow-1]",
    "tests/faults/test_fault_kill.py::test_sigterm_checkpoints_and_prints_the_resume_command[torch]",
    "tests/faults/test_fault_oom.py::test_oom_with_single_rows_is_one_actionable_line[tensorflow]",
    "tests/test_cli.py::test_run_predict_evaluate_end_to_end[tensorflow]",
    "tests/test_tensorflow_backend.py::test_freeze_builds_no_backward_pass_through_the_encoder[False]",
    "tests/test_export.py::test_a_failed_self_check_writes_nothing",
    "tests/test_max_steps.py::test_max_steps_on_tensorflow",
    "tests/faults/test_fault_kill.py::test_resume_refuses_changed_options_and_finished_runs[tensorflow]",
    "tests/test_interop.py::test_train_on_one_predict_on_the_other[tensorflow-torch]",
    "tests/test_strategies.py::test_gradual_unfreeze_unfreezes_from_the_top[tensorflow]",
    "tests/test_strategies.py::test_lora_saves_adapters_and_loads_on_every_backend[tensorflow-False]",
    "tests/test_strategies.py::test_lora_saves_adapters_and_loads_on_every_backend[tensorflow-True]",
    "tests/test_ner.py::test_tiny_ner_model_learns[tensorflow]",
    # single cases: real MiniLM fine-tuned against a random init (its exact weights are still checked by
    # default), the token-classification export, converting a trusted pytorch_model.bin
    "tests/test_integration.py::test_pretrained_weights_are_really_loaded[torch]",
    "tests/test_export.py::test_token_classification_export_finds_the_same_entities",
    "tests/test_cli.py::test_allow_pickle_converts_a_trusted_bin",
    # real MiniLM fine-tuned on Rotten Tomatoes (a shared 30-step run) and its logits on TensorFlow, tl tune
    # killed and resumed, long documents by truncation mode, TensorFlow's deterministic training, a
    # transformers-4 tf_model.h5 on both backends, a TensorFlow-trained NER model on torch
    "tests/test_integration.py::test_real_model_predicts_sensibly[torch]",
    "tests/test_interop.py::test_real_minilm_interop[torch-64]",
    "tests/test_tune.py::test_tune_killed_and_resumed_trials_best_recipe_and_final_run",
    "tests/test_truncation.py::test_long_documents_by_truncation_mode[torch]",
    "tests/test_tensorflow_backend.py::test_training_learns_and_is_deterministic",
    "tests/test_legacy_tf.py::test_real_tf_checkpoint_on_both_backends_head_included",
    "tests/test_ner.py::test_ner_model_loads_on_the_other_backend[tensorflow-torch]",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in SLOW_VARIANTS:
            item.add_marker(pytest.mark.slow)
