"""The dashboard's guards: authentication by a shared token, and protection of its actions
against cross-site requests (a double-submit cookie plus an Origin check)."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

#: Cookie holding the CSRF token; every form posts the same value back.
CSRF_COOKIE = "pgqueue_csrf"
#: Form field carrying the CSRF token.
CSRF_FIELD = "csrf"


def _basic(value: str) -> tuple[str, str] | None:
    """(user, password) of an HTTP basic credential, or None when it is malformed."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


def basic_user(request: Request) -> str | None:
    """The user name of the request's HTTP basic credentials (the token is its password, any
    name goes: the audit trail records it), or None without one."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    found = _basic(value) if scheme.lower() == "basic" else None
    return found[0] or None if found else None


def token_matches(header: str | None, token: str) -> bool:
    """True when an ``Authorization`` header carries ``token``: as a Bearer token, or as the
    password of HTTP basic auth (any user name). Compared in constant time."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip().encode(), token.encode())
    if scheme.lower() == "basic":
        found = _basic(value)
        return found is not None and hmac.compare_digest(found[1].encode(), token.encode())
    return False


class TokenAuth:
    """ASGI middleware: every HTTP request must carry the token (see :func:`token_matches`),
    else 401 with a basic-auth challenge, so a browser asks for it."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            auth = headers.get(b"authorization", b"").decode("latin-1")
            if not token_matches(auth, self.token):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"www-authenticate", b'Basic realm="pgqueue", charset="UTF-8"'),
                            (b"content-type", b"text/plain; charset=utf-8"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b"authentication required\n"})
                return
        await self.app(scope, receive, send)


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser: its cookie's value, or a new random one (the page
    response sets the cookie, see :func:`remember_csrf`)."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)


def csrf_problem(request: Request, submitted: str | None) -> str | None:
    """Why a POST must be refused as cross-site, or None when it is fine.

    The form's token must equal the cookie's (a page of another site can read neither), and an
    ``Origin`` header, when the browser sends one, must name this host.
    """
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        return f"cross-site request refused (origin {origin})"
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        return "missing or wrong CSRF token: reload the page and try again"
    return None
