"""Helpers shared by CLI commands."""

from __future__ import annotations

import click

from tl.plugins import Registry, build_registry, get_plugin_manager


def load_registry(*, warn: bool = True) -> tuple[Registry, object]:
    """The plugin manager's registry. Its warnings (a plugin that failed to load or raised in a
    registration hook, a plugin overriding a built-in name) go to stderr, each once per command, or
    with ``--strict-plugins`` a failure is an error; ``tl plugins`` lists them itself (``warn=False``)."""
    pm = get_plugin_manager()
    registry = build_registry(pm)
    if warn:
        from tl.plugins.events import raise_if_strict

        raise_if_strict(registry.failures)
        shown = _shown()
        for failure in registry.failures:  # each once per command; `tl plugins` lists them all
            message = f"{failure.describe()}; ignored, tl goes on without it (`tl plugins` lists plugin failures)"
            if message not in shown:
                shown.add(message)
                click.echo(f"Warning: {message}", err=True)
        for message in registry.warnings:
            if message not in shown:
                shown.add(message)
                click.echo(f"Warning: {message}", err=True)
    return registry, pm


def _shown() -> set[str]:
    """The warnings this command already printed (kept on the root click context)."""
    context = click.get_current_context(silent=True)
    return context.find_root().meta.setdefault("tl.shown_warnings", set()) if context else set()
