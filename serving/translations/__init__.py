"""The debtor-facing texts in Dutch and English: one catalogue file per language (``nl.json``, ``en.json``).

Every text the self-service page and the confirmation show comes from here, by key; templates and code hold
no sentence of their own. :func:`text` fills ``{placeholders}`` with ``str.format``. Both catalogues must have
the same keys (checked when loaded), so a text missing in one language fails at start-up, not in front of a
debtor.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from pathlib import Path

from serving.schemas_menu import LANGUAGES

__all__ = ["CatalogueError", "catalogue", "date", "money", "text"]

_HERE = Path(__file__).resolve().parent


class CatalogueError(ValueError):
    """A catalogue is missing, not JSON, or lacks keys the other language has."""


@cache
def catalogue(language: str) -> dict[str, str]:
    """The texts of one language (``nl`` or ``en``), key to text."""
    if language not in LANGUAGES:
        raise CatalogueError(f"language: {language!r} is not one of {list(LANGUAGES)}")
    loaded = {lang: _load(lang) for lang in LANGUAGES}
    keys = {lang: set(texts) for lang, texts in loaded.items()}
    for lang in LANGUAGES:
        missing = sorted(set().union(*keys.values()) - keys[lang])
        if missing:
            raise CatalogueError(f"serving/translations/{lang}.json lacks {missing}")
    return loaded[language]


def _load(language: str) -> dict[str, str]:
    path = _HERE / f"{language}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogueError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise CatalogueError(f"{path}: must be one JSON object of strings")
    return data


def text(language: str, key: str, **values: object) -> str:
    """The text ``key`` in ``language``, with ``{name}`` placeholders filled from ``values``."""
    return catalogue(language)[key].format(**values)


def money(language: str, amount_eur: float) -> str:
    """An amount in euros as the language writes it (``EUR 1,234.50``, ``€ 1.234,50``)."""
    texts = catalogue(language)
    whole, cents = f"{abs(amount_eur):,.2f}".split(".")
    number = whole.replace(",", texts["thousands_mark"]) + texts["decimal_mark"] + cents
    return ("-" if amount_eur < 0 else "") + texts["money_format"].format(amount=number)


def date(language: str, day: dt.date) -> str:
    """A date as the language writes it (``10 February 2026``, ``10 februari 2026``)."""
    texts = catalogue(language)
    return texts["date_format"].format(day=day.day, month=texts[f"month_{day.month}"], year=day.year)
