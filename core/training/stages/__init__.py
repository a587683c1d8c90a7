"""The stages of ``tl run``, in order, each a function of the run's ``RunContext``:

- ``resolve``: task, backend, process group, checkpoint, data splits, labels, tokenizer, run directory;
- ``encode``: tokenize both splits (through the encode cache);
- ``plan``: probe the hardware, plan precision/batch/threads, write config.json, build the model;
- ``train``: the backend's training loop, with progress, history, evaluation per epoch, checkpoints;
- ``finish``: save the model, write metrics.json and plots, call the run-event hooks.
"""

from __future__ import annotations

from tl.training.stages.encode import encode
from tl.training.stages.finish import finish
from tl.training.stages.plan import plan
from tl.training.stages.resolve import resolve
from tl.training.stages.train import train

STAGES = (resolve, encode, plan, train, finish)

__all__ = ["STAGES", "encode", "finish", "plan", "resolve", "train"]
