"""The report's view of texts: a table of the most confidently wrong sentences, each word piece
coloured by how much it pushed the model toward the class it chose (integrated gradients)."""

from __future__ import annotations

import html
from typing import Any

from ktransfer.text.attributions import TokenAttributions, highlight
from ktransfer.text.textset import TextSet

MAX_CHARS = 400


def gallery(texts: TextSet, mistakes: list[dict[str, Any]],
            attribute: TokenAttributions | None = None) -> str:
    """An HTML section with a table of `mistakes` (rows with index, true, predicted, how and
    the output that explains them) and their texts (cut to 400 characters), highlighted with
    `attribute` when given; '' without mistakes."""
    if not mistakes or texts.texts is None:
        return ""
    cut = [str(texts.texts[m["index"]])[:MAX_CHARS] for m in mistakes]
    shown = [html.escape(t) for t in cut]
    if attribute is not None:
        names = list(texts.class_names)
        attributions = attribute(cut, [m["output"] for m in mistakes], names)
        shown = [highlight(a) for a in attributions]
    rows = []
    for m, text, original in zip(mistakes, shown, cut, strict=True):
        more = " ..." if len(str(texts.texts[m["index"]])) > len(original) else ""
        rows.append(f"<tr><td>{html.escape(m['true'])}</td><td>{html.escape(m['predicted'])}"
                    f"</td><td>{html.escape(m['how'])}</td><td class='text'>{text}{more}</td>"
                    "</tr>")
    head = "<tr><th>true</th><th>predicted</th><th>how wrong</th><th>text</th></tr>"
    note = (" (green word pieces pushed toward the predicted class, red away from it: "
            "integrated gradients)" if attribute is not None else "")
    return (f"<h2>Most confident mistakes{note}</h2><table class='mistakes'>{head}"
            f"{''.join(rows)}</table>")
