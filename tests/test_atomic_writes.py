"""Every file maskviz writes is either its old self or the complete new one."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from maskviz import MaskvizError, _io
from maskviz._io import write_bytes


@pytest.mark.parametrize("moment", ["making", "made"])
def test_ctrl_c_while_or_just_after_the_temporary_file_is_made_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    target = tmp_path / "trace.json"
    target.write_text("old")
    real = _io._create

    def interrupted(path: Path) -> int:
        if moment == "made":
            real(path)  # made, its descriptor not yet returned
        signal.raise_signal(signal.SIGINT)  # the user's Ctrl-C, this very moment
        raise AssertionError("not interrupted")

    monkeypatch.setattr(_io, "_create", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_bytes(target, b"new contents")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["trace.json"]


def test_a_write_that_fails_halfway_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "trace.json"
    target.write_text("old")

    def half_then_fail(self: Path, data: bytes) -> int:
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    with pytest.raises(MaskvizError, match="No space left on device"):
        write_bytes(target, b"new contents")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["trace.json"]


def test_a_new_file_gets_the_permissions_the_umask_gives(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_bytes(tmp_path / "new.html", b"<html>")
    finally:
        os.umask(old)
    assert (tmp_path / "new.html").stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux shows the umask")
def test_writing_a_file_never_changes_the_umask_that_other_threads_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = os.umask(0o027)
    try:

        def never(mask: int) -> int:
            raise AssertionError("the umask was set, if only for a moment")

        monkeypatch.setattr(os, "umask", never)
        write_bytes(tmp_path / "new.html", b"<html>")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert (tmp_path / "new.html").stat().st_mode & 0o777 == 0o640


def test_a_name_near_the_file_system_limit_is_written(tmp_path: Path) -> None:
    target = tmp_path / ("é" * 125 + ".png")  # 254 bytes: the temporary name must be shorter
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_writer_failing_while_it_cleans_up_a_full_disk_is_said_as_the_disk(
    tmp_path: Path,
) -> None:
    # matplotlib's PDF writer, out of space, raises AttributeError with the OSError behind it
    target = tmp_path / "m.pdf"
    target.write_text("old")

    def write(path: Path) -> None:
        with _io.atomic_path(path):
            try:
                raise OSError(28, "No space left on device")
            finally:
                raise AttributeError("'Stream' object has no attribute 'pos'")

    with pytest.raises(MaskvizError) as caught:
        write(target)
    assert str(caught.value) == f"cannot write {str(target)!r}: No space left on device"
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pdf"]
    with pytest.raises(AttributeError, match=r"^a bug of ours$"), _io.atomic_path(target):
        raise AttributeError("a bug of ours")  # no OSError behind it: raised as it is

    def refuse(path: Path) -> None:
        with _io.atomic_path(path):
            try:
                raise OSError(28, "No space left on device")
            except OSError:
                raise MaskvizError("refused by name") from None

    # a refusal of our own, raised while an OSError was being handled, stays as it was said
    with pytest.raises(MaskvizError, match=r"^refused by name$"):
        refuse(target)


def test_a_pipe_or_a_folder_is_never_replaced_by_a_write(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "folder.png").mkdir()
    for name in ("pipe.png", "folder.png"):
        target = tmp_path / name
        with pytest.raises(MaskvizError, match=f"^cannot write '{target}': not a regular file$"):
            _io.write_bytes(target, b"picture")
    assert (tmp_path / "pipe.png").is_fifo() and (tmp_path / "folder.png").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.png", "pipe.png"]
