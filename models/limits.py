"""Size limits checked before memory is allocated, so an absurd option is a one-line error."""

from __future__ import annotations

import math

from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.numbers import is_whole_number

#: The largest float32 input batch the tools build on their own (parity checks, benchmarks).
#: NiN's activations are about six times its input, so this keeps a run within a few GiB.
MAX_INPUT_BYTES = 256 * 2**20
#: The largest seed the random generators (numpy, torch) accept.
MAX_SEED = 2**32 - 1


def check_input_budget(batch: int, channels: int, size: int, what: str) -> None:
    """Refuse a float32 batch of ``batch`` x ``channels`` x ``size`` x ``size`` over :data:`MAX_INPUT_BYTES`."""
    need = 4 * batch * channels * size * size
    if need > MAX_INPUT_BYTES:
        fits = max(1, MAX_INPUT_BYTES // (4 * channels * size * size))
        raise ConfigError(
            f"{what}: a batch of {batch} at {channels}x{size}x{size} needs {need / 2**20:,.0f} MiB for its input "
            f"alone, over the {MAX_INPUT_BYTES // 2**20} MiB limit; use at most {fits} at this size"
        )


def check_seed(seed: object) -> None:
    """Refuse a seed the random generators cannot take."""
    if not is_whole_number(seed, minimum=0, maximum=MAX_SEED):
        raise ConfigError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")


def check_input_size(size: int, channels: int, batch: int = 2) -> None:
    """Refuse an input side whose ``batch``-image float32 input would pass :data:`MAX_INPUT_BYTES`."""
    largest = math.isqrt(MAX_INPUT_BYTES // (4 * batch * channels))
    if size > largest:
        raise ConfigError(
            f"input size {size} is too large: a batch of {batch} at {channels}x{size}x{size} would pass the "
            f"{MAX_INPUT_BYTES // 2**20} MiB input limit; the largest is {largest}"
        )


def check_limit(limit: object, flag: str) -> None:
    """Refuse an image limit that is not a positive whole number (None means no limit)."""
    if limit is not None and not is_whole_number(limit, minimum=1):
        raise ConfigError(f"{flag} must be a positive number of images, got {limit!r}; leave it out to use them all")
