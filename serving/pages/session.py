"""Staff sessions for browsers: passwords checked against scrypt hashes, a signed session cookie, CSRF tokens.

Machines keep the bearer token of the API; people log in with a form. A login sets one cookie, ``regsim_staff``:
a JSON payload (the user, a CSRF token, the expiry) signed with HMAC-SHA256 under the ``session_secret``
setting, so the server keeps no table of live sessions and a restart keeps people logged in. Logging out revokes
the session in the store (:meth:`SessionSigner.revoke`, table ``revoked_sessions``): a copy of the cookie taken
before is refused from then on, by every server process on the store and after restarts, until the session's
expiry (then the expiry refuses it, and the row is purged). The cookie is
``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it) and ``Secure`` where the page is
served over HTTPS. Every page also carries a CSRF token: a form that changes something (login, logout) posts
it back, and the server compares it with the one in the signed cookie (double submit, signed), so a forged
cross-site form fails even where a browser ignores ``SameSite``.

Passwords are stored as ``user:scrypt$<salt hex>$<hash hex>`` (:func:`hash_password`; scrypt with n=2**14,
r=8, p=1), never in clear; ``python -m serving.pages.session USER`` prints the entry for a password typed in.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import secrets
import sys
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from serving import db

__all__ = ["COOKIE", "Session", "SessionSigner", "hash_password", "verify_password"]

#: The session cookie's name.
COOKIE = "regsim_staff"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The stored form of a password: ``scrypt$<salt hex>$<hash hex>``."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` value (in constant time)."""
    scheme, _, rest = stored.partition("$")
    salt_hex, _, digest_hex = rest.partition("$")
    if scheme != "scrypt" or not salt_hex or not digest_hex:
        return False
    try:
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        return False
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **_SCRYPT)
    return hmac.compare_digest(digest, expected)


@dataclass(frozen=True)
class Session:
    """A browser's session: the logged-in user (``None`` before login), its CSRF token, and its expiry."""

    user: str | None
    csrf: str
    expires: float

    @classmethod
    def anonymous(cls, lifetime_s: float) -> Session:
        """A fresh session with no user (what the login page hands out, with the token its form posts)."""
        return cls(None, secrets.token_urlsafe(24), time.time() + lifetime_s)


class SessionSigner:
    """Signs and checks session cookies; keeps the sessions ended by a logout in the store.

    Args:
        secret: The signing key (the ``session_secret`` setting, at least 32 characters).
        lifetime_s: How long a session lasts after login (seconds).
    """

    def __init__(self, secret: str, lifetime_s: float) -> None:
        self._key = hashlib.sha256(b"regsim-staff-session\0" + secret.encode("utf-8")).digest()
        self.lifetime_s = lifetime_s

    def revoke(self, session: Session, engine: Engine) -> None:
        """End a session before its expiry (logout): its cookie, and every copy of it, is no session any more.

        The session's id (its CSRF token, fresh at every login) is stored hashed in ``revoked_sessions`` with
        the session's expiry, in one transaction that also purges the rows whose expiry has passed. A session
        already expired needs no row; revoking a session twice keeps one row.
        """
        now = time.time()
        table = db.revoked_sessions
        with engine.begin() as conn:
            conn.execute(sa.delete(table).where(table.c.expires_at <= now))
            if session.expires > now:
                insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
                row = {"session_hash": _session_hash(session), "expires_at": session.expires}
                conn.execute(insert.values(row).on_conflict_do_nothing(index_elements=["session_hash"]))

    def is_revoked(self, session: Session, engine: Engine) -> bool:
        """Whether ``session`` was ended by a logout (one primary-key look-up in ``revoked_sessions``)."""
        with engine.connect() as conn:
            return conn.execute(_SELECT_REVOKED, {"h": _session_hash(session)}).first() is not None

    def dump(self, session: Session) -> str:
        """The cookie value of a session."""
        payload = json.dumps({"u": session.user, "c": session.csrf, "e": session.expires}, separators=(",", ":"))
        body = base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii").rstrip("=")
        return f"{body}.{self._sign(body)}"

    def load(self, value: str | None, engine: Engine) -> Session | None:
        """The session of a cookie value, or ``None`` if it is missing, forged, expired or logged out.

        Args:
            value: The cookie's value.
            engine: The store, where logged-out sessions are listed (only a logged-in session is looked up).
        """
        if not value or "." not in value:
            return None
        body, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = Session(raw["u"], str(raw["c"]), float(raw["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.user is not None and not isinstance(session.user, str):
            return None
        if session.expires <= time.time():
            return None
        if session.user is not None and self.is_revoked(session, engine):
            return None
        return session

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def _session_hash(session: Session) -> str:
    """What ``revoked_sessions`` keeps of a session: the SHA-256 of its id (the CSRF token), hex."""
    return hashlib.sha256(session.csrf.encode("utf-8")).hexdigest()


_SELECT_REVOKED = sa.select(db.revoked_sessions.c.session_hash).where(
    db.revoked_sessions.c.session_hash == sa.bindparam("h")
)


def _main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m serving.pages.session USER  (prints USER:<hash> for REGSIM_STAFF_USERS)")
    password = getpass.getpass(f"password for {sys.argv[1]}: ")
    if len(password) < 12:
        sys.exit("password: at least 12 characters")
    print(f"{sys.argv[1]}:{hash_password(password)}")


if __name__ == "__main__":
    _main()
