"""The one request path, with requests-mock: retries, errors, auth, URLs; over loopback where the
network itself matters (a proxy from the environment)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import traceback
from collections.abc import Iterator
from typing import ClassVar

import pytest
import requests

from neuroio_nb import Client
from neuroio_nb._transport import Verdict, outcome_unknown, parse_retry_after, retry_delay, should_retry
from neuroio_nb.errors import (
    APIError,
    AuthenticationError,
    BulkInterrupted,
    ConfigurationError,
    MalformedResponseError,
    NeuroIOError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ThrottledWarning,
    TransportError,
    ValidationError,
)

URL = "https://api.test.example"
TOKEN = "tok-SECRET-123"
LIST = f"{URL}/v1/sources/"
ONE = f"{URL}/v1/sources/7/"
SOURCE = {"id": 7, "space_id": 1, "name": "Gate"}


@pytest.fixture
def mock_client(monkeypatch):
    """A client of ``URL``, which ``requests_mock`` answers (conftest's ``client`` is one of a sandbox)."""
    c = Client(TOKEN, URL, max_retries=3, journal=False)  # the request path alone: test_journal covers journaling
    monkeypatch.setattr(c, "retry_sleep", lambda seconds: None)  # no sleeping between retries in unit tests
    return c


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retried_statuses_then_success(mock_client, requests_mock, status):
    requests_mock.get(ONE, [{"status_code": status, "json": {"message": "busy"}}, {"json": SOURCE}])
    assert mock_client.sources.get(7) == SOURCE
    assert requests_mock.call_count == 2


@pytest.mark.parametrize("status,exc", [(400, APIError), (404, NotFoundError)])  # 401: test_bad_inputs.py
def test_client_errors_are_not_retried(mock_client, requests_mock, status, exc):
    requests_mock.get(ONE, status_code=status, json={"error_codes": [1], "message": "nope", "fields": []})
    with pytest.raises(exc) as info:
        mock_client.sources.get(7)
    assert requests_mock.call_count == 1
    assert info.value.status_code == status and info.value.message == "nope"


def test_retries_are_bounded(mock_client, requests_mock):
    requests_mock.get(ONE, status_code=503, json={"message": "down"})
    with pytest.raises(ServerError):
        mock_client.sources.get(7)
    assert requests_mock.call_count == 4  # first try + max_retries


def test_connection_errors_retried_then_transport_error(mock_client, requests_mock):
    requests_mock.get(ONE, exc=requests.exceptions.ConnectionError("boom"))
    with pytest.raises(TransportError) as info:
        mock_client.sources.get(7)
    assert requests_mock.call_count == 4
    assert info.value.__cause__ is None


def test_timeout_retried(mock_client, requests_mock):
    requests_mock.get(ONE, [{"exc": requests.exceptions.ReadTimeout}, {"json": SOURCE}])
    assert mock_client.sources.get(7)["id"] == 7


def test_retry_after_honoured_capped_and_jittered(requests_mock):
    c = Client(TOKEN, URL, max_retries=0, max_retry_after=5)
    slept: list[float] = []
    c.retry_sleep = slept.append
    requests_mock.get(
        ONE,
        [
            {"status_code": 429, "headers": {"Retry-After": "3"}, "json": {}},
            {"status_code": 429, "headers": {"Retry-After": "120"}, "json": {}},
            {"json": SOURCE},
        ],
    )
    with pytest.warns(ThrottledWarning, match="max_throttled_wait"):  # 8 s of waits: past 5 s, it says so
        assert c.sources.get(7) == SOURCE  # 429s do not spend max_retries (0 here)
    assert len(slept) == 2
    assert 3.0 <= slept[0] <= 3.0 + 0.85 and 5.0 <= slept[1] <= 5.0 + 1.0


def test_rate_limit_error_carries_retry_after(mock_client, requests_mock):
    mock_client.max_throttled_wait = 0  # give up at the first 429
    requests_mock.get(ONE, status_code=429, headers={"Retry-After": "2"}, json={"message": "slow down"})
    with pytest.raises(RateLimitError) as info:
        mock_client.sources.get(7)
    assert info.value.retry_after == 2.0


BAD_GATEWAY = "<html><body><h1>502 Bad Gateway</h1></body></html>"
EMPTY_PAGE = {"count": 0, "next": None, "results": []}


def test_post_with_unknown_outcome_is_not_sent_again_when_retries_are_spent(mock_client, requests_mock):
    requests_mock.post(LIST, status_code=502, text=BAD_GATEWAY)
    requests_mock.get(LIST, json=EMPTY_PAGE)
    mock_client.max_retries = 0
    with pytest.raises(ServerError) as info:
        mock_client.sources.create("Gate")
    assert [r.method for r in requests_mock.request_history] == ["GET", "POST", "GET"]  # before, send, check
    assert "502 Bad Gateway" in str(info.value)


def test_post_with_unknown_outcome_is_sent_again_only_after_the_server_shows_it_did_not_act(mock_client, requests_mock):
    requests_mock.post(LIST, [{"status_code": 502, "text": BAD_GATEWAY}, {"status_code": 201, "json": SOURCE}])
    requests_mock.get(LIST, json=EMPTY_PAGE)
    assert mock_client.sources.create("Gate") == SOURCE
    assert [r.method for r in requests_mock.request_history] == ["GET", "POST", "GET", "POST"]


def test_post_retried_on_503(mock_client, requests_mock):
    requests_mock.get(LIST, json=EMPTY_PAGE)
    requests_mock.post(LIST, [{"status_code": 503, "json": {"message": "busy"}}, {"status_code": 201, "json": SOURCE}])
    assert mock_client.sources.create("Gate")["id"] == 7
    assert [r.method for r in requests_mock.request_history] == ["GET", "POST", "POST"]


def test_spaces_ids_query_encoding(mock_client, requests_mock):
    requests_mock.get(LIST, json={"count": 0, "next": None, "results": []})
    mock_client.sources.list(q="lobby cam", spaces_ids=[1, 2], limit=50, offset=100)
    url = requests_mock.last_request.url
    assert url.split("?")[0] == LIST
    # one comma-joined spaces_ids (not one parameter per space), the space in q encoded
    assert sorted(url.split("?")[1].split("&")) == ["limit=50", "offset=100", "q=lobby+cam", "spaces_ids=1%2C2"]


def test_json_error_body_mapped(mock_client, requests_mock):
    body = {
        "error_codes": [1001],
        "message": "Validation failed",
        "fields": [{"name": "identify_facesize_threshold", "message": "must be >= 0", "error_code": 1001}],
    }
    requests_mock.patch(ONE, status_code=400, json=body)
    with pytest.raises(APIError) as info:
        mock_client.sources.update(7, identify_facesize_threshold=5)
    err = info.value
    assert err.error_codes == [1001]
    assert err.field_errors == {"identify_facesize_threshold": "must be >= 0"}
    assert "must be >= 0" in str(err)


@pytest.mark.parametrize(
    ("fields", "line", "field_errors"),
    [
        ("settings", "\n  settings", {}),  # a scalar instead of a list of dicts
        (["settings", "name"], "\n  settings\n  name", {}),
        ([{"name": "name", "message": None}], "\n  name", {"name": ""}),
        ([{"message": "locked"}], "\n  locked", {}),
        ([{"name": "name", "message": "taken"}], "\n  name: taken", {"name": "taken"}),
    ],
)
def test_error_fields_of_every_shape_read_well(mock_client, requests_mock, fields, line, field_errors):
    """Whatever shape ``fields`` has, the message says what the server said, never "None"."""
    body = {"error_codes": 1007, "message": "Source is locked", "fields": fields}
    requests_mock.patch(ONE, status_code=400, json=body)
    with pytest.raises(APIError) as info:
        mock_client.sources.update(7, use_pps_time=True)
    text = str(info.value)
    assert text == f"400: Source is locked (PATCH v1/sources/7/){line}"
    assert "None" not in text and info.value.field_errors == field_errors


@pytest.mark.parametrize("body", ["", "<html><head><title>502</title></head><body>Bad gateway</body></html>"])
def test_html_and_empty_error_bodies(mock_client, requests_mock, body):
    mock_client.max_retries = 0
    requests_mock.get(ONE, status_code=502, text=body, reason="Bad Gateway")
    with pytest.raises(ServerError) as info:
        mock_client.sources.get(7)
    text = str(info.value)
    assert "502" in text
    assert ("Bad gateway" in text) if body else ("empty body" in text)
    assert "JSONDecodeError" not in text and "<html>" not in text


def test_one_sources_answer_that_is_not_json_is_a_malformed_response(mock_client, requests_mock):
    """The single-source reader; the sandbox garbles list pages only (``test_reliability.py`` has those)."""
    requests_mock.get(ONE, text='{"id": 7, "na')
    with pytest.raises(MalformedResponseError, match="not JSON"):
        mock_client.sources.get(7)


def test_headers_user_agent_and_token(mock_client, requests_mock):
    requests_mock.get(ONE, json=SOURCE)
    mock_client.sources.get(7)
    headers = requests_mock.last_request.headers
    assert headers["Authorization"] == f"Token {TOKEN}"
    assert headers["User-Agent"].startswith("neuroio-nb/")
    assert requests_mock.last_request.timeout == mock_client.timeout


def test_what_a_user_sets_on_the_clients_session_still_applies(mock_client, requests_mock):
    """Each request is prepared from the session as it is then (not through ``Session.request``,
    which costs more CPU than the rest of sending): a header, a query parameter and a response
    hook added to ``client.session`` later are used."""
    seen = []
    mock_client.session.headers["X-Trace"] = "on"
    mock_client.session.params = {"tenant": "north"}
    mock_client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r.status_code))
    requests_mock.get(ONE, json=SOURCE)
    mock_client.sources.get(7)
    requests_mock.patch(ONE, json=SOURCE)
    mock_client.sources.update(7, use_pps_time=True)
    first, second = requests_mock.request_history
    assert first.headers["X-Trace"] == second.headers["X-Trace"] == "on"
    assert first.qs == second.qs == {"tenant": ["north"]}
    assert second.headers["Content-Type"] == "application/json" and second.json() == {"use_pps_time": True}
    assert second.headers["Authorization"] == f"Token {TOKEN}"
    assert seen == [200, 200]


