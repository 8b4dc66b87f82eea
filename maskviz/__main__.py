"""The command line's entry point: ``maskviz`` and ``python -m maskviz``."""

from __future__ import annotations

import signal


def main() -> None:
    """Load the command line, then run it.

    Ctrl-C while NumPy, Typer and Rich load ends the process as the signal does, with
    no traceback: nothing has been written yet. Then Python's handler is back, so a
    save in progress can remove its temporary file.
    """
    handler = signal.getsignal(signal.SIGINT)
    if handler is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    from maskviz.cli import main as run

    signal.signal(signal.SIGINT, handler)
    run()


if __name__ == "__main__":
    main()
