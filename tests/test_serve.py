"""``tl serve`` against the real server: ``tl serve`` subprocesses on free ports, spoken to over HTTP
with httpx. Three servers start together (each start imports torch): the default one, one with an
API key and small limits, and one with a tiny queue and a long batching window (a pair-task model
when the tl-pair plugin is installed) for overload and SIGTERM."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tl.serve.batcher import Batcher
from tl.serve.limits import ApiError, Inputs

from tinybert import synthetic_rows

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn", "prometheus_client", "httpx", "torch")),
    reason="tl serve needs the [serve] extra, httpx and torch")

KEY = "test-key-Zq8"
READY_TIMEOUT_S = 180  # torch import on a busy machine
SMALL = {"max_texts": 4, "max_chars": 50, "max_body_bytes": 2000}
#: The overload/SIGTERM server: batches wait this long for a full batch of 64, so texts pile up in its
#: queue of 8 (more: 503) and requests are still in flight a while after they are sent.
SLOW_WAIT_MS = 600
SLOW_QUEUE = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    """The environment of the subprocesses: no API key, no metrics directory, plugins on (pair, onnx)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("TL_API_KEY", "PROMETHEUS_MULTIPROC_DIR", "TL_DISABLE_PLUGIN_AUTOLOAD")}


class Server:
    """A ``tl serve`` subprocess; ``url`` waits until /readyz answers 200."""

    def __init__(self, model_dir: Path, log: Path, *args: str, env: dict[str, str] | None = None):
        self.port = _free_port()
        self.log = log
        with open(log, "wb") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tl", "serve", "--model", str(model_dir), "--port", str(self.port),
                 "--precision", "fp32", *args],
                stdout=out, stderr=subprocess.STDOUT, env={**_env(), **(env or {})})
        self._ready = False
        #: While the model loads: (/healthz status, /v1/predict status, its error code, its Retry-After).
        self.while_loading: tuple | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        if not self._ready:
            self._ready = self._poll(lambda readyz: readyz == 200)
        return self.base

    def watch_loading(self) -> None:
        """Wait until the server listens (its model still loading) and note what it answers then."""
        import httpx

        if self._poll(lambda readyz: True) and self.while_loading is None:
            health = httpx.get(f"{self.base}/healthz", timeout=5)
            early = httpx.post(f"{self.base}/v1/predict", json={"text": "a"}, timeout=5)
            self.while_loading = (health.status_code, early.status_code, early.json()["error"]["code"],
                                  early.headers.get("retry-after"))

    def _poll(self, done) -> bool:
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"tl serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if done(httpx.get(f"{self.base}/readyz", timeout=5).status_code):
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"tl serve not ready after {READY_TIMEOUT_S} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def model_dir(fast_run) -> Path:
    return fast_run("torch").run_dir / "model"


def _train_pair_model(tmp: Path, checkpoint: Path) -> Path | None:
    """A tiny NLI model (one epoch: what it predicts does not matter, only that serving matches it)."""
    from tl.plugins import build_registry, get_plugin_manager
    from tl.training.config import resolve
    from tl.training.pipeline import run

    pm = get_plugin_manager(autoload=True)
    registry = build_registry(pm)
    if "nli" not in registry.names("task"):
        return None
    words = "good bad fine the film plot was quite".split()
    rows = [(f"the {words[i % 8]} film", f"it was {words[(i * 3) % 8]}", ("entailment", "neutral", "contradiction")[i % 3])
            for i in range(48)]
    data = tmp / "nli.csv"
    data.write_text("premise,hypothesis,label\n" + "".join(f"{p},{h},{lab}\n" for p, h, lab in rows))
    options = {"task": "nli", "backend": "torch", "model": str(checkpoint), "dataset": str(data), "epochs": 1,
               "batch_size": 16, "max_length": 32, "precision": "fp32", "output": str(tmp / "run")}
    result = run(resolve(options, {}, dict(registry.get("task", "nli").defaults)), registry, pm, quiet=True)
    return result.run_dir / "model"


