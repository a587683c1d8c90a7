"""Deprecated: moved to ``tl.models.inference, tl.models.saved``; this name keeps working for plugins written before 0.2."""

import warnings

from tl.models.inference import *  # noqa: F403
from tl.models.inference import Prediction, dataset_logits, encode, label_ids, per_text, predict  # noqa: F401
from tl.models.saved import load_saved, save_model, task_of  # noqa: F401

warnings.warn("tl.modelio is deprecated; import from tl.models.inference, tl.models.saved", DeprecationWarning, stacklevel=2)
