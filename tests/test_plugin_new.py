"""``tl plugin new``: the skeleton it writes installs into a fresh virtual environment, is found through
its entry point there, and passes its own tests; bad names and occupied directories are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tl.cli.plugin_new import plugin_names, render
from tl.plugins import build_registry, get_plugin_manager

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from conftest import BACKENDS


def tl(*args: str, cwd: Path | None = None, python: str = sys.executable) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TL_DISABLE_PLUGIN_AUTOLOAD"}
    return subprocess.run([python, "-m", "tl", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def one_line_error(out: subprocess.CompletedProcess, *fragments: str) -> None:
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, (out.returncode, out.stderr)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("name", ["Topics", "news topics", "1abc", "a--b", "-x", "x_", "ab!c", "tl", "tl-",
                                  "x" * 41, ""])
def test_bad_names_are_refused(tmp_path, name):
    out = tl("plugin", "new", "--dir", str(tmp_path / "p"), "--", name)
    one_line_error(out, "invalid plugin name")
    assert not (tmp_path / "p").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "fragment"), [
    ("sentiment", "already used by tl 0.1.0"),       # an entry point name of tl itself
    ("pair", "tl-pair 0.1.0 is already installed"),  # an installed plugin distribution
    ("nli", "task named 'nli' is already provided by tl-pair 0.1.0"),
])
def test_names_in_use_are_refused(tmp_path, name, fragment):
    one_line_error(tl("plugin", "new", name, "--dir", str(tmp_path / "p")), fragment, "choose another name")
    assert list(tmp_path.iterdir()) == []


def test_occupied_target_is_never_touched(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("precious")
    one_line_error(tl("plugin", "new", "topics", "--dir", str(tmp_path / "busy")), "not empty", "nothing was written")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    assert (tmp_path / "busy" / "notes.txt").read_text() == "precious"
    (tmp_path / "afile").write_text("x")
    one_line_error(tl("plugin", "new", "topics", "--dir", str(tmp_path / "afile")), "not a directory")
    assert (tmp_path / "afile").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "busy"]  # no temp dirs left behind
    (tmp_path / "empty").mkdir()
    assert tl("plugin", "new", "topics", "--dir", str(tmp_path / "empty")).returncode == 0
    assert (tmp_path / "empty" / "pyproject.toml").is_file()


def test_names_and_rendered_files():
    assert plugin_names("news-topics") == {"task": "news-topics", "entry_point": "news-topics",
                                           "dist": "tl-news-topics", "package": "tl_news_topics",
                                           "cls": "NewsTopicsTask"}
    assert plugin_names("tl_intent2")["dist"] == "tl-intent2" and plugin_names("tl-intent2")["task"] == "intent2"
    files = render(plugin_names("news_topics"))
    meta = tomllib.loads(files["pyproject.toml"])
    assert meta["project"]["name"] == "tl-news-topics"
    assert meta["project"]["entry-points"]["tl"] == {"news_topics": "tl_news_topics.plugin"}
    assert meta["tool"]["setuptools"]["packages"] == ["tl_news_topics"]
    for rel, text in files.items():
        if rel.endswith(".py"):
            compile(text, rel, "exec")
    assert 'name = "news_topics"' in files["tl_news_topics/task.py"]
    # the tiny checkpoint writer comes from tl, not from a copy in the skeleton
    assert "from tl.testing import tiny_bert" in files["tests/test_plugin.py"]
    assert not any("def tiny_bert" in text for text in files.values())


def _venv_with_tl(root: Path) -> Path:
    """A fresh virtual environment that sees this environment's packages (tl, its plugins, pytest, pip,
    setuptools) through a .pth file, so nothing is reinstalled and nothing is downloaded.

    (``python -m venv --system-site-packages`` run from .venv's interpreter would expose the *base*
    interpreter's site-packages, not .venv's, so tl would not be importable.)"""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    here = sysconfig.get_paths()["purelib"]
    Path(purelib, "_tl_parent_env.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    return python


@pytest.mark.slow  # 18 s: a fresh venv and pip install
def test_skeleton_installs_in_a_fresh_venv_and_passes_its_own_tests(tmp_path):
    out = tl("plugin", "new", "ticket-urgency", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    skeleton = tmp_path / "tl-ticket-urgency"
    assert "pip install -e tl-ticket-urgency" in out.stdout
    assert {str(p.relative_to(skeleton)) for p in skeleton.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", "tl_ticket_urgency/__init__.py", "tl_ticket_urgency/plugin.py",
        "tl_ticket_urgency/task.py", "tests/conftest.py", "tests/test_plugin.py"}

    python = _venv_with_tl(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k != "TL_DISABLE_PLUGIN_AUTOLOAD"}
    env.update(PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1", TL_HOME=str(tmp_path / "tl_home"),
               PYTHONDONTWRITEBYTECODE="1")
    has_setuptools = subprocess.run([str(python), "-c", "import setuptools"], env=env).returncode == 0
    # offline: build with the setuptools this environment already has; without it, pip fetches it
    isolation = ["--no-build-isolation"] if has_setuptools else []
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", *isolation, "-e", str(skeleton)],
                             capture_output=True, text=True, env=env, timeout=300)
    if install.returncode and not has_setuptools:
        pytest.skip(f"setuptools is not installed here and could not be fetched: {install.stderr.strip()[-200:]}")
    assert install.returncode == 0, install.stderr

    tests = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(skeleton)],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout
    if BACKENDS:  # the tiny training test ran rather than skipped
        assert "6 passed" in tests.stdout and "skipped" not in tests.stdout, tests.stdout[-1000:]

    listed = json.loads(tl("plugins", "--json", python=str(python)).stdout)
    rows = {(r["kind"], r["name"]): r for r in listed["plugins"]}
    assert rows[("task", "ticket-urgency")]["provider"] == "tl-ticket-urgency 0.1.0"
    assert ("task", "nli") in rows and listed["failures"] == []
    assert "ticket-urgency" in tl("plugins", python=str(python)).stdout
    # installed into the fresh environment only: this one does not see it
    assert "ticket-urgency" not in build_registry(get_plugin_manager(autoload=True)).names("task")
