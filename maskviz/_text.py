"""Making user and model text safe to print: nothing reaches the terminal raw."""

from __future__ import annotations

import codecs
import unicodedata

# Characters that can rewrite or reorder what a terminal shows.
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def safe_text(text: str) -> str:
    r"""Escape every character that could act on a terminal instead of showing.

    Control characters (C0, C1, DEL), escape sequences, bidi overrides and other
    format characters become visible escapes; printable text, emoji and CJK stay.
    The result contains no such character, so escaping twice changes nothing.

    >>> safe_text("a\x1b[31mb\r\u202e")
    'a\\x1b[31mb\\r\\u202e'
    >>> safe_text("a\udcff")  # the byte 0xff, as a command line passes it
    'a\\xff'
    >>> safe_text("猫 🐈")
    '猫 🐈'
    >>> safe_text(safe_text("\x07")) == safe_text("\x07")
    True
    """
    out = []
    for ch in text:
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a command line's byte that was not UTF-8
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def quoted(text: str) -> str:
    r"""``text`` in quotes for a message, escaped as `safe_text` escapes it (a file name
    holding a byte that is not UTF-8 shows the byte, not ``repr``'s surrogate).

    >>> quoted("a b.png"), quoted("x.\udcff"), quoted("it's")
    ("'a b.png'", "'x.\\xff'", "'it\\'s'")
    """
    return "'" + safe_text(text).replace("'", "\\'") + "'"


def cell_width(text: str) -> int:
    """Terminal columns ``text`` occupies (wide CJK and emoji count 2)."""
    from rich.cells import cell_len

    return cell_len(text)


def fit(text: str, width: int) -> str:
    """Shorten ``text`` to at most ``width`` terminal columns, marking a cut with '…'."""
    if cell_width(text) <= width:
        return text
    out = ""
    for ch in text:
        if cell_width(out + ch) > width - 1:
            break
        out += ch
    return out + "…"


def display_label(label: str) -> str:
    """A token label with edge spaces made visible (␣), control characters escaped.

    >>> display_label(" the"), display_label(" "), display_label("\u0301")
    ('␣the', '␣', '\\\\u0301')
    """
    label = safe_text(label)
    if label and unicodedata.category(label[0]) in ("Mn", "Me"):  # no base to sit on: it
        label = f"\\u{ord(label[0]):04x}" + label[1:]  # would merge with what is before it
    stripped = label.strip(" ")
    if stripped == label:
        return label
    if not stripped:
        return "␣" * len(label)
    lead = len(label) - len(label.lstrip(" "))
    trail = len(label) - len(label.rstrip(" "))
    return "␣" * lead + stripped + "␣" * trail


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an s unless the count is one.

    >>> plural(1, "query"), plural(2, "query"), plural(3, "key")
    ('1 query', '2 queries', '3 keys')
    """
    if count == 1:
        return f"1 {noun}"
    return f"{count:,} {noun[:-1] + 'ies' if noun.endswith('y') and noun[-2] not in 'aeiou' else noun + 's'}"


def times(ratio: float, more: str, less: str) -> str:
    """A ratio as "N.Nx more", or "N.Nx less" when it is below 1.

    >>> times(3.0, "slower", "faster"), times(0.8, "slower", "faster")
    ('3.0x slower', '1.2x faster')
    """
    if ratio <= 0:  # nothing measured
        return "n/a"
    if ratio >= 1:
        return f"{ratio:.1f}x {more}"
    return f"{1 / ratio:.1f}x {less}"


# Stand-ins for a terminal whose encoding lacks the glyphs (PYTHONIOENCODING=ascii, a
# Windows code page when piped). One column each where a grid draws them, so grids keep
# their alignment, and distinct within each grid: mask (# . + x), weight ramp (- : = * #).
_ASCII = dict(zip("●○◐◌·░▒▓█…–−─│→↓◀␣✗×Δ", "#.+x-:=*#~---|>v<_xxD", strict=True))
_ASCII |= {"≥": ">=", "±": "+-"}  # in prose only, where a second column does no harm
ASCII_ERRORS = "maskviz-ascii"


def _ascii_stand_ins(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    chars = exc.object[exc.start : exc.end]
    # any other character: a '?' for each column it takes, so a wide one keeps grids aligned
    return "".join(_ASCII.get(ch) or "?" * cell_width(ch) for ch in chars), exc.end


codecs.register_error(ASCII_ERRORS, _ascii_stand_ins)


def use_ascii_stand_ins(stream: object) -> None:
    """Let ``stream`` print what its encoding lacks as ASCII stand-ins instead of failing.

    Nothing changes where the glyphs can be encoded (any UTF-8 terminal).
    """
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        "".join(_ASCII).encode(encoding)
    except UnicodeEncodeError:
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors=ASCII_ERRORS)
    except LookupError:
        pass  # an encoding Python does not know: leave the stream as it is
