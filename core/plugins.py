"""Plugin manager and the registry of backends, tasks, datasets and model aliases.

Built-ins register exactly like third-party plugins: through entry points of group ``tl``.
A plugin that fails to import is recorded (and shown by ``tl plugins``) instead of breaking the CLI.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field
from typing import Any

import pluggy

from tl import hookspecs
from tl.errors import PluginError, UsageError

ENTRY_POINT_GROUP = "tl"
AUTOLOAD_ENV = "TL_DISABLE_PLUGIN_AUTOLOAD"

KINDS = ("backend", "task", "dataset", "model")


@dataclass
class PluginFailure:
    name: str
    distribution: str
    error: str


@dataclass
class Registry:
    """Everything the loaded plugins registered, keyed by kind then name."""

    items: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: {} for k in KINDS})
    providers: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    conflicts: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, kind: str, obj: Any, provider: str) -> None:
        name = getattr(obj, "name", "")
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {provider!r} registered a {kind} without a name")
        if name in self.items[kind]:
            first = self.providers[(kind, name)]
            message = f"{kind} {name!r} is registered twice: by {first} and by {provider}; uninstall one of them"
            self.conflicts[(kind, name)] = message
            self.failures.append(PluginFailure(provider, provider, message))
            return
        self.items[kind][name] = obj
        self.providers[(kind, name)] = provider

    def get(self, kind: str, name: str) -> Any:
        if (kind, name) in self.conflicts:
            raise PluginError(self.conflicts[(kind, name)])
        try:
            return self.items[kind][name]
        except KeyError:
            known = ", ".join(sorted(self.items[kind])) or "none"
            hint = self._failure_hint()
            raise UsageError(f"unknown {kind} {name!r}; known {kind}s: {known}.{hint}") from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.items[kind])

    def _failure_hint(self) -> str:
        if not self.failures:
            return ""
        names = ", ".join(f.name for f in self.failures)
        return f" (plugins that failed to load: {names}; see `tl plugins`)"


class _Manager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__("tl")
        self.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.plugin_dists: dict[str, str] = {}


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


def build_registry(pm: _Manager) -> Registry:
    """Call every registration hook, recording which plugin provided what."""
    registry = Registry(failures=list(pm.failures))
    hooks = {
        "backend": pm.hook.tl_register_backends,
        "task": pm.hook.tl_register_tasks,
        "dataset": pm.hook.tl_register_datasets,
        "model": pm.hook.tl_register_models,
    }
    for kind, hook in hooks.items():
        for impl in hook.get_hookimpls():
            plugin_name = impl.plugin_name
            provider = pm.plugin_dists.get(plugin_name, plugin_name)

            def register(obj: Any, _kind: str = kind, _provider: str = provider) -> None:
                registry.add(_kind, obj, _provider)

            try:
                impl.function(**{a: register for a in impl.argnames})
            except PluginError as exc:
                registry.failures.append(PluginFailure(plugin_name, provider, str(exc)))
            except Exception as exc:
                registry.failures.append(
                    PluginFailure(plugin_name, provider, f"{type(exc).__name__}: {exc}".strip())
                )
    return registry
