"""Texts to predict: `--text`, .txt files (one text per line), folders of .txt files (one text
per file) or `-` (standard input, one text per line); bad texts follow --on_bad_text."""

from __future__ import annotations

import sys
from pathlib import Path

from ktransfer.data.tables import decode
from ktransfer.errors import DataError
from ktransfer.text.sources import BadTexts
from ktransfer.text.textset import TextSet, text_set


def _lines(content: str, where: str, bad: BadTexts) -> list[tuple[str, str]]:
    out = []
    for number, line in enumerate(content.splitlines(), start=1):
        if line.strip():  # a blank line separates texts, it is none
            text = bad.check(line, f"{where}:{number}")
            if text is not None:
                out.append((f"{where}:{number}", text))
    return out


def read_texts(args: list[str], text: str = "", on_bad_text: str = "fail") -> TextSet:
    """Unlabelled texts from `--text` and the positional arguments, in order; ids name where
    each came from (`file:line`, a file, `stdin:line`, `--text`). `-`, as `--text=-` or an
    argument, reads standard input, one text per line."""
    bad = BadTexts(on_bad_text, "text")
    found: list[tuple[str, str]] = []
    if text == "-":  # as the help says: standard input, as the positional `-`
        found += _lines(sys.stdin.read(), "stdin", bad)
    elif text:
        checked = bad.check(text, "--text")
        found += [("text", checked)] if checked is not None else []
    for arg in args:
        path = Path(arg)
        if arg == "-":
            found += _lines(sys.stdin.read(), "stdin", bad)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not files:
                raise DataError(f"{arg}: the folder has no .txt files")
            for file in files:
                checked = bad.check(decode(file.read_bytes()), str(file))
                found += [(str(file), checked)] if checked is not None else []
        elif path.is_file():
            found += _lines(decode(path.read_bytes()), str(path), bad)
        else:
            raise DataError(f"{arg}: no such file or folder")
    bad.done()
    if not found:
        raise DataError("no texts given: pass --text=\"...\", .txt files, folders of .txt "
                        "files, or - to read standard input")
    return text_set(("",), [0] * len(found), [t for _, t in found], [i for i, _ in found])