@pytest.fixture(scope="module")
def onnx_server(exported, tmp_path_factory):
    """A server on the session's ``tl export --format onnx`` of the model (conftest.exported), started
    when the other servers are idle."""
    if not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")):
        pytest.skip("onnx, onnxscript and onnxruntime are needed to export and serve ONNX")
    _, target = exported("torch")
    tmp = tmp_path_factory.mktemp("onnx-serve")
    server = Server(target, tmp / "onnx.log")  # no --runtime: an export runs on onnx
    yield server
    server.stop()
    server.wait()


@pytest.fixture(scope="module")
def servers(model_dir, tiny_checkpoint, tmp_path_factory):
    """The three servers, started at once so their start-ups overlap (and with training the pair model)."""
    tmp = tmp_path_factory.mktemp("serve")
    key_file = tmp / "key"
    key_file.write_text(KEY + "\n")
    started = {
        "default": Server(model_dir, tmp / "default.log", "--max-wait-ms", "10"),
        "auth": Server(model_dir, tmp / "auth.log", "--api-key-file", str(key_file), "--host", "127.0.0.1",
                       *[a for k, v in SMALL.items() for a in (f"--{k.replace('_', '-')}", str(v))]),
    }
    started["default"].watch_loading()  # seconds before its model is loaded (torch import)
    started["pair_model"] = pair_model = _train_pair_model(tmp, tiny_checkpoint)
    started["slow"] = Server(pair_model or model_dir, tmp / "slow.log", "--max-queue", str(SLOW_QUEUE),
                             "--max-texts", "8", "--max-batch-size", "64", "--max-wait-ms", str(SLOW_WAIT_MS))
    yield started
    running = [s for s in started.values() if isinstance(s, Server)]
    for server in running:
        server.stop()
    for server in running:
        server.wait()


@pytest.fixture(scope="module")
def reference(model_dir):
    """``tl predict --json``'s records, computed in-process (open_model + task.predict, as tl predict does)."""
    return _reference(model_dir)


def _reference(model_dir: Path, runtime: str = "torch"):
    from tl.models.saved import open_model

    model, meta, task = open_model(model_dir, runtime, precision="fp32")

    def records(texts: list[str], pairs: list[str] | None = None) -> list[dict]:
        extra = {} if pairs is None else {"pairs": pairs}
        preds = task.predict(model, texts, int(meta["max_length"]), 64, **extra)
        return task.prediction_records(preds, model.head.labels)

    return records


def assert_same(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert (g["text"], g["label"]) == (e["text"], e["label"])
        assert g["probability"] == pytest.approx(e["probability"], abs=1e-4)
        assert g["probabilities"].keys() == e["probabilities"].keys()
        for k in e["probabilities"]:
            assert g["probabilities"][k] == pytest.approx(e["probabilities"][k], abs=1e-4)


def _texts(n: int, seed: int) -> list[str]:
    return [t for t, _ in synthetic_rows(n, seed=seed)]


def _metric(url: str, name: str, headers: dict | None = None, **labels: str) -> float:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", headers=headers or {}).text
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


# predictions -----------------------------------------------------------------------------------------

def test_single_and_batched_requests_match_tl_predict(servers, reference):
    import httpx

    url = servers["default"].url
    texts = _texts(100, seed=3)
    one = httpx.post(f"{url}/v1/predict", json={"text": texts[0]})
    assert one.status_code == 200 and one.headers["content-type"] == "application/json"
    assert_same(one.json()["predictions"], reference(texts[:1]))
    few = httpx.post(f"{url}/v1/predict", json={"texts": texts[:5]})
    assert_same(few.json()["predictions"], reference(texts[:5]))
    # 100 texts: split over batches of 32 (--max-batch-size), answered in order
    many = httpx.post(f"{url}/v1/predict", json={"texts": texts}, timeout=30)
    assert_same(many.json()["predictions"], reference(texts))
    assert _metric(url, "tl_serve_batch_size_count") >= 6  # 1 + 1 + ceil(100/32)


def test_concurrent_clients_are_batched_together(servers, reference):
    import httpx

    url = servers["default"].url
    texts = _texts(64, seed=4)
    expected = reference(texts)
    counted = ("tl_serve_batch_size_count", "tl_serve_texts_total", "tl_serve_requests_total")

    def counts():
        return [_metric(url, name, endpoint="/v1/predict", status="200") if name.startswith("tl_serve_requests")
                else _metric(url, name) for name in counted] + [_metric(url, "tl_serve_batch_size_bucket", le="1.0")]

    before = counts()

    async def burst():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(client.post("/v1/predict", json={"texts": [t]}) for t in texts))

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * 64
    for answer, exp in zip(answers, expected, strict=True):
        assert_same(answer.json()["predictions"], [exp])
    batches, texts_done, requests, single = (after - b for after, b in zip(counts(), before, strict=True))
    assert batches < 64 and single < batches, (batches, single)  # some batch held texts of several requests
    assert (texts_done, requests) == (64, 64)
    assert _metric(url, "tl_serve_queue_depth") == 0


