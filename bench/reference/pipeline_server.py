"""Reference: the server people write by hand — FastAPI on uvicorn wrapping a transformers ``pipeline``.

    python bench/reference/pipeline_server.py --model runs/<id>/model --port 8001 [--threads N]
                                              [--precision fp32|bf16]

``POST /v1/predict`` takes ``{"texts": [...]}`` (the request ``tl serve`` takes) and answers
``{"predictions": [{"label": ..., "probabilities": {...}}, ...]}``; ``GET /healthz``. A plain ``def``
endpoint, so FastAPI runs each request's pipeline call in its thread pool, concurrently; texts are
truncated to 128 tokens as tl does. Nothing else: no batching across requests, no queue, no limits.
"""

from __future__ import annotations

import argparse
import contextlib

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline


class PredictRequest(BaseModel):
    texts: list[str]


def make_app(model: str, precision: str) -> FastAPI:
    classify = pipeline("text-classification", model=model, device="cpu", top_k=None)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/v1/predict")
    def predict(request: PredictRequest) -> dict:
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext())
        with autocast:
            outputs = classify(request.texts, truncation=True, max_length=128)
        predictions = []
        for scores in outputs:
            best = max(scores, key=lambda s: s["score"])
            predictions.append({"label": best["label"], "probabilities": {s["label"]: s["score"] for s in scores}})
        return {"predictions": predictions}

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    uvicorn.run(make_app(a.model, a.precision), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
