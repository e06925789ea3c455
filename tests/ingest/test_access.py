"""Access decisions at the edge, as tables: tokens, offers per address, sessions per token, origins, TURN
credentials; and `voicebus token issue` prints a token the edge accepts."""

from __future__ import annotations

import base64
import json

import pytest

from ingest.access import Access, Bucket, Policy, origin_allowed
from ingest.ice import ice_config, turn_credentials
from ingest.settings import IceServer
from ingest.tokens import Claims, TokenError, mint, parse_duration, verify
from voicebus.cli import main as cli

SECRET = "s3cret-for-tests"
NOW = 1_700_000_000.0
TOKEN = mint(SECRET, 600, 2, "ann", now=NOW, token_id="t1")


def _tamper_payload(token: str, **changes: object) -> str:
    version, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{version}.{forged}.{signature}"


@pytest.mark.parametrize(("token", "secret", "now", "check_expiry", "expected"), [
    (TOKEN, SECRET, NOW, True, Claims("t1", int(NOW) + 600, 2, "ann")),
    (TOKEN, SECRET, NOW + 599, True, Claims("t1", int(NOW) + 600, 2, "ann")),
    (TOKEN, SECRET, NOW + 600, True, "token expired"),
    (TOKEN, SECRET, NOW + 10**6, False, Claims("t1", int(NOW) + 600, 2, "ann")),  # ending a session: no expiry
    (TOKEN, "another secret", NOW, True, "bad token signature"),
    (_tamper_payload(TOKEN, max=1000), SECRET, NOW, True, "bad token signature"),
    (_tamper_payload(TOKEN, exp=int(NOW) + 10**6), SECRET, NOW + 700, True, "bad token signature"),
    (TOKEN.rsplit(".", 1)[0] + ".", SECRET, NOW, True, "bad token signature"),
    (TOKEN.rsplit(".", 1)[0] + ".!!!", SECRET, NOW, True, "malformed token signature"),
    ("v2" + TOKEN[2:], SECRET, NOW, True, "token version 'v2'"),
    ("", SECRET, NOW, True, "malformed token"),
    ("not-a-token", SECRET, NOW, True, "malformed token"),
    (TOKEN + ".x", SECRET, NOW, True, "malformed token"),
    (TOKEN + "A" * 2000, SECRET, NOW, True, "malformed token"),
    (SECRET, SECRET, NOW, True, "malformed token"),  # the secret itself is no token
], ids=["valid", "valid-last-second", "expired", "expired-but-not-checked", "other-secret", "more-sessions",
        "later-expiry", "no-signature", "signature-not-base64", "version", "empty", "no-dots", "four-parts", "huge",
        "the-secret"])
def test_verify(token: str, secret: str, now: float, check_expiry: bool, expected: Claims | str) -> None:
    if isinstance(expected, Claims):
        assert verify(secret, token, now, check_expiry) == expected
    else:
        with pytest.raises(TokenError, match=expected):
            verify(secret, token, now, check_expiry)


@pytest.mark.parametrize(("args", "error"), [
    (("", 600), "no session secret"),
    ((SECRET, 0), "ttl"),
    ((SECRET, 10**9), "ttl"),
    ((SECRET, 60, 0), "max sessions"),
])
def test_mint_refuses(args: tuple, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        mint(*args)


def test_tokens_are_distinct_and_compact() -> None:
    a, b = mint(SECRET, 600, now=NOW), mint(SECRET, 600, now=NOW)
    assert a != b and verify(SECRET, a, NOW).token_id != verify(SECRET, b, NOW).token_id
    assert len(a) < 200 and all(c.isalnum() or c in "-_." for c in a)  # fits a header, a URL, a form field


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400),
                                               ("1.5m", 90)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10w", "-5m", "ten"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# (offers a minute, times of offers) -> what each got: 0 allowed, else seconds to wait
@pytest.mark.parametrize(("per_minute", "times", "waits"), [
    (3, [0, 0, 0, 0], [0, 0, 0, 20]),  # a burst of the bucket's size, then one every 20 s
    (3, [0, 0, 0, 10, 20], [0, 0, 0, 10, 0]),
    (3, [0, 0, 0, 600, 600, 600, 600], [0, 0, 0, 0, 0, 0, 20]),  # refilled, never beyond its size
    (60, [0] * 61, [0] * 60 + [1]),
    (1, [0, 30, 59.5, 60], [0, 30, 0.5, 0]),
])
def test_bucket(per_minute: int, times: list[float], waits: list[float]) -> None:
    bucket = Bucket(per_minute)
    assert [pytest.approx(bucket.take(t)) for t in times] == waits


