"""The pluggy plugin manager: hook specifications, entry points of group ``tl``, the autoload switch.

Built-ins register exactly like third-party plugins: through entry points of group ``tl``; the
entry points of the ``tl`` distribution itself are the built-ins (``builtin_plugins``), whose names a
third-party plugin may override (``tl.plugins.registry``).
A plugin that fails to import is recorded (and shown by ``tl plugins``) instead of breaking the CLI.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

import pluggy

from tl.errors import PluginError
from tl.plugins import hookspecs
from tl.plugins.registry import PluginFailure

ENTRY_POINT_GROUP = "tl"
AUTOLOAD_ENV = "TL_DISABLE_PLUGIN_AUTOLOAD"
#: The distribution whose own entry points are the built-in plugins.
BUILTIN_DISTRIBUTION = "tl"


class _Manager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__("tl")
        self.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        #: plugin name -> "distribution version" (the plugin's own name for ``extra_plugins``).
        self.plugin_dists: dict[str, str] = {}
        #: names of the plugins the ``tl`` distribution itself provides.
        self.builtin_plugins: set[str] = set()
        #: (plugin, hook) pairs whose failure was already reported (``tl.plugins.events``).
        self.reported_failures: set[tuple[str, str]] = set()


def get_plugin_manager(*, autoload: bool | None = None, extra_plugins: tuple[Any, ...] = ()) -> _Manager:
    """Create a plugin manager with entry-point plugins (unless disabled) and ``extra_plugins``.

    ``TL_DISABLE_PLUGIN_AUTOLOAD=1`` turns entry-point loading off (tests use it to stay hermetic).
    """
    pm = _Manager()
    if autoload is None:
        autoload = os.environ.get(AUTOLOAD_ENV, "") not in ("1", "true", "yes")
    if autoload:
        _load_entry_points(pm)
    for plugin in extra_plugins:
        pm.register(plugin)
        pm.plugin_dists[pm.get_name(plugin)] = getattr(plugin, "__name__", type(plugin).__name__)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"invalid plugin: {exc}") from None
    return pm


def _load_entry_points(pm: _Manager) -> None:
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown distribution"
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            pm.check_pending()
        except Exception as exc:  # a broken plugin must not break the CLI
            if pm.get_plugin(ep.name) is not None:
                pm.unregister(name=ep.name)
            pm.failures.append(PluginFailure(ep.name, dist, f"{type(exc).__name__}: {exc}".strip()))
            continue
        pm.plugin_dists[ep.name] = dist
        if ep.dist is not None and _normalize(ep.dist.name) == BUILTIN_DISTRIBUTION:
            pm.builtin_plugins.add(ep.name)


def _normalize(dist_name: str) -> str:
    return dist_name.lower().replace("_", "-").replace(".", "-")
