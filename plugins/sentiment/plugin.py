"""Entry point ``tl = sentiment``."""

from __future__ import annotations

from tl import hookimpl


@hookimpl
def tl_register_tasks(register):
    from tl_sentiment.task import SentimentTask

    register(SentimentTask())
