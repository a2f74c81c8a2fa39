"""The embedded sandbox, exercised over real HTTP on loopback with plain requests."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from neuroio_nb import _schema as schema
from neuroio_nb import _values as values
from neuroio_nb.sandbox import EXTRA_FIELDS, VARIETY_FIELDS, RequestRecord, Sandbox, generate_sources

LIST = "/v1/sources/"

pytestmark = pytest.mark.sandbox(sources=60, seed=1)


def session(sb: Sandbox) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Token {sb.token}"
    return s


@pytest.fixture
def http(sb: Sandbox) -> Iterator[requests.Session]:
    with session(sb) as s:
        yield s


def item(sb: Sandbox, source_id: int | str) -> str:
    return f"{sb.url}{LIST}{source_id}/"


def walk(http: requests.Session, url: str) -> list[dict[str, Any]]:
    """Every row of a listing, following ``next``."""
    rows: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        page = http.get(next_url).json()
        rows += page["results"]
        next_url = page["next"]
    return rows


# -- transport and auth ------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Token wrong", "Bearer {token}", "{token}"])
def test_requests_without_the_token_get_401(sb: Sandbox, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header.format(token=sb.token)}
    r = requests.get(sb.url + LIST, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error_codes": [1002], "message": "Invalid token.", "fields": []}
    assert sb.log[-1].authorized is False


def test_answers_are_json_with_a_length_on_a_kept_alive_connection(
    sb: Sandbox, http: requests.Session, connections_opened: list[tuple[str, int]]
) -> None:
    for _ in range(3):
        r = http.get(item(sb, 1))
        assert r.headers["Content-Type"] == "application/json"
        assert int(r.headers["Content-Length"]) == len(r.content)
        assert r.headers.get("Connection", "keep-alive").lower() != "close"
    assert len(connections_opened) == 1  # the three answers came over one connection


def test_latency_is_added_to_every_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each request waits ``latency`` before it is answered (the waits are recorded, not timed)."""
    waits: list[float] = []
    real_sleep = time.sleep

    def recorded(seconds: float) -> None:
        waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", recorded)
    with Sandbox(5, latency=0.15) as sb, session(sb) as http:
        assert http.get(item(sb, 1)).status_code == 200
        assert http.get(sb.url + LIST).status_code == 200
        assert waits.count(0.15) == len(sb.log) == 2


# -- listing ---------------------------------------------------------------------------


def test_pages_have_count_next_and_previous(sb: Sandbox, http: requests.Session) -> None:
    first = http.get(sb.url + LIST, params={"limit": 7}).json()
    assert first["count"] == 60
    assert first["previous"] is None
    assert [r["id"] for r in first["results"]] == list(range(1, 8))
    assert first["next"] == f"{sb.url}{LIST}?limit=7&offset=7"
    second = http.get(first["next"]).json()
    assert [r["id"] for r in second["results"]] == list(range(8, 15))
    assert second["previous"] == f"{sb.url}{LIST}?limit=7"
    assert [r["id"] for r in walk(http, sb.url + LIST + "?limit=7")] == list(range(1, 61))


def test_default_limit_is_20(sb: Sandbox, http: requests.Session) -> None:
    assert len(http.get(sb.url + LIST).json()["results"]) == 20


def test_q_and_spaces_ids_filter_and_stay_in_next(sb: Sandbox, http: requests.Session) -> None:
    expected = [s["id"] for s in sb.sources.values() if "kiosk" in s["name"] and s["space_id"] in (1, 2)]
    assert len(expected) > 3
    url = f"{sb.url}{LIST}?q=KIOSK&spaces_ids=1,2&limit=2"
    first = http.get(url).json()
    assert first["count"] == len(expected)
    assert "q=KIOSK" in first["next"] and "spaces_ids=1,2" in first["next"]
    assert [r["id"] for r in walk(http, url)] == expected


@pytest.mark.parametrize(
    "params,field",
    [
        ({"spaces_ids": "1,a"}, "spaces_ids"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "1.5"}, "offset"),
    ],
)
def test_bad_list_parameters_get_400(sb: Sandbox, http: requests.Session, params: dict[str, str], field: str) -> None:
    r = http.get(sb.url + LIST, params=params)
    assert r.status_code == 400
    assert [f["name"] for f in r.json()["fields"]] == [field]


