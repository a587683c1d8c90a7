"""The FastAPI app: ``/v1/predict``, ``/v1/model``, ``/healthz``, ``/readyz``, ``/metrics`` and the
OpenAPI schema. The model loads in the inference thread started by the lifespan, so ``/healthz``
answers at once and ``/readyz`` turns 200 after the warm-up batch. The web stack is imported when
an app is created. No ``from __future__ import annotations`` here: FastAPI reads the endpoints'
annotations (``Request``, imported inside ``create_app``) as objects."""

import asyncio
import contextlib
import logging
import platform
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tl.serve.auth import OPEN_PATHS, load_api_key
from tl.serve.batcher import READY, Batcher, PredictFn
from tl.serve.limits import ApiError, Limits, decode_json, parse_inputs, read_body
from tl.serve.settings import ServeSettings

#: uvicorn's own logger: tl's lines appear in its format, at its level.
LOG = "uvicorn.error"


@dataclass
class ServerState:
    """What the endpoints share within one app (one per worker process)."""

    settings: ServeSettings
    batcher: Batcher
    info: dict[str, Any] | None = None  # /v1/model, once loaded
    draining: bool = False  # SIGTERM received: /readyz answers 503 while requests finish


def create_app_from_env():
    """The app of one ``tl serve --workers N`` worker: settings from ``$TL_SERVE_SETTINGS``."""
    return create_app(ServeSettings.from_env())


