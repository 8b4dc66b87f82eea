"""The command line's entry point: ``maskviz`` and ``python -m maskviz``."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    """Load the command line, then run it.

    ``maskviz --version`` is answered first, without loading NumPy, Typer and Rich
    (0.2 s). Ctrl-C while they load ends the process as the signal does, with no
    traceback: nothing has been written yet. Then Python's handler is back, so a save
    in progress can remove its temporary file.
    """
    if sys.argv[1:] == ["--version"] and sys.stdout is not None:
        from maskviz import __version__

        try:
            print(f"maskviz {__version__}", flush=True)
        except OSError as exc:
            sys.stdout = None  # nothing left to flush at exit
            # `| true` closed the pipe: the version was asked, not needed; as commands do,
            # that is no failure. A full disk is.
            if not isinstance(exc, BrokenPipeError):
                print(f"maskviz: error: cannot write the output: {exc.strerror}", file=sys.stderr)
                sys.exit(1)
        return
    handler = signal.getsignal(signal.SIGINT)
    if handler is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    from maskviz.cli import main as run

    signal.signal(signal.SIGINT, handler)
    run()


if __name__ == "__main__":
    main()
