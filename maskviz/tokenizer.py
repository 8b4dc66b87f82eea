"""Tokenizers: the shipped byte-level one, and Hugging Face ``tokenizer.json`` files."""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, SupportsInt

from maskviz._text import safe_text
from maskviz.errors import MaskvizError, first_line, usage_error

HF_EXTRA = "pip install 'maskviz[hf]'"  # what reading tokenizer.json and the hub need

EOT_TEXT = "<|endoftext|>"


class Tokenizer(Protocol):
    """What the engine and renderers need from a tokenizer.

    A tokenizer may also have ``stop_ids``, a frozenset of every token that ends
    generation (the model's end-of-sequence ids); without it generation stops at
    ``eot_id``.
    """

    @property
    def vocab_size(self) -> int: ...

    @property
    def eot_id(self) -> int | None:
        """The end-of-text token, or None when the tokenizer has none."""
        ...

    @property
    def prefix_ids(self) -> tuple[int, ...]:
        """The special tokens `encode` puts before every text (a BOS), () for none."""
        ...

    def encode(self, text: str) -> list[int]:
        """The ids the model is prompted with, ``prefix_ids`` first."""
        ...

    def decode(self, ids: list[int]) -> str: ...

    def token_label(self, token_id: int) -> str:
        """A short label for one token, safe to print (escapes applied)."""
        ...


class ByteTokenizer:
    """UTF-8 bytes are tokens 0..255; token 256 is ``<|endoftext|>``.

    >>> tok = ByteTokenizer()
    >>> tok.encode("hé")
    [104, 195, 169]
    >>> tok.decode([104, 195, 169, 256])
    'hé'
    >>> tok.decode([104, 0xAC])  # not UTF-8: written as its label
    'h\\\\xac'
    >>> [tok.token_label(i) for i in (104, 10, 195, 256)]
    ['h', '\\\\n', '\\\\xc3', '<|endoftext|>']
    """

    vocab_size = 257
    eot_id = 256
    stop_ids = frozenset({256})
    prefix_ids: tuple[int, ...] = ()

    def encode(self, text: str) -> list[int]:
        return list(utf8(text))

    def decode(self, ids: list[int]) -> str:
        # bytes that are not UTF-8 (a sampled run can produce them) as \xNN, as token
        # labels show them; ids past 256 (a random model's larger vocabulary) as <id:N>
        parts = []
        for is_byte, run in itertools.groupby((int(i) for i in ids), key=lambda i: 0 <= i < 256):
            if is_byte:
                parts.append(bytes(run).decode("utf-8", errors="backslashreplace"))
            else:
                parts.extend(unknown_id_label(i) for i in run if i != self.eot_id)
        return "".join(parts)

    def token_label(self, token_id: int) -> str:
        if token_id == self.eot_id:
            return EOT_TEXT
        if token_id > self.eot_id:
            return unknown_id_label(token_id)
        if 0x20 <= token_id < 0x7F:
            return chr(token_id)
        if token_id in (9, 10, 13):
            return safe_text(chr(token_id))
        return f"\\x{token_id:02x}"


