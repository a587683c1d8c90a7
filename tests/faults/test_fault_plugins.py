"""A plugin that raises in every hook never takes down the CLI or a run: one warning line per plugin
and hook, the other plugins still called, the run's model and metrics written; ``--strict-plugins``
(``TL_STRICT_PLUGINS=1``) makes the same failures fatal, one line, exit 1.

Plugins are real third-party distributions found through entry points (a dist-info on the path)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from tl import hookimpl
from tl.errors import PluginError
from tl.plugins import build_registry, get_plugin_manager
from tl.plugins.events import EVENT_HOOKS, STRICT_ENV, call_hook, raise_if_strict

HOOKS = ("tl_register_commands", "tl_register_tasks", "tl_on_run_start", "tl_on_step_end", "tl_on_epoch_end",
         "tl_on_evaluate", "tl_on_checkpoint_saved", "tl_on_run_end")

FAULTY = textwrap.dedent('''
    from tl import hookimpl

    def fail(hook):
        raise RuntimeError(f"faulty plugin broke in {hook}")

    @hookimpl
    def tl_register_commands(cli):
        fail("tl_register_commands")

    @hookimpl
    def tl_register_tasks(register):
        fail("tl_register_tasks")

    @hookimpl
    def tl_on_epoch_end(run_dir, epoch, logs):
        fail("tl_on_epoch_end")

    @hookimpl
    def tl_on_evaluate(run_dir, metrics):
        fail("tl_on_evaluate")

    @hookimpl
    def tl_on_checkpoint_saved(run_dir, path):
        fail("tl_on_checkpoint_saved")

    @hookimpl
    def tl_on_run_start(run_dir, config, resolved):
        fail("tl_on_run_start")

    @hookimpl
    def tl_on_step_end(run_dir, step, logs):
        fail("tl_on_step_end")

    @hookimpl
    def tl_on_run_end(run_dir, status, metrics, error):
        fail("tl_on_run_end")
''')

#: a well-behaved plugin beside it: records each call, to show the others still run
RECORDER = textwrap.dedent('''
    import json
    from pathlib import Path
    from tl import hookimpl

    def note(run_dir, **row):
        with open(Path(run_dir) / "recorder.jsonl", "a") as f:
            f.write(json.dumps(row) + "\\n")

    @hookimpl
    def tl_on_epoch_end(run_dir, epoch, logs):
        note(run_dir, hook="tl_on_epoch_end", epoch=epoch)

    @hookimpl
    def tl_on_evaluate(run_dir, metrics):
        note(run_dir, hook="tl_on_evaluate")

    @hookimpl
    def tl_on_checkpoint_saved(run_dir, path):
        note(run_dir, hook="tl_on_checkpoint_saved")

    @hookimpl
    def tl_on_run_start(run_dir, config, resolved):
        note(run_dir, hook="tl_on_run_start", epochs=config["epochs"])

    @hookimpl
    def tl_on_step_end(run_dir, step, logs):
        note(run_dir, hook="tl_on_step_end", step=step, keys=sorted(logs))

    @hookimpl
    def tl_on_run_end(run_dir, status, metrics, error):
        note(run_dir, hook="tl_on_run_end", status=status, epochs=metrics.get("epochs"), error=error)
''')


def install(site: Path, name: str, code: str) -> None:
    (site / f"{name}.py").write_text(code)
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[tl]\n{name} = {name}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    install(site, "faulty_plugin_x", FAULTY)
    install(site, "recorder_plugin_x", RECORDER)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("TL_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv(STRICT_ENV, raising=False)
    return site


def invoke(*args: str):
    from tl.cli import make_cli, with_plugin_commands

    return CliRunner().invoke(with_plugin_commands(make_cli()), list(args), catch_exceptions=False)


def run_args(tiny_checkpoint, tiny_data, out) -> list[str]:
    return ["run", "--backend", "torch", "--model", str(tiny_checkpoint), "--dataset", str(tiny_data), "--epochs",
            "2", "--max-train-samples", "64", "--max-eval-samples", "32", "--batch-size", "16", "--max-length", "16",
            "--precision", "fp32", "--threads", "1", "-q", "-o", str(out)]


@pytest.mark.guarantee(fault="A plugin raising in every hook (commands, registration, run start, step, epoch "
                             "end, evaluate, checkpoint saved, run end)",
                       tl="one warning line per plugin and hook; the other plugins still run",
                       kept="the CLI, the run, its model and metrics")
def test_a_plugin_raising_in_every_hook_costs_one_warning_each(site, tmp_path, tiny_checkpoint, tiny_data,
                                                                capfd):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_checkpoint, tiny_data, out))
    err = capfd.readouterr().err + result.output
    assert result.exit_code == 0, err
    assert "Traceback" not in err
    assert (out / "model" / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    for hook in HOOKS:  # each failure named once, with the plugin and its distribution
        lines = [ln for ln in err.splitlines() if f"failed in {hook}" in ln or f"broke in {hook}" in ln]
        assert len(lines) == 1, (hook, err)
        assert "faulty_plugin_x" in lines[0]
    calls = [json.loads(ln) for ln in (out / "recorder.jsonl").read_text().splitlines()]
    assert [c["epoch"] for c in calls if c["hook"] == "tl_on_epoch_end"] == [1, 2]
    assert {c["hook"] for c in calls} == {"tl_on_run_start", "tl_on_step_end", "tl_on_epoch_end", "tl_on_evaluate",
                                          "tl_on_checkpoint_saved", "tl_on_run_end"}
    assert calls[0] == {"hook": "tl_on_run_start", "epochs": 2}
    assert calls[-1] == {"hook": "tl_on_run_end", "status": "finished", "epochs": 2, "error": None}
    steps = [c for c in calls if c["hook"] == "tl_on_step_end"]  # 64 rows / 16 = 4 steps per epoch, 8 in all
    assert [c["step"] for c in steps] == [8]  # every 10 steps, and the last
    assert steps[0]["keys"] == ["epoch", "learning_rate", "loss", "samples_per_second"]
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.guarantee(fault="The same plugin with --strict-plugins / TL_STRICT_PLUGINS=1",
                       tl="stops with one line naming the plugin and the hook, exit 1",
                       kept="nothing is overwritten; the command does not start")
def test_strict_plugins_makes_the_failures_fatal(site, tmp_path, tiny_checkpoint, tiny_data, monkeypatch, capfd):
    from tl.cli import main

    monkeypatch.setenv(STRICT_ENV, "")  # main() sets it; monkeypatch restores the unset variable afterwards
    monkeypatch.setattr("sys.argv", ["tl", "--strict-plugins", *run_args(tiny_checkpoint, tiny_data, tmp_path / "r")])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capfd.readouterr().err
    assert stop.value.code == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["Error: plugin 'faulty_plugin_x' (faulty_plugin_x 0.1) failed in tl_register_commands: "
                     "RuntimeError: faulty plugin broke in tl_register_commands (plugin errors are fatal with "
                     "--strict-plugins / TL_STRICT_PLUGINS=1)"], err
    assert not (tmp_path / "r").exists()


class Raises:
    def __init__(self, hook: str) -> None:
        self.hook = hook

    @hookimpl
    def tl_on_epoch_end(self, run_dir, epoch, logs):
        self.fail("tl_on_epoch_end")

    @hookimpl
    def tl_on_evaluate(self, run_dir, metrics):
        self.fail("tl_on_evaluate")

    @hookimpl
    def tl_on_checkpoint_saved(self, run_dir, path):
        self.fail("tl_on_checkpoint_saved")

    @hookimpl
    def tl_register_commands(self, cli):
        self.fail("tl_register_commands")

    @hookimpl
    def tl_on_run_start(self, run_dir, config, resolved):
        self.fail("tl_on_run_start")

    @hookimpl
    def tl_on_step_end(self, run_dir, step, logs):
        self.fail("tl_on_step_end")

    @hookimpl
    def tl_on_run_end(self, run_dir, status, metrics, error):
        self.fail("tl_on_run_end")

    def fail(self, hook: str) -> None:
        if hook == self.hook:
            raise ValueError(f"bad {hook}")


class Records:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def tl_on_epoch_end(self, run_dir, epoch, logs):
        self.calls.append("tl_on_epoch_end")

    @hookimpl
    def tl_on_evaluate(self, run_dir, metrics):
        self.calls.append("tl_on_evaluate")

    @hookimpl
    def tl_on_checkpoint_saved(self, run_dir, path):
        self.calls.append("tl_on_checkpoint_saved")

    @hookimpl
    def tl_register_commands(self, cli):
        self.calls.append("tl_register_commands")

    @hookimpl
    def tl_on_run_start(self, run_dir, config, resolved):
        self.calls.append("tl_on_run_start")

    @hookimpl
    def tl_on_step_end(self, run_dir, step, logs):
        self.calls.append("tl_on_step_end")

    @hookimpl
    def tl_on_run_end(self, run_dir, status, metrics, error):
        self.calls.append("tl_on_run_end")


ARGS = {"tl_on_epoch_end": {"run_dir": ".", "epoch": 1, "logs": {}}, "tl_on_evaluate": {"run_dir": ".", "metrics": {}},
        "tl_on_checkpoint_saved": {"run_dir": ".", "path": "."}, "tl_register_commands": {"cli": None},
        "tl_on_run_start": {"run_dir": ".", "config": {}, "resolved": {}},
        "tl_on_step_end": {"run_dir": ".", "step": 10, "logs": {}},
        "tl_on_run_end": {"run_dir": ".", "status": "failed", "metrics": {}, "error": "x"}}


@pytest.mark.parametrize("hook", EVENT_HOOKS)
def test_every_event_hook_is_guarded_and_strict_raises(hook, monkeypatch):
    recorder = Records()
    # registered after the faulty one, so pluggy calls it first; and before it: both orders
    for plugins in ((Raises(hook), recorder), (recorder, Raises(hook))):
        recorder.calls.clear()
        pm = get_plugin_manager(autoload=False, extra_plugins=plugins)
        warnings: list[str] = []
        monkeypatch.delenv(STRICT_ENV, raising=False)
        call_hook(pm, hook, warn=warnings.append, **ARGS[hook])
        call_hook(pm, hook, warn=warnings.append, **ARGS[hook])
        assert recorder.calls == [hook, hook]
        assert len(warnings) == 1 and f"failed in {hook}: ValueError: bad {hook}" in warnings[0]
        monkeypatch.setenv(STRICT_ENV, "1")
        with pytest.raises(PluginError, match=f"failed in {hook}: ValueError: bad {hook}"):
            call_hook(pm, hook, **ARGS[hook])
        assert recorder.calls[-1] == hook  # the others ran before the error


def test_strict_plugins_covers_load_and_registration_failures(monkeypatch):
    class BadTasks:
        @hookimpl
        def tl_register_tasks(self, register):
            raise KeyError("no task")

    registry = build_registry(get_plugin_manager(autoload=False, extra_plugins=(BadTasks(),)))
    assert registry.failures
    monkeypatch.delenv(STRICT_ENV, raising=False)
    raise_if_strict(registry.failures)  # a failure stays in `tl plugins`, not fatal
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(PluginError, match="KeyError"):
        raise_if_strict(registry.failures)
