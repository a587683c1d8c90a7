from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from tl import hookimpl
from tl.errors import PluginError, UsageError
from tl.interfaces import DatasetSpec, ModelSpec, Task
from tl.plugins import build_registry, get_plugin_manager

from conftest import slow_on


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

    @hookimpl
    def tl_on_run_start(self, run_dir, config, resolved):
        self.events.append(("start", config["epochs"], resolved["labels"]))

    @hookimpl
    def tl_on_step_end(self, step, logs):
        self.events.append(("step", step, logs["loss"], logs["learning_rate"]))

    @hookimpl
    def tl_on_run_end(self, status, metrics, error):
        self.events.append(("end", status, metrics.get("eval_accuracy"), error))


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


def test_a_family_plugin_adds_a_model_type():
    from test_families import CAMEMBERT

    from tl.models.families import available, family_for

    def tl_register_families(register):
        register(CAMEMBERT)

    reg = build_registry(get_plugin_manager(autoload=False, extra_plugins=(_plugin(
        tl_register_families=tl_register_families),)))
    assert reg.names("family") == ["camembert"]
    families = available(reg.items["family"])
    assert family_for({"model_type": "camembert"}, families=families) is CAMEMBERT
    assert family_for({"model_type": "xlm-roberta"}, families=families).name == "xlm-roberta"  # built-ins stay
    with pytest.raises(UsageError, match=r"model_type 'gpt2' is not supported \(supported: albert, bert, camembert, "
                                         r"deberta-v2, .*\); a plugin adds one with the tl_register_families hook"):
        family_for({"model_type": "gpt2"}, "ckpt/config.json", families)


def test_builtins_come_from_entry_points():
    reg = build_registry(get_plugin_manager(autoload=True))
    assert {"bert", "distilbert", "roberta", "xlm-roberta", "albert", "electra", "deberta-v2", "mpnet"} == set(
        reg.names("family"))
    assert reg.providers[("family", "mpnet")].startswith("tl ")
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


@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))
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
    steps = [e for e in recorder.events if e[0] == "step"]  # 20 optimizer steps, logged every 10
    assert kinds == ["start", "step", "epoch", "step", "epoch", "saved", "evaluate", "end"], kinds
    assert recorder.events[0] == ("start", 2, ["negative", "positive"])
    history = [json.loads(line) for line in (result.run_dir / "history.jsonl").read_text().splitlines()]
    assert [(e[1], e[2], e[3]) for e in steps] == [(r["step"], r["loss"], r["learning_rate"])
                                                   for r in history if r["event"] == "step"]
    assert [e[1] for e in steps] == [10, 20]
    epochs = [e for e in recorder.events if e[0] == "epoch"]
    assert epochs[1][2] == result.metrics["eval_accuracy"]
    assert recorder.events[5][1] == "model"
    assert recorder.events[-1] == ("end", "finished", result.metrics["eval_accuracy"], None)


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
import tl.plugins as plugins

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


class MyMiniLM:
    """A plugin overriding two built-in names: the model alias ``minilm`` and the task ``sentiment``."""

    @hookimpl
    def tl_register_models(self, register):
        register(ModelSpec("minilm", "my own minilm", resolve=lambda: None))

    @hookimpl
    def tl_register_tasks(self, register):
        task = EchoTask()
        task.name = "sentiment"
        register(task)


def test_a_plugin_overrides_built_in_names_with_one_warning_each():
    pm = get_plugin_manager(autoload=True, extra_plugins=(MyMiniLM(),))
    reg = build_registry(pm)
    assert reg.get("model", "minilm").description == "my own minilm"
    assert isinstance(reg.get("task", "sentiment"), EchoTask)
    assert reg.providers[("model", "minilm")] == reg.providers[("task", "sentiment")] == "MyMiniLM"
    assert sorted(reg.warnings) == [
        "model 'minilm' from MyMiniLM overrides the built-in one (tl 0.1.0)",
        "task 'sentiment' from MyMiniLM overrides the built-in one (tl 0.1.0)",
    ]
    assert not reg.conflicts and not [f for f in reg.failures if "MyMiniLM" in f.distribution]
    # the rest of the built-ins are untouched
    assert reg.providers[("model", "bert-base-uncased")] == "tl 0.1.0"


def test_override_does_not_depend_on_call_order():
    """The plugin's registration may come after the built-in's (a trylast backend: the torch plugin's
    hook is an ordinary one) or before it (a trylast dataset registered after the built-in assets plugin
    is called first): the plugin wins either way."""

    class Early:
        @hookimpl(tryfirst=True)
        def tl_register_backends(self, register):
            register(GhostBackend())

    class Late:
        @hookimpl(trylast=True)
        def tl_register_datasets(self, register):
            register(DatasetSpec("imdb", "my imdb", load=lambda: None))

    class Torchy(GhostBackend):
        name = "torch"

    class LateBackend:
        @hookimpl(trylast=True)
        def tl_register_backends(self, register):
            register(Torchy())

    reg = build_registry(get_plugin_manager(autoload=True, extra_plugins=(Early(), Late(), LateBackend())))
    assert reg.get("dataset", "imdb").description == "my imdb"
    assert isinstance(reg.get("backend", "torch"), Torchy) and reg.providers[("backend", "torch")] == "LateBackend"
    assert "backend 'torch' from LateBackend overrides the built-in one (tl 0.1.0)" in reg.warnings
    assert "dataset 'imdb' from Late overrides the built-in one (tl 0.1.0)" in reg.warnings
    assert "ghost" in reg.names("backend")


