"""Process-group facts from the launcher's environment (torchrun sets RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE). The core only reads them; each backend joins the group with its own engine."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_size: int = 1

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
    return World(rank=num("RANK", 0), size=size, local_size=num("LOCAL_WORLD_SIZE", size))
