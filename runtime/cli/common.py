"""What every nin-edge command shares: one-line errors, list options and output formats.

Imported only by the command-line modules, never by the runtime library itself.
"""

from __future__ import annotations

import functools
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..core.choices import Choice, OutputFormat
from ..core.errors import NinEdgeError


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks (temporary files) still run."""


def _raise_terminated(_signum: int, _frame: object) -> None:
    raise Terminated


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn toolkit and OS errors into ``error: ...`` on stderr and exit status 1, without a traceback.

    SIGINT exits with 130 and SIGTERM with 143, after the command's clean-up has run; a command that
    can go on later re-raises Ctrl-C as ``KeyboardInterrupt(how)``, and the line says how.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        main = threading.current_thread() is threading.main_thread()  # only it may set handlers
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if main else None
        try:
            return fn(*args, **kwargs)
        except NinEdgeError as exc:
            message = " ".join(str(exc).split())
        except OSError as exc:
            message = f"{exc.strerror or exc}" + (f": '{exc.filename}'" if exc.filename else "")
        except MemoryError:
            message = "out of memory; use smaller inputs or batches"
        except KeyboardInterrupt as exc:
            click.echo(f"interrupted; {exc}" if str(exc) else "interrupted", err=True)
            sys.exit(130)
        except Terminated:
            click.echo("terminated", err=True)
            sys.exit(143)
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
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


def format_option(*formats: OutputFormat) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--format`` option with the given :class:`OutputFormat` choices (first is the default)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice([str(f) for f in formats]),
        default=str(formats[0]),
        show_default=True,
        help="How to print the result.",
    )


def choice(choices: type[Choice]) -> click.Choice:
    """A ``click.Choice`` over a :class:`~nin_edge.runtime.core.choices.Choice` enum's values."""
    return click.Choice(choices.values())


PROVIDER_HELP = (
    "auto (TensorRT, then CUDA, then OpenVINO on CPUs with AMX or AVX-512 VNNI, else CPU); "
    "or cpu, cuda, tensorrt, openvino"
)


def provider_option(*, default: str = "auto", multiple: bool = False, help: str = PROVIDER_HELP) -> Callable:
    """``--provider``, the same flag with the same meaning in every command."""
    extra = "; repeat or comma-separate for several" if multiple else ""
    return click.option(
        "--provider",
        default=(default,) if multiple else default,
        multiple=multiple,
        show_default=True,
        help=help + extra + ".",
        callback=_split_names if multiple else None,
    )


def _split_names(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """``--provider a,b --provider c`` as ``(a, b, c)``; the names are parsed by the config's ``validate()``."""
    return tuple(p.strip() for item in value for p in item.split(",") if p.strip())


def fallback_option() -> Callable:
    """``--fallback``: take the next provider, with a warning, when the one asked for is missing."""
    return click.option(
        "--fallback", is_flag=True, help="Use the next provider (with a warning) when the one asked for is missing."
    )


def verify_key_option() -> Callable:
    """``--verify-key``: load a bundle folder only when it is signed with this key and unchanged."""
    return click.option(
        "--verify-key",
        type=click.Path(dir_okay=False),
        default=None,
        help="A PEM public key: refuse the bundle folder unless its model.sig is this key's and no file changed "
        "since signing (needs nin-edge[sign]).",
    )


def input_size_option(*, default: int | None, help: str = "Square input side in pixels.") -> Callable:
    """``--input-size`` (``--image-size`` still accepted for one release)."""

    def decorate(fn: Callable) -> Callable:
        fn = renamed_option("--image-size", "--input-size", "input_size", type=int)(fn)
        return click.option("--input-size", type=int, default=default, show_default=default is not None, help=help)(fn)

    return decorate


def renamed_option(old: str, new: str, param: str, *, type: Any = None, flag: bool = False) -> Callable:
    """Accept ``old``, the former spelling of ``new``, for one more release: hidden, with a warning."""
    hidden_param = f"{param}_renamed"

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            value = kwargs.pop(hidden_param)
            if value is not None and value is not False:
                ctx = click.get_current_context()
                if ctx.get_parameter_source(param) == click.core.ParameterSource.COMMANDLINE:
                    raise click.UsageError(f"{old} is the old spelling of {new}; give only {new}")
                click.echo(f"warning: {old} is now {new}; the old spelling goes in the next release", err=True)
                kwargs[param] = value
            return fn(*args, **kwargs)

        if flag:
            return click.option(old, hidden_param, is_flag=True, default=False, hidden=True)(wrapper)
        return click.option(old, hidden_param, type=type, default=None, hidden=True)(wrapper)

    return decorate


def rerun_command(
    option: str, value: str | None = None, drop: tuple[str, ...] = (), drop_with_value: tuple[str, ...] = ()
) -> str:
    """This process's command line with ``option`` (and its ``value``) set, the flags ``drop`` left out and
    the options ``drop_with_value`` left out with their values: the command that goes on from where this one
    stopped."""
    args: list[str] = []
    rest = iter(sys.argv[1:])
    valued = (*drop_with_value, *([option] if value is not None else []))
    for arg in rest:
        if arg in valued:
            next(rest, None)  # the old value goes with its option
        elif arg != option and arg not in drop and not arg.startswith(tuple(f"{o}=" for o in (option, *valued))):
            args.append(arg)
    return shlex.join([Path(sys.argv[0]).name, *args, option, *([value] if value is not None else [])])
