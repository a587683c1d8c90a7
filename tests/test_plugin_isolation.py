"""Third-party plugins discovered through real entry points (a dist-info on PYTHONPATH): one that
raises on import, two that register the same name, one with a misspelt hook, one that overrides a
built-in model alias. Each is reported by name; everything else keeps working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tl.assets.wheels import safe_join
from tl.errors import AssetError

PLUGINS = {
    "boom_plugin": "raise RuntimeError('boom at import')\n",
    "dupe_plugin": textwrap.dedent('''
        from tl import hookimpl
        from tl_sentiment.task import SentimentTask

        @hookimpl
        def tl_register_tasks(register):
            register(SentimentTask())
    '''),
    "clash_plugin": textwrap.dedent('''
        from tl import hookimpl
        from tl_sentiment.task import SentimentTask

        @hookimpl
        def tl_register_tasks(register):
            register(SentimentTask())
    '''),
    "override_plugin": textwrap.dedent('''
        from tl import hookimpl
        from tl.interfaces import ModelSpec

        @hookimpl
        def tl_register_models(register):
            register(ModelSpec("minilm", "my own MiniLM", lambda: "/nowhere", source="mine"))
    '''),
    "typo_plugin": textwrap.dedent('''
        from tl import hookimpl

        @hookimpl
        def tl_register_taks(register):
            pass
    '''),
}


@pytest.fixture
def site(tmp_path):
    for name, code in PLUGINS.items():
        (tmp_path / f"{name}.py").write_text(code)
        dist = tmp_path / f"{name}-0.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(f"[tl]\n{name} = {name}\n")
    return tmp_path


def tl(site, *args):
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run([sys.executable, "-m", "tl", *args], capture_output=True, text=True, env=env, timeout=300)


def test_broken_plugins_are_reported_by_name(site):
    out = tl(site, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    failures = {f["plugin"]: f for f in json.loads(out.stdout)["failures"]}
    assert "boom at import" in failures["boom_plugin"]["error"]
    assert failures["boom_plugin"]["distribution"] == "boom_plugin 0.1"
    assert "tl_register_taks" in failures["typo_plugin"]["error"]
    dupes = [f for f in failures.values() if "registered twice" in f["error"]]
    assert len(dupes) == 1 and "dupe_plugin 0.1" in dupes[0]["error"] and "clash_plugin 0.1" in dupes[0]["error"]
    listing = {(r["kind"], r["name"]): r for r in json.loads(out.stdout)["plugins"]}
    assert ("backend", "torch") in listing and ("task", "sentiment") in listing
    # a third-party plugin overriding a built-in name: it wins, with one warning naming both
    assert listing[("model", "minilm")]["provider"] == "override_plugin 0.1"
    assert listing[("model", "minilm")]["description"] == "my own MiniLM"
    assert json.loads(out.stdout)["warnings"] == [
        "model 'minilm' from override_plugin 0.1 overrides the built-in one (tl 0.1.0)"]
    assert "overrides" not in out.stderr
    text = tl(site, "plugins")
    assert text.returncode == 0, text.stderr
    assert text.stdout.count("model 'minilm' from override_plugin 0.1 overrides the built-in one (tl 0.1.0)") == 1


def test_commands_that_need_a_clashing_name_say_so(site, tiny_checkpoint, tiny_data):
    out = tl(site, "run", "--task", "sentiment", "--model", str(tiny_checkpoint), "--dataset", str(tiny_data))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "task 'sentiment' is registered twice: by " in out.stderr
    assert "dupe_plugin 0.1" in out.stderr and "clash_plugin 0.1" in out.stderr and "uninstall one" in out.stderr
    # the override of a built-in is a warning, once per command, on stderr
    warning = "Warning: model 'minilm' from override_plugin 0.1 overrides the built-in one (tl 0.1.0)"
    assert out.stderr.count(warning) == 1, out.stderr
    assert tl(site, "--help").returncode == 0


def test_asset_paths_cannot_escape_the_cache(tmp_path):
    assert safe_join(tmp_path, "a/b.txt") == tmp_path / "a" / "b.txt"
    for bad in ("../evil", "/etc/passwd", "a/../../evil", ""):
        with pytest.raises(AssetError, match="unsafe path"):
            safe_join(tmp_path, bad)
