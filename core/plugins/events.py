"""The event hooks (``tl_on_*``) and ``tl_register_commands``, called so that a plugin's exception
never takes down the CLI or a training run.

Each implementation runs guarded (``tl.plugins.guard``): when one raises, the others still run and
tl prints one warning line naming the plugin, its distribution and the hook (once per plugin and
hook in a process), then goes on. ``--strict-plugins`` (``tl --strict-plugins run ...``) or
``TL_STRICT_PLUGINS=1`` makes plugin failures fatal instead: a ``PluginError`` (exit 1) that says
which plugin failed where; that also covers plugins that fail to load or to register (see
``raise_if_strict``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tl.errors import PluginError
from tl.plugins.guard import guarded_hooks

STRICT_ENV = "TL_STRICT_PLUGINS"
STRICT_FLAG = "--strict-plugins"
EVENT_HOOKS = ("tl_on_run_start", "tl_on_step_end", "tl_on_epoch_end", "tl_on_evaluate", "tl_on_checkpoint_saved",
               "tl_on_run_end", "tl_register_commands")


def strict_plugins() -> bool:
    """True when plugin failures are fatal (``--strict-plugins`` sets the variable for the process)."""
    return os.environ.get(STRICT_ENV, "").lower() in ("1", "true", "yes")


def call_hook(pm: Any, hook_name: str, *, warn: Callable[[str], None] | None = None, **kwargs: Any) -> list[Any]:
    """Call the event hook ``hook_name`` with ``kwargs``; the results of the implementations that did
    not fail. A failure is a warning through ``warn`` (default: a line on stderr), or with
    ``strict_plugins()`` a ``PluginError`` once every implementation has run."""
    failures: list[tuple[str, BaseException]] = []

    def guard_for(impl: Any) -> tuple[Callable[[BaseException], None], None]:
        return (lambda exc, name=impl.plugin_name: failures.append((name, exc))), None

    with guarded_hooks(pm, (hook_name,), guard_for):
        results = getattr(pm.hook, hook_name)(**kwargs)
    for plugin_name, exc in failures:
        _report(pm, hook_name, plugin_name, exc, warn)
    return results


def _report(pm: Any, hook_name: str, plugin_name: str, exc: BaseException,
            warn: Callable[[str], None] | None) -> None:
    provider = getattr(pm, "plugin_dists", {}).get(plugin_name, plugin_name)
    error = " ".join(f"{type(exc).__name__}: {exc}".split())
    where = f"plugin {plugin_name!r} ({provider}) failed in {hook_name}: {error}"
    if strict_plugins():
        raise PluginError(f"{where} (plugin errors are fatal with {STRICT_FLAG} / {STRICT_ENV}=1)")
    reported = pm.__dict__.setdefault("reported_failures", set())  # once per plugin and hook (_Manager has it)
    if (plugin_name, hook_name) in reported:
        return
    reported.add((plugin_name, hook_name))
    message = f"{where}; ignored, tl goes on ({STRICT_FLAG} makes plugin errors fatal)"
    if warn is not None:
        warn(message)
    else:
        print(f"tl: warning: {message}", file=sys.stderr, flush=True)


def raise_if_strict(failures: Sequence[Any]) -> None:
    """With ``strict_plugins()``: a ``PluginError`` for the first plugin that failed to load or to
    register (``PluginFailure`` entries)."""
    if failures and strict_plugins():
        more = f" (and {len(failures) - 1} more; see `tl plugins`)" if len(failures) > 1 else ""
        raise PluginError(f"{failures[0].describe()}{more} (plugin errors are fatal with {STRICT_FLAG} / "
                          f"{STRICT_ENV}=1)")
