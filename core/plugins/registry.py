"""The registry of backends, tasks, datasets and model aliases that the loaded plugins registered.

``build_registry`` calls the registration hooks through pluggy (``pm.hook.tl_register_tasks(register=...)``
and so on), so pluggy's call order (``tryfirst``/``trylast``, last registered first) and hook wrappers
apply. For the duration of those calls every implementation of a registration hook is guarded
(``_guarded``; the plugin's own function is put back afterwards): the guard hands each implementation a
``register`` of its own, which records the plugin (and so the distribution) that registered each object,
and turns an exception the implementation raises into a ``PluginFailure`` of that plugin instead of
aborting the hook call, so the other plugins' registrations still happen.

Names: a third-party plugin may register a name a built-in (the ``tl`` distribution's own entry
points) already has; it overrides the built-in, whatever the call order, and the registry keeps one
warning for it (``Registry.warnings``). Two third-party plugins (or two built-ins) registering the same
name is a conflict: using that name is an error naming both distributions.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tl.errors import BackendUnavailable, PluginError, UsageError
from tl.plugins.guard import guarded_hooks

if TYPE_CHECKING:
    from tl.interfaces import Backend

KINDS = ("backend", "task", "dataset", "model", "family")
#: The registration hook of each kind, in the order ``build_registry`` calls them.
REGISTRATION_HOOKS = {
    "backend": "tl_register_backends",
    "task": "tl_register_tasks",
    "dataset": "tl_register_datasets",
    "model": "tl_register_models",
    "family": "tl_register_families",
}
HOOK_KINDS = {hook: kind for kind, hook in REGISTRATION_HOOKS.items()}


@dataclass
class PluginFailure:
    name: str
    distribution: str
    error: str
    #: the hook that raised ("" : the plugin failed to load, or registered something invalid)
    hook: str = ""

    def describe(self) -> str:
        where = f"failed in {self.hook}" if self.hook else "failed"
        return f"plugin {self.name!r} ({self.distribution}) {where}: {self.error}"


@dataclass
class Registry:
    """Everything the loaded plugins registered, keyed by kind then name."""

    items: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: {} for k in KINDS})
    providers: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    conflicts: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (kind, name) -> the warning for a third-party registration that overrides a built-in one.
    overrides: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (kind, name) whose registered object comes from a built-in.
    builtins: set[tuple[str, str]] = field(default_factory=set)

    def add(self, kind: str, obj: Any, provider: str, *, builtin: bool = False) -> None:
        name = getattr(obj, "name", "")
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {provider!r} registered a {kind} without a name")
        key = (kind, name)
        if name in self.items[kind]:
            first = self.providers[key]
            first_builtin = key in self.builtins
            if first_builtin and not builtin:  # the third-party registration replaces the built-in
                self.overrides[key] = _override_message(key, provider, first)
                self.builtins.discard(key)
            elif builtin and not first_builtin:  # the third-party registration stays
                self.overrides[key] = _override_message(key, first, provider)
                return
            else:
                message = f"{kind} {name!r} is registered twice: by {first} and by {provider}; uninstall one of them"
                self.conflicts[key] = message
                self.failures.append(PluginFailure(provider, provider, message))
                return
        self.items[kind][name] = obj
        self.providers[key] = provider
        if builtin:
            self.builtins.add(key)

    @property
    def warnings(self) -> list[str]:
        """One line per built-in name a third-party plugin overrides (a name two third-party plugins
        register is a conflict instead, reported as such)."""
        return [message for key, message in self.overrides.items() if key not in self.conflicts]

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


def _override_message(key: tuple[str, str], provider: str, builtin_provider: str) -> str:
    kind, name = key
    return f"{kind} {name!r} from {provider} overrides the built-in one ({builtin_provider})"


class _Session:
    """One ``build_registry`` call: where guarded implementations register and report failures."""

    def __init__(self, pm: Any, registry: Registry) -> None:
        self.pm = pm
        self.registry = registry

    def provider(self, plugin_name: str) -> str:
        return getattr(self.pm, "plugin_dists", {}).get(plugin_name, plugin_name)

    def register_for(self, kind: str, plugin_name: str) -> Callable[[Any], None]:
        provider = self.provider(plugin_name)
        builtin = plugin_name in getattr(self.pm, "builtin_plugins", ())

        def register(obj: Any) -> None:
            self.registry.add(kind, obj, provider, builtin=builtin)

        return register

    def fail(self, plugin_name: str, exc: BaseException, hook: str = "") -> None:
        error = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}".strip()
        self.registry.failures.append(PluginFailure(plugin_name, self.provider(plugin_name), error, hook))


@contextlib.contextmanager
def _guarded(pm: Any, session: _Session) -> Iterator[None]:
    """Every implementation of a registration hook guarded for ``session`` (its own ``register``;
    an exception recorded as the plugin's failure), then restored."""

    def guard_for(impl: Any) -> tuple[Callable[[BaseException], None], Callable[[tuple, dict], tuple[tuple, dict]]]:
        kind = HOOK_KINDS[impl_hook[id(impl)]]
        plugin_name, argnames = impl.plugin_name, tuple(impl.argnames)

        def own_register(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            """pluggy passes ``argnames`` positionally and ``kwargnames`` by keyword: swap in this
            plugin's own ``register``."""
            if "register" in argnames or "register" in kwargs:
                register = session.register_for(kind, plugin_name)
                args = tuple(register if n == "register" else a for n, a in zip(argnames, args, strict=True))
                if "register" in kwargs:
                    kwargs = {**kwargs, "register": register}
            return args, kwargs

        return functools.partial(session.fail, plugin_name, hook=impl_hook[id(impl)]), own_register

    impl_hook = {id(impl): name for name in REGISTRATION_HOOKS.values()
                 for impl in getattr(getattr(pm.hook, name, None), "get_hookimpls", list)()}
    with guarded_hooks(pm, tuple(REGISTRATION_HOOKS.values()), guard_for):
        yield


def build_registry(pm: Any) -> Registry:
    """Call every registration hook through pluggy, recording which plugin provided what."""
    registry = Registry(failures=list(getattr(pm, "failures", [])))
    session = _Session(pm, registry)
    with _guarded(pm, session):
        for kind, hook_name in REGISTRATION_HOOKS.items():
            getattr(pm.hook, hook_name)(register=session.register_for(kind, "an unknown plugin"))
    return registry


def get_backend(registry: Registry, name: str) -> Backend:
    backend = registry.get("backend", name)
    missing = backend.missing_modules()
    if missing:
        raise BackendUnavailable(
            f"backend {name!r} needs {', '.join(missing)}, which is not installed: {backend.install_hint}"
        )
    return backend
