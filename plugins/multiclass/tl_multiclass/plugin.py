"""Entry point ``tl = multiclass``: registers the ``classify`` task."""

from __future__ import annotations

from tl import hookimpl


@hookimpl
def tl_register_tasks(register):
    from tl_multiclass.task import ClassifyTask

    register(ClassifyTask())