def test_page_cap_silently_shortens_pages() -> None:
    with Sandbox(25, page_cap=10) as sb, session(sb) as http:
        page = http.get(sb.url + LIST, params={"limit": 50}).json()
        assert len(page["results"]) == 10 and page["count"] == 25
        assert page["next"] == f"{sb.url}{LIST}?limit=10&offset=10"


def test_omit_count_sends_results_only() -> None:
    with Sandbox(25, omit_count=True) as sb, session(sb) as http:
        page = http.get(sb.url + LIST, params={"offset": 20}).json()
        assert list(page) == ["results"]
        assert [r["id"] for r in page["results"]] == list(range(21, 26))


def test_claimed_count_is_on_every_page_and_next_goes_on() -> None:
    with Sandbox(25, claimed_count=10**9) as sb, session(sb) as http:
        page = http.get(sb.url + LIST, params={"offset": 40}).json()
        assert page["count"] == 10**9 and page["results"] == []
        assert page["next"] == sb.url + LIST + "?limit=20&offset=40"


def test_next_base_points_next_at_another_host() -> None:
    with Sandbox(25, next_base="http://elsewhere.invalid:9") as sb, session(sb) as http:
        page = http.get(sb.url + LIST).json()
        assert page["next"] == "http://elsewhere.invalid:9/v1/sources/?limit=20&offset=20"


# -- one source ------------------------------------------------------------------------


def test_get_one_source_or_404(sb: Sandbox, http: requests.Session) -> None:
    assert http.get(item(sb, 5)).json() == sb.source(5)
    not_found = {"error_codes": [1004], "message": "Not found.", "fields": []}
    for url in (item(sb, 999), item(sb, "abc"), sb.url + "/v1/sources/5", sb.url + "/v1/spaces/"):
        r = http.get(url)
        assert (r.status_code, r.json()) == (404, not_found), url


def test_create_fills_defaults_and_keeps_license_id(sb: Sandbox, http: requests.Session) -> None:
    r = http.post(sb.url + LIST, json={"name": "Dock 9 cam 01", "license_id": "lic-00aa", "use_pps_time": True})
    assert r.status_code == 201
    created = r.json()
    assert created["id"] == 61 and created["space_id"] == 1
    assert created["name"] == "Dock 9 cam 01" and created["license_id"] == "lic-00aa"
    assert created["use_pps_time"] is True
    for name, default in schema.create_defaults().items():
        if name != "use_pps_time":
            assert created[name] == default, name
    assert created["auto_check_angle_threshold"] == EXTRA_FIELDS["auto_check_angle_threshold"].default
    assert "license" not in created
    assert sb.source(61) == created


def test_creates_land_in_the_tokens_space_the_lowest_until_told_otherwise(sb: Sandbox, http: requests.Session) -> None:
    assert sb.creates_land_in == 1
    sb.creates_land_in = 3
    assert http.post(sb.url + LIST, json={"name": "Dock 9 cam 02"}).json()["space_id"] == 3
    sb.reset(60)
    assert sb.creates_land_in == 1 and http.post(sb.url + LIST, json={"name": "Dock 9 cam 03"}).json()["space_id"] == 1


def test_patch_changes_only_what_is_sent(sb: Sandbox, http: requests.Session) -> None:
    before = sb.source(3)
    r = http.patch(
        item(sb, 3),
        json={
            "identify_facesize_threshold": 12345,
            "auto_check_angle_threshold": 45,
            "store_images_for_results": ["det", "new"],
        },
    )
    assert r.status_code == 200
    after = {
        **before,
        "identify_facesize_threshold": 12345,
        "auto_check_angle_threshold": 45,
        "store_images_for_results": ["det", "new"],
    }
    assert r.json() == after == sb.source(3)
    assert http.patch(item(sb, 999), json={}).status_code == 404


def test_delete_answers_202_with_an_empty_body(sb: Sandbox, http: requests.Session) -> None:
    r = http.delete(item(sb, 4))
    assert (r.status_code, r.content) == (202, b"")
    assert 4 not in sb.sources
    assert http.get(item(sb, 4)).status_code == 404
    assert http.delete(item(sb, 4)).status_code == 404


