"""What a tuning is (``DIR/tune.json``): the recipe and options fixed across trials, the searched
params, the number of trials, the objective and the pruner; the result is added at the end."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tl.errors import UsageError
from tl.training.rundir import write_json_atomic

TUNE_FILE = "tune.json"
#: Validation share of the training data when --validation-split is not given.
DEFAULT_VALIDATION_SPLIT = 0.2
DEFAULT_TRIALS = 20
PRUNERS = ("median", "none")


@dataclass
class TuneSettings:
    #: the recipe's values (read once: the tuning does not change when the file does) and its path
    recipe: dict[str, Any]
    recipe_path: str | None
    #: the run options given on the command line (fixed across trials), without --validation-split
    options: dict[str, Any]
    #: the ``--param`` specs as given
    params: list[str]
    trials: int
    metric: str
    direction: str
    pruner: str
    validation_split: float
    seed: int
    #: trials train on a fixed random subset of this many training rows (validation rows held out of it);
    #: the final run trains on all of them (None: trials use all of them too)
    trial_train_samples: int | None = None
    #: results, added as the tuning goes: best trial, final run, wall time of all sessions
    result: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("result"))
        return data


def save(directory: Path, settings: TuneSettings) -> None:
    write_json_atomic(Path(directory) / TUNE_FILE, settings.to_json())


def load(directory: Path) -> TuneSettings:
    """The tuning in ``directory``; a one-line UsageError when it holds none."""
    path = Path(directory) / TUNE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{directory} is not a tl tune directory (no {TUNE_FILE})") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    names = [f for f in TuneSettings.__dataclass_fields__ if f != "result"]
    optional = {"trial_train_samples"}  # added later: older tune.json files lack it
    try:
        settings = TuneSettings(**{k: data.pop(k) for k in names if k not in optional or k in data})
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a tl tune record (missing {exc})") from None
    settings.result = data
    return settings
