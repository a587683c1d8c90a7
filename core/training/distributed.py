"""A process's place in a multi-process run. The core reads it through ``Backend.process_group``;
each backend joins the group (and launches it, ``Backend.launch``) with its own engine."""

from __future__ import annotations

import os
from dataclasses import dataclass

#: ``World.mode`` of a group described by WORLD_SIZE/RANK (torchrun and most launchers); backends
#: with other launchers name their own mode, and list the modes they train in in
#: ``Capabilities.distributed``.
ENV_GROUP = "ddp"


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_size: int = 1
    #: "none" for one process; otherwise how the group was described (``ENV_GROUP``, or a backend's own)
    mode: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        """The group of WORLD_SIZE processes that RANK and LOCAL_WORLD_SIZE describe, or one process."""
        size = env_int("WORLD_SIZE", 1)
        if size > 1:
            return cls(rank=env_int("RANK", 0), size=size, local_size=env_int("LOCAL_WORLD_SIZE", size),
                       mode=ENV_GROUP)
        return cls()


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default
