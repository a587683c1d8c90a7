"""Starting the server: checks that fail fast with one line (model, runtime, key, TLS files, port),
the start-up line, and uvicorn itself: one process serving an app object, or ``--workers N``
processes each building the app from ``$TL_SERVE_SETTINGS`` (metrics shared through
prometheus_client's multiprocess directory)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from tl.errors import TLError, UsageError
from tl.serve.settings import API_KEY_ENV, SETTINGS_ENV, ServeSettings

WEB_STACK = ("fastapi", "uvicorn", "prometheus_client")


@dataclass(frozen=True)
class Checked:
    """What the pre-flight checks found: shown in the start-up line."""

    task: str
    runtime: str
    authenticated: bool


def default_host(authenticated: bool) -> str:
    """Loopback without an API key (nothing else can reach an open server), every interface with one."""
    return "0.0.0.0" if authenticated else "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def preflight(settings: ServeSettings, ssl_certfile: str | None, ssl_keyfile: str | None) -> Checked:
    """Everything that can be checked before uvicorn starts, each failure one line."""
    from tl.models.hf_checkpoint import read_meta
    from tl.models.saved import pick_runtime, task_of
    from tl.plugins import build_registry, get_plugin_manager
    from tl.plugins.registry import get_backend
    from tl.serve.auth import load_api_key

    missing = [m for m in WEB_STACK if find_spec(m) is None]
    if missing:
        raise UsageError(f"tl serve needs {', '.join(missing)}, which is not installed: pip install 'tl[serve]'")
    registry = build_registry(get_plugin_manager())
    meta = read_meta(settings.model_dir)
    task = task_of(meta, registry)
    runtime = pick_runtime(registry, settings.runtime, settings.model_dir)
    get_backend(registry, runtime)  # unknown or not installed: one line
    key = load_api_key(settings.api_key_file)
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise UsageError("pass both --ssl-certfile and --ssl-keyfile, or neither")
    for option, path in (("--ssl-certfile", ssl_certfile), ("--ssl-keyfile", ssl_keyfile)):
        if path and not Path(path).is_file():
            raise UsageError(f"{option} {path} not found")
    check_port(settings.host, settings.port)
    return Checked(meta.get("task") or task.name or "classification", runtime, key is not None)


def check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UsageError(f"cannot listen on {host}:{port}: {reason}; pass another --port or --host") from None


def startup_line(settings: ServeSettings, checked: Checked, tls: bool) -> str:
    scheme = "https" if tls else "http"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    auth = ("API key required (Authorization: Bearer)" if checked.authenticated
            else f"unauthenticated (no API key: set {API_KEY_ENV} or --api-key-file)")
    workers = f"{settings.workers} worker{'s' if settings.workers > 1 else ''}"
    return (f"tl serve: {checked.task} model {settings.model_dir} on {checked.runtime} at "
            f"{scheme}://{host}:{settings.port} | {auth} | batching up to {settings.max_batch_size} texts, "
            f"{settings.max_wait_ms:g} ms wait, queue {settings.max_queue} texts | {workers}")


def serve(settings: ServeSettings, *, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
          echo: Callable[[str, bool], None]) -> None:
    """Check, print the start-up line, and serve until SIGTERM/SIGINT (returns after a graceful
    shutdown); ``echo(line, to_stderr)`` prints."""
    checked = preflight(settings, ssl_certfile, ssl_keyfile)
    echo(startup_line(settings, checked, bool(ssl_certfile)), False)
    if not checked.authenticated and not is_loopback(settings.host):
        echo(f"Warning: serving on {settings.host} without an API key: anyone who can reach this port can use "
             f"the model; set {API_KEY_ENV} or --api-key-file", True)
    options = {"host": settings.host, "port": settings.port, "log_level": settings.log_level,
               "timeout_graceful_shutdown": settings.graceful_timeout_s, "ssl_certfile": ssl_certfile,
               "ssl_keyfile": ssl_keyfile, "lifespan": "on"}
    if settings.workers > 1:
        _serve_workers(settings, options)
    else:
        _serve_one(settings, options)


def _serve_one(settings: ServeSettings, options: dict) -> None:
    import uvicorn

    from tl.serve.app import create_app

    server: uvicorn.Server | None = None
    failure: list[str] = []

    def on_failure(message: str) -> None:
        failure.append(message)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_failure=on_failure)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    with _signals_end_quietly():
        server.run()
    if failure:
        raise TLError(f"the model failed to load: {failure[0]}")
    if not server.started:
        raise TLError(f"the server did not start on {settings.host}:{settings.port}; see the log above")


def _serve_workers(settings: ServeSettings, options: dict) -> None:
    import uvicorn

    own_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics_dir = tempfile.mkdtemp(prefix="tl-serve-metrics-") if own_dir else os.environ["PROMETHEUS_MULTIPROC_DIR"]
    saved = {k: os.environ.get(k) for k in (SETTINGS_ENV, "PROMETHEUS_MULTIPROC_DIR")}
    os.environ[SETTINGS_ENV] = settings.to_json()  # the workers' settings: the key file's path, never the key
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run("tl.serve.app:create_app_from_env", factory=True, workers=settings.workers, **options)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@contextlib.contextmanager
def _signals_end_quietly():
    """uvicorn re-raises the SIGTERM/SIGINT that stopped it once it has shut down gracefully; with
    these handlers in place that ends ``serve`` normally (exit code 0) rather than killing the process."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
