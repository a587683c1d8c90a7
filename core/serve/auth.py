"""API keys: where the key comes from, and whether a request carries it (``Authorization: Bearer``)."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from tl.errors import UsageError
from tl.serve.settings import API_KEY_ENV

#: Endpoints answered without a key: orchestrators probe them.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def load_api_key(api_key_file: str | None) -> str | None:
    """The API key: the first line of ``api_key_file``, else ``$TL_API_KEY``, else None (no auth)."""
    if api_key_file:
        path = Path(api_key_file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"--api-key-file {path} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--api-key-file {path} cannot be read: {exc.__class__.__name__}") from None
        key = text.strip()
        if not key or "\n" in key:
            raise UsageError(f"--api-key-file {path} must hold the key alone on one line")
        return key
    key = os.environ.get(API_KEY_ENV, "").strip()
    return key or None


def authorized(header: bytes | None, key: str) -> bool:
    """Whether a raw ``Authorization`` header value carries ``key`` as a bearer token (constant time)."""
    if not header:
        return False
    scheme, _, token = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(token.strip(), key.encode("utf-8"))
