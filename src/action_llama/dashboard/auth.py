"""Who may see the dashboard: cookie sessions, one-time login links, and cross-site checks.

    Sessions     a random id in an HttpOnly, SameSite=Strict cookie. Only its SHA-256 is kept,
                 in memory: a session ends after `IDLE` without a request, `MAX_AGE` after
                 login, at logout, or when al start stops (log in again).
    LoginLinks   one-time tokens for `/login/<token>`, valid `LINK_TTL`: printed by `al start`
                 and made for `al dashboard`. Only their hashes are kept.
    from_here    a POST must come from the dashboard's own pages: its Origin (else Referer)
                 names the host it was sent to, and it carries the session's CSRF token.

The gateway API key stays the one credential: a login form takes it, and a login link can only
be made by its bearer (`al dashboard`) or by `al start` itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request

#: The session cookie.
COOKIE = "al_session"
#: The cookie of a login form, matched against its hidden field (double submit).
LOGIN_COOKIE = "al_login"
#: A session ends after this long without a request...
IDLE = 12 * 3600.0
#: ...and this long after it began, whatever its use.
MAX_AGE = 7 * 24 * 3600.0
#: How long a login link may wait to be used.
LINK_TTL = 15 * 60.0
#: Sessions kept at most (the oldest are ended first): logins cannot fill the memory.
MAX_SESSIONS = 1000
MAX_LINKS = 100
#: Where POSTs carry the CSRF token: a form field, or a header (htmx requests).
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Note:
    """What an action did (or why it could not), shown once on the next page."""

    text: str
    error: bool = False


@dataclass
class Session:
    """One logged-in browser."""

    key: str
    #: The token every POST of this session carries.
    csrf: str
    started: float
    seen: float
    #: One-line notes for the next page shown ("paused dev"), said once.
    notes: list[Note] = field(default_factory=list)
    ended: bool = False

    def expired(self, now: float) -> bool:
        return self.ended or now - self.seen > IDLE or now - self.started > MAX_AGE

    def note(self, text: str, *, error: bool = False) -> None:
        self.notes = [*self.notes[-4:], Note(text, error)]

    def take_notes(self) -> list[Note]:
        notes, self.notes = self.notes, []
        return notes

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class Sessions:
    """The dashboard's sessions, by the hash of their cookie."""

    def __init__(self) -> None:
        self._now = time.monotonic
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def begin(self) -> tuple[str, Session]:
        """A new session: (the cookie value to set, the session)."""
        self._sweep()
        cookie = secrets.token_urlsafe(32)
        now = self._now()
        session = Session(_digest(cookie), secrets.token_urlsafe(32), now, now)
        self._sessions[session.key] = session
        while len(self._sessions) > MAX_SESSIONS:
            _, oldest = self._sessions.popitem(last=False)
            oldest.ended = True
        return cookie, session

    def find(self, cookie: str | None) -> Session | None:
        """The live session of this cookie (its idle time starts again), or None."""
        if not cookie:
            return None
        key = _digest(cookie)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self._now()
        if session.expired(now):
            self.end(session)
            return None
        session.seen = now
        self._sessions.move_to_end(key)
        return session

    def end(self, session: Session) -> None:
        """Log out: the cookie no longer opens anything, and open live streams close."""
        session.ended = True
        self._sessions.pop(session.key, None)

    def _sweep(self) -> None:
        now = self._now()
        for key in [k for k, s in self._sessions.items() if s.expired(now)]:
            self._sessions.pop(key).ended = True

    def __len__(self) -> int:
        return len(self._sessions)


class LoginLinks:
    """One-time login tokens: each opens one session, once, within `LINK_TTL`."""

    def __init__(self) -> None:
        self._now = time.monotonic
        self._links: OrderedDict[str, float] = OrderedDict()

    def issue(self) -> str:
        """A new token (what goes after `/login/`)."""
        now = self._now()
        for key in [k for k, until in self._links.items() if until < now]:
            del self._links[key]
        token = secrets.token_urlsafe(32)
        self._links[_digest(token)] = now + LINK_TTL
        while len(self._links) > MAX_LINKS:
            self._links.popitem(last=False)
        return token

    def redeem(self, token: str) -> bool:
        """Whether `token` is a live link; it is used up either way."""
        until = self._links.pop(_digest(token), None)
        return until is not None and until >= self._now()


def session_topic(session: Session) -> str:
    """The change topic a session's live streams also watch: it moves when the session ends."""
    return f"session:{session.key}"


def from_here(request: Request) -> bool:
    """Whether a request was sent by a page of this host: its Origin header (else its Referer)
    names the host it was sent to. Only the host and port are compared, so a TLS proxy in front
    (https outside, http here) does not break it."""
    host = request.headers.get("host", "").lower()
    sender = request.headers.get("origin") or request.headers.get("referer")
    if not host or not sender or sender == "null":
        return False
    return urlsplit(sender).netloc.lower() == host


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this site only (never `//elsewhere`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
