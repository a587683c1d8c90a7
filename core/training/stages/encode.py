"""Stage 2: token ids of both splits. A local data file goes through the encoded store (read in chunks,
encoded once, memory-mapped; its splits and label set are views of it: ``tl.data.streaming``); other
data is encoded in memory, read from the encode cache when an earlier run made it."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from tl import __version__
from tl.data.encode_cache import cached, warn_damaged
from tl.data.store import warn_damaged as warn_damaged_store
from tl.data.streaming import file_store, hub_dataset, hub_stores, select, writable_root
from tl.training.context import RunContext
from tl.training.hardware import peak_rss_mib


def encode(ctx: RunContext) -> None:
    limit, note = ctx.max_tokens, None
    if limit is not None and ctx.config.max_length > limit:  # longer rows would index past the position table
        note = (f"tl: --max-length {ctx.config.max_length} is longer than {ctx.config.model} reads; using {limit} "
                "(its position embeddings, special tokens included)")
        ctx.config.max_length = limit
    _encode(ctx)
    ctx.data_peak_rss_mib = peak_rss_mib()
    if note:  # after the data: a data error stays the only line
        ctx.say(note)


def _encode(ctx: RunContext) -> None:
    task, tokenizer, labels, max_length = ctx.task, ctx.tokenizer, ctx.labels, ctx.config.max_length
    t0 = time.perf_counter()
    task_id = f"{task.name}:{type(task).__module__}.{type(task).__qualname__}:{__version__}"
    if ctx.streamed:
        _streamed(ctx, task_id)
        ctx.tokenize_s = time.perf_counter() - t0
        return
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


def _streamed(ctx: RunContext, task_id: str) -> None:
    config = ctx.config
    if os.environ.get("TL_NO_ENCODE_CACHE"):  # a private store, removed when the run ends
        root = Path(tempfile.mkdtemp(prefix="tl-store-"))
        ctx.scratch.append(root)
    else:
        root = writable_root()
    columns = (config.text_column, config.label_column, config.text_pair_column)
    warn = warn_damaged_store if ctx.world.is_main else None
    args = (columns, ctx.task, task_id, ctx.tokenizer, config.max_length, root, ctx.say, warn)
    repo = hub_dataset(config.dataset, ctx.registry)
    presplit = ""
    if repo is not None:  # a hub dataset's published splits, memory-mapped by datasets, encoded into stores
        train, evaluation, eval_name = hub_stores(repo, *args)
        stores, presplit = [train], f"hub splits train / {eval_name}"
        if config.eval_dataset is None:
            stores.append(evaluation)
    else:
        stores = [file_store(Path(config.dataset).expanduser(), *args)]
    if config.eval_dataset is not None:
        stores.append(file_store(Path(config.eval_dataset).expanduser(), *args))
    data = select(config, ctx.task, stores[0][0], stores[1][0] if len(stores) > 1 else None, presplit)
    for store, hit in stores:
        ctx.say(f"tl: encoded store {store.path} ({store.texts:,} rows of {store.manifest.get('source')}"
                f"{', ' + store.manifest['split'] if 'split' in store.manifest else ''}): "
                f"{'reused' if hit else 'built'}")
    ctx.train_enc, ctx.eval_enc, ctx.labels, ctx.splits = data.train, data.eval, data.labels, data.splits
    ctx.tokenize_cached = all(hit for _, hit in stores)
