"""The command line as a process: every failure one line on stderr with an exit code,
output streams that suit terminals and pipes, progress bars, and signals that unwind a
save. `maskviz.cli` holds the commands; this is how they run."""

from __future__ import annotations

import difflib
import errno
import functools
import itertools
import json
import os
import re
import shlex
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NoReturn, ParamSpec, cast

import typer
from rich.console import Console
from typer.core import TyperGroup

from maskviz._text import safe_text, use_ascii_stand_ins
from maskviz.errors import MaskvizError

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # errors only writing can meet
PROG = "maskviz"
MAX_COLUMNS = 2048  # the widest output drawn, whatever COLUMNS says
P = ParamSpec("P")


def _fail(message: str, code: int) -> NoReturn:
    line = safe_text(" ".join(str(message).split()))  # messages may quote user input
    if sys.stderr is not None:  # None: started with stderr closed, the code still tells
        sys.stderr.write(f"{PROG}: error: {line}\n")
        sys.stderr.flush()
    sys.exit(code)


def _warning_line(message: Warning | str, *_: object, **__: object) -> None:
    if sys.stderr is not None:
        sys.stderr.write(f"{PROG}: warning: {safe_text(' '.join(str(message).split()))}\n")


def _did_you_mean(exc: Exception, args: list[str]) -> str:
    """A hint such as "did you mean 'causal'?" for a near miss of a closed choice, else ""."""
    param = getattr(exc, "param", None)
    choices = [str(c) for c in getattr(getattr(param, "type", None), "choices", None) or ()]
    if not choices:
        return ""
    opts = set(getattr(param, "opts", ()))
    given = [value for flag, value in itertools.pairwise(args) if flag in opts]
    given += [a.partition("=")[2] for a in args if a.partition("=")[0] in opts]
    if getattr(param, "param_type_name", "") == "argument":
        given += [a for a in args if not a.startswith("-")]
    for value in given:
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
        if close and value not in choices:
            return f"did you mean {close[0]!r}?"
    return ""


def _dash_hint(exc: Exception, args: list[str]) -> str:
    """For "No such option: -e" when the user meant text or a number such as "-hello" or
    "-1": the command that gives it, to copy: options first, then --, then the value and
    the arguments after it (after --, nothing is read as an option)."""
    command = getattr(getattr(exc, "ctx", None), "command", None)
    if type(exc).__name__ != "NoSuchOption" or hasattr(command, "commands"):
        return ""  # before any command (`maskviz -3`): there is nothing to put it after
    takes_value = {
        opt
        for param in getattr(command, "params", ())
        if not getattr(param, "is_flag", False)
        for opt in param.opts
        if opt.startswith("-")
    }

    def with_value(arg: str) -> bool:  # `--steps 3`, `-k causal`: the next word is its value
        return arg in takes_value

    def attached(arg: str) -> bool:  # `-kcausal`, `--steps=3`: an option with its value
        return arg.partition("=")[0] in takes_value or (arg[:2] in takes_value and arg[1] != "-")

    at, i = None, 0
    while i < len(args) and at is None:
        arg = args[i]
        if with_value(arg):
            i += 1  # its value may start with '-' too (`--index-base -1`)
        elif not attached(arg) and re.fullmatch(r"-(\d.*|[^-].+)", arg):
            at = i
        i += 1
    if at is None:
        return ""
    options, arguments = [], []
    rest = iter(args[at + 1 :])
    for arg in rest:
        if arg.startswith("-"):
            options += [arg, next(rest, "")] if with_value(arg) else [arg]
        else:
            arguments.append(arg)
    fixed = [*args[:at], *options, "--", args[at], *arguments]
    return f"a value that starts with '-' goes after --, as in: {PROG} {shlex.join(fixed)}"


def _internal_error(exc: Exception) -> str:
    if isinstance(exc, MemoryError):  # NumPy says how much it could not allocate
        return f"not enough memory: {exc} (try fewer --steps)"
    if isinstance(exc, OSError) and exc.errno in _FULL:  # e.g. stdout on a full disk
        return f"cannot write the output: {exc.strerror}"
    if isinstance(exc, PermissionError) and exc.filename is not None:
        # Python 3.11's Path.is_file() raises where a folder on the way may not be read
        return f"{safe_text(os.fsdecode(exc.filename))}: {exc.strerror}"
    return f"internal error: {type(exc).__name__}: {exc} (set MASKVIZ_DEBUG=1 for details)"