def test_model_info_openapi_and_probes(servers, model_dir):
    import httpx

    url = servers["default"].url
    info = httpx.get(f"{url}/v1/model").json()
    meta = json.loads((model_dir / "tl.json").read_text())
    assert info["task"] == "sentiment" and info["head"] == "sequence_classification"
    assert info["labels"] == list(meta["labels"]) and info["family"] == "bert"
    assert (info["runtime"], info["trained_backend"], info["precision"]) == ("torch", "torch", "fp32")
    assert info["max_length"] == meta["max_length"] == 32 and info["export"] is None
    assert info["base_model"] == meta["base_model"]
    assert info["versions"]["tl"] and info["versions"]["torch"]
    assert info["serving"]["max_batch_size"] == 32 and info["serving"]["max_wait_ms"] == 10
    assert info["serving"]["authentication"] is False
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}
    schema = httpx.get(f"{url}/openapi.json").json()
    post = schema["paths"]["/v1/predict"]["post"]
    assert set(post["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {"texts", "text", "pairs"}
    assert {"200", "400", "413", "422", "503"} <= set(post["responses"])
    assert "/v1/model" in schema["paths"] and "/healthz" in schema["paths"]
    assert httpx.get(f"{url}/docs").status_code == 200
    missing = httpx.get(f"{url}/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{url}/v1/predict").json()["error"]["code"] == "method_not_allowed"


def test_start_up_line(servers):
    assert servers["default"].url
    first = next(line for line in servers["default"].log.read_text().splitlines() if line.startswith("tl serve:"))
    assert first.startswith("tl serve: sentiment model ") and " on torch at http://127.0.0.1:" in first
    assert "unauthenticated" in first and "batching up to 32 texts, 10 ms wait, queue 1024 texts | 1 worker" in first
    # the model loads after the server listens: alive at once, not ready (503) until loaded and warmed up
    assert servers["default"].while_loading == (200, 503, "loading", "2")  # loading takes seconds (torch import)
    assert '"GET /readyz HTTP/1.1" 503' in servers["default"].log.read_text()


# bad input -----------------------------------------------------------------------------------------------

BAD = [
    (b'{"texts": ["a", ', 400, "invalid_json", "not valid JSON"),
    ("{\"text\": \"caf\u00e9\"}".encode("latin-1"), 400, "invalid_encoding", "not valid UTF-8 (byte 13)"),
    (b"", 400, "invalid_json", "empty"),
    (b"[" * 50_000, 400, "invalid_json", "nested too deeply"),
    (b'["a"]', 422, "invalid_request", "must be a JSON object"),
    (b'{"texts": "a"}', 422, "invalid_request", "texts must be an array, got a string"),
    (b'{"texts": ["a", 2]}', 422, "invalid_request", "texts[1] must be a string, got a number"),
    (b'{"text": null}', 422, "invalid_request", "text must be a string, got null"),
    (b'{"texts": []}', 422, "invalid_request", "texts is empty"),
    (b'{"texts": ["a"], "text": "b"}', 422, "invalid_request", "not texts and text"),
    (b'{"txt": "a"}', 422, "invalid_request", "unknown field 'txt'"),
    (b'{}', 422, "invalid_request", "no texts or text"),
    (b'{"pairs": [["a", "b"]]}', 422, "invalid_request", "reads single texts"),
    (b'{"texts": ["\\ud800"]}', 422, "invalid_request", "texts[0] holds an unpaired surrogate"),
]


@pytest.mark.parametrize("body,status,code,words", BAD, ids=[b[2] + ":" + b[3] for b in BAD])
def test_bad_requests_are_refused_with_one_line(servers, body, status, code, words):
    import httpx

    answer = httpx.post(f"{servers['default'].url}/v1/predict", content=body,
                        headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and words in error["message"] and "\n" not in error["message"]


def test_api_key_and_limits(servers):
    import httpx

    url = servers["auth"].url  # /readyz answers without a key
    auth = {"Authorization": f"Bearer {KEY}"}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}):
        for method, path in (("POST", "/v1/predict"), ("GET", "/v1/model"), ("GET", "/metrics"),
                             ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/nope")):
            answer = httpx.request(method, f"{url}{path}", json={"text": "a"}, headers=headers)
            assert answer.status_code == 401, (headers, path)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert answer.json()["error"]["code"] == "unauthorized" and KEY not in answer.text
    assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/readyz").status_code == 200
    ok = httpx.post(f"{url}/v1/predict", json={"texts": ["a fine film"]}, headers=auth)
    assert ok.status_code == 200 and ok.json()["predictions"][0]["text"] == "a fine film"
    info = httpx.get(f"{url}/v1/model", headers=auth).json()
    assert info["serving"]["authentication"] is True and info["serving"]["max_texts"] == 4
    schema = httpx.get(f"{url}/openapi.json", headers=auth).json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"

    def refused(status: int, code: str, words: str, **request) -> None:
        answer = httpx.post(f"{url}/v1/predict", headers={**auth, **request.pop("headers", {})}, **request)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["code"] == code and words in answer.json()["error"]["message"]

    refused(413, "too_many_texts", "texts has 5 items; the limit is 4 per request (--max-texts)", json={"texts": ["a"] * 5})
    refused(422, "text_too_long", "texts[1] has 51 characters; the limit is 50 (--max-chars)",
            json={"texts": ["a", "b" * 51]})
    refused(422, "text_too_long", "text has 60 characters", json={"text": "c" * 60})
    refused(413, "body_too_large", "2001 bytes, over the limit of 2000 bytes (--max-body-bytes)",
            content=b"x" * 2001)
    # a body without Content-Length (chunked) is cut off while it streams in
    refused(413, "body_too_large", "exceeds the limit of 2000 bytes",
            content=iter([b'{"texts": ["', b"y" * 1500, b"y" * 1500, b'"]}']))
    assert _metric(url, "tl_serve_requests_total", auth, endpoint="/v1/predict", status="401") == 4
    log = servers["auth"].log.read_text()
    assert KEY not in log and "API key required" in log.splitlines()[0]


def test_pair_model(servers):
    import httpx

    if servers["pair_model"] is None:
        pytest.skip("the tl-pair plugin is not installed")
    url = servers["slow"].url
    pairs = [["the film was long", "it was good"], ["a plot", "it was bad"], ["the cast", "it was fine"]]
    answer = httpx.post(f"{url}/v1/predict", json={"pairs": pairs}, timeout=30)
    assert answer.status_code == 200, answer.text
    expected = _reference(servers["pair_model"])([a for a, _ in pairs], [b for _, b in pairs])
    assert_same(answer.json()["predictions"], expected)
    assert httpx.get(f"{url}/v1/model").json()["task"] == "nli"
    for body, words in (({"texts": ["a"]}, "classifies text pairs: send \"pairs\""),
                        ({"pairs": [["a", "b", "c"]]}, "pairs[0] must be an array of two strings"),
                        ({"pairs": [["a", 1]]}, "pairs[0][1] must be a string")):
        answer = httpx.post(f"{url}/v1/predict", json=body)
        assert answer.status_code == 422 and words in answer.json()["error"]["message"], answer.text


def test_overload_answers_503_with_retry_after(servers):
    import httpx

    url = servers["slow"].url
    field = "pairs" if servers["pair_model"] else "texts"
    one = [["a film", "it was good"]] if servers["pair_model"] else ["a film"]

    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=32)) as client:
            return await asyncio.gather(*(client.post("/v1/predict", json={field: one}) for _ in range(24)))

    answers = asyncio.run(burst())  # the client timeout bounds the wait: nothing hangs
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) == {200, 503} and statuses.count(200) >= SLOW_QUEUE, statuses
    for a in answers:
        if a.status_code == 503:
            assert a.headers["retry-after"] == "1" and a.json()["error"]["code"] == "overloaded"
            assert "--max-queue" in a.json()["error"]["message"]
    assert httpx.post(f"{url}/v1/predict", json={field: one * 8}, timeout=30).status_code == 200
    assert httpx.post(f"{url}/v1/predict", json={field: one * 9}).status_code == 413  # --max-texts 8


