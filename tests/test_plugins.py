from __future__ import annotations

import subprocess
import sys
import types

import pytest

from tl import hookimpl
from tl.errors import PluginError, UsageError
from tl.interfaces import DatasetSpec, ModelSpec, Task
from tl.plugins import build_registry, get_plugin_manager


class EchoTask(Task):
    name = "echo"
    description = "test task"


class EventRecorder:
    """An in-test plugin implementing every run-event hook."""

    def __init__(self):
        self.events = []

    @hookimpl
    def tl_on_epoch_end(self, epoch, logs):
        self.events.append(("epoch", epoch, logs["eval_accuracy"]))

    @hookimpl
    def tl_on_evaluate(self, metrics):
        self.events.append(("evaluate", metrics["eval_accuracy"]))

    @hookimpl
    def tl_on_checkpoint_saved(self, run_dir, path):
        self.events.append(("saved", path.name))


_count = iter(range(10**6))


def _plugin(**hooks):
    mod = types.SimpleNamespace(__name__=f"inline{next(_count)}")
    for name, fn in hooks.items():
        setattr(mod, name, hookimpl(fn))
    return mod


def test_registration_hooks_and_providers():
    def tl_register_tasks(register):
        register(EchoTask())

    def tl_register_datasets(register):
        register(DatasetSpec("toy", "toy data", load=lambda: None))

    def tl_register_models(register):
        register(ModelSpec("toy-model", "toy model", resolve=lambda: None))

    pm = get_plugin_manager(autoload=False, extra_plugins=(_plugin(
        tl_register_tasks=tl_register_tasks, tl_register_datasets=tl_register_datasets,
        tl_register_models=tl_register_models),))
    reg = build_registry(pm)
    assert reg.names("task") == ["echo"]
    assert reg.names("dataset") == ["toy"] and reg.names("model") == ["toy-model"]
    assert isinstance(reg.get("task", "echo"), EchoTask)
    with pytest.raises(UsageError, match="unknown task 'nope'; known tasks: echo"):
        reg.get("task", "nope")


def test_builtins_come_from_entry_points():
    reg = build_registry(get_plugin_manager(autoload=True))
    assert {"torch", "tensorflow"} <= set(reg.names("backend"))
    assert "sentiment" in reg.names("task")
    assert {"minilm", "bert-base-uncased"} <= set(reg.names("model"))
    assert {"rotten_tomatoes", "imdb"} <= set(reg.names("dataset"))
    assert reg.providers[("task", "sentiment")].startswith("tl ")


def test_autoload_switch(monkeypatch):
    monkeypatch.setenv("TL_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert build_registry(get_plugin_manager()).names("backend") == []


def test_duplicate_names_name_both_providers():
    def a(register):
        register(EchoTask())

    p1, p2 = _plugin(tl_register_tasks=a), _plugin(tl_register_tasks=a)
    pm = get_plugin_manager(autoload=False, extra_plugins=(p1, p2))
    reg = build_registry(pm)
    with pytest.raises(PluginError, match="task 'echo' is registered twice: by .* and by .*uninstall one"):
        reg.get("task", "echo")
    assert any("registered twice" in f.error for f in reg.failures)


def test_misspelt_hook_fails_loudly():
    def tl_register_taskz(register):
        pass

    with pytest.raises(PluginError, match="tl_register_taskz"):
        get_plugin_manager(autoload=False, extra_plugins=(_plugin(tl_register_taskz=tl_register_taskz),))


def test_plugin_that_raises_is_isolated():
    def boom(register):
        raise RuntimeError("kaput")

    def ok(register):
        register(EchoTask())

    pm = get_plugin_manager(autoload=False, extra_plugins=(_plugin(tl_register_tasks=boom), _plugin(tl_register_tasks=ok)))
    reg = build_registry(pm)
    assert reg.names("task") == ["echo"]
    assert [f.error for f in reg.failures] == ["RuntimeError: kaput"]


def test_event_hooks_fire_during_a_run(tmp_path, tiny_checkpoint, tiny_data, backend_name):
    from tl.training.config import resolve
    from tl.training.pipeline import run

    recorder = EventRecorder()
    pm = get_plugin_manager(autoload=True, extra_plugins=(recorder,))
    reg = build_registry(pm)
    config = resolve({"backend": backend_name, "model": str(tiny_checkpoint), "dataset": str(tiny_data),
                      "epochs": 2, "output": str(tmp_path / "run"), "precision": "fp32"}, {}, {})
    result = run(config, reg, pm, quiet=True)
    kinds = [e[0] for e in recorder.events]
    assert kinds == ["epoch", "epoch", "saved", "evaluate"]
    assert recorder.events[1][2] == result.metrics["eval_accuracy"]
    assert recorder.events[2][1] == "model"


def test_every_hookspec_is_tested_and_documented():
    """datasette's rule: a hook without a test here, a README entry or an entry in the plugin author
    guide (docs/plugins.md, with its arguments) fails the suite."""
    import inspect
    from pathlib import Path

    from tl.plugins import hookspecs

    names = [n for n in dir(hookspecs) if n.startswith("tl_")]
    here = Path(__file__).read_text()
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    guide = (root / "docs" / "plugins.md").read_text()
    assert "docs/plugins.md" in readme, "README.md does not link the plugin author guide"
    for name in names:
        assert f"def {name}(" in here, f"hook {name} has no implementation exercised in tests/test_plugins.py"
        assert f"`{name}" in readme, f"hook {name} is not documented in README.md"
        args = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"`{name}({args})`" in guide, f"hook {name}({args}) is not documented in docs/plugins.md"


def test_commands_hook_adds_a_command(tmp_path):
    code = r'''
import click, sys
from tl import hookimpl
import tl.plugins.manager as plugins

class P:
    @hookimpl
    def tl_register_commands(self, cli):
        @cli.command()
        def hello():
            """Say hello."""
            click.echo("hello from a plugin")

orig = plugins.get_plugin_manager
plugins.get_plugin_manager = lambda **kw: orig(extra_plugins=(P(),), **kw)
from tl.cli import main
sys.argv = ["tl", "hello"]
main()
'''
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello from a plugin"


class GhostBackend:
    """A backend whose framework is not installed: listed as unavailable, never imported."""

    from tl.interfaces import Backend as _B

    name = "ghost"
    framework = "Ghost"
    requires = ("ghost_framework_not_installed",)
    install_hint = "pip install ghost-framework"
    missing_modules = _B.missing_modules
    is_available = _B.is_available
    versions = _B.versions


def test_backend_registration_and_unavailable_backend_errors():
    from tl.plugins.registry import get_backend

    class P:
        @hookimpl
        def tl_register_backends(self, register):
            register(GhostBackend())

    reg = build_registry(get_plugin_manager(autoload=False, extra_plugins=(P(),)))
    assert reg.names("backend") == ["ghost"]
    assert reg.get("backend", "ghost").missing_modules() == ["ghost_framework_not_installed"]
    with pytest.raises(UsageError, match="needs ghost_framework_not_installed, which is not installed: pip install ghost"):
        get_backend(reg, "ghost")
