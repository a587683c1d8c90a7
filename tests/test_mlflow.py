"""The tl-mlflow plugin (plugins/mlflow), installed like a third party's: real tiny runs tracked in a
real local MLflow store (SQLite, artifacts in the test's directory), read back with MLflow's own client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tl_mlflow")
pytest.importorskip("torch")

from mlflow import MlflowClient  # noqa: E402

from tl.cli import make_cli, with_plugin_commands  # noqa: E402
from tl.faults import ENV as FAULT_ENV  # noqa: E402

TINY = ["--backend", "torch", "--max-train-samples", "64", "--max-eval-samples", "32", "--batch-size", "16",
        "--max-length", "16", "--precision", "fp32", "--epochs", "2", "--log-every", "2", "-q"]
#: 64 training rows / 16 = 4 optimizer steps per epoch, 2 epochs, a step row every 2 steps
STEPS, EPOCH_ENDS = [2, 4, 6, 8], [4, 8]
#: what a test's `tl run` must not inherit from the developer's shell (CliRunner restores them after)
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "TL_MLFLOW", FAULT_ENV)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A local MLflow store (SQLite), its tables created once for the module."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()
    return uri


@pytest.fixture
def experiment(store, tmp_path, request) -> tuple[MlflowClient, str, str]:
    """(client, experiment name, experiment id): an experiment of this test, artifacts under tmp_path."""
    client = MlflowClient(store)
    name = request.node.name
    return client, name, client.create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())


def tl_run(*args: str, env: dict | None = None):
    """``tl run`` in-process, with the plugins' commands, as the ``tl`` script builds it."""
    full_env = {k: None for k in MLFLOW_ENV} | (env or {})
    return CliRunner().invoke(with_plugin_commands(make_cli()), ["run", *args], env=full_env)