def create_app(settings: ServeSettings, *, on_failure: Callable[[str], None] | None = None):
    """A FastAPI app serving ``settings.model_dir``; ``on_failure(message)`` is called (from the
    inference thread) if the model fails to load."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    from tl import __version__
    from tl.models.hf_checkpoint import read_meta
    from tl.models.saved import task_of
    from tl.plugins import build_registry, get_plugin_manager
    from tl.serve.gate import Gate
    from tl.serve.metrics import Metrics
    from tl.serve.schemas import ERRORS, ModelInfo, PredictResponse, Status, predict_request_schema

    log = logging.getLogger(LOG)
    key = load_api_key(settings.api_key_file)
    registry = build_registry(get_plugin_manager())
    meta = read_meta(settings.model_dir)
    task = task_of(meta, registry)
    task_name = meta.get("task") or task.name or "classification"
    pair_task = bool(getattr(task, "requires_text_pair", False))
    limits = Limits(settings.max_texts, settings.max_chars, settings.max_body_bytes)
    metrics = Metrics()
    state: ServerState

    def load() -> PredictFn:
        predict, state.info = load_model(settings, registry, key is not None, log)
        return predict

    batcher = Batcher(load, max_batch_size=settings.max_batch_size, max_wait_s=settings.max_wait_ms / 1000,
                      max_queue=settings.max_queue, metrics=metrics, log=log, on_failure=on_failure)
    state = ServerState(settings, batcher)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        with _on_stop_signal(lambda: setattr(state, "draining", True)):
            try:
                yield
            finally:
                # uvicorn has answered every accepted request (or passed --graceful-timeout): stop
                state.draining = True
                batcher.stop()
                await asyncio.to_thread(batcher.join, settings.graceful_timeout_s)
                metrics.close()

    app = FastAPI(title="tl serve", version=__version__, lifespan=lifespan,
                  description=f"Predictions of the tl model {meta.get('task') or ''} "
                              f"({', '.join(meta.get('labels', []))}) over HTTP JSON.")
    app.state.tl = state
    app.add_middleware(Gate, key=key, metrics=metrics)

    def error(exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {404: f"no endpoint {request.url.path}; see /docs",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return error(ApiError(exc.status_code, codes.get(exc.status_code, "http_error"), message,
                              dict(exc.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return error(ApiError(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}"))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.error("tl serve: %s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        return error(ApiError(500, "internal_error", f"internal error ({exc.__class__.__name__}); see the server log"))

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS,
              openapi_extra=predict_request_schema(), summary="Predict labels (or entities) for texts")
    async def predict(request: Request):
        """Send exactly one of `texts` (a list), `text` (one string) or, for pair tasks, `pairs`.
        Predictions come back in input order, as `tl predict --json` prints them."""
        if batcher.state != READY:
            raise batcher.unavailable()
        try:
            body = await read_body(request.headers.get("content-length"), request.stream(), limits.max_body_bytes)
        except ClientDisconnect:  # nobody reads the answer; counted, not logged as a server error
            raise ApiError(400, "client_disconnected", "the client closed the connection while sending the body") from None
        inputs = parse_inputs(decode_json(body), limits, pair_task, task_name)
        return JSONResponse({"predictions": await batcher.submit(inputs)})

    @app.get("/v1/model", response_model=ModelInfo, responses={503: ERRORS[503], 401: ERRORS[401]},
             summary="The served model: task, labels, runtime, versions, limits")
    async def model_info():
        if batcher.state != READY or state.info is None:
            raise batcher.unavailable()
        return JSONResponse(state.info)

    @app.get("/healthz", response_model=Status, responses={503: ERRORS[503]}, summary="Liveness")
    async def healthz():
        if batcher.error is not None:
            raise batcher.unavailable()
        return {"status": "ok"}

    @app.get("/readyz", response_model=Status, responses={503: ERRORS[503]},
             summary="Readiness: 200 once the model is loaded and warmed up")
    async def readyz():
        if state.draining:
            raise ApiError(503, "shutting_down", "the server is shutting down", {"Retry-After": "1"})
        if batcher.state != READY:
            raise batcher.unavailable()
        return {"status": "ready"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus():
        data, content_type = metrics.exposition()
        return Response(data, media_type=content_type)

    if key is not None:
        _require_bearer_in_schema(app)
    return app


def load_model(settings: ServeSettings, registry, authenticated: bool, log: logging.Logger) -> tuple[PredictFn, dict]:
    """Open the model (in the inference thread), run a warm-up batch, and return its predict
    function and the ``/v1/model`` facts."""
    from tl import __version__
    from tl.models.saved import open_model

    start = time.perf_counter()
    model, meta, task = open_model(settings.model_dir, settings.runtime, precision=settings.precision,
                                   threads=settings.threads, registry=registry, base=settings.base)
    max_length = int(meta.get("max_length", 128))
    labels = model.head.labels
    batch_size = settings.max_batch_size

    def predict(texts: list[str], pairs: list[str] | None) -> list[dict[str, Any]]:
        if pairs is None:  # tasks written before pairs existed take no pairs argument
            preds = task.predict(model, texts, max_length, batch_size)
        else:
            preds = task.predict(model, texts, max_length, batch_size, pairs=pairs)
        return task.prediction_records(preds, labels)

    loaded = time.perf_counter()
    warm = ["tl serve warm-up"] * settings.max_batch_size
    predict(warm, list(warm) if getattr(task, "requires_text_pair", False) else None)
    backend = registry.get("backend", model.backend)
    info = {
        "task": meta.get("task") or task.name or None, "head": model.head.kind, "labels": list(labels),
        "family": meta.get("family"), "base_model": meta.get("base_model"), "trained_backend": meta.get("backend"),
        "runtime": model.backend, "precision": model.precision, "max_length": max_length,
        "export": meta.get("export"),
        "versions": {"tl": __version__, "python": platform.python_version(), **backend.versions()},
        "serving": {"max_batch_size": settings.max_batch_size, "max_wait_ms": settings.max_wait_ms,
                    "max_queue": settings.max_queue, "max_texts": settings.max_texts,
                    "max_chars": settings.max_chars, "max_body_bytes": settings.max_body_bytes,
                    "workers": settings.workers, "authentication": authenticated},
    }
    log.info("tl serve: ready: %s model on %s (%s), loaded in %.1f s, warm-up batch of %d in %.2f s",
             info["task"], model.backend, model.precision, loaded - start, len(warm), time.perf_counter() - loaded)
    return predict, info


@contextlib.contextmanager
def _on_stop_signal(callback: Callable[[], None]):
    """Call ``callback`` on SIGTERM/SIGINT before the server's own handler (uvicorn's, which starts
    the graceful shutdown), so ``/readyz`` says 503 while the accepted requests finish. Only in the
    main thread (where uvicorn runs its loop); elsewhere (test clients) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(sig, frame):
        callback()
        previous[sig](sig, frame)

    installed = {sig: signal.signal(sig, handler) for sig in previous if callable(previous[sig])}
    try:
        yield
    finally:
        for sig, old in installed.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, old)


def _require_bearer_in_schema(app) -> None:
    """Declare the bearer API key in the OpenAPI schema, on every endpoint but the probes."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "TL_API_KEY or --api-key-file"}}
            for path, operations in schema.get("paths", {}).items():
                if path not in OPEN_PATHS:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
