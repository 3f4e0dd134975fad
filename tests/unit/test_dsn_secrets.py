"""Passwords never show in messages about a DSN (``_db.scrub`` and ``_db.redact``), and
hiding a short one does not garble the rest of the message."""

from __future__ import annotations

from pgqueue import _db


def test_a_short_password_is_hidden_where_it_stands_alone_and_nowhere_else() -> None:
    dsn = "host=db user=bob password=as"
    message = 'FATAL: password authentication failed for user "bob"; after "as" in string'
    assert _db.scrub(message, dsn) == (
        'FATAL: password authentication failed for user "bob"; after "***" in string'
    )


def test_a_long_password_is_hidden_even_inside_a_token() -> None:
    dsn = "postgresql://bob:longer-s3cret@db/app"
    message = 'invalid port in "bob:longer-s3cretX@db" (longer-s3cret)'
    assert "longer-s3cret" not in _db.scrub(message, dsn)
    assert "longer-s3cret" not in _db.redact(dsn)
