"""Entry point ``tl = ner``: registers the ``ner`` task."""

from __future__ import annotations

from tl import hookimpl


@hookimpl
def tl_register_tasks(register):
    from tl_ner.task import NERTask

    register(NERTask())
