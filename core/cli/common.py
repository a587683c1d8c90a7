"""Helpers shared by CLI commands."""

from __future__ import annotations

import click

from tl.plugins import Registry, build_registry, get_plugin_manager


def load_registry() -> tuple[Registry, object]:
    pm = get_plugin_manager()
    return build_registry(pm), pm


def echo_err(message: str) -> None:
    click.echo(message, err=True)
