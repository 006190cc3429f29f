"""What every nin-edge command shares: one-line errors, list options and output formats.

Imported only by the command-line modules, never by the runtime library itself.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from ..core.errors import NinEdgeError


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn toolkit and OS errors into ``error: ...`` on stderr and exit status 1, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NinEdgeError as exc:
            message = " ".join(str(exc).split())
        except OSError as exc:
            message = f"{exc.strerror or exc}" + (f": '{exc.filename}'" if exc.filename else "")
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        click.echo(f"error: {message}", err=True)
        sys.exit(1)

    return wrapper


class CommaList(click.ParamType):
    """A comma-separated list, each item converted by ``item`` (``int``, ``str``...)."""

    name = "list"

    def __init__(self, item: Callable[[str], Any] = str, positive: bool = False) -> None:
        self.item = item
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple:
        if isinstance(value, tuple):
            return value
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        if not parts:
            self.fail(f"expected a comma-separated list, got {value!r}", param, ctx)
        try:
            items = tuple(self.item(p) for p in parts)
        except ValueError:
            self.fail(f"expected a comma-separated list of {self.item.__name__} values, got {value!r}", param, ctx)
        if self.positive and any(i <= 0 for i in items):
            self.fail(f"every value must be positive, got {value!r}", param, ctx)
        return items


def format_option(*formats: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--format`` option with the given choices (first is the default)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(formats),
        default=formats[0],
        show_default=True,
        help="How to print the result.",
    )
