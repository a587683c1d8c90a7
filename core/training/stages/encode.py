"""Stage 2: token ids of both splits, read from the encode cache when an earlier run made them."""

from __future__ import annotations

import time

from tl import __version__
from tl.data.encode_cache import cached, warn_damaged
from tl.training.context import RunContext


def encode(ctx: RunContext) -> None:
    limit = ctx.max_tokens
    if limit is not None and ctx.config.max_length > limit:  # longer rows would index past the position table
        ctx.say(f"tl: --max-length {ctx.config.max_length} is longer than {ctx.config.model} reads; using {limit} "
                "(its position embeddings, special tokens included)")
        ctx.config.max_length = limit
    task, tokenizer, labels, max_length = ctx.task, ctx.tokenizer, ctx.labels, ctx.config.max_length
    t0 = time.perf_counter()
    task_id = f"{task.name}:{type(task).__module__}.{type(task).__qualname__}:{__version__}"
    hits = []
    for split in ("train", "eval"):
        examples = getattr(ctx.splits, split)
        encoded, hit = cached(task_id, tokenizer, examples, max_length, labels,
                              lambda examples=examples: task.encode(tokenizer, examples, max_length, labels),
                              warn=warn_damaged if ctx.world.is_main else None)  # one line, not one per process
        setattr(ctx, f"{split}_enc", encoded)
        hits.append(hit)
    ctx.tokenize_s = time.perf_counter() - t0
    ctx.tokenize_cached = all(hits)