def only_run(client: MlflowClient, experiment_id: str):
    runs = client.search_runs([experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def tracking_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "MLflow" in ln]


def test_a_run_is_tracked_with_params_tags_metrics_artifacts_and_status(experiment, tiny_checkpoint, tiny_data,
                                                                       tmp_path):
    client, name, experiment_id = experiment
    run_dir = tmp_path / "tracked"
    out = tl_run("--model", str(tiny_checkpoint), "--dataset", str(tiny_data), *TINY, "-o", str(run_dir),
                 "--mlflow-uri", client.tracking_uri, "--mlflow-experiment", name)
    assert out.exit_code == 0, out.output
    assert tracking_lines(out.stderr) == []

    run = only_run(client, experiment_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    params = run.data.params
    assert {k: params[k] for k in ("epochs", "batch_size", "lr", "max_length", "backend", "task")} == {
        "epochs": "2", "batch_size": "16", "lr": "5e-05", "max_length": "16", "backend": "torch", "task": "sentiment"}
    assert {k: params[k] for k in ("plan.precision", "plan.effective_batch", "plan.device", "num_train_samples")} == {
        "plan.precision": "fp32", "plan.effective_batch": "16", "plan.device": "cpu", "num_train_samples": "64"}
    tags = run.data.tags
    assert {k: tags[k] for k in ("tl.task", "tl.backend", "tl.model", "tl.dataset", "tl.run_dir", "tl.status")} == {
        "tl.task": "sentiment", "tl.backend": "torch", "tl.model": str(tiny_checkpoint), "tl.dataset": str(tiny_data),
        "tl.run_dir": str(run_dir.resolve()), "tl.status": "finished"}
    assert tags["tl.version"] and tags["mlflow.source.name"] == "tl"

    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["event"] == "step"]
    epochs = [r for r in rows if r["event"] == "epoch"]
    assert history(client, run.info.run_id, "train/loss") == [(r["step"], pytest.approx(r["loss"])) for r in steps]
    assert [s for s, _ in history(client, run.info.run_id, "train/learning_rate")] == STEPS
    assert [s for s, _ in history(client, run.info.run_id, "train/samples_per_second")] == STEPS
    assert history(client, run.info.run_id, "eval/accuracy") == [
        (r["step"], pytest.approx(r["eval_accuracy"])) for r in epochs]
    assert [s for s, _ in history(client, run.info.run_id, "eval/accuracy")] == EPOCH_ENDS
    assert history(client, run.info.run_id, "epoch") == [(4, 1.0), (8, 2.0)]
    assert [s for s, _ in history(client, run.info.run_id, "train/epoch_loss")] == EPOCH_ENDS
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("eval_accuracy", "eval_macro_f1", "eval_loss", "train_samples_per_second"):
        assert history(client, run.info.run_id, key) == [(8, pytest.approx(metrics[key]))], key

    assert {"config.json", "metrics.json", "model", "plots"} <= artifacts(client, run.info.run_id)
    assert {"model/config.json", "model/model.safetensors", "model/tokenizer.json"} <= artifacts(
        client, run.info.run_id, "model")
    assert artifacts(client, run.info.run_id, "plots") == {"plots/loss.png", "plots/confusion_matrix.png"}
    local = Path(client.download_artifacts(run.info.run_id, "model/model.safetensors", str(tmp_path / "back")))
    assert local.read_bytes() == (run_dir / "model" / "model.safetensors").read_bytes()


def test_a_failed_run_ends_failed_with_its_reason(experiment, tiny_checkpoint, tiny_data, tmp_path):
    client, name, experiment_id = experiment
    out = tl_run("--model", str(tiny_checkpoint), "--dataset", str(tiny_data), *TINY, "--epochs", "1",
                 "-o", str(tmp_path / "full"), env={"MLFLOW_TRACKING_URI": client.tracking_uri,
                                                    "MLFLOW_EXPERIMENT_NAME": name, FAULT_ENV: "enospc@model"})
    assert out.exit_code == 1 and "No space left on device" in out.stderr, out.output
    run = only_run(client, experiment_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["tl.status"] == "failed" and "No space left on device" in run.data.tags["tl.error"]
    assert [s for s, _ in history(client, run.info.run_id, "train/loss")] == [2, 4]  # logged until it failed
    assert artifacts(client, run.info.run_id) == {"config.json"}  # no model was saved


def test_an_unreachable_server_is_one_warning_line_for_the_run(tmp_path, monkeypatch, capsys):
    """Every hook of a run, called as tl calls them, against a server that is not there: one line, no
    exception, and quickly (not MLflow's minutes of HTTP retries)."""
    from tl_mlflow.plugin import MlflowTracking

    for key in MLFLOW_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    tracking, start = MlflowTracking(), time.perf_counter()
    tracking.tl_on_run_start(run_dir=tmp_path, config={"task": "sentiment"}, resolved={})
    for step in (2, 4):
        tracking.tl_on_step_end(run_dir=tmp_path, step=step, logs={"loss": 0.7, "learning_rate": 1e-4})
    tracking.tl_on_epoch_end(run_dir=tmp_path, epoch=1, logs={"step": 4, "train_loss": 0.7, "eval_accuracy": 0.5})
    tracking.tl_on_checkpoint_saved(run_dir=tmp_path, path=tmp_path)
    tracking.tl_on_evaluate(run_dir=tmp_path, metrics={"eval_accuracy": 0.5})
    tracking.tl_on_run_end(run_dir=tmp_path, status="finished", metrics={"eval_accuracy": 0.5}, error=None)
    assert capsys.readouterr().err.splitlines() == [
        "tl: warning: MLflow tracking off for this run: no MLflow tracking server answers at http://127.0.0.1:9 "
        "([Errno 111] Connection refused)"]
    assert tracking.runs == {} and time.perf_counter() - start < 10


@pytest.mark.slow
def test_an_unreachable_server_is_one_warning_and_the_run_finishes(tiny_checkpoint, tiny_data, tmp_path):
    start = time.perf_counter()
    out = tl_run("--model", str(tiny_checkpoint), "--dataset", str(tiny_data), *TINY, "-o", str(tmp_path / "run"),
                 env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"})
    assert out.exit_code == 0, out.output
    assert tracking_lines(out.stderr) == [
        "tl: warning: MLflow tracking off for this run: no MLflow tracking server answers at http://127.0.0.1:9 "
        "([Errno 111] Connection refused)"], out.stderr
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert time.perf_counter() - start < 60


def test_tl_mlflow_0_turns_tracking_off(experiment, tmp_path, monkeypatch):
    """The kill switch, and a run without a tracking URI: the hooks track nothing (no MLflow run)."""
    from tl_mlflow.plugin import MlflowTracking

    client, name, experiment_id = experiment
    tracking = MlflowTracking()
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    for env in ({"MLFLOW_TRACKING_URI": client.tracking_uri, "TL_MLFLOW": "0"}, {"TL_MLFLOW": "1"}):
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        tracking.tl_on_run_start(run_dir=tmp_path, config={"task": "sentiment"}, resolved={})
        tracking.tl_on_step_end(run_dir=tmp_path, step=1, logs={"loss": 1.0})
        tracking.tl_on_run_end(run_dir=tmp_path, status="finished", metrics={}, error=None)
        assert tracking.runs == {}
    assert client.search_runs([experiment_id]) == []


def test_the_plugin_is_found_through_its_entry_point_and_adds_its_options():
    from tl_mlflow.plugin import MlflowTracking

    from tl.plugins import get_plugin_manager

    first, second = get_plugin_manager().get_plugin("mlflow"), get_plugin_manager().get_plugin("mlflow")
    assert isinstance(first, MlflowTracking) and first is not second  # no state shared between managers
    cli = with_plugin_commands(make_cli())
    listed = CliRunner().invoke(cli, ["plugins", "--json"])
    assert listed.exit_code == 0, listed.output
    hooks = {r["plugin"]: r for r in json.loads(listed.stdout)["hooks"]}
    assert hooks["mlflow"]["provider"] == "tl-mlflow 0.1.0"
    assert {"tl_on_run_start", "tl_on_step_end", "tl_on_run_end", "tl_register_commands"} <= set(hooks["mlflow"]["hooks"])
    text = CliRunner().invoke(cli, ["plugins"]).stdout
    assert "run-event hooks and commands" in text and "[tl-mlflow 0.1.0]" in text
    help_text = CliRunner().invoke(cli, ["run", "--help"]).stdout
    assert "--mlflow-uri URI" in help_text and "--mlflow-experiment NAME" in help_text
    assert "--mlflow-uri" not in CliRunner().invoke(make_cli(), ["run", "--help"]).stdout  # tl's own group: untouched


@pytest.mark.slow
def test_an_interrupted_run_is_killed_and_its_resume_continues_the_same_mlflow_run(experiment, tiny_checkpoint,
                                                                                   tiny_data, tmp_path):
    client, name, experiment_id = experiment
    run_dir = tmp_path / "stopped"
    env = {"MLFLOW_TRACKING_URI": client.tracking_uri, "MLFLOW_EXPERIMENT_NAME": name}
    out = tl_run("--model", str(tiny_checkpoint), "--dataset", str(tiny_data), *TINY, "-o", str(run_dir),
                 env={**env, FAULT_ENV: "sigterm@step:2"})
    assert out.exit_code != 0 and "interrupted at step" in out.stderr, out.output
    run = only_run(client, experiment_id)
    assert run.info.status == "KILLED" and run.data.tags["tl.status"] == "interrupted"

    out = tl_run("--resume", str(run_dir), "-q", env=env)
    assert out.exit_code == 0, out.output
    assert tracking_lines(out.stderr) == []
    resumed = only_run(client, experiment_id)
    assert resumed.info.run_id == run.info.run_id
    assert resumed.info.status == "FINISHED" and resumed.data.tags["tl.resumed"] == "true"
    assert [s for s, _ in history(client, run.info.run_id, "train/loss")] == STEPS
    assert "model" in artifacts(client, run.info.run_id)