def test_validation_lists_every_problem_at_once(sb: Sandbox, http: requests.Session) -> None:
    target = sb.source(2)
    neighbour = next(s for s in sb.sources.values() if s["space_id"] == target["space_id"] and s["id"] != 2)
    r = http.patch(
        item(sb, 2),
        json={
            "identify_facesize_threshold": "big",
            "manual_create_facesize_threshold": -5,
            "auto_create_facesize_threshold": 7000.0,
            "store_images_for_results": ["new", "bogus"],
            "id": 7,
            "license": {"id": 1},
            "colour": "red",
            "use_pps_time": None,
            "auto_check_angle_threshold": 120,
            "name": neighbour["name"],
        },
    )
    assert r.status_code == 400
    body = r.json()
    assert body["error_codes"] == [1001] and body["message"] == "Validation failed"
    messages = {f["name"]: f["message"] for f in body["fields"]}
    assert set(messages) == {
        "identify_facesize_threshold",
        "manual_create_facesize_threshold",
        "auto_create_facesize_threshold",
        "store_images_for_results",
        "id",
        "license",
        "colour",
        "use_pps_time",
        "auto_check_angle_threshold",
        "name",
    }
    assert messages["id"] == messages["license"] == "This field is read-only."
    assert messages["colour"] == "Unknown field."
    assert messages["use_pps_time"] == "This field may not be null."
    assert messages["name"] == "source with this name already exists in the space"
    assert "bogus" in messages["store_images_for_results"]
    assert all(f["error_code"] == 1001 for f in body["fields"])
    assert sb.source(2) == target


def test_create_needs_a_name_and_a_json_object(sb: Sandbox, http: requests.Session) -> None:
    r = http.post(sb.url + LIST, json={"license_id": None})
    assert r.status_code == 400 and [f["name"] for f in r.json()["fields"]] == ["name"]
    for raw in (b"[1, 2]", b"{not json"):
        r = http.post(sb.url + LIST, data=raw, headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()["message"]) == (400, "JSON parse error")
    r = http.post(sb.url + LIST, json={"name": "Gate", "license_id": None, "store_images_for_results": None})
    assert r.status_code == 201
    assert len(sb.sources) == 61


# -- faults, drops and the rate limit ------------------------------------------------------


def test_each_fault_kind_comes_at_its_share() -> None:
    with Sandbox(5, fault_rate=0.4, retry_after=(0, 1)) as sb, session(sb) as http:
        seen: Counter[str] = Counter()
        for _ in range(400):
            try:
                r = http.get(item(sb, 1))
            except requests.ConnectionError:
                seen["drop"] += 1
                continue
            seen[str(r.status_code)] += 1
            if r.status_code == 429:
                assert r.headers["Retry-After"] in ("0", "1")
                assert r.json()["error_codes"]
            elif r.status_code == 503:
                assert r.json()["message"]
            elif r.status_code == 502:
                assert r.headers["Content-Type"].startswith("text/html")
                assert b"<html>" in r.content
        for kind in ("503", "429", "502", "drop"):
            assert 20 <= seen[kind] <= 65, seen
        assert 160 <= seen["200"] <= 280, seen
        logged = Counter(r.fault for r in sb.log)
        assert all(logged[kind] == seen[kind] for kind in ("503", "429", "502", "drop"))
        assert all(r.status is None for r in sb.log if r.fault == "drop")


def test_faults_come_before_processing_and_can_be_turned_off(sb: Sandbox, http: requests.Session) -> None:
    before = sb.source(1)
    sb.faults = {"503": 1.0}
    assert http.patch(item(sb, 1), json={"use_pps_time": not before["use_pps_time"]}).status_code == 503
    assert sb.source(1) == before
    sb.fault_rate = 0
    assert http.patch(item(sb, 1), json={"use_pps_time": not before["use_pps_time"]}).status_code == 200
    with pytest.raises(ValueError):
        sb.faults = {"418": 0.5}


def test_drop_after_apply_applies_then_closes_the_connection() -> None:
    with Sandbox(5, drop_after_apply=1.0) as sb, session(sb) as http:
        with pytest.raises(requests.ConnectionError):
            http.patch(item(sb, 1), json={"identify_facesize_threshold": 4242})
        assert sb.source(1)["identify_facesize_threshold"] == 4242
        with pytest.raises(requests.ConnectionError):
            http.post(sb.url + LIST, json={"name": "Lost answer"})
        assert any(s["name"] == "Lost answer" for s in sb.sources.values())
        assert http.get(item(sb, 1)).status_code == 200
        writes = sb.requests("PATCH") + sb.requests("POST")
        assert [(r.status, r.fault) for r in writes] == [(None, "drop_after_apply")] * 2


