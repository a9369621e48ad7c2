"""Studio's session cookie: encrypted and signed, refused when changed, foreign or too old."""

from __future__ import annotations

import base64

from app.settings import Settings
from app.studio.session import SessionCodec, StudioSession, new_session, session_secret

KEY = base64.b64encode(b"k" * 32).decode()


def test_a_session_round_trips_and_hides_its_key() -> None:
    codec = SessionCodec(session_secret(Settings(master_key=KEY)))
    session = StudioSession(csrf="c", tenant_key="secret-service-key", tenant_ref="abc")
    cookie = codec.encode(session)
    assert "secret-service-key" not in cookie
    assert "secret-service-key" not in base64.urlsafe_b64decode(cookie + "==").decode("latin-1")
    assert codec.decode(cookie) == session
    # The same master key on another replica reads it; another master key does not.
    assert SessionCodec(session_secret(Settings(master_key=KEY))).decode(cookie) == session
    other = base64.b64encode(b"o" * 32).decode()
    assert SessionCodec(session_secret(Settings(master_key=other))).decode(cookie) is None


def test_changed_expired_and_missing_cookies_are_refused() -> None:
    codec = SessionCodec(session_secret(Settings(master_key=KEY)), max_age=60)
    cookie = codec.encode(new_session())
    flipped = cookie[:-5] + ("A" if cookie[-5] != "A" else "B") + cookie[-4:]
    assert codec.decode(flipped) is None
    assert codec.decode(codec.encode(new_session(), at=1_000_000)) is None
    assert codec.decode("") is None and codec.decode(None) is None and codec.decode("garbage") is None


def test_without_a_master_key_each_process_has_its_own_secret() -> None:
    assert session_secret(Settings()) != session_secret(Settings())
    assert len(session_secret(Settings(master_key=KEY))) == 32


def test_the_csrf_check_compares_exactly() -> None:
    session = StudioSession(csrf="token-1")
    assert session.csrf_matches("token-1")
    assert (
        not session.csrf_matches("token-2")
        and not session.csrf_matches(None)
        and not session.csrf_matches("")
    )
