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
        except BrokenPipeError:  # `maskviz --version | true`: as the command line exits
            sys.stdout = None
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
