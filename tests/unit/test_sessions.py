"""The web session cookie (services/gateway/sessions.py): signed by the gateway's own key, refused when changed or
unused too long, HttpOnly and SameSite=Strict always, Secure over HTTPS."""
from http.cookies import SimpleCookie

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from services.gateway import sessions as sessions_module
from services.gateway.sessions import COOKIE, Sessions


@pytest.fixture
def sessions():
    keeper = Sessions()
    keeper.key, keeper.idle_seconds = b"k" * 40, 900
    return keeper


def request_with(cookie=None, base_url="http://opac.example"):
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    return Request(EnvironBuilder(path="/my", base_url=base_url, headers=headers).get_environ())


def cookie_set_by(response):
    [header] = response.headers.getlist("Set-Cookie")
    return SimpleCookie(header)[COOKIE], header


@pytest.mark.parametrize(("base_url", "secure"), [("http://opac.example", False), ("https://opac.example", True)])
def test_the_cookie_is_httponly_strict_and_secure_over_https(sessions, base_url, secure):
    response = Response()
    sessions.keep(response, request_with(base_url=base_url), "a-token")
    morsel, header = cookie_set_by(response)
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    assert bool(morsel["secure"]) is secure
    assert "Max-Age" not in header and "Expires" not in header  # ends with the browser, or when unused


def test_a_session_reads_back_until_unused_too_long_or_changed(sessions, monkeypatch):
    response = Response()
    sessions.keep(response, request_with(), "a-token", started=100.0)
    value = cookie_set_by(response)[0].value
    session = sessions.read(request_with(value))
    assert session.token == "a-token" and session.started == 100.0 and len(session.csrf) == 40
    body, _, signature = value.partition(".")
    assert sessions.read(request_with(f"{body[:-2]}xx.{signature}")) is None
    assert sessions.read(request_with(body)) is None
    other = Sessions()
    other.key, other.idle_seconds = b"o" * 40, 900
    assert other.read(request_with(value)) is None  # another gateway's key
    later = sessions_module.token_time().timestamp() + 901
    monkeypatch.setattr(sessions_module, "token_time", lambda: type("T", (), {"timestamp": lambda self: later})())
    assert sessions.read(request_with(value)) is None


def test_the_csrf_token_belongs_to_the_session(sessions):
    first, second = Response(), Response()
    sessions.keep(first, request_with(), "one-token")
    sessions.keep(second, request_with(), "another-token")
    one = sessions.read(request_with(cookie_set_by(first)[0].value))
    another = sessions.read(request_with(cookie_set_by(second)[0].value))
    assert one.csrf != another.csrf