@pytest.mark.parametrize("sent", [b"", b'{"name": "Renamed"}'], ids=["no-body-byte", "a-prefix-that-parses"])
def test_a_body_cut_off_by_a_client_that_went_away_is_dropped_unapplied(sb: Sandbox, sent: bytes) -> None:
    """A client killed while sending its PATCH: fewer bytes than its Content-Length came. A real
    server drops the request; the sandbox neither applies it (whole, empty or in part) nor answers."""
    before = sb.source(1)
    whole = b'{"name": "Renamed", "identify_facesize_threshold": 4242}'
    head = (
        f"PATCH {LIST}1/ HTTP/1.1\r\nHost: {sb.url.split('//')[1]}\r\nAuthorization: Token {sb.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(whole)}\r\n\r\n"
    ).encode()
    with socket.create_connection((sb.url.split("//")[1].split(":")[0], sb.port), timeout=10) as raw:
        raw.sendall(head + sent)
        raw.shutdown(socket.SHUT_WR)  # the client is gone: no more bytes will come
        answer = raw.recv(65536)
    assert answer == b""  # no answer at all, not a 200
    assert sb.source(1) == before
    assert [(r.method, r.status, r.fault) for r in sb.log] == [("PATCH", None, "incomplete_body")]


def test_rate_limit_answers_429_with_retry_after() -> None:
    with Sandbox(5, rate_limit=2, rate_burst=2) as sb, session(sb) as http:
        statuses = [http.get(item(sb, 1)) for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 429, 429]
        assert statuses[2].headers["Retry-After"] == "1"
        assert [r.fault for r in sb.log] == [None, None, "rate_limit", "rate_limit"]
        time.sleep(0.55)
        assert http.get(item(sb, 1)).status_code == 200


@pytest.mark.parametrize("mode", ["truncated", "results_not_list", "missing_id"])
def test_corrupt_list_pages(mode: str) -> None:
    with Sandbox(10, corrupt=mode) as sb, session(sb) as http:
        r = http.get(sb.url + LIST, params={"limit": 5})
        assert r.status_code == 200
        if mode == "truncated":
            with pytest.raises(ValueError):
                r.json()
        elif mode == "results_not_list":
            assert isinstance(r.json()["results"], dict)
        else:
            assert sum("id" not in row for row in r.json()["results"]) == 1
        assert http.get(item(sb, 1)).json() == sb.source(1)


# -- what the sandbox saw ----------------------------------------------------------------------


def test_log_records_each_request(sb: Sandbox, http: requests.Session) -> None:
    http.get(sb.url + LIST, params={"q": "cam", "limit": 3}, headers={"User-Agent": "probe/1"})
    http.patch(item(sb, 1), json={"auto_create_persons": True})
    get, patch = sb.log
    assert isinstance(get, RequestRecord)
    assert (get.method, get.path, get.params, get.body, get.status, get.fault) == (
        "GET",
        LIST,
        {"q": "cam", "limit": "3"},
        None,
        200,
        None,
    )
    assert get.authorized and get.user_agent == "probe/1"
    assert (patch.method, patch.path, patch.body, patch.status) == (
        "PATCH",
        "/v1/sources/1/",
        {"auto_create_persons": True},
        200,
    )
    assert get.started <= get.ended <= patch.started <= patch.ended
    assert (get.source_id, patch.source_id) == (None, 1)  # the id a request names, read from its path
    assert sb.requests("patch") == [patch]
    sb.clear_log()
    assert sb.log == []


