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
            return World(rank=index, size=count, local_size=host_tasks(tf_config)[1], mode="multi-worker")
    return World()


def host_tasks(tf_config: str) -> tuple[int, int]:
    """(this task's position among the TF_CONFIG cluster's tasks on its host, how many tasks that
    host runs), chief first, then workers; hosts compared by the name in TF_CONFIG. (0, 1) when
    unreadable."""
    try:
        spec = json.loads(tf_config)
        cluster = spec.get("cluster", {})
        tasks = [("chief", i, a) for i, a in enumerate(cluster.get("chief", []))]
        tasks += [("worker", i, a) for i, a in enumerate(cluster.get("worker", []))]
        me = (spec["task"]["type"], int(spec["task"].get("index", 0)))
        address = next(a for t, i, a in tasks if (t, i) == me)
    except (ValueError, TypeError, KeyError, AttributeError, StopIteration):
        return 0, 1
    host = str(address).rsplit(":", 1)[0]
    same_host = [(t, i) for t, i, a in tasks if str(a).rsplit(":", 1)[0] == host]
    return same_host.index(me), len(same_host)
