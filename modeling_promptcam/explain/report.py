"""The one HTML report writer: a single self-contained file (every figure embedded as base64 PNG), used by
`promptcam explain` ([`write_html_report`]), the demo's report (`demo.report`) and the trait atlas
(`evaluation.atlas_report`), all through [`write_html_page`]."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..files import write_atomically
from .explanation import Explanation

STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%;border:1px solid #ddd}"
    "table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}"
    ".bad{color:#b00}img.thumb{max-width:none;margin:1px}"
)


@dataclass
class ReportSection:
    """One section of a report page, drawn in this order: heading, warnings, paragraphs, table, list, figures.

    The heading and figure titles are plain text (escaped here); paragraphs, table cells and list items are HTML
    fragments, so whoever builds them escapes what comes from data (`html.escape`) and may use inline markup.
    """

    heading: str = ""  # none: the section continues the one before it
    level: int = 2  # the heading's level (h2, h3, ...); figure titles are one level below
    warnings: Sequence[str] = ()  # paragraphs in the warning colour, before the others
    paragraphs: Sequence[str] = ()
    table: Sequence[Sequence[str]] = ()  # rows of cells
    table_header: Sequence[str] = ()  # column headings; without them each row's first cell heads its row
    items: Sequence[str] = ()  # a bulleted list
    figures: Sequence[tuple[str, bytes]] = ()  # (title, PNG bytes); an empty title shows the figure alone
    is_warning: bool = False  # the heading in the warning colour (inputs that failed, for instance)


def _heading(text: str, level: int, is_warning: bool = False) -> str:
    css = " class='bad'" if is_warning else ""
    return f"<h{level}{css}>{html.escape(text)}</h{level}>"


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(f"<{tag}>{value}</{tag}>" for value in values)

    if header:
        lines = [f"<tr>{cells('th', header)}</tr>"] + [f"<tr>{cells('td', row)}</tr>" for row in rows]
    else:  # each row headed by its first cell
        lines = [f"<tr>{cells('th', row[:1])}{cells('td', row[1:])}</tr>" for row in rows]
    return f"<table>{''.join(lines)}</table>"


def _figure(title: str, png: bytes, level: int) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    if not title:
        return f"<img src='data:image/png;base64,{encoded}'>"
    return f"{_heading(title, level)}<img alt='{html.escape(title)}' src='data:image/png;base64,{encoded}'>"


def image_tag(png: bytes, alt: str = "", title: str = "") -> str:
    """An `<img>` with the PNG embedded (base64), for a table cell or paragraph of a [`ReportSection`]."""
    encoded = base64.b64encode(png).decode("ascii")
    extra = f" title='{html.escape(title)}'" if title else ""
    return f"<img class='thumb' alt='{html.escape(alt)}'{extra} src='data:image/png;base64,{encoded}'>"


def write_html_page(path: str | os.PathLike, title: str, sections: Sequence[ReportSection]) -> None:
    """Write a single HTML file, atomically: the title as its first heading, then the sections, every figure embedded
    (base64 PNG), so no other file is needed to view it."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        if section.heading:
            parts.append(_heading(section.heading, section.level, section.is_warning))
        parts += [f"<p class='bad'>{text}</p>" for text in section.warnings]
        parts += [f"<p>{text}</p>" for text in section.paragraphs]
        if section.table:
            parts.append(_table(section.table, section.table_header))
        if section.items:
            parts.append("<ul>" + "".join(f"<li>{item}</li>" for item in section.items) + "</ul>")
        parts += [_figure(name, png, section.level + 1) for name, png in section.figures]
    parts.append("</body></html>")
    write_atomically(path, "\n".join(parts))


def explanation_section(name: str, explanation: Explanation, figures: dict[str, bytes]) -> ReportSection:
    """One explained image: a misclassification warning when there is one, its top traits and how they were ranked,
    its top-k predictions and its figures (PNG bytes by stem)."""
    warnings = []
    if explanation.true is not None:
        warnings.append(
            f"Misclassified: true class {html.escape(explanation.true.name)}, "
            f"predicted {html.escape(explanation.predicted.name)}."
        )
    ranking = explanation.predicted.ranking
    top_traits = (
        f"Top traits of {html.escape(explanation.predicted.name)}: heads "
        f"{', '.join(map(str, ranking.top_traits))} (ranking: blur={ranking.blur}, stop={ranking.stop})."
    )
    return ReportSection(
        heading=name,
        warnings=warnings,
        paragraphs=[top_traits],
        table=[(html.escape(label), f"{score:.4f}") for label, score in explanation.predictions],
        table_header=("class", "probability"),
        figures=list(figures.items()),
    )


def write_html_report(
    items: Sequence[tuple[str, Explanation, dict[str, bytes]]],
    path: str | os.PathLike,
    title: str = "Prompt-CAM report",
    failures: Sequence[tuple[str, str]] = (),
) -> None:
    """The report of `promptcam explain`: a single HTML file with every figure embedded (base64 PNG), so no other
    file is needed to view it.

    Args:
        items: per image, its name, its explanation and its figures as PNG bytes (by stem).
        failures: (input, message) pairs for inputs that could not be explained.
    """
    sections = [ReportSection(paragraphs=[f"{len(items)} image(s) explained."])]
    sections += [explanation_section(name, explanation, figures) for name, explanation, figures in items]
    if failures:
        listed = [f"{html.escape(item)}: {html.escape(message)}" for item, message in failures]
        sections.append(ReportSection(heading="Not explained", items=listed, is_warning=True))
    write_html_page(path, title, sections)


__all__ = ["ReportSection", "explanation_section", "image_tag", "write_html_page", "write_html_report"]