def exits_like_cmp(command: Callable[P, None]) -> Callable[P, None]:
    """Exit codes like cmp's: 0 the sides agree, 1 they differ, 2 trouble of any kind.

    A script can then read 1 as "the mask is broken": a failure never exits 1.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except MaskvizError as exc:
            exc.exit_code = 2
            raise
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise  # parsing errors exit 2 already; Exit carries the verdict
        except Exception as exc:
            if os.environ.get("MASKVIZ_DEBUG"):
                raise
            raise MaskvizError(_internal_error(exc), usage=True) from None

    return run


class OneLineErrors(TyperGroup):
    """Runs a command and turns every failure into one line on stderr."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # Typer would end it as a silent exit 130
            raise _Interrupted from None

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            with warnings.catch_warnings():  # each one line on stderr, never an error
                warnings.simplefilter("default")
                warnings.showwarning = _warning_line
                rv = super().main(
                    args=args,
                    prog_name=prog_name or PROG,
                    complete_var=complete_var,
                    standalone_mode=False,
                    **extra,
                )
        except MaskvizError as exc:
            _fail(str(exc), exc.exit_code)
        except typer.TyperException as exc:  # argument parsing: usage errors exit 2
            given = sys.argv[1:] if args is None else list(args)
            message = exc.format_message().replace(": Value error, ", ": ")  # Typer's wording
            if not message:  # bare `maskviz`: the help is printed, nothing is wrong to say
                sys.exit(exc.exit_code)
            hint = _did_you_mean(exc, given) or _dash_hint(exc, given)
            _fail(f"{message.rstrip('.')}; {hint}" if hint else message, exc.exit_code)
        except (KeyboardInterrupt, typer.Abort, _Interrupted):
            _fail("interrupted", 130)
        except BrokenPipeError:
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115  # nothing left to report to
            sys.exit(1)
        except Exception as exc:
            if _TERMINATED:  # cleanup code that failed while unwinding from the signal
                sys.exit(128 + _TERMINATED[0])
            if os.environ.get("MASKVIZ_DEBUG"):
                raise
            _fail(_internal_error(exc), 1)
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


class _Interrupted(Exception):
    """Ctrl-C while a command ran (Typer ends a KeyboardInterrupt as a silent exit 130)."""


class _TrimmedLines:
    """A text stream that writes each finished line without its trailing spaces: Rich
    pads table cells and leaves the space where it wraps a line, which piped output
    (files, diffs) should not keep. An unfinished line is written as is on flush."""

    def __init__(self, target: IO[str]) -> None:
        self._target, self._pending = target, ""
        self.encoding = getattr(target, "encoding", "utf-8")  # Rich picks glyphs by it

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self._target.write(line.rstrip(" ") + "\n")
        return len(text)

    def flush(self) -> None:
        self._target.write(self._pending)
        self._pending = ""
        self._target.flush()

    def isatty(self) -> bool:
        return False


class _Stdout:
    """Standard output that outlives its reader: once the pipe closes (`maskviz trace
    ... --save x.png | head -1`), the rest is written to /dev/null, so the command still
    does what it was asked (the save) and exits as it would have. Whether a pipe breaks
    depends on timing (a short output fits the pipe's buffer), so it changes no verdict."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())  # what is still buffered goes there too
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno, ...
        return getattr(self._stream, name)


def say_saved(path: Path, plain: bool) -> None:
    # the name as typed may hold escape sequences: shown escaped, as in error lines, and
    # on one line whatever its length, to be copied whole
    console(plain).print(f"saved {safe_text(str(path))}", soft_wrap=True)


def console(plain: bool) -> Console:
    """Stdout console: colour on a terminal, plain when piped, --plain or NO_COLOR."""
    plain = plain or bool(os.environ.get("NO_COLOR"))
    out = Console(
        force_terminal=False if plain else None,
        no_color=plain or None,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
    )
    if out.width < 1:  # COLUMNS=0 would print nothing at all
        out.width = 80
    # no screen is wider: a huge COLUMNS would only make a grid of millions of characters
    out.width = min(out.width, MAX_COLUMNS)
    if not out.is_terminal:  # so no escape codes either
        out.file = cast(IO[str], _TrimmedLines(out.file))  # the part of IO that Rich uses
    return out


def ramp_shading(out: Console) -> bool:
    """True when weights must be told apart by glyph: no colour, or only 16 colours, whose
    few greens cannot keep five weight levels apart from each other and from masked grey."""
    return out.no_color or out.color_system not in ("256", "truecolor")


def print_json(data: Any) -> None:
    # file=sys.stdout: left to itself, click writes an ASCII stream's bytes past `_Stdout`
    typer.echo(
        json.dumps(data, indent=None, separators=(",", ":"), allow_nan=False), file=sys.stdout
    )


@contextmanager
def progress_bar(
    what: str, unit: str, total: int | None = None, *, plain: bool = False
) -> Iterator[Callable[..., None]]:
    """A transient progress bar on stderr, shown only on a terminal and for more than a
    few units of work. It yields ``update(done, total, what=None)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True, highlight=False, no_color=plain or None)  # --plain: no colour
    if not err.is_terminal or (total is not None and total <= 4):
        # no Progress at all: a disabled one still writes a newline in Rich before 14.3
        yield lambda done, total, doing=None: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),  # "0/?" until the total is known, never "0/None"
        TextColumn(unit),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=total)

        def update(done: int, total: int | None, doing: str | None = None) -> None:
            bar.update(task, completed=done, total=total, description=doing or what)

        yield update


def run(app: Callable[[], Any]) -> None:
    """Run ``app``, the command line, as a process: one-line errors, a stdout that
    outlives a closed pipe, and signals that unwind a save."""
    if sys.stdout is None:  # started with stdout closed: what it prints would be lost
        _fail("standard output is closed: there is nowhere to print", 2)
    for stream in (sys.stdout, sys.stderr):
        use_ascii_stand_ins(stream)
    sys.stdout = cast(IO[str], _Stdout(sys.stdout))
    # `kill`, or the terminal closing, unwinds like Ctrl-C: a save in progress removes its
    # temporary file (a hang-up that `nohup` ignores stays ignored)
    signal.signal(signal.SIGTERM, _terminated)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _terminated)
    app()


_TERMINATED: list[int] = []  # the signal that stopped us, if one did


def _terminated(signum: int, frame: object) -> NoReturn:
    _TERMINATED.append(signum)
    raise SystemExit(128 + signum)