def test_missing_token_is_clear_at_first_request(monkeypatch):
    monkeypatch.delenv("NEUROIO_API_TOKEN", raising=False)
    c = Client(base_url=URL)
    with pytest.raises(ConfigurationError, match="NEUROIO_API_TOKEN"):
        c.sources.get(1)


def test_environment_variables(monkeypatch, requests_mock):
    monkeypatch.setenv("NEUROIO_API_TOKEN", "env-token")
    monkeypatch.setenv("NEUROIO_API_URL", "https://env.example/")
    c = Client()
    assert c.base_url == "https://env.example"
    requests_mock.get("https://env.example/v1/sources/1/", json={"id": 1})
    c.sources.get(1)
    assert requests_mock.last_request.headers["Authorization"] == "Token env-token"


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself with an empty page, and notes what it was asked."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).asked.append(self.requestline)
        body = json.dumps({"count": 0, "next": None, "previous": None, "results": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    """The URL of a forward proxy on loopback; ``_Proxy.asked`` holds the request lines it got."""
    _Proxy.asked = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("bypassed", [False, True], ids=["through-the-proxy", "no_proxy-names-the-host"])
def test_a_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host(monkeypatch, proxy, free_port, bypassed):
    """The environment is read once, when the client is made (requests would read it again for
    every request): a corporate proxy is still used, and NO_PROXY still bypasses it."""
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    if bypassed:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    c = Client(TOKEN, f"http://127.0.0.1:{free_port}", max_retries=0, journal=False)
    monkeypatch.delenv("HTTP_PROXY")  # read when the client was made, not at each request
    if bypassed:
        with pytest.raises(TransportError, match="could not connect"):  # nothing listens there
            c.sources.list()
        assert _Proxy.asked == []
    else:
        assert c.sources.list()["results"] == []
        assert _Proxy.asked == [f"GET http://127.0.0.1:{free_port}/v1/sources/?limit=20&offset=0 HTTP/1.1"]


def test_default_url(monkeypatch):
    monkeypatch.delenv("NEUROIO_API_URL", raising=False)
    assert Client("t").base_url == Client("t", "").base_url == "https://api.neuroio.com"


def test_update_validated_before_sending(mock_client, requests_mock):
    with pytest.raises(ValidationError) as info:
        mock_client.sources.update(7, identify_facesize_threshold=-1, use_pps_time="yes", id=3)
    assert requests_mock.call_count == 0
    fields = {p.field for p in info.value.problems}
    assert fields == {"identify_facesize_threshold", "use_pps_time", "id"}


def test_create_license_alias(mock_client, requests_mock):
    requests_mock.get(LIST, json=EMPTY_PAGE)
    requests_mock.post(LIST, status_code=201, json=SOURCE)
    mock_client.sources.create("Gate", license=42)
    body = requests_mock.last_request.json()
    assert body["license_id"] == 42 and "license" not in body and body["name"] == "Gate"


def test_delete_accepts_202(mock_client, requests_mock):
    requests_mock.delete(ONE, status_code=202, text="")
    assert mock_client.sources.delete(7) is None


# ---- the retry engine's decisions, as pure functions --------------------------------------------
NOW = dt.datetime(2026, 11, 29, 9, 0, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    "header,seconds",
    [
        ("3", 3.0),
        ("0", 0.0),
        ("2.5", 2.5),
        (" 7 ", 7.0),
        ("-4", 0.0),
        ("Sun, 29 Nov 2026 09:00:10 GMT", 10.0),  # an HTTP date 10 s ahead
        ("Sun, 29 Nov 2026 08:59:00 GMT", 0.0),  # a date in the past: no wait
        ("Sunday, 29-Nov-26 09:01:00 GMT", 60.0),  # the obsolete RFC 850 form
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after_header_read_as_seconds(header, seconds):
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    "attempt,retry_after,cap,rand,expected",
    [
        # With Retry-After: that, capped, plus a jitter of up to a quarter (>= 0.1 s, <= 1 s).
        (1, 3.0, 30.0, 0.0, 3.0),
        (1, 3.0, 30.0, 1.0, 3.85),
        (1, 0.0, 30.0, 1.0, 0.1),  # "now" still spreads clients over 0.1 s
        (1, 120.0, 5.0, 0.0, 5.0),  # capped at max_retry_after
        (1, 120.0, 5.0, 1.0, 6.0),  # the jitter never exceeds 1 s
        (4, 2.0, 30.0, 0.5, 2.3),  # the attempt number does not matter
        # Without: full-jitter exponential backoff from 0.2 s, at most 10 s.
        (1, None, 30.0, 1.0, 0.2),
        (2, None, 30.0, 1.0, 0.4),
        (3, None, 30.0, 0.5, 0.4),
        (10, None, 30.0, 1.0, 10.0),
        (60, None, 30.0, 1.0, 10.0),  # no overflow far out
        (3, None, 30.0, 0.0, 0.0),
    ],
)
def test_retry_delay_table(attempt, retry_after, cap, rand, expected):
    assert retry_delay(attempt, retry_after, max_retry_after=cap, rand=lambda: rand) == pytest.approx(expected)


LOST = TransportError("connection lost after sending", maybe_sent=True)
REFUSED = TransportError("could not connect", maybe_sent=False)


@pytest.mark.parametrize(
    "error,method,can_ask,verdict",
    [
        (REFUSED, "POST", False, Verdict.RETRY),  # never reached the server
        (APIError(503, "busy"), "POST", False, Verdict.RETRY),
        (RateLimitError(429, "slow down"), "POST", False, Verdict.RETRY),
        (LOST, "GET", False, Verdict.RETRY),  # idempotent: just send again
        (LOST, "PATCH", False, Verdict.RETRY),
        (ServerError(502, "bad gateway"), "PATCH", False, Verdict.RETRY),
        (LOST, "POST", True, Verdict.ASK),  # may have acted: ask first
        (ServerError(504, "gateway timeout"), "POST", True, Verdict.ASK),
        (LOST, "DELETE", True, Verdict.ASK),
        (LOST, "POST", False, Verdict.STOP),  # nobody to ask: never twice
        (ServerError(500, "oops"), "GET", False, Verdict.STOP),
        (NotFoundError(404, "gone"), "GET", False, Verdict.STOP),
        (APIError(400, "invalid"), "PATCH", True, Verdict.STOP),
    ],
)
def test_retry_verdict_table(error, method, can_ask, verdict):
    assert should_retry(error, method, can_ask=can_ask) is verdict


def test_one_definition_of_an_unknown_outcome():
    unknown = [LOST, ServerError(502, "x"), ServerError(504, "x")]
    known = [REFUSED, APIError(503, "x"), RateLimitError(429, "x"), ServerError(500, "x"), APIError(400, "x")]
    assert [outcome_unknown(e) for e in unknown + known] == [True] * 3 + [False] * 5


# ---- what a user sees when the server is gone ------------------------------------------------------


@pytest.mark.parametrize("call", ["get", "to_frame", "update"])
def test_a_stopped_sandbox_says_so_and_the_traceback_ends_at_the_call(free_port, call):
    """A loopback URL that refuses connections: the TransportError asks whether the sandbox is
    still running, and its traceback is the user's call and a frame or two of ours, never the
    retry library's or the thread pool's."""
    c = Client(TOKEN, f"http://127.0.0.1:{free_port}", max_retries=1)
    c.retry_sleep = lambda seconds: None
    calls = {
        "get": lambda: c.sources.get(1),
        "to_frame": lambda: c.sources.to_frame(progress=False),
        "update": lambda: c.sources.update(1, use_pps_time=True),
    }
    with pytest.raises(TransportError, match=r"could not connect .*is the sandbox still running") as info:
        calls[call]()
    files = [frame.filename for frame in traceback.extract_tb(info.value.__traceback__)]
    assert not [f for f in files if "tenacity" in f or "concurrent" in f], files
    assert len(files) <= 6, files


def test_the_error_hierarchy():
    """Said once, here: what each error is, so that ``except`` clauses catch what they mean to.
    ``BulkInterrupted`` is a ``KeyboardInterrupt`` and not an ``Exception``: a user's
    ``except Exception:`` cannot swallow Ctrl-C."""
    bases = {
        ConfigurationError: (NeuroIOError, ValueError),
        TransportError: (NeuroIOError,),
        APIError: (NeuroIOError,),
        AuthenticationError: (APIError,),
        NotFoundError: (APIError,),
        RateLimitError: (APIError,),
        ServerError: (APIError,),
        MalformedResponseError: (APIError,),
        ValidationError: (NeuroIOError, ValueError),
        BulkInterrupted: (KeyboardInterrupt,),
    }
    for cls, parents in bases.items():
        assert all(issubclass(cls, parent) for parent in parents), cls
    assert issubclass(NeuroIOError, Exception)
    assert not issubclass(BulkInterrupted, Exception)


class _StickyBalancer(http.server.BaseHTTPRequestHandler):
    """A server behind a load balancer that pins a client with a cookie; notes each request's cookie."""

    cookies: ClassVar[list[str | None]] = []

    def _answer(self) -> None:
        type(self).cookies.append(self.headers.get("Cookie"))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(SOURCE).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "lb=node-3; Path=/")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PATCH = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_a_cookie_the_server_sets_is_sent_back():
    """A load balancer's stickiness cookie, set by one answer, goes with the next requests."""
    _StickyBalancer.cookies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StickyBalancer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Client(TOKEN, f"http://127.0.0.1:{server.server_address[1]}", journal=False) as c:
            c.sources.get(7)
            c.sources.update(7, use_pps_time=True)
            c.sources.get(7)
    finally:
        server.shutdown()
        server.server_close()
    assert _StickyBalancer.cookies == [None, "lb=node-3", "lb=node-3"]


# ---- what requests' own preparation would keep ---------------------------------------------
# Each request is prepared from the session by the client itself (Transport._prepare), not by
# Session.request: each test below fails when a part of what Session.request does is dropped.


class _SignedAuth(requests.auth.AuthBase):
    """A user's own auth (a gateway that wants its own signature header)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["X-Gateway-Signature"] = "signed"
        return r


def test_the_session_auth_wins_over_an_authorization_header_and_a_users_own_auth_is_used(mock_client, requests_mock):
    """As with requests: auth is applied after the headers, so an ``Authorization`` header left on
    ``client.session.headers`` never replaces the client's token; an auth the user sets on
    ``client.session.auth`` afterwards is the one used."""
    requests_mock.get(ONE, json=SOURCE)
    mock_client.session.headers["Authorization"] = "Basic c3RhbGU6c3RhbGU="
    mock_client.sources.get(7)
    assert requests_mock.last_request.headers["Authorization"] == f"Token {TOKEN}"

    mock_client.session.auth = _SignedAuth()
    mock_client.sources.get(7)
    assert requests_mock.last_request.headers["X-Gateway-Signature"] == "signed"


def test_a_cookie_set_on_the_clients_session_is_sent(mock_client, requests_mock):
    """A single-sign-on cookie a user put in ``client.session.cookies`` goes with each request to
    its domain, and only there."""
    mock_client.session.cookies.set("sso", "abc123", domain="api.test.example")
    mock_client.session.cookies.set("elsewhere", "no", domain="other.example")
    requests_mock.get(ONE, json=SOURCE)
    mock_client.sources.get(7)
    assert requests_mock.last_request.headers["Cookie"] == "sso=abc123"


class _RecordingAdapter(requests.adapters.HTTPAdapter):
    """An adapter a user mounts (their own pool size, retries or TLS settings): it notes what
    requests hands it for each request, then sends it as usual."""

    def __init__(self) -> None:
        super().__init__(max_retries=0)
        self.sent: list[dict[str, object]] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # type: ignore[override]
        self.sent.append({"url": request.url, "verify": verify, "cert": cert, "proxies": dict(proxies or {})})
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)


def test_an_adapter_mounted_on_the_session_sends_with_the_ca_bundle_and_certificate_from_the_environment(
    monkeypatch, tmp_path, sb
):
    """``REQUESTS_CA_BUNDLE`` (read when the client is made), a client certificate set on
    ``client.session.cert``, and an adapter mounted on ``client.session`` for the API's URL: every
    request goes through that adapter, with that bundle and that certificate, as
    ``Session.request`` would send it."""
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")  # never opened: the URL is plain http
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    c = Client(sb.token, sb.url, journal=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")  # read when the client was made, not at each request
    adapter = _RecordingAdapter()
    c.session.mount(sb.url + "/", adapter)
    certificate = tmp_path / "client.pem"
    certificate.write_text("-----BEGIN CERTIFICATE-----\n")  # nor loaded, for the same reason
    c.session.cert = str(certificate)
    with c:
        assert c.sources.get(1) == sb.source(1)
        c.sources.update(1, use_pps_time=not sb.source(1)["use_pps_time"])
    assert [s["url"] for s in adapter.sent] == [f"{sb.url}/v1/sources/1/"] * 2
    assert {(s["verify"], s["cert"]) for s in adapter.sent} == {(str(bundle), str(certificate))}
