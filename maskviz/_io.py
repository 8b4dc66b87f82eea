"""Atomic file writes: a file is either its old self or the complete new one."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from maskviz._text import quoted
from maskviz.errors import MaskvizError, usage_error

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")  # the formats pictures are saved in


def as_path(path: object) -> Path:
    """``path`` as a Path; anything but a str or os.PathLike is refused by name."""
    if isinstance(path, str | os.PathLike):
        p = Path(path)
        if "\0" in str(p):  # no file system allows it; os calls would raise ValueError
            raise usage_error(f"a path cannot hold a NUL character: {quoted(str(p))}")
        return p
    raise usage_error(f"a path must be a str or os.PathLike, got {type(path).__name__}")


def output_path(value: str) -> Path:
    """A ``--save`` argument as typed: a trailing slash, '.' or '..' names a folder, which
    `Path` would silently drop (``x.png/`` and ``x.png/.`` are not the file ``x.png``), and
    an empty one would be '.'."""
    if not value:
        raise usage_error("cannot save to '': the name is empty")
    if value.endswith(("/", os.sep)):
        raise usage_error(f"cannot save to {quoted(value)}: a path ending in '/' names a folder")
    last = value.replace(os.sep, "/").rsplit("/", 1)[-1]
    if last in (".", ".."):  # `x.png/.` is the folder x.png, which Path would drop to x.png
        raise usage_error(
            f"cannot save to {quoted(value)}: a path ending in '{last}' names a folder"
        )
    return Path(value)


def check_output_path(path: str | os.PathLike[str], suffixes: Sequence[str]) -> Path:
    """Validate an output path before any work is done; return it as Path(path).

    The suffix must be one of ``suffixes``. What will be replaced is the file the path
    names, or a symbolic link's target: it must be a regular file (never a device or
    a pipe) and writable, or not exist yet in an existing, writable folder. Nothing is
    created.
    """
    p = as_path(path)
    shown = str(p)
    try:
        # what is there first: "no extension" would mislead about a folder or a device
        if p.is_dir():
            raise usage_error(f"cannot save to {quoted(shown)}: it is a folder")
        real = Path(os.path.realpath(p))  # a symbolic link's target is what is replaced
        if real.is_symlink():  # realpath stops at a link it cannot resolve: a loop
            raise usage_error(f"cannot save to {quoted(shown)}: its symbolic links form a loop")
        if real.exists() and not real.is_file():
            raise usage_error(
                f"cannot save to {quoted(shown)}: {_named(real, p)} is not a regular file"
            )
        if p.suffix.lower() not in suffixes:
            what = f"extension {quoted(p.suffix)}" if p.suffix else "no extension"
            raise usage_error(
                f"cannot save to {quoted(shown)}: {what}; use one of {', '.join(suffixes)}"
            )
        parent = real.parent
        if parent.exists() and not parent.is_dir():
            raise usage_error(
                f"cannot save to {quoted(shown)}: {quoted(str(parent))} is a file, not a folder"
            )
        if not parent.is_dir():
            raise usage_error(
                f"cannot save to {quoted(shown)}: folder {quoted(str(parent))} does not exist"
            )
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise usage_error(f"cannot save to {quoted(shown)}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise usage_error(
            f"cannot save to {quoted(shown)}: folder {quoted(str(parent))} is not writable"
        )
    if real.exists() and not os.access(real, os.W_OK):  # replacing it would defeat that
        raise usage_error(f"cannot save to {quoted(shown)}: {_named(real, p)} is read-only")
    return p


def _named(real: Path, given: Path) -> str:
    """How a message names the file a path leads to: 'it', or a link's target."""
    return "it" if real == Path(os.path.abspath(given)) else f"its target {quoted(str(real))}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The temporary file keeps ``path``'s suffix (writers pick formats from it). On
    any error it is removed and the original file, if any, is untouched. A symbolic
    link is followed (its target is replaced, the link stays), and a replaced file
    keeps its permissions.
    """
    shown, target = str(path), Path(os.path.realpath(as_path(path)))
    if target.exists() and not target.is_file():  # a device or a pipe is never replaced
        raise MaskvizError(f"cannot write {quoted(shown)}: not a regular file")
    # the name is chosen before the file is made, and removed in `finally`: a Ctrl-C
    # or `kill` at any moment, even while the file is being made, leaves nothing behind
    # (64 random bits: no other file has this name, and O_EXCL refuses one that does)
    tmp = _temporary(target)
    try:
        try:
            os.close(_create(tmp))
        except FileExistsError:  # not ours: never removed
            tmp = _temporary(target)
            os.close(_create(tmp))
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:  # a new file: what open() would have given it
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        _sync_folder(target.parent)
    except MaskvizError:
        raise
    except Exception as exc:
        # a writer may trip over its own failed write while cleaning up (matplotlib's
        # PDF writer, on a full disk, raises AttributeError with the OSError behind it)
        cause = _os_error(exc)
        if cause is None:
            raise
        raise MaskvizError(f"cannot write {quoted(shown)}: {cause.strerror or cause}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask, read where Linux shows it: setting it to read it back, even
    for a moment, would give another thread's new files no umask at all."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0)  # no /proc (or a kernel before 4.7): the only other way
    os.umask(umask)
    return umask


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable: a crash right after it can otherwise bring back
    the old file. A file system that cannot sync a folder is left as it is."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_error(exc: BaseException | None) -> OSError | None:
    """``exc`` if it is an OSError, else the first OSError it was raised from or while
    handling."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _temporary(target: Path) -> Path:
    """A new name beside ``target``, hidden, with its suffix (writers pick formats by it).

    The stem is cut to 64 bytes: a target name near the file system's limit (255 bytes)
    would otherwise leave no room for the 22 added."""
    stem = target.stem
    while len(os.fsencode(stem)) > 64:
        stem = stem[:-1]
    return target.with_name(f".{stem}.{secrets.token_hex(8)}.tmp{target.suffix}")


def _create(path: Path) -> int:
    """A new file only its owner can read until it is complete; its descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``path``."""
    write_bytes(path, text.encode("utf-8"))
