"""The one whole-number test behind every option that counts something (threads, batches, seeds...)."""

from __future__ import annotations


def is_whole_number(value: object, *, minimum: int | None = None, maximum: int | None = None) -> bool:
    """Whether ``value`` is an ``int`` (never a ``bool``, which Python counts as one) in
    ``[minimum, maximum]``; each bound is left open when None. Each caller words its own error,
    so the messages stay specific to the option."""
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
