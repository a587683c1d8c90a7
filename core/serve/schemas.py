"""The JSON shapes of the API, declared for the OpenAPI schema (``/openapi.json``, ``/docs``).
Requests are checked by ``tl.serve.limits`` (not by these models), so refusals keep their codes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PredictRequest(BaseModel):
    """Exactly one of ``texts``, ``text`` or (pair tasks) ``pairs``."""

    texts: list[str] | None = Field(None, min_length=1, description="Texts to predict, answered in this order.")
    text: str | None = Field(None, description="One text (the answer still holds a list of one prediction).")
    pairs: list[list[str]] | None = Field(
        None, min_length=1, description="For pair tasks (NLI, paraphrase): [[first, second], ...].")

    model_config = {"json_schema_extra": {"examples": [{"texts": ["a gripping, beautifully acted film"]}]}}


class PredictResponse(BaseModel):
    predictions: list[dict[str, Any]] = Field(
        description="One record per input, in input order, as `tl predict --json` prints them: "
                    "classification {text, label, probability, probabilities}; NER {text, entities}.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_json, too_many_texts, overloaded.")
    message: str = Field(description="One line naming the field or the limit.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Status(BaseModel):
    status: str


class ModelInfo(BaseModel):
    task: str | None
    head: str
    labels: list[str]
    family: str | None
    base_model: str | None
    trained_backend: str | None
    runtime: str
    precision: str
    max_length: int
    export: dict[str, Any] | None
    versions: dict[str, str]
    serving: dict[str, Any]


def predict_request_schema() -> dict[str, Any]:
    """The request body of ``/v1/predict`` for ``openapi_extra`` (the model has no nested models)."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()}}}}


#: The error answers each endpoint may give, for the OpenAPI ``responses``.
ERRORS = {status: {"model": ErrorResponse, "description": description} for status, description in (
    (400, "Body is not UTF-8 or not JSON"),
    (401, "Missing or wrong API key (Authorization: Bearer)"),
    (413, "Body larger than --max-body-bytes, or more texts than --max-texts"),
    (422, "Wrong shape, or a text longer than --max-chars"),
    (500, "The model failed on this request"),
    (503, "Loading, overloaded (queue full) or shutting down; see Retry-After"),
)}
