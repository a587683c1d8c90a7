"""tl: framework-agnostic transfer learning.

Importing ``tl`` is cheap: it never imports torch, tensorflow, keras or transformers.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookspec = pluggy.HookspecMarker("tl")
hookimpl = pluggy.HookimplMarker("tl")

__all__ = ["__version__", "hookimpl", "hookspec"]
