"""The command line as a process meets it: signals while it loads, closed streams,
arguments that are not UTF-8."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

MASKVIZ = [sys.executable, "-m", "maskviz"]

# Ctrl-C at the moment the command line starts loading NumPy, Typer and Rich
INTERRUPTED_WHILE_LOADING = """
import importlib.abc, os, signal, sys

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "maskviz.cli":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv = ["maskviz", "show-mask", "3"]
from maskviz.__main__ import main
main()
"""


def test_ctrl_c_while_the_command_line_loads_ends_it_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_WHILE_LOADING],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == -signal.SIGINT  # ended by the signal, as the shell reports
    assert result.stdout == "" and result.stderr == ""


def test_the_command_line_keeps_ctrl_c_as_the_shell_gave_it() -> None:
    # a background job starts with Ctrl-C ignored: loading must not turn it back on
    script = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN);"
        " sys.argv = ['maskviz', 'show-mask', '2']; from maskviz.__main__ import main;"
        " import atexit; atexit.register(lambda: print(signal.getsignal(signal.SIGINT)"
        " is signal.SIG_IGN, file=sys.stderr)); main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0 and result.stderr == "True\n"


@pytest.mark.parametrize("ignored", [True, False])
def test_a_hang_up_ignored_as_under_nohup_stays_ignored(ignored: bool) -> None:
    # otherwise a hang-up unwinds the command as kill does (a save removes its temporary)
    script = (
        "import signal, sys, atexit;"
        f" signal.signal(signal.SIGHUP, signal.{'SIG_IGN' if ignored else 'SIG_DFL'});"
        " sys.argv = ['maskviz', 'show-mask', '2']; from maskviz.__main__ import main;"
        " atexit.register(lambda: print(signal.getsignal(signal.SIGHUP)"
        " is signal.SIG_IGN, file=sys.stderr)); main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0 and result.stderr == f"{ignored}\n"


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])  # ascii: click writes its own way
@pytest.mark.parametrize("json", [False, True])
def test_a_reader_that_stops_early_still_gets_the_picture_saved(
    tmp_path: Path, encoding: str, json: bool
) -> None:
    # `maskviz show-mask 300 --save m.png | head -1`: the pipe closes before the save
    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader already gone: the first write breaks the pipe
    out = tmp_path / "m.png"
    args = ["show-mask", "300", "--save", str(out), *(["--json"] if json else [])]
    try:
        result = subprocess.run(
            [*MASKVIZ, *args], stdout=write_end, stderr=subprocess.PIPE, text=True,
            check=False, timeout=120, env={**os.environ, "PYTHONIOENCODING": encoding},
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert result.returncode == 0  # its verdict: a pipe breaks or not by timing alone
    assert result.stderr == ""
    assert out.read_bytes().startswith(b"\x89PNG")


def test_a_closed_standard_output_is_an_error_not_silence() -> None:
    result = subprocess.run(
        [*MASKVIZ, "show-mask", "6"], stdout=None, stderr=subprocess.PIPE, text=True,
        check=False, timeout=120, close_fds=True,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == "maskviz: error: standard output is closed: there is nowhere to print\n"


def test_a_usage_error_exits_2_with_standard_error_closed() -> None:
    result = subprocess.run(
        [*MASKVIZ, "show-mask", "0"], capture_output=False, stdout=subprocess.DEVNULL,
        check=False, timeout=120, preexec_fn=lambda: os.close(2),
    )  # fmt: skip
    assert result.returncode == 2


@pytest.mark.parametrize(
    ("command", "named"),
    [
        (["trace", b"a\xff", "--steps", "1"], b"the prompt"),
        (["compare", "training-vs-cached", "--prompt", b"a\xff"], b"--prompt"),
        (["similarity", b"a\xff", "b"], b"text1"),  # named as its usage line names it
        (["similarity", "a", b"b\xff"], b"text2"),
        (["similarity", "a", "b", "--delimiter", b"\xff"], b"--delimiter"),
        (["show-mask", "2", "--text", b"\xff b"], b"--text"),
    ],
)
def test_text_that_is_not_utf8_is_a_usage_error_naming_the_argument(
    command: list[str | bytes], named: bytes
) -> None:
    result = subprocess.run(
        [*MASKVIZ, *command], capture_output=True, check=False, timeout=120
    )  # the bytes reach Python as they would from a shell
    assert result.returncode == 2
    assert result.stderr == b"maskviz: error: " + named + b" is not UTF-8: it holds the byte 0xff\n"


@pytest.mark.parametrize(
    "command",
    [["trace", "héllo", "--steps", "1", "--json"], ["similarity", "é", "è", "--json"],
     ["show-mask", "2", "--text", "é è", "--json"]],
)  # fmt: skip
def test_utf8_text_is_read_as_utf8_when_python_reads_the_command_line_as_ascii(
    command: list[str],
) -> None:
    # PYTHONUTF8=0 in the C locale: Python decodes arguments as ASCII, each byte past
    # 127 kept as a lone surrogate; the bytes are UTF-8 all the same
    env = {**os.environ, "PYTHONUTF8": "0", "LC_ALL": "C", "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(
        [*MASKVIZ, *command], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    if command[0] == "trace":  # the prompt's bytes, not the stand-ins for them
        assert json.loads(result.stdout)["token_ids"][:6] == list("héllo".encode())


def test_version_is_answered_before_numpy_typer_and_rich_load() -> None:
    script = (
        "import sys; sys.argv = ['maskviz', '--version']; from maskviz.__main__ import main;"
        " main(); print(sorted(m for m in ('numpy', 'typer', 'rich') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    from maskviz import __version__

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"maskviz {__version__}\n[]\n"


@pytest.mark.parametrize("suffix", [".pdf", ".png", ".svg"])
def test_a_picture_too_large_for_the_file_size_limit_is_one_line_and_the_old_file_stays(
    tmp_path: Path, suffix: str
) -> None:
    import resource

    target = tmp_path / f"keep{suffix}"
    target.write_text("old")

    def limit() -> None:  # `ulimit -f 8`; Python ignores SIGXFSZ, so writes fail EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    result = subprocess.run(
        [*MASKVIZ, "compare", "training-vs-cached", "--steps", "2", "--json", "--save", str(target)],
        capture_output=True, text=True,
        check=False, timeout=120, preexec_fn=limit,
    )  # fmt: skip
    assert result.returncode == 2  # compare's code for any trouble
    assert result.stderr == f"maskviz: error: cannot write {str(target)!r}: File too large\n"
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_the_version_on_a_full_disk_is_one_line_and_on_a_closed_pipe_no_failure() -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*MASKVIZ, "--version"], stdout=full, stderr=subprocess.PIPE, text=True,
            check=False, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == "maskviz: error: cannot write the output: No space left on device\n"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before a byte is written
    try:
        result = subprocess.run(
            [*MASKVIZ, "--version"], stdout=write_end, stderr=subprocess.PIPE, text=True,
            check=False, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["show-mask", "3", "--save", b"x.\xff"], b"extension '.\\xff'"),
        (["trace", "a", "--model", b"\xff"], b"no model '\\xff'"),
    ],
)
def test_a_name_holding_a_byte_that_is_not_utf8_shows_the_byte(
    command: list[str | bytes], shown: bytes
) -> None:
    result = subprocess.run([*MASKVIZ, *command], capture_output=True, check=False, timeout=120)
    assert result.returncode == 2
    assert shown in result.stderr and b"udc" not in result.stderr  # not repr's surrogate


def test_the_package_reaches_its_modules_in_a_fresh_interpreter() -> None:
    # `import maskviz` loads nothing heavy; its modules load on first use, whichever is first
    script = (
        "import maskviz; print(maskviz.compare.compare.__name__,"
        " maskviz.similarity.similarity.__name__, maskviz.trace.Trace.__name__,"
        " maskviz.view.trace_view.__name__, maskviz.masks.causal.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "compare similarity Trace trace_view causal\n"


def test_the_data_modules_load_no_drawing_code() -> None:
    # traces, masks, models and results are plain data: drawing code (matplotlib, Rich,
    # maskviz.render) loads only when something is drawn, as a notebook's
    # `_repr_html_` does, importing maskviz.render.html inside it
    data = ["trace", "masks", "model", "compare", "similarity", "view", "loading", "bench"]
    drawing = ("matplotlib", "rich", "typer", "maskviz.render")
    script = (
        f"import sys, importlib; [importlib.import_module('maskviz.' + m) for m in {data!r}];"
        f" print([m for m in sys.modules if m.startswith({drawing!r})])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "[]\n")
