"""What one ``tl serve`` process (or each of its workers) is told: the model, the runtime, the
batching and the limits. A frozen value, passed to worker processes as JSON in ``SETTINGS_ENV``
(the API key file's path travels, never the key)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from tl.errors import UsageError

#: The environment variable that carries the settings (JSON) to ``create_app_from_env`` in each worker.
SETTINGS_ENV = "TL_SERVE_SETTINGS"
#: The API key, when no ``--api-key-file`` is given.
API_KEY_ENV = "TL_API_KEY"

#: Defaults, shown by ``tl serve --help``.
DEFAULT_PORT = 8000
MAX_BATCH_SIZE = 32
#: No wait by default: batches form from the texts that queued while the model was busy (measured on
#: MiniLM, 2 CPU cores: the same requests/s at 32 concurrent clients as a 5 ms wait, and 20-25% lower
#: latency for a lone client); a wait pays where a bigger batch costs little more (GPUs).
MAX_WAIT_MS = 0.0
MAX_QUEUE = 1024
MAX_TEXTS = 256
MAX_CHARS = 10_000
MAX_BODY_BYTES = 1_048_576
GRACEFUL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ServeSettings:
    """One server's configuration; every limit counts texts (a pair is one text)."""

    model_dir: str
    runtime: str | None = None
    precision: str = "auto"
    threads: int | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    #: Texts per model call; a request's texts may be split across calls (order is kept).
    max_batch_size: int = MAX_BATCH_SIZE
    #: How long the batcher waits after the first queued text for more, before running a partial batch.
    max_wait_ms: float = MAX_WAIT_MS
    #: Texts waiting for the model; a request that does not fit is refused (503 + Retry-After).
    max_queue: int = MAX_QUEUE
    max_texts: int = MAX_TEXTS
    max_chars: int = MAX_CHARS
    max_body_bytes: int = MAX_BODY_BYTES
    #: A file holding the API key (else ``TL_API_KEY``; neither: no authentication).
    api_key_file: str | None = None
    graceful_timeout_s: float = GRACEFUL_TIMEOUT_S
    log_level: str = "info"
    #: ``--base DIR``: the base checkpoint of a model saved as LoRA adapters alone (tl.models.base_model).
    base: str | None = None

    def __post_init__(self) -> None:
        if self.max_texts > self.max_queue:
            raise UsageError(f"--max-texts ({self.max_texts}) is larger than --max-queue ({self.max_queue}): "
                             "a request that large could never be queued; raise --max-queue")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in names})

    @classmethod
    def from_env(cls) -> ServeSettings:
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise UsageError(f"{SETTINGS_ENV} is not set: start the server with `tl serve`")
        return cls.from_json(text)
