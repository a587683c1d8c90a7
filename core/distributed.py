"""Process-group facts from the launcher's environment (torchrun sets RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE). The core only reads them; each backend joins the group with its own engine."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from tl.errors import UsageError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_size: int = 1
    #: "none", "ddp" (torchrun's RANK/WORLD_SIZE) or "multi-worker" (TF_CONFIG for tf.distribute)
    mode: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env() -> World:
    def num(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            return default

    size = num("WORLD_SIZE", 1)
    if size > 1:
        return World(rank=num("RANK", 0), size=size, local_size=num("LOCAL_WORLD_SIZE", size), mode="ddp")
    tf_config = os.environ.get("TF_CONFIG")
    if tf_config:
        try:
            spec = json.loads(tf_config)
            workers = list(spec.get("cluster", {}).get("worker", []))
            task = spec.get("task", {})
            index = int(task.get("index", 0)) + (1 if spec.get("cluster", {}).get("chief") else 0)
            chief = len(spec.get("cluster", {}).get("chief", []))
            count = len(workers) + chief
            if task.get("type") == "chief":
                index = 0
        except (ValueError, TypeError, AttributeError) as exc:
            raise UsageError(f"TF_CONFIG is not valid JSON describing a cluster: {exc}") from None
        if count > 1:
            local = sum(1 for w in workers if str(w).split(":")[0] in ("localhost", "127.0.0.1"))
            return World(rank=index, size=count, local_size=max(1, local), mode="multi-worker")
    return World()
