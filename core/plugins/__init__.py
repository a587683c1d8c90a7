"""The plugin system: hook specifications, the pluggy plugin manager, the registry of backends,
tasks, datasets and model aliases, and the built-in registrations (ordinary plugins).

The names below are the stable import path (``from tl.plugins import get_plugin_manager``).
"""

from __future__ import annotations

from tl.plugins.manager import AUTOLOAD_ENV, ENTRY_POINT_GROUP, get_plugin_manager
from tl.plugins.registry import PluginFailure, Registry, build_registry

__all__ = ["AUTOLOAD_ENV", "ENTRY_POINT_GROUP", "PluginFailure", "Registry", "build_registry", "get_plugin_manager"]
