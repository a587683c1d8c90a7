"""The registry of backends, tasks, datasets and model aliases that the loaded plugins registered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tl.errors import BackendUnavailable, PluginError, UsageError

if TYPE_CHECKING:
    from tl.interfaces import Backend

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


def build_registry(pm: Any) -> Registry:
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


def get_backend(registry: Registry, name: str) -> Backend:
    backend = registry.get("backend", name)
    missing = backend.missing_modules()
    if missing:
        raise BackendUnavailable(
            f"backend {name!r} needs {', '.join(missing)}, which is not installed: {backend.install_hint}"
        )
    return backend
