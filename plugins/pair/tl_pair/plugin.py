"""Entry point ``tl = pair``: registers the ``nli`` and ``paraphrase`` tasks."""

from __future__ import annotations

from tl import hookimpl


@hookimpl
def tl_register_tasks(register):
    from tl_pair.task import NLITask, ParaphraseTask

    register(NLITask())
    register(ParaphraseTask())