@pytest.mark.parametrize(("origin", "host", "allowed", "ok"), [
    (None, "edge:8080", [], True),  # not a browser's cross-site request
    ("http://edge:8080", "edge:8080", [], True),
    ("https://edge.example.org", "edge.example.org", [], True),  # default port
    ("http://edge:80", "edge", [], True),
    ("https://EDGE:8080", "edge:8080", [], True),  # behind a TLS proxy, the scheme differs
    ("http://evil.example:8080", "edge:8080", [], False),
    ("http://edge:9090", "edge:8080", [], False),
    ("null", "edge:8080", [], False),
    ("file://", "edge:8080", [], False),
    ("http://edge:8080", None, [], False),
    ("http://edge:99999", "edge:99999", [], False),
    ("https://app.example.org", "edge:8080", ["https://app.example.org"], True),
    ("https://app.example.org/", "edge:8080", ["https://APP.example.org"], True),
    ("http://edge:8080", "edge:8080", ["https://app.example.org"], False),  # a list replaces same-origin
    ("https://anything", "edge:8080", ["*"], True),
    ("null", "edge:8080", ["null"], True),
])
def test_origin_allowed(origin: str | None, host: str | None, allowed: list[str], ok: bool) -> None:
    assert origin_allowed(origin, host, allowed) is ok


T1 = mint(SECRET, 600, 1, now=NOW, token_id="one")
T2 = mint(SECRET, 600, 2, now=NOW, token_id="two")
EXPIRED = mint(SECRET, 60, 1, now=NOW - 120, token_id="old")
FORGED = mint("not the secret", 600, 1, now=NOW, token_id="one")
SIGNED = Policy(session_secret=SECRET, offers_per_minute=3)
STATIC = Policy(auth_token="static", offers_per_minute=0)
BOTH = Policy(session_secret=SECRET, auth_token="static", offers_per_minute=0)
OPEN = Policy(offers_per_minute=2)
ORIGINS = Policy(allowed_origins=("https://app.example.org",), offers_per_minute=0)


def bearer(token: str) -> str:
    return f"Bearer {token}"


# Each case is a sequence of requests to one edge: (kind, Authorization, Origin, remote, t, release token id
# first or None) -> (status, Retry-After)
@pytest.mark.parametrize(("policy", "steps"), [
    (SIGNED, [(("offer", bearer(T1), None, "a", 0, None), (200, None)),
              (("offer", bearer(T1), None, "a", 1, None), (429, 5)),  # its one session is in use
              (("config", bearer(T1), None, "a", 1, None), (200, None)),  # ...but it may still read the config
              (("offer", bearer(T1), None, "a", 2, "one"), (200, None))]),  # released: again
    (SIGNED, [(("offer", bearer(T2), None, "a", 0, None), (200, None)),
              (("offer", bearer(T2), None, "b", 0, None), (200, None)),
              (("offer", bearer(T2), None, "c", 0, None), (429, 5))]),
    (SIGNED, [(("offer", None, None, "a", 0, None), (401, None)),
              (("offer", "Basic abc", None, "a", 0, None), (401, None)),
              (("offer", bearer(EXPIRED), None, "a", 0, None), (401, None)),
              (("offer", bearer(FORGED), None, "a", 0, None), (429, 20))]),  # the address's 3 offers are spent
    (SIGNED, [(("session", bearer(EXPIRED), None, "a", 0, None), (200, None)),  # ending a session needs no expiry
              (("session", bearer(FORGED), None, "a", 0, None), (401, None)),
              (("config", bearer(EXPIRED), None, "a", 0, None), (401, None)),
              (("offer", bearer("static"), None, "a", 0, None), (401, None))]),  # no static token in this mode
    (STATIC, [(("offer", bearer("static"), None, "a", 0, None), (200, None)),
              (("offer", bearer("static"), None, "a", 0, None), (200, None)),  # no session limit
              (("offer", bearer("Static"), None, "a", 0, None), (401, None)),
              (("offer", bearer(T1), None, "a", 0, None), (401, None)),
              (("offer", "bearer  static ", None, "a", 0, None), (200, None))]),
    (BOTH, [(("offer", bearer("static"), None, "a", 0, None), (200, None)),
            (("offer", bearer(T1), None, "a", 0, None), (200, None)),
            (("offer", bearer(T1), None, "a", 0, None), (429, 5))]),
    (OPEN, [(("offer", None, None, "a", 0, None), (200, None)),
            (("offer", None, None, "a", 0, None), (200, None)),
            (("offer", None, None, "a", 0, None), (429, 30)),
            (("offer", None, None, "b", 0, None), (200, None)),  # per address
            (("config", None, None, "a", 0, None), (200, None)),  # only offers are counted
            (("offer", None, None, "a", 30, None), (200, None)),
            (("offer", None, "http://evil.example", "c", 30, None), (403, None)),
            (("offer", None, "http://edge:8080", "c", 30, None), (200, None))]),
    (ORIGINS, [(("offer", None, "https://app.example.org", "a", 0, None), (200, None)),
               (("config", None, "https://evil.example", "a", 0, None), (403, None)),
               (("offer", None, None, "a", 0, None), (200, None))]),
], ids=["max-sessions", "max-sessions-across-addresses", "refused-tokens-count-as-offers", "session-and-config",
        "static", "static-and-signed", "open-rate-and-origin", "origin-list"])
