"""``tl serve``: a saved or exported model behind an HTTP JSON API (FastAPI on uvicorn), with
dynamic micro-batching, limits, API keys and Prometheus metrics. Importing it imports no web stack."""
