"""``tl serve``: a saved or exported model behind an HTTP JSON API."""

from __future__ import annotations

import click

from tl.cli.predict import runtime_options
from tl.serve import settings as defaults


@click.command()
@click.option("--model", "-m", "model_dir", required=True,
              help="A model directory saved by tl (runs/<id>/model) or written by tl export --format onnx.")
@click.option("--runtime", help="Backend to run on: torch, tensorflow or onnx (default: onnx for an ONNX export, "
                                 "else the backend that trained the model, if installed).")
@click.option("--host", help="Interface to listen on. Default: 127.0.0.1 without an API key (local only), "
                             "0.0.0.0 (every interface) with one.")
@click.option("--port", type=click.IntRange(1, 65535), default=defaults.DEFAULT_PORT, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes, each with its own copy of the model (and --threads default of cores/N).")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=defaults.MAX_BATCH_SIZE, show_default=True,
              help="Texts per model call; concurrent requests are batched together.")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=defaults.MAX_WAIT_MS, show_default=True,
              help="How long a batch waits for more texts after its first (0: it takes what queued while "
                   "the model was busy; raise it on GPUs for fuller batches).")
@click.option("--max-queue", type=click.IntRange(min=1), default=defaults.MAX_QUEUE, show_default=True,
              help="Texts waiting for the model; beyond it requests get 503 with Retry-After.")
@click.option("--max-texts", type=click.IntRange(min=1), default=defaults.MAX_TEXTS, show_default=True,
              help="Texts per request (more: 413).")
@click.option("--max-chars", type=click.IntRange(min=1), default=defaults.MAX_CHARS, show_default=True,
              help="Characters per text (longer: 422).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=defaults.MAX_BODY_BYTES, show_default=True,
              help="Request body size (larger: 413).")
@click.option("--api-key-file", type=click.Path(dir_okay=False),
              help=f"File holding the API key clients send as Authorization: Bearer <key> (default: "
                   f"${defaults.API_KEY_ENV}; neither: no authentication).")
@click.option("--ssl-certfile", type=click.Path(dir_okay=False), help="TLS certificate (PEM), with --ssl-keyfile.")
@click.option("--ssl-keyfile", type=click.Path(dir_okay=False), help="TLS private key (PEM).")
@click.option("--graceful-timeout", type=click.FloatRange(min=0), default=defaults.GRACEFUL_TIMEOUT_S,
              show_default=True, help="Seconds to finish accepted requests after SIGTERM.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
@runtime_options
def serve(model_dir: str, runtime: str | None, host: str | None, port: int, workers: int, max_batch_size: int,
          max_wait_ms: float, max_queue: int, max_texts: int, max_chars: int, max_body_bytes: int,
          api_key_file: str | None, ssl_certfile: str | None, ssl_keyfile: str | None, graceful_timeout: float,
          log_level: str, precision: str, threads: int | None, base: str | None = None) -> None:
    """Serve a model over HTTP: POST /v1/predict {"texts": [...]} answers {"predictions": [...]}
    (as tl predict --json), with micro-batching across requests, limits, /healthz, /readyz,
    /v1/model, /metrics (Prometheus) and /docs (OpenAPI).

    \b
    An API key ($TL_API_KEY or --api-key-file) protects every endpoint but /healthz and /readyz.
    SIGTERM finishes the accepted requests, then exits with status 0.
    """
    from tl.serve.auth import load_api_key
    from tl.serve.runner import default_host
    from tl.serve.runner import serve as run_server
    from tl.serve.settings import ServeSettings
    from tl.training.hardware import cpu_info

    if host is None:
        host = default_host(load_api_key(api_key_file) is not None)
    if threads is None and workers > 1:  # the workers share the cores
        threads = max(1, cpu_info().usable_cores // workers)
    settings = ServeSettings(
        model_dir=model_dir, runtime=runtime, precision=precision, threads=threads, host=host, port=port,
        workers=workers, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
        max_texts=max_texts, max_chars=max_chars, max_body_bytes=max_body_bytes, api_key_file=api_key_file,
        graceful_timeout_s=graceful_timeout, log_level=log_level, base=base)
    run_server(settings, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
               echo=lambda line, err: click.echo(line, err=err))
