"""Helpers shared by CLI commands."""

from __future__ import annotations

import click

from tl.plugins import Registry, build_registry, get_plugin_manager


def load_registry(*, warn: bool = True) -> tuple[Registry, object]:
    """The plugin manager's registry. Its warnings (a plugin overriding a built-in name) go to stderr,
    each once per command; ``tl plugins`` lists them itself (``warn=False``)."""
    pm = get_plugin_manager()
    registry = build_registry(pm)
    if warn:
        context = click.get_current_context(silent=True)
        shown = context.find_root().meta.setdefault("tl.shown_warnings", set()) if context else set()
        for message in registry.warnings:
            if message not in shown:
                shown.add(message)
                click.echo(f"Warning: {message}", err=True)
    return registry, pm
