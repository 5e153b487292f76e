"""HTML building blocks of the report: escaping, inline figures, sections, paragraphs and missing-input notes.

Figures are embedded as base64 PNG data URIs (:func:`figure_data_uri`), so the page loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["figure_data_uri"]


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def figure_data_uri(fig: Figure) -> str:
    """A figure as a ``data:image/png;base64,...`` URI (PNG without the software tag, so no URL inside)."""
    buf = io.BytesIO()
    FigureCanvasAgg(fig)  # render with Agg whatever backend the process (or a notebook) has selected
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig: Figure, alt: str) -> str:
    return f'<img src="{figure_data_uri(fig)}" alt="{_e(alt)}">'


def _section(sid: str, title: str, *parts: str) -> str:
    return f'<section id="{sid}">\n<h2>{_e(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def _p(text: str) -> str:
    """A paragraph of already-escaped text."""
    return f"<p>{text}</p>"


def _missing(sid: str, title: str, what: str) -> str:
    return _section(sid, title, f'<p class="missing">{what}</p>')
