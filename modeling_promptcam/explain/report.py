"""The one HTML report writer: a single self-contained file (every figure embedded as base64 PNG), used by
`promptcam explain` and by the demo's report."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence

from ..files import write_atomically
from .explanation import Explanation


def write_html_report(
    items: Sequence[tuple[str, Explanation, dict[str, bytes]]],
    path: str | os.PathLike,
    title: str = "Prompt-CAM report",
    failures: Sequence[tuple[str, str]] = (),
) -> None:
    """A single HTML file with every figure embedded (base64 PNG): no other file is needed to view it.

    Args:
        items: per image, its name, its explanation and its figures as PNG bytes (by stem).
        failures: (input, message) pairs for inputs that could not be explained.
    """
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%;border:1px solid #ddd}"
        "table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}"
        ".bad{color:#b00}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(items)} image(s) explained.</p>",
    ]
    for name, explanation, images in items:
        parts.append(f"<h2>{html.escape(name)}</h2>")
        if explanation.true is not None:
            parts.append(
                f"<p class='bad'>Misclassified: true class {html.escape(explanation.true.name)}, "
                f"predicted {html.escape(explanation.predicted.name)}.</p>"
            )
        ranking = explanation.predicted.ranking
        parts.append(
            f"<p>Top traits of {html.escape(explanation.predicted.name)}: heads "
            f"{', '.join(map(str, ranking.top_traits))} (ranking: blur={ranking.blur}, stop={ranking.stop}).</p>"
        )
        rows = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{score:.4f}</td></tr>" for label, score in explanation.predictions
        )
        parts.append(f"<table><tr><th>class</th><th>probability</th></tr>{rows}</table>")
        for stem, data in images.items():
            encoded = base64.b64encode(data).decode("ascii")
            parts.append(
                f"<h3>{html.escape(stem)}</h3><img alt='{html.escape(stem)}' src='data:image/png;base64,{encoded}'>"
            )
    if failures:
        parts.append("<h2 class='bad'>Not explained</h2><ul>")
        parts.extend(f"<li>{html.escape(item)}: {html.escape(message)}</li>" for item, message in failures)
        parts.append("</ul>")
    parts.append("</body></html>")
    write_atomically(path, "\n".join(parts))
