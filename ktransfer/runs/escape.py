"""Text that a person opens, made safe: names from the data (class names, file names, texts)
go into Markdown and spreadsheets as text, never as markup or formulas.

Markdown (CommonMark): a code span fenced by more backticks than any run inside it; plain text
with HTML escaped and Markdown's punctuation backslash-escaped; a fenced block longer than any
fence inside. Spreadsheets (CSV / TSV): a cell that starts with `=`, `+`, `-`, `@`, a tab or a
carriage return, and is not a number, gets a leading `'` (OWASP's advice against formula
injection), so Excel, LibreOffice and Google Sheets show it as text.
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.I)
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>&])")


def md_code(text: object) -> str:
    """`text` as an inline code span that no backtick in it can close."""
    text = str(text).replace("\n", " ").replace("\r", " ")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_text(text: object) -> str:
    """`text` as plain Markdown text: no markup, link, HTML or line break of its own."""
    flat = str(text).replace("\n", " ").replace("\r", " ")
    return _MARKDOWN.sub(r"\\\1", flat)


def md_fence(lines: list[str]) -> list[str]:
    """`lines` as a fenced code block that no line in it can close."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *lines, fence]


def cell(value: object) -> str:
    """A CSV / TSV cell a spreadsheet shows as text, not as a formula."""
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text
