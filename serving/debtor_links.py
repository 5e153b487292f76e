"""Signed links to a debtor's self-service page, and the CSRF tokens of its forms.

A reminder carries a link ``/self-service/<token>``: the token (``<arrangement id>.<expiry>.<signature>``)
names one arrangement and an expiry, signed
with HMAC-SHA256 under the ``debtor_link_secret`` setting, so the page needs no login (the debtor has none) and
no one can reach another arrangement's page by changing the number. The page's forms carry a CSRF token that the
server also puts in a cookie (``regsim_debtor``, ``HttpOnly``, ``SameSite=Strict``, scoped to the page), signed
for the arrangement; a form is accepted only when the two agree (double submit, signed), so a forged cross-site
form fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

__all__ = ["COOKIE", "LinkSigner", "PageLink"]

#: The CSRF cookie of the debtor's page.
COOKIE = "regsim_debtor"


@dataclass(frozen=True)
class PageLink:
    """What a valid link token says: the arrangement and until when the link works (Unix seconds)."""

    arrangement_id: int
    expires: float


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


class LinkSigner:
    """Makes and checks link tokens and CSRF cookies.

    Args:
        secret: The signing key (the ``debtor_link_secret`` setting, at least 32 characters).
        lifetime_s: How long a link stays valid (seconds).
    """

    def __init__(self, secret: str, lifetime_s: float) -> None:
        self._key = hashlib.sha256(b"regsim-debtor-link\0" + secret.encode("utf-8")).digest()
        self.lifetime_s = lifetime_s

    def _sign(self, purpose: str, body: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\0{body}".encode(), hashlib.sha256).digest())

    def token(self, arrangement_id: int, now: float | None = None) -> tuple[str, float]:
        """A link token for an arrangement, and its expiry (Unix seconds)."""
        expires = float(int((time.time() if now is None else now) + self.lifetime_s))
        body = f"{arrangement_id}.{int(expires)}"
        return f"{body}.{self._sign('link', body)}", expires

    def verify(self, token: str, now: float | None = None) -> PageLink | None:
        """The link a token stands for, or ``None`` if it is malformed, forged or expired."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign("link", body), parts[2]):
            return None
        link = PageLink(int(parts[0]), float(parts[1]))
        return link if link.expires > (time.time() if now is None else now) else None

    def new_csrf(self, arrangement_id: int) -> tuple[str, str]:
        """A fresh CSRF token for an arrangement's page and the cookie value that vouches for it."""
        token = secrets.token_urlsafe(24)
        return token, f"{token}.{self._sign('csrf', f'{arrangement_id}:{token}')}"

    def csrf_of(self, cookie: str | None, arrangement_id: int) -> str | None:
        """The CSRF token a cookie vouches for on an arrangement's page (``None``: missing or forged)."""
        if not cookie or "." not in cookie:
            return None
        token, _, sig = cookie.partition(".")
        if not hmac.compare_digest(self._sign("csrf", f"{arrangement_id}:{token}"), sig):
            return None
        return token

    def csrf_ok(self, cookie: str | None, arrangement_id: int, sent: str | None) -> bool:
        """Whether a form's CSRF token matches its cookie's for this arrangement."""
        token = self.csrf_of(cookie, arrangement_id)
        return token is not None and bool(sent) and hmac.compare_digest(token, sent or "")
