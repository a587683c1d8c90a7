"""Deprecated: moved to ``tl.data.batching``; this name keeps working for plugins written before 0.2."""

import warnings

from tl.data.batching import *  # noqa: F403

warnings.warn("tl.batching is deprecated; import from tl.data.batching", DeprecationWarning, stacklevel=2)