def test_sigterm_answers_accepted_requests_and_exits_0(servers):
    import httpx

    server = servers["slow"]
    url = server.url
    field = "pairs" if servers["pair_model"] else "texts"
    one = [["a film", "it was good"]] if servers["pair_model"] else ["a film"]
    answers: list = []

    def client() -> None:
        answers.append(httpx.post(f"{url}/v1/predict", json={field: one}, timeout=30))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while _metric(url, "tl_serve_queue_depth") < 6 and time.monotonic() < deadline:  # all six queued
        time.sleep(0.02)
    server.proc.send_signal(signal.SIGTERM)  # inside their batching window (--max-wait-ms)
    assert not answers, "the requests were answered before SIGTERM: nothing was in flight"
    for t in threads:
        t.join(30)
    assert [a.status_code for a in answers] == [200] * 6
    assert server.proc.wait(30) == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "Application shutdown complete" in log


def test_onnx_export_served_without_torch(onnx_server, reference):
    """An ONNX export on the onnx runtime answers like the torch model, and the server never loads torch."""
    import httpx

    server = onnx_server
    texts = _texts(40, seed=6)
    answer = httpx.post(f"{server.url}/v1/predict", json={"texts": texts})
    assert answer.status_code == 200, answer.text
    assert_same(answer.json()["predictions"], reference(texts))
    info = httpx.get(f"{server.url}/v1/model").json()
    assert (info["runtime"], info["trained_backend"], info["export"]["format"]) == ("onnx", "torch", "onnx")
    assert info["versions"]["onnxruntime"] and "torch" not in info["versions"]
    assert " on onnx at http://" in server.log.read_text()
    maps = Path(f"/proc/{server.proc.pid}/maps")
    if maps.exists():  # Linux: the libraries the server process has loaded
        loaded = maps.read_text()
        assert "onnxruntime" in loaded and "libtorch" not in loaded