def test_fifty_keep_alive_clients_at_once() -> None:
    with Sandbox(100, latency=0.05) as sb:
        barrier = threading.Barrier(50)
        statuses: list[int] = []

        def client() -> None:
            with session(sb) as http:
                barrier.wait()
                statuses.extend(http.get(item(sb, 1)).status_code for _ in range(4))

        threads = [threading.Thread(target=client) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert statuses == [200] * 200
        assert len(sb.log) == 200
        assert sb.max_in_flight >= 25
        sb.clear_log()
        assert sb.max_in_flight == 0


def test_before_request_runs_just_before_processing(sb: Sandbox, http: requests.Session) -> None:
    seen: list[tuple[str, str]] = []

    def meanwhile(method: str, path: str) -> None:
        seen.append((method, path))
        if method == "PATCH":
            sb.external_edit(1, identify_facesize_threshold=1234)

    sb.before_request = meanwhile
    changed = http.patch(item(sb, 1), json={"use_pps_time": True}).json()
    assert changed["identify_facesize_threshold"] == 1234 and changed["use_pps_time"] is True
    assert seen == [("PATCH", "/v1/sources/1/")]


def test_external_changes_are_validated_and_not_logged(sb: Sandbox) -> None:
    added = sb.add_source(name="Side door cam 01")
    assert sb.source(added["id"]) == added
    assert sb.external_edit(2, auto_check_liveness=True)["auto_check_liveness"] is True
    sb.remove_source(3)
    assert 3 not in sb.sources
    with pytest.raises(ValueError, match="identify_facesize_threshold"):
        sb.external_edit(2, identify_facesize_threshold=-1)
    with pytest.raises(KeyError):
        sb.remove_source(3)
    assert sb.log == []


# -- generated data ------------------------------------------------------------------------------


def test_generated_sources_are_deterministic_and_realistic() -> None:
    sources = generate_sources(500, seed=7)
    assert sources == generate_sources(500, seed=7)
    assert sources != generate_sources(500, seed=8)
    assert sources[:50] == generate_sources(50, seed=7)
    assert [s["id"] for s in sources] == list(range(1, 501))
    spaces = Counter(s["space_id"] for s in sources)
    assert len(spaces) in (4, 5) and max(spaces.values()) > 3 * min(spaces.values())
    for space in spaces:
        names = [s["name"] for s in sources if s["space_id"] == space]
        assert len(names) == len(set(names))
    spaces_of: dict[str, set[int]] = {}
    for s in sources:
        spaces_of.setdefault(s["name"], set()).add(s["space_id"])
    assert any(len(v) > 1 for v in spaces_of.values())
    expected_keys = {f.name for f in schema.FIELDS} | set(EXTRA_FIELDS)
    assert all(set(s) | {"license"} == expected_keys for s in sources)
    assert {type(s["license_id"]) for s in sources} == {int, str}
    assert 0 < sum("license" in s for s in sources) < 500
    images = [s["store_images_for_results"] for s in sources]
    assert [] in images and None in images
    settings = [f for f in schema.FIELDS if f.kind in ("int", "bool") and f.writable]
    varied = sum(s[f.name] != f.default for s in sources for f in settings)
    assert 0.15 < varied / (len(sources) * len(settings)) < 0.35
    for s in sources:
        for name, value in s.items():
            field = schema.BY_NAME.get(name) or EXTRA_FIELDS[name]
            if field.writable:
                assert values.check_value(field, value) is None, (name, value)


def test_a_list_of_sources_becomes_the_state() -> None:
    mine = [{"id": 10, "space_id": 3, "name": "Only one", "custom": "kept"}]
    with Sandbox(mine) as sb, session(sb) as http:
        assert http.get(sb.url + LIST).json()["results"] == mine
        assert http.post(sb.url + LIST, json={"name": "Two"}).json()["id"] == 11


# -- the variety a real server has ---------------------------------------------------------------


def test_integer_license_ids_only_and_some_sources_unlicensed() -> None:
    sources = generate_sources(400, seed=2, license_ids="int")
    assert {type(s["license_id"]) for s in sources} == {int, type(None)}
    assert 10 < sum(s["license_id"] is None for s in sources) < 80
    assert all(s["license"]["id"] == s["license_id"] for s in sources if "license" in s)
    assert not any("license" in s for s in sources if s["license_id"] is None)
    plain = generate_sources(400, seed=2)
    assert [s["name"] for s in sources] == [s["name"] for s in plain]  # only license ids differ
    with Sandbox(20, license_ids="int") as sb, session(sb) as http:
        refused = http.patch(item(sb, 1), json={"license_id": "lic-00aa"})
        assert refused.status_code == 400
        assert refused.json()["fields"][0]["name"] == "license_id"
        assert http.patch(item(sb, 1), json={"license_id": 1234}).status_code == 200
        assert http.patch(item(sb, 2), json={"license_id": None}).json()["license_id"] is None


def test_unknown_fields_hold_text_that_looks_like_numbers_and_some_sources_lack_some() -> None:
    sources = generate_sources(300, seed=4, unknown_fields=True)
    codes = [s["site_code"] for s in sources]
    for tricky in ("007", "0420", "true", "1.50", ""):
        assert tricky in codes
    assert None in codes and all(c is None or isinstance(c, str) for c in codes)
    for name in ("retention_days", "night_mode"):
        assert 20 < sum(name not in s for s in sources) < 100, name
    assert {type(s["night_mode"]) for s in sources if "night_mode" in s} == {bool}
    assert {type(s["retention_days"]) for s in sources if "retention_days" in s} == {int}
    assert [s["name"] for s in sources] == [s["name"] for s in generate_sources(300, seed=4)]

    with Sandbox(30, unknown_fields=True) as sb, session(sb) as http:
        assert http.get(sb.url + LIST).json()["results"][0]["site_code"] == sb.source(1)["site_code"]
        ok = http.patch(item(sb, 1), json={"site_code": "0042", "retention_days": 45, "night_mode": True})
        assert ok.status_code == 200 and sb.source(1)["site_code"] == "0042"
        refused = http.patch(item(sb, 2), json={"site_code": 42, "retention_days": 45.0, "night_mode": "true"})
        assert refused.status_code == 400
        assert {f["name"] for f in refused.json()["fields"]} == {"site_code", "retention_days", "night_mode"}
        assert set(VARIETY_FIELDS) <= set(http.post(sb.url + LIST, json={"name": "New"}).json())


def test_seeded_records_keep_their_own_fields_and_their_json_types(sb: Sandbox) -> None:
    records = [
        {"id": 5, "space_id": 2, "name": "Gate", "zone": "0042", "weight": 3, "tags": None},
        {"id": 2**40, "space_id": 2, "name": "Dock", "zone": "", "weight": 7, "tags": None},
    ]
    sb.reset(records)
    assert sb.log == [] and sb.sources == {r["id"]: r for r in records}
    with session(sb) as http:
        assert http.get(sb.url + LIST).json()["results"] == records
        assert http.patch(item(sb, 5), json={"zone": "7", "weight": 8, "tags": ["x"]}).status_code == 200
        refused = http.patch(item(sb, 5), json={"zone": 7, "weight": 8.0, "colour": "red"}).json()
        assert {f["name"]: f["message"] for f in refused["fields"]} == {
            "zone": "must be string, not integer",
            "weight": "must be integer, not number",
            "colour": "Unknown field.",
        }
        assert sb.source(5) == {**records[0], "zone": "7", "weight": 8, "tags": ["x"]}
    sb.reset(3)
    assert sorted(sb.sources) == [1, 2, 3]


def test_error_page_that_echoes_the_request_headers(sb: Sandbox, http: requests.Session) -> None:
    sb.faults = {"echo_headers": 1.0}
    before = sb.source(1)
    r = http.patch(item(sb, 1), json={"use_pps_time": True}, headers={"User-Agent": "probe/2"})
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/html")
    assert f"Authorization: Token {sb.token}" in r.text and "User-Agent: probe/2" in r.text
    assert "PATCH /v1/sources/1/" in r.text
    assert sb.source(1) == before and sb.log[-1].fault == "echo_headers"


def test_error_body_with_scalar_error_codes_and_fields(sb: Sandbox, http: requests.Session) -> None:
    sb.faults = {"scalar_error": 1.0}
    before = sb.source(1)
    r = http.patch(item(sb, 1), json={"use_pps_time": True})
    assert r.status_code == 400
    body = r.json()
    assert body["error_codes"] == 1007 and isinstance(body["fields"], str) and body["message"]
    assert sb.source(1) == before


def test_fault_rate_splits_over_the_transient_kinds_only() -> None:
    sb = Sandbox(5, fault_rate=0.4)
    assert sb.faults == {"503": 0.1, "429": 0.1, "502": 0.1, "drop": 0.1}


def test_applied_then_answered_by_a_proxy_502() -> None:
    with Sandbox(5, gateway_after_apply=1.0) as sb, session(sb) as http:
        r = http.patch(item(sb, 1), json={"identify_facesize_threshold": 4343})
        assert r.status_code == 502 and b"Bad Gateway" in r.content
        assert sb.source(1)["identify_facesize_threshold"] == 4343
        r = http.post(sb.url + LIST, json={"name": "Answered 502"})
        assert r.status_code == 502
        assert any(s["name"] == "Answered 502" for s in sb.sources.values())
        assert http.get(item(sb, 1)).status_code == 200  # reads are answered as usual
        assert [(r.status, r.fault) for r in sb.log] == [(502, "502_after_apply")] * 2 + [(200, None)]


def test_faults_can_be_kept_to_some_methods(sb: Sandbox, http: requests.Session) -> None:
    sb.faults, sb.fault_methods = {"503": 1.0}, {"PATCH"}
    assert http.get(item(sb, 1)).status_code == 200
    assert http.patch(item(sb, 1), json={"use_pps_time": True}).status_code == 503
    assert [r.fault for r in sb.log] == [None, "503"]
