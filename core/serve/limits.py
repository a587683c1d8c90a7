"""Reading and checking a ``/v1/predict`` body by hand (not through FastAPI's validation), so every
refusal has its own status and a one-line message naming the field or the limit:
400 unreadable (not UTF-8, not JSON), 413 too large (bytes, texts), 422 wrong shape or text too long."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """An HTTP error answered as ``{"error": {"code": code, "message": message}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass(frozen=True)
class Inputs:
    """What a request asks to predict: texts, and for a pair task the second text of each."""

    texts: list[str]
    pairs: list[str] | None = None


@dataclass(frozen=True)
class Limits:
    max_texts: int
    max_chars: int
    max_body_bytes: int


async def read_body(content_length: str | None, stream: AsyncIterator[bytes], limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes: from its
    Content-Length before reading, or while reading a stream that has none (or lies)."""
    too_large = "request body {} the limit of {} bytes (--max-body-bytes)"
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise ApiError(400, "invalid_request", f"Content-Length {content_length[:40]!r} is not a number") from None
        if declared > limit:
            raise ApiError(413, "body_too_large", too_large.format(f"has {declared} bytes, over", limit))
    size = 0
    chunks = []
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", too_large.format("exceeds", limit))
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(body: bytes) -> Any:
    """The JSON value of a UTF-8 body (400 otherwise)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_encoding", f"request body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise ApiError(400, "invalid_json", "request body is empty; send a JSON object such as "
                                            '{"texts": ["..."]}')
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc.msg} "
                                            f"(line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "request body is nested too deeply to parse") from None


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_request", message)


def _check_text(value: Any, where: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{where} must be a string, got {_type(value)}")
    if len(value) > limits.max_chars:
        raise ApiError(422, "text_too_long", f"{where} has {len(value)} characters; the limit is "
                                             f"{limits.max_chars} (--max-chars)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _invalid(f"{where} holds an unpaired surrogate (character {exc.start}); send valid Unicode") from None
    return value


def _type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _check_count(values: list, field: str, limits: Limits) -> None:
    if not values:
        raise _invalid(f"{field} is empty; send at least one")
    if len(values) > limits.max_texts:
        raise ApiError(413, "too_many_texts", f"{field} has {len(values)} items; the limit is "
                                              f"{limits.max_texts} per request (--max-texts)")


def parse_inputs(payload: Any, limits: Limits, pair_task: bool, task_name: str) -> Inputs:
    """A request's ``Inputs``: exactly one of ``texts`` (a list of strings), ``text`` (one string)
    or, for a pair task, ``pairs`` (a list of [first, second])."""
    fields = "pairs" if pair_task else "texts or text"
    if not isinstance(payload, dict):
        raise _invalid(f"request body must be a JSON object with {fields}, got {_type(payload)}")
    unknown = sorted(set(payload) - {"texts", "text", "pairs"})
    if unknown:
        raise _invalid(f"unknown field {unknown[0]!r}; send {fields}")
    given = [k for k in ("texts", "text", "pairs") if k in payload]
    if len(given) > 1:
        raise _invalid(f"send one of texts, text or pairs, not {' and '.join(given)}")
    if not given:
        raise _invalid(f"request body has no {fields}")
    field = given[0]
    if pair_task and field != "pairs":
        raise _invalid(f"this model's task {task_name!r} classifies text pairs: send "
                       '"pairs": [[first, second], ...] instead of ' + field)
    if not pair_task and field == "pairs":
        raise _invalid(f"this model's task {task_name!r} reads single texts: send texts, not pairs")
    value = payload[field]
    if field == "text":
        return Inputs([_check_text(value, "text", limits)])
    if not isinstance(value, list):
        raise _invalid(f"{field} must be an array, got {_type(value)}")
    _check_count(value, field, limits)
    if field == "texts":
        return Inputs([_check_text(v, f"texts[{i}]", limits) for i, v in enumerate(value)])
    firsts, seconds = [], []
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _invalid(f"pairs[{i}] must be an array of two strings [first, second], got {_type(pair)}"
                           + (f" of {len(pair)}" if isinstance(pair, list) else ""))
        firsts.append(_check_text(pair[0], f"pairs[{i}][0]", limits))
        seconds.append(_check_text(pair[1], f"pairs[{i}][1]", limits))
    return Inputs(firsts, seconds)