def test_access_decisions(policy: Policy, steps: list) -> None:
    access = Access(policy)
    for (kind, authorization, origin, remote, t, release), (status, retry_after) in steps:
        if release:
            access.release(release)
        decision = access.check(kind, authorization, origin, "edge:8080", remote, NOW + t)
        assert (decision.status, decision.retry_after) == (status, retry_after), (kind, authorization, remote, t)


def test_sessions_held_are_released_to_zero() -> None:
    access = Access(Policy(session_secret=SECRET, offers_per_minute=0))
    for _ in range(2):
        assert access.check("offer", bearer(T2), None, None, "a", NOW).allowed
    access.release("two")
    access.release("two")
    assert access.held == {}
    access.release("two")  # a release too many (a session ended twice) takes nothing below zero
    assert access.held == {} and access.check("offer", bearer(T2), None, None, "a", NOW).allowed


def test_address_buckets_are_bounded() -> None:
    access = Access(Policy(offers_per_minute=1), max_addresses=100)
    for i in range(1000):
        access.check("offer", None, None, None, f"10.0.{i // 256}.{i % 256}", NOW)
    assert len(access.buckets) == 100


def test_turn_credentials_by_the_rest_api_scheme() -> None:
    # openssl: printf '1700003600:ann' | openssl dgst -sha1 -hmac turnsecret -binary | base64
    assert turn_credentials("turnsecret", "ann", NOW, 3600) == ("1700003600:ann", "SBL+xH+HWQfS/G1XTfA1E1uSRbU=")
    assert turn_credentials("turnsecret", "", NOW, 60)[0] == "1700000060"


def test_ice_config_gives_turn_servers_fresh_credentials() -> None:
    servers = [IceServer(urls=["stun:stun.example.org:3478"]),
               IceServer(urls=["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
                         username="static", credential="static-password")]
    assert ice_config(servers, "", "ann", NOW, 3600) == [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": servers[1].urls, "username": "static", "credential": "static-password"}]
    stun, turn = ice_config(servers, "turnsecret", "ann", NOW, 3600)
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    assert (turn["username"], turn["credential"]) == turn_credentials("turnsecret", "ann", NOW, 3600)
    assert "static-password" not in json.dumps([stun, turn])


def test_cli_token_issue_prints_a_token_the_edge_accepts(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VOICEBUS_SESSION_SECRET", SECRET)
    assert cli(["token", "issue", "--ttl", "10m", "--max-sessions", "3", "--user", "ann"]) == 0
    token = capsys.readouterr().out.strip()
    import time

    claims = verify(SECRET, token, time.time())
    assert (claims.max_sessions, claims.user) == (3, "ann")
    assert 590 <= claims.expires_at - time.time() <= 600
    with pytest.raises(TokenError, match="expired"):
        verify(SECRET, token, time.time() + 601)

    assert cli(["token", "issue", "--json"]) == 0
    issued = json.loads(capsys.readouterr().out)
    assert verify(SECRET, issued["token"], time.time()).token_id == issued["token_id"]

    monkeypatch.delenv("VOICEBUS_SESSION_SECRET")
    assert cli(["token", "issue"]) == 1
    assert "VOICEBUS_SESSION_SECRET" in capsys.readouterr().err


def test_token_requests_and_offers_share_an_address_budget() -> None:
    access = Access(Policy(session_secret=SECRET, offers_per_minute=2))
    assert access.throttle("a", NOW).allowed and access.throttle("a", NOW).allowed
    refused = access.check("offer", bearer(T2), None, None, "a", NOW)
    assert (refused.status, refused.retry_after) == (429, 30)
    assert access.check("offer", bearer(T2), None, None, "b", NOW).allowed
    assert Access(Policy(offers_per_minute=0)).throttle("a", NOW).allowed  # 0: no limit