class HFTokenizer:
    """A Hugging Face ``tokenizer.json``, read by the ``tokenizers`` package.

    `encode` applies the file's post-processor, as transformers does by default: Llama
    3's adds ``<|begin_of_text|>`` before every text, GPT-2's adds nothing.
    """

    def __init__(self, path: Path, eos_ids: tuple[int, ...] = ()) -> None:
        try:
            from tokenizers import Tokenizer as _HF
        except ImportError:
            raise MaskvizError(f"reading tokenizer.json needs the 'hf' extra: {HF_EXTRA}") from None
        self._path = path
        try:
            self._tok = _HF.from_file(str(path))
        except Exception as exc:
            raise MaskvizError(
                f"{path}: not a loadable tokenizer.json ({first_line(exc)})"
            ) from None
        # a byte-level vocabulary (GPT-2, Llama 3, Qwen) spells every byte as a character
        self._byte_level = type(self._tok.decoder).__name__ == "ByteLevel"
        # the model's end-of-sequence tokens (config.json's eos_token_id, e.g. Llama's
        # <|end_of_text|>), else GPT-2's <|endoftext|> if the vocabulary has it
        eot = eos_ids[0] if eos_ids else self._tok.token_to_id(EOT_TEXT)
        self.eot_id = None if eot is None else int(eot)
        self.stop_ids = frozenset(eos_ids) | (frozenset() if eot is None else {int(eot)})
        # the post-processor's leading specials, read off a one-character probe: its
        # special_tokens_mask marks only what the post-processor added
        try:
            probe = self._tok.encode("a")
        except Exception as exc:  # e.g. a word-level vocabulary without an unknown token
            raise MaskvizError(f"{path}: cannot encode text ({first_line(exc)})") from None
        mask = probe.special_tokens_mask
        lead = next((i for i, m in enumerate(mask) if not m), len(mask))
        self.prefix_ids: tuple[int, ...] = tuple(int(i) for i in probe.ids[:lead])
        # one past the largest id it can produce (ids may be sparse): what the model must hold
        ids = [*self._tok.get_vocab(with_added_tokens=True).values(), *self.prefix_ids]
        self.vocab_size = max(ids, default=-1) + 1

    def encode(self, text: str) -> list[int]:
        utf8(text)  # the same error for bytes that are not text
        try:
            encoding = self._tok.encode(text)
        except Exception as exc:  # e.g. a word-level vocabulary without an unknown token
            raise MaskvizError(
                f"{self._path}: cannot encode the text ({first_line(exc)})"
            ) from None
        return [int(i) for i in encoding.ids]

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids`` as `ByteTokenizer` writes it: an id this tokenizer lacks
        as its label, and bytes that are no whole character as ``\\xNN`` escapes. The
        tokenizers package would drop the one and write U+FFFD for the other, hiding
        what the model produced."""
        parts = []
        for known, group in itertools.groupby((int(i) for i in ids), key=self._knows):
            run = list(group)
            if known:
                part = self._decode(run)
                if "\ufffd" in part:  # a character cut short: its bytes, as labels show them
                    part = self._escaped(run) or part
                parts.append(part)
            else:
                parts.extend(unknown_id_label(i) for i in run)
        return "".join(parts)

    def _decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=False))

    def _escaped(self, run: list[int]) -> str | None:
        """The text of ``run`` with each stretch of byte tokens that is no whole character
        written as ``\\xNN`` escapes; None where the decoder's text does not split so.

        Word pieces are decoded after the token before them, whose own text is then cut
        off: a SentencePiece decoder drops the space before a text's first word.
        """
        raw = [self._bytes(i) for i in run]
        out = []
        for is_bytes, group in itertools.groupby(range(len(run)), key=lambda i: raw[i] is not None):
            at = list(group)
            if is_bytes:
                joined = b"".join(b for b in (raw[i] for i in at) if b is not None)
                out.append(joined.decode("utf-8", errors="backslashreplace"))
                continue
            before = run[at[0] - 1 : at[0]]
            head, text = self._decode(before), self._decode(before + [run[i] for i in at])
            if not text.startswith(head):
                return None
            out.append(text[len(head) :])
        return "".join(out)

    def _bytes(self, token_id: int) -> bytes | None:
        """The bytes a token stands for, as this tokenizer's decoder reads it: any entry
        of a byte-level vocabulary, a byte fallback (``<0xE4>``) in another; else None."""
        return _piece_bytes(self._tok.id_to_token(token_id) or "", byte_level=self._byte_level)

    def _knows(self, token_id: int) -> bool:
        return self._tok.id_to_token(token_id) is not None

    def token_label(self, token_id: int) -> str:
        if not self._knows(token_id):
            return unknown_id_label(token_id)
        text = self.decode([token_id])  # special tokens decode to their own text
        if "\ufffd" in text:  # part of a character: its bytes, as the shipped models show them
            raw = self._bytes(token_id)
            if raw is not None:
                text = raw.decode("utf-8", errors="backslashreplace")
        return safe_text(text)


def unknown_id_label(token_id: int) -> str:
    """The label of an id the model has but its tokenizer lacks: a model's vocabulary may
    be padded past the tokenizer's (Qwen2.5: 151,936 ids, 151,665 tokens). It would
    otherwise decode to nothing, an empty label, as if the model had produced no text.

    >>> unknown_id_label(151700)
    '<id:151700>'
    """
    return f"<id:{token_id}>"


def labels_without_tokenizer(token_ids: Iterable[SupportsInt], vocab_size: int) -> list[str]:
    """Token labels when no tokenizer is at hand: bytes for a byte-level vocabulary of
    257 (the shipped models), else ids, as `unknown_id_label` writes them.

    >>> labels_without_tokenizer([104, 105, 256], 257)
    ['h', 'i', '<|endoftext|>']
    >>> labels_without_tokenizer([7], 50)
    ['<id:7>']
    """
    if vocab_size == ByteTokenizer.vocab_size:
        return [ByteTokenizer().token_label(int(i)) for i in token_ids]
    return [unknown_id_label(int(i)) for i in token_ids]


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's alphabet (GPT-2, Llama 3, Qwen): the character that stands for
    each byte in a vocabulary. Printable Latin-1 bytes stand for themselves; the other
    68 are shifted past 255, in byte order."""
    kept = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    alphabet = {chr(b): b for b in kept}
    shifted = (b for b in range(256) if chr(b) not in alphabet)
    alphabet.update({chr(256 + i): b for i, b in enumerate(shifted)})
    return alphabet


