"""Named choices shared by validation, click options and messages: one definition each.

A choice is a ``str`` enum, so configs keep plain strings (``config.precision == "int8"``) while
``click.Choice``, the error text and the checks all read the same members.
"""

from __future__ import annotations

from enum import Enum

from .errors import ConfigError


class Choice(str, Enum):
    """Base of the toolkit's choices: ``values()`` for option lists, ``check()`` for validation."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The accepted spellings, in declaration order."""
        return tuple(str(m.value) for m in cls)

    @classmethod
    def check(cls, value: object, what: str) -> str:
        """``value`` as a plain string, or a :class:`ConfigError` naming ``what`` and the choices."""
        if value not in cls.values():
            raise ConfigError(f"{what} must be one of {', '.join(cls.values())}, got {value!r}")
        return str(value)


class Precision(Choice):
    """Numeric precision of an exported graph."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class OutputFormat(Choice):
    """How a report is rendered."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


class RowFormat(Choice):
    """How ``nin-infer`` writes one row per image to a file (``--output``), streamed as the run goes."""

    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"