# the command line and the batcher without a server ------------------------------------------------

def test_cli_errors_are_one_line(model_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tl.cli import cli

    monkeypatch.delenv("TL_API_KEY", raising=False)
    (tmp_path / "plain").mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for args, code, words in (
            (["--model", str(tmp_path / "missing")], 2, "model directory"),
            (["--model", str(tmp_path / "plain")], 2, "is not a model saved by tl"),
            (["--model", str(model_dir), "--runtime", "jax"], 2, "unknown backend 'jax'"),
            (["--model", str(model_dir), "--port", port], 2, f"cannot listen on 127.0.0.1:{port}"),
            (["--model", str(model_dir), "--api-key-file", str(tmp_path / "nokey")], 2, "--api-key-file"),
            (["--model", str(model_dir), "--max-texts", "10", "--max-queue", "5"], 2, "raise --max-queue"),
            (["--model", str(model_dir), "--ssl-certfile", str(tmp_path / "c.pem")], 2, "--ssl-keyfile"),
        ):
            out = CliRunner().invoke(cli, ["serve", *args, "--port", port])  # a busy port: nothing starts
            assert out.exit_code == code, (args, out.output)
            assert words in out.output and "Traceback" not in out.output, out.output
            assert len(out.output.strip().splitlines()) == 1, out.output


@pytest.mark.skipif(not importlib.util.find_spec("onnxruntime"), reason="needs onnxruntime")
def test_a_model_that_fails_to_load_ends_the_server_with_one_line(model_dir):
    """--runtime onnx on a directory that is no ONNX export: the server starts (the warning for an
    open non-loopback server included), the load fails in the inference thread, exit 1 and one line."""
    out = subprocess.run([sys.executable, "-m", "tl", "serve", "--model", str(model_dir), "--runtime", "onnx",
                          "--host", "0.0.0.0", "--port", str(_free_port())],
                         capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.startswith("tl serve: sentiment model ") and " on onnx at http://0.0.0.0:" in out.stdout
    assert "Warning: serving on 0.0.0.0 without an API key" in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: the model failed to load: ")
    assert "Traceback" not in out.stderr


def test_help_imports_no_web_stack_or_framework():
    code = ("import sys; from click.testing import CliRunner; from tl.cli import cli; "
            "a = CliRunner().invoke(cli, ['--help']); b = CliRunner().invoke(cli, ['serve', '--help']); "
            "assert a.exit_code == b.exit_code == 0 and 'serve' in a.output and '0.0.0.0' in b.output; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'prometheus_client', 'torch', "
            "'tensorflow', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


class _Counts:
    """Stands in for Metrics in the batcher tests."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.queue_depth = self

    def set(self, value: float) -> None:
        pass

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batches.append(size)


def test_batcher_splits_keeps_order_and_survives_a_failing_batch():
    import logging

    metrics = _Counts()

    def predict(texts, pairs):
        if "boom" in texts:
            raise ValueError("broken\ninput")
        return [{"text": t, "n": len(t)} for t in texts]

    batcher = Batcher(lambda: predict, max_batch_size=3, max_wait_s=0.05, max_queue=20, metrics=metrics,
                      log=logging.getLogger("test"))
    batcher.start()

    async def scenario():
        while batcher.state != "ready":
            await asyncio.sleep(0.01)
        texts = [f"t{i}" * (i + 1) for i in range(7)]
        big, small = await asyncio.gather(batcher.submit(Inputs(texts)), batcher.submit(Inputs(["x"])))
        assert [r["text"] for r in big] == texts and small == [{"text": "x", "n": 1}]
        with pytest.raises(ApiError) as failed:
            await batcher.submit(Inputs(["ok", "boom"]))
        assert failed.value.status == 500 and failed.value.message.endswith("broken input")
        assert await batcher.submit(Inputs(["after"])) == [{"text": "after", "n": 5}]
        with pytest.raises(ApiError) as full:
            await batcher.submit(Inputs(["q"] * 21))
        assert full.value.status == 503 and full.value.headers == {"Retry-After": "1"}

    asyncio.run(scenario())
    batcher.stop()
    batcher.join(5)
    assert batcher.state == "stopped"
    assert max(metrics.batches) == 3 and sum(metrics.batches) == 7 + 1 + 1  # the failed batch is not counted
