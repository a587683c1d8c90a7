"""Deprecated: moved to ``tl.data.tokenization``; this name keeps working for plugins written before 0.2."""

import warnings

from tl.data.tokenization import *  # noqa: F403

warnings.warn("tl.tokenization is deprecated; import from tl.data.tokenization", DeprecationWarning, stacklevel=2)
