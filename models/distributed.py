"""Where this process stands in a ``torchrun`` job; shared by training and evaluation."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> Dist:
    """The torchrun environment variables, or a single process."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    return Dist()
