"""Secrets: the API token goes to the API host and nowhere else, and is never shown.

"Nowhere" is checked where a notebook user could see it: the client's repr,
every exception the toolkit raises (message, repr, full traceback), log records
at DEBUG (urllib3's included), progress bars, warnings, plans, reports and CSV
exports; and on the wire: never sent to another host, by redirect or by a
page's ``next`` link, and never sent in clear text off loopback.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from neuroio_nb import Client, read_csv
from neuroio_nb.errors import (
    APIError,
    AuthenticationError,
    BulkInterrupted,
    ConfigurationError,
    ListingChangedWarning,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
    ValidationError,
)

SOURCE = {"id": 1, "space_id": 1, "name": "Gate"}


class Recorder:
    """A tiny HTTP server on ``host`` that records every request and answers ``reply(path)``."""

    def __init__(self, host: str, reply: Callable[[str], tuple[int, dict[str, str], bytes]]) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                recorder.seen.append((self.command, self.path, dict(self.headers)))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, headers, body = reply(self.path)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Callable[..., Recorder]]:
    made: list[Recorder] = []

    def make(host: str, reply) -> Recorder:
        made.append(Recorder(host, reply))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def json_answer(path: str) -> tuple[int, dict[str, str], bytes]:
    body = (
        SOURCE
        if path.rstrip("/").split("?")[0].rsplit("/", 1)[-1].isdigit()
        else {"count": 0, "next": None, "previous": None, "results": []}
    )
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def everything_shown(exc: BaseException) -> str:
    """All a user can see of an exception: message, repr, args, attributes and the full traceback."""
    return "\n".join([str(exc), repr(exc), repr(exc.args), repr(vars(exc)), "".join(traceback.format_exception(exc))])


# ---- the client itself ------------------------------------------------------------------------


def test_client_shows_its_url_not_its_token(make_sandbox):
    sb = make_sandbox(sources=5)
    with Client(sb.token, sb.url) as client:
        for shown in (
            repr(client),
            str(client),
            repr(client.sources),
            repr(client.session.auth),
            repr(client.session.headers),
        ):
            assert sb.token not in shown
        assert sb.url in repr(client)


# ---- every exception type ------------------------------------------------------------------------


def raised(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("nothing was raised")


def test_no_exception_shows_the_token(make_sandbox, client_for, free_port, ctrl_c_at):
    sb = make_sandbox(sources=30)
    token = sb.token
    c = client_for(sb, max_retries=0, max_throttled_wait=0)  # a 429 is raised at once, not waited out
    frame = c.sources.to_frame(progress=False)
    taken = next(s["name"] for i, s in sb.sources.items() if i != 2 and s["space_id"] == sb.source(2)["space_id"])
    errors: list[BaseException] = [
        raised(lambda: Client("wrong-" + token, sb.url).sources.get(1)),
        raised(lambda: c.sources.get(10**6)),
        raised(lambda: c.sources.update(2, name=taken)),
        raised(lambda: c.sources.update(2, use_pps_time="yes")),
        raised(lambda: c.sources.plan(frame.assign(colour="red"), base=frame)),
        raised(lambda: Client(token, f"http://127.0.0.1:{free_port}", max_retries=0).sources.get(1)),
        raised(lambda: Client(token + " extra", sb.url)),
        raised(lambda: Client(token, "https://ops:" + token + "@api.neuroio.com")),
    ]
    for faults in ({"503": 1.0}, {"502": 1.0}, {"429": 1.0}, {"drop": 1.0}):
        sb.faults = faults
        errors.append(raised(lambda: c.sources.get(1)))
    sb.faults = {}
    sb.retry_after = (0, 0)
    sb.corrupt = "truncated"
    errors.append(raised(lambda: c.sources.to_frame(progress=False)))
    sb.corrupt = None

    ctrl_c_at(sb, "PATCH", 1)
    sb.latency = 0.05  # slow enough that Ctrl-C lands while the run is going
    edited = frame.copy()
    edited["use_pps_time"] = ~frame["use_pps_time"]
    slow = client_for(sb, max_workers=2)
    errors.append(raised(lambda: slow.sources.bulk_update(edited, base=frame, progress=False)))

    kinds = {type(e) for e in errors}
    assert kinds >= {
        AuthenticationError,
        NotFoundError,
        APIError,
        ValidationError,
        TransportError,
        ConfigurationError,
        ServerError,
        RateLimitError,
        MalformedResponseError,
        BulkInterrupted,
    }
    for exc in errors:
        assert token not in everything_shown(exc), type(exc)
        if isinstance(exc, BulkInterrupted):
            assert token not in exc.report.to_string()
        if isinstance(exc, ValidationError):
            assert token not in exc._repr_html_()


# ---- logs, progress bars, warnings ---------------------------------------------------------------


def test_debug_logs_and_progress_bars_never_show_the_token(make_sandbox, client_for, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    sb = make_sandbox(
        sources=150, page_cap=50, faults={"503": 0.1, "429": 0.05, "502": 0.05, "drop": 0.05}, retry_after=(0, 0)
    )
    c = client_for(sb, max_retries=12)
    frame = c.sources.to_frame(progress=True)
    edited = frame.copy()
    edited["identify_facesize_threshold"] += 1
    c.sources.bulk_update(edited, base=frame, progress=True)
    with pytest.raises(AuthenticationError):
        Client(sb.token[:-1] + "!", sb.url).sources.get(1)  # a near miss of the real token

    assert any(r.name.startswith("urllib3") and r.levelno == logging.DEBUG for r in caplog.records)
    assert any(r.name == "neuroio_nb" for r in caplog.records)
    shown = caplog.text + "".join(repr(r.args) + r.getMessage() for r in caplog.records)
    assert sb.token not in shown and sb.token[:-1] not in shown
    out, err = capsys.readouterr()
    assert sb.token not in out + err and "updating" in err  # the progress bars did draw


def test_listing_warning_does_not_show_the_token(make_sandbox, client_for, churn):
    sb = make_sandbox(sources=200, page_cap=50)
    c = client_for(sb, max_workers=1)
    churn(sb, {2: lambda sb: [sb.add_source(name="Late arrival")["id"]]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c.sources.to_frame(progress=False)
    assert [w.category for w in caught] == [ListingChangedWarning]
    assert sb.token not in str(caught[0].message)


# ---- what a user keeps: plans, reports, CSV exports ------------------------------------------------


def test_plans_reports_and_exports_never_hold_the_token(make_sandbox, client_for, tmp_path):
    sb = make_sandbox(sources=100)
    c = client_for(sb)
    frame = c.sources.to_frame(progress=False)
    edited = frame.copy()
    edited["auto_check_liveness"] = ~frame["auto_check_liveness"]
    space = frame.loc[2, "space_id"]
    dup = frame.index[(frame["space_id"] == space) & (frame.index != 2)][0]
    edited.loc[dup, "name"] = frame.loc[2, "name"]  # refused by the server: a failed row with its message
    edited.loc[3, "identify_facesize_threshold"] = 4321
    sb.external_edit(3, identify_facesize_threshold=1234)  # someone else changed it meanwhile: a conflict row
    plan = c.sources.plan(edited, base=frame)
    report = plan.apply(progress=False)
    assert set(report["status"]) == {"updated", "failed", "conflict"}
    undone = c.sources.undo(report, progress=False)
    path = tmp_path / "all.csv"
    c.sources.export_csv(path)
    kept = [
        str(plan),
        repr(plan),
        plan._repr_html_(),
        plan.changes.to_csv(),
        plan.summary(),
        report.to_string(),
        report.to_csv(),
        report._repr_html_(),
        report.summary(),
        undone.to_string(),
        undone._repr_html_(),
        path.read_text(encoding="utf-8"),
        read_csv(path).to_string(),
    ]
    for text in kept:
        assert sb.token not in text
    assert "already exists" in report.loc[dup, "error"]  # the failed row does carry the server's words


# ---- on the wire: only the API host gets the token ---------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_another_host_is_not_followed(recorder, status):
    token = "tok-redirect-SECRET"
    other = recorder("127.0.0.2", json_answer)
    api = recorder("127.0.0.1", lambda path: (status, {"Location": other.url + path}, b""))
    with (
        Client(token, api.url, max_retries=3) as client,
        pytest.raises(APIError, match=r"unexpected redirect to 127\.0\.0\.2") as info,
    ):
        client.sources.get(1)
    assert token not in everything_shown(info.value)
    assert other.seen == []
    assert [h.get("Authorization") for _, _, h in api.seen] == [f"Token {token}"]  # the API host did get it


def test_token_stays_home_even_if_the_session_follows_a_redirect(recorder):
    """Belt and braces: the client's session adds the token only for the API's own origin."""
    token = "tok-redirect-SECRET"
    other = recorder("127.0.0.2", json_answer)
    api = recorder("127.0.0.1", lambda path: (302, {"Location": other.url + path}, b""))
    with Client(token, api.url) as client:
        resp = client.session.get(api.url + "/v1/sources/1/", allow_redirects=True, timeout=5)
    assert resp.json() == SOURCE
    [(_, _, headers)] = other.seen
    assert "Authorization" not in headers and token not in json.dumps(headers)
    with Client(token, other.url) as direct:  # the recorder does see a token sent to it
        direct.sources.get(1)
    assert other.seen[-1][2]["Authorization"] == f"Token {token}"


def test_next_link_to_another_host_is_never_followed(make_sandbox, client_for, recorder):
    other = recorder("127.0.0.2", json_answer)
    sb = make_sandbox(sources=260, page_cap=40, next_base=other.url)
    c = client_for(sb)
    page = c.sources.list(limit=40)
    assert page["next"].startswith(other.url)  # the server does point elsewhere
    assert sorted(c.sources.to_frame(progress=False).index) == sorted(sb.sources)
    assert [s["id"] for s in c.sources.iter()] == sorted(sb.sources)
    assert other.seen == []
    assert all(r.authorized for r in sb.log)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.neuroio.com",
        "http://10.0.0.5:8000",
        "http://192.168.1.20:8080",
        "http://localhost.example.com",
        "http://0.0.0.0:8000",
    ],
)
def test_plain_http_off_loopback_is_refused(url, monkeypatch):
    token = "tok-plain-SECRET"
    with pytest.raises(ConfigurationError, match="allow_insecure=True") as info:
        Client(token, url)
    assert token not in everything_shown(info.value)
    monkeypatch.setenv("NEUROIO_API_URL", url)  # the same from the environment
    with pytest.raises(ConfigurationError, match="allow_insecure=True"):
        Client(token)
    assert Client(token, url, allow_insecure=True).base_url == url  # only when asked for in so many words


def test_plain_http_to_any_loopback_address_is_allowed(recorder):
    for url in ("http://127.0.0.1:8765", "http://localhost:1", "http://[::1]:8000"):
        assert Client("tok", url).base_url == url
    local = recorder("127.0.0.2", json_answer)
    with Client("tok", local.url) as client:
        assert client.sources.get(1) == SOURCE


# ---- error pages that echo the request's headers ------------------------------------------------------

ECHOING_TOKEN = "Zq7-echo-SECRET-9Kp2"


@pytest.mark.parametrize("before", range(150, 200, 3))
def test_an_error_page_echoing_the_token_never_shows_it_or_a_start_of_it(requests_mock, before):
    """Proxies and debug pages echo request headers; the excerpt of such a page is cut at 200
    characters, here at every place in and around the token. Neither the token nor any start
    of it (3 characters or more) is in the error, whatever the cut."""
    c = Client(ECHOING_TOKEN, "https://api.test.example", max_retries=0)
    page = (
        f"<html><body><pre>{'x' * before} Authorization: Token {ECHOING_TOKEN}\n"
        "Accept: application/json</pre></body></html>"
    )
    requests_mock.get("https://api.test.example/v1/sources/7/", json={"id": 7, "name": "Gate"})  # the journal's read
    requests_mock.patch("https://api.test.example/v1/sources/7/", status_code=400, text=page)
    error = raised(lambda: c.sources.update(7, use_pps_time=True))
    assert isinstance(error, APIError)
    shown = everything_shown(error) + error.message
    starts = [ECHOING_TOKEN[:n] for n in range(3, len(ECHOING_TOKEN) + 1)]
    assert [s for s in starts if s in shown] == []
    assert "x" * 100 in shown  # the page was shown, cut where a word ends


def test_a_server_message_with_a_cut_token_is_masked(requests_mock):
    c = Client(ECHOING_TOKEN, "https://api.test.example", max_retries=0)
    requests_mock.get(
        "https://api.test.example/v1/sources/7/",
        status_code=401,
        json={
            "message": f"Invalid token {ECHOING_TOKEN[:9]}...",
            "error_codes": [7],
            "fields": [{"name": "token", "message": f"got {ECHOING_TOKEN}"}],
        },
    )
    error = raised(lambda: c.sources.get(7))
    shown = everything_shown(error) + error.message + repr(error.fields)
    assert ECHOING_TOKEN[:9] not in shown and ECHOING_TOKEN not in shown and "Invalid token ***..." in shown


def test_the_sandbox_echoing_headers_shows_no_token_in_errors_or_reports(make_sandbox, client_for):
    sb = make_sandbox(sources=20)
    c = client_for(sb, max_retries=0)
    frame = c.sources.to_frame(progress=False)
    sb.faults = {"echo_headers": 1.0}
    error = raised(lambda: c.sources.update(3, use_pps_time=True))
    assert isinstance(error, APIError) and "Request Rejected" in str(error)
    assert sb.token not in everything_shown(error) + error.message
    sb.faults = {}
    edited = frame.copy()
    edited.loc[[3, 4], "use_pps_time"] = ~frame.loc[[3, 4], "use_pps_time"]
    plan = c.sources.plan(edited)  # against the server now: applying it reads them again, then PATCHes
    sb.faults = {"echo_headers": 1.0}
    report = plan.apply(progress=False)
    assert set(report["status"]) == {"failed"} and report["error"].str.contains("Request Rejected").all()
    assert sb.token not in report.to_csv() + report.to_string() + report._repr_html_()
