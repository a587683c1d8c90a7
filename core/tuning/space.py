"""Search spaces: ``--param NAME=SPACE`` parsed and checked up front, and each trial's values suggested.

SPACE is one of ``loguniform(low,high)``, ``uniform(low,high)``, ``int(low,high[,step])`` and
``choice(a,b,...)``; NAME a run option (``lr``, ``epochs``, ``batch_size`` or ``batch-size``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tl.errors import UsageError
from tl.training.config import RunConfig, validate

#: What can be searched: RunConfig field -> the type of its values.
SEARCHABLE: dict[str, type] = {
    "lr": float,
    "epochs": int,
    "batch_size": int,
    "weight_decay": float,
    "warmup_ratio": float,
    "strategy": str,
    "truncation": str,
    "max_length": int,
    "layer_lr_decay": float,
    "lora_rank": int,
    "lora_alpha": float,
    "class_weights": str,
    "min_steps": int,
}

KINDS = ("loguniform", "uniform", "int", "choice")

_SPEC = re.compile(r"^\s*([A-Za-z][\w-]*)\s*=\s*([A-Za-z]+)\s*\((.*)\)\s*$")
EXAMPLE = "lr=loguniform(1e-5,3e-4), epochs=int(1,4) or strategy=choice(finetune,freeze)"


@dataclass(frozen=True)
class Param:
    """One searched run option: its RunConfig field name, kind of space and the space's arguments
    (low, high[, step] for ranges; the values for choice)."""

    name: str
    kind: str
    args: tuple[Any, ...]
    spec: str = ""

    @property
    def label(self) -> str:
        """The name as the user wrote it (``batch-size`` or ``batch_size``), for messages."""
        return self.spec.split("=", 1)[0].strip() or self.name

    def candidates(self) -> tuple[Any, ...]:
        """The values to check a space by: its ends, or every choice."""
        return self.args if self.kind == "choice" else self.args[:2]

    def suggest(self, trial: Any) -> Any:
        """This trial's value (``trial``: an ``optuna.Trial``)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.args))
        if self.kind == "int":
            low, high, *step = self.args
            return trial.suggest_int(self.name, low, high, step=step[0] if step else 1)
        low, high = self.args
        return trial.suggest_float(self.name, low, high, log=self.kind == "loguniform")


def parse_param(text: str) -> Param:
    """One ``--param`` value, checked on its own (the values' meaning: ``check_values``)."""
    match = _SPEC.match(text)
    if not match:
        raise UsageError(f"--param {text!r}: expected NAME=SPACE, e.g. {EXAMPLE}")
    raw_name, kind, inner = match.groups()
    name = raw_name.replace("-", "_")
    if name not in SEARCHABLE:
        raise UsageError(f"--param {raw_name}: cannot be searched; searchable: {', '.join(SEARCHABLE)}")
    where = f"--param {raw_name}"
    if kind not in KINDS:
        raise UsageError(f"{where}: unknown space {kind!r}; use loguniform(low,high), uniform(low,high), "
                         "int(low,high[,step]) or choice(a,b,...)")
    field_type = SEARCHABLE[name]
    raw = [a.strip().strip("'\"") for a in inner.split(",")] if inner.strip() else []
    if any(not a for a in raw):
        raise UsageError(f"{where}: empty value in {kind}({inner})")
    if kind == "choice":
        if not raw:
            raise UsageError(f"{where}: choice needs at least one value")
        values = tuple(_value(a, field_type, where) for a in raw)
        if len(set(values)) != len(values):
            raise UsageError(f"{where}: choice lists a value twice")
        return Param(name, kind, values, text.strip())
    if field_type is str:
        raise UsageError(f"{where}: takes choice(a,b,...), not {kind}(...)")
    if kind == "int" and field_type is not int:
        raise UsageError(f"{where}: takes loguniform(low,high), uniform(low,high) or choice(...), not int(...)")
    if kind != "int" and field_type is int:
        raise UsageError(f"{where}: takes int(low,high[,step]) or choice(...), not {kind}(...)")
    expected = "2 or 3 integers (low, high[, step])" if kind == "int" else "2 numbers (low, high)"
    if len(raw) not in ((2, 3) if kind == "int" else (2,)):
        raise UsageError(f"{where}: {kind} takes {expected}, got {len(raw)}")
    args = tuple(_value(a, field_type, where) for a in raw)
    low, high = args[:2]
    if low >= high:
        raise UsageError(f"{where}: low {raw[0]} must be below high {raw[1]}")
    if kind == "loguniform" and low <= 0:
        raise UsageError(f"{where}: loguniform needs low > 0, got {raw[0]}")
    if kind == "int" and len(args) == 3 and (args[2] < 1 or (high - low) % args[2]):
        raise UsageError(f"{where}: step {raw[2]} must be >= 1 and divide high - low ({high - low})")
    return Param(name, kind, args, text.strip())


def _value(text: str, field_type: type, where: str) -> Any:
    if field_type is str:
        return text
    try:
        return int(text) if field_type is int else float(text)
    except ValueError:
        kind = "an integer" if field_type is int else "a number"
        raise UsageError(f"{where}: {text!r} is not {kind}") from None


def parse_params(texts: Sequence[str]) -> list[Param]:
    """Every ``--param``, each name once."""
    params, seen = [], set()
    for text in texts:
        param = parse_param(text)
        if param.name in seen:
            raise UsageError(f"--param {param.label}: given twice")
        seen.add(param.name)
        params.append(param)
    return params


def check_values(params: Sequence[Param], fixed: dict[str, Any]) -> None:
    """Each param's candidate values are valid run options (``validate``'s own checks), and no
    param is also fixed by its option (``fixed``: the options given, None for not given)."""
    for param in params:
        where = f"--param {param.label}"
        if fixed.get(param.name) is not None:
            raise UsageError(f"{where}: also fixed by --{param.name.replace('_', '-')}; search it or fix it")
        for value in param.candidates():
            try:
                validate(RunConfig(**{param.name: value}))
            except UsageError as exc:
                raise UsageError(f"{where}: {exc}") from None


def describe(values: dict[str, Any]) -> str:
    """``lr=1.2e-04 epochs=2``: a trial's values in one short line."""
    return " ".join(f"{k}={_short(v)}" for k, v in values.items())


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
