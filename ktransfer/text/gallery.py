"""The report's view of texts: a table of the most confidently wrong sentences."""

from __future__ import annotations

import html
from typing import Any

from ktransfer.text.textset import TextSet

MAX_CHARS = 400


def gallery(texts: TextSet, mistakes: list[dict[str, Any]]) -> str:
    """An HTML table of `mistakes` (rows with index, true, predicted, confidence) and their
    texts (cut to 400 characters); '' without mistakes."""
    if not mistakes or texts.texts is None:
        return ""
    rows = []
    for m in mistakes:
        text = str(texts.texts[m["index"]])
        if len(text) > MAX_CHARS:
            text = text[:MAX_CHARS] + " ..."
        rows.append(f"<tr><td>{html.escape(m['true'])}</td><td>{html.escape(m['predicted'])}"
                    f"</td><td>{m['confidence']:.0%}</td>"
                    f"<td class='text'>{html.escape(text)}</td></tr>")
    head = "<tr><th>true</th><th>predicted</th><th>confidence</th><th>text</th></tr>"
    return (f"<h2>Most confident mistakes</h2><table class='mistakes'>{head}{''.join(rows)}"
            "</table>")