_BYTE_LEVEL = _byte_level_alphabet()


def _piece_bytes(piece: str, *, byte_level: bool) -> bytes | None:
    """The bytes a vocabulary entry stands for: a SentencePiece byte fallback such as
    ``<0xE4>``, or (``byte_level``) byte-level BPE's characters; None for anything else.
    Only in a byte-level vocabulary does "é" stand for the byte 0xE9.

    >>> _piece_bytes("<0xE4>", byte_level=False), _piece_bytes("é", byte_level=True)
    (b'\\xe4', b'\\xe9')
    >>> [_piece_bytes(p, byte_level=False) for p in ("<0xE4x", "<0xZZ>", "é")]
    [None, None, None]
    """
    if len(piece) == 6 and piece[:3] == "<0x" and piece[5] == ">":
        digits = piece[3:5]
        return bytes.fromhex(digits) if all(c in string.hexdigits for c in digits) else None
    if byte_level and piece and all(ch in _BYTE_LEVEL for ch in piece):
        return bytes(_BYTE_LEVEL[ch] for ch in piece)
    return None


def utf8(text: str, what: str = "the text") -> bytes:
    """``text`` as UTF-8; a usage error naming ``what`` when it holds bytes that were
    not UTF-8 (a command line gives bytes it could not decode as lone surrogates).

    >>> utf8("hé")
    b'h\\xc3\\xa9'
    >>> utf8("h\\udcc3\\udca9")  # UTF-8 read as ASCII (PYTHONUTF8=0 in the C locale)
    b'h\\xc3\\xa9'
    >>> utf8("a\\udcff")
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: the text is not UTF-8: it holds the byte 0xff
    >>> utf8("a\\udce4\\udcb8")  # a character cut short: named by its first byte
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: the text is not UTF-8: it holds the byte 0xe4
    """
    if not isinstance(text, str):
        raise usage_error(f"{what} must be a string, got {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    try:  # the bytes as given, if they are UTF-8 after all
        raw = text.encode("utf-8", "surrogateescape")
        raw.decode("utf-8")
        return raw
    except UnicodeEncodeError as exc:  # a surrogate that stands for no byte
        held = f"U+{ord(text[exc.start]):04X}"
    except UnicodeDecodeError as exc:
        held = f"the byte 0x{exc.object[exc.start]:02x}"
    raise usage_error(f"{what} is not UTF-8: it holds {held}")


def check_ids(ids: list[int], vocab_size: int) -> None:
    """Refuse empty input and ids outside ``[0, vocab_size)``."""
    if len(ids) == 0:
        raise usage_error("the prompt is empty: give at least one token")
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise usage_error(f"token id {bad[0]} is outside the vocabulary [0, {vocab_size})")