def test_two_third_party_plugins_with_one_built_in_name_conflict():
    class A(MyMiniLM):
        pass

    class B(MyMiniLM):
        pass

    reg = build_registry(get_plugin_manager(autoload=True, extra_plugins=(A(), B())))
    with pytest.raises(PluginError, match=r"model 'minilm' is registered twice: by (A and by B|B and by A); uninstall"):
        reg.get("model", "minilm")
    assert any("registered twice" in f.error and "minilm" in f.error for f in reg.failures)


def test_built_ins_do_not_warn_on_their_own():
    reg = build_registry(get_plugin_manager(autoload=True))
    assert reg.warnings == [] and not reg.conflicts


def test_call_order_is_pluggys_tryfirst_trylast():
    calls = []

    class First:
        @hookimpl(tryfirst=True)
        def tl_register_tasks(self, register):
            calls.append("first")

    class Plain:
        @hookimpl
        def tl_register_tasks(self, register):
            calls.append("plain")

    class Last:
        @hookimpl(trylast=True)
        def tl_register_tasks(self):
            calls.append("last")

    # registered in the opposite order of the calls pluggy makes
    build_registry(get_plugin_manager(autoload=False, extra_plugins=(Last(), First(), Plain())))
    assert calls == ["first", "plain", "last"]


def test_hook_wrappers_run_and_what_they_register_is_theirs():
    seen = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def tl_register_tasks(self, register):
            seen.append("before")
            result = yield
            seen.append("after")
            register(EchoTask())  # after every other implementation
            return result

    class OldStyle:
        @hookimpl(hookwrapper=True)
        def tl_register_models(self, register):
            seen.append("old before")
            outcome = yield
            outcome.get_result()
            seen.append("old after")

    class Inner:
        @hookimpl
        def tl_register_tasks(self, register):
            seen.append("inner")

    pm = get_plugin_manager(autoload=False, extra_plugins=(Wrapper(), OldStyle(), Inner()))
    reg = build_registry(pm)
    assert seen == ["before", "inner", "after", "old before", "old after"]
    assert reg.names("task") == ["echo"] and reg.providers[("task", "echo")] == "Wrapper"
    assert reg.failures == []


def test_a_raising_wrapper_is_isolated_too():
    class BadWrapper:
        @hookimpl(wrapper=True)
        def tl_register_tasks(self):
            raise RuntimeError("wrapper kaput")
            yield  # pragma: no cover

    class BadTeardown:
        @hookimpl(wrapper=True)
        def tl_register_tasks(self):
            yield
            raise ValueError("teardown kaput")

    class Ok:
        @hookimpl
        def tl_register_tasks(self, register):
            register(EchoTask())

    reg = build_registry(get_plugin_manager(autoload=False, extra_plugins=(BadWrapper(), BadTeardown(), Ok())))
    assert reg.names("task") == ["echo"] and reg.providers[("task", "echo")] == "Ok"
    assert sorted((f.distribution, f.error) for f in reg.failures) == [
        ("BadTeardown", "ValueError: teardown kaput"), ("BadWrapper", "RuntimeError: wrapper kaput")]


def test_hooks_called_outside_build_registry_behave_as_plain_pluggy():
    class P:
        @hookimpl
        def tl_register_tasks(self, register):
            register(EchoTask())

    pm = get_plugin_manager(autoload=False, extra_plugins=(P(),))
    build_registry(pm)  # guards the implementation
    got = []
    pm.hook.tl_register_tasks(register=got.append)
    assert [t.name for t in got] == ["echo"]


def test_cli_prints_each_override_warning_once_per_command(monkeypatch, capsys):
    import click

    import tl.cli.common as common

    monkeypatch.setattr(common, "get_plugin_manager", lambda: get_plugin_manager(autoload=True, extra_plugins=(MyMiniLM(),)))
    for _command in range(2):  # each command (click context) shows them once
        with click.Context(click.Command("pull")):
            common.load_registry()
            common.load_registry()  # e.g. `tl pull a b` loads it per name
        err = capsys.readouterr().err
        assert err.count("Warning: model 'minilm' from MyMiniLM overrides the built-in one (tl 0.1.0)\n") == 1
        assert err.count("Warning: ") == 2  # the sentiment task's, once too
    with click.Context(click.Command("plugins")):
        common.load_registry(warn=False)
    assert capsys.readouterr().err == ""
