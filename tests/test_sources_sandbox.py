"""Paging, CRUD and the typed frame against the sandbox over real HTTP."""

from __future__ import annotations

import itertools
import warnings

import pandas as pd
import pytest

from neuroio_nb._schema import BY_NAME, COLUMNS
from neuroio_nb.errors import APIError, ListingChangedWarning, NotFoundError


def listed_offsets(sb):
    return sorted(int(r.params.get("offset", 0)) for r in sb.requests("GET") if r.path == "/v1/sources/")


def test_to_frame_1234_sources_page_cap_100(make_sandbox, client_for):
    sb = make_sandbox(sources=1234, page_cap=100)
    frame = client_for(sb).sources.to_frame(progress=False)
    assert sorted(frame.index) == sorted(sb.sources)
    assert frame.index.name == "id" and frame.index.is_unique
    for name in COLUMNS:
        if name in frame.columns:
            expected = BY_NAME[name].dtype
            assert frame[name].dtype == expected, name
    assert list(frame.columns[: len(COLUMNS)]) == [c for c in COLUMNS if c in frame.columns]
    assert "auto_check_angle_threshold" in frame.columns  # a field the schema does not know, kept
    server = sb.sources
    for sid in (1, 617, 1234):
        row = frame.loc[sid]
        assert row["name"] == server[sid]["name"]
        assert bool(row["use_pps_time"]) == server[sid]["use_pps_time"]
        assert row["auto_check_angle_threshold"] == server[sid]["auto_check_angle_threshold"]
    offsets = listed_offsets(sb)
    assert offsets[0] == 0
    assert all(b - a == 99 for a, b in itertools.pairwise(offsets))  # each page overlaps the last by one row
    assert offsets[-1] + 100 >= 1234 and len(offsets) == 13


def expected_requests(n: int, size: int = 100) -> int:
    """The first page, then pages of `size` rows that overlap the previous one by a row."""
    return 1 if n <= size else 1 + -(-(n - size) // (size - 1))


def test_pages_fetched_concurrently(make_sandbox, client_for):
    sb = make_sandbox(sources=1000, latency=0.05)
    client_for(sb, max_workers=6).sources.to_frame(progress=False)
    assert sb.max_in_flight > 1


def test_server_cap_below_asked_limit(make_sandbox, client_for):
    sb = make_sandbox(sources=250, page_cap=30)
    c = client_for(sb, page_size=100)
    frame = c.sources.to_frame(progress=False)
    assert sorted(frame.index) == list(range(1, 251))
    assert len(c.sources.list(limit=100)["results"]) == 30


def test_no_count_no_next(make_sandbox, client_for):
    sb = make_sandbox(sources=230, omit_count=True, page_cap=50)
    frame = client_for(sb).sources.to_frame(progress=False)
    assert sorted(frame.index) == list(range(1, 231))
    offsets = listed_offsets(sb)
    # advanced by the rows received, each page one row early (so a shift shows), until a page
    # held nothing after the last row read
    assert offsets == [0, 49, 98, 147, 196, 229]


@pytest.mark.parametrize("n", [0, 1, 100, 200])
def test_zero_one_and_exact_multiples(make_sandbox, client_for, n):
    sb = make_sandbox(sources=n)
    frame = client_for(sb).sources.to_frame(progress=False)
    assert len(frame) == n and sorted(frame.index) == list(range(1, n + 1))
    assert len(sb.requests("GET")) == expected_requests(n)
    if n == 0:
        assert list(frame.columns) == list(COLUMNS)
        assert frame["use_pps_time"].dtype == "boolean"


def test_filters_by_name_and_space(sb, client):
    frame = client.sources.to_frame(q="CAM", spaces_ids=[1, 2], progress=False)
    expected = {i for i, s in sb.sources.items() if "cam" in s["name"].lower() and s["space_id"] in (1, 2)}
    assert set(frame.index) == expected and expected
    assert sb.requests("GET")[0].params["spaces_ids"] == "1,2"


def test_iter_yields_every_source(make_sandbox, client_for):
    sb = make_sandbox(sources=150)
    rows = list(client_for(sb).sources.iter())
    assert [r["id"] for r in rows] == list(range(1, 151))


def test_crud_roundtrip(sb, client):
    made = client.sources.create("Loading dock cam", license="lic-9", auto_create_persons=True)
    assert made["name"] == "Loading dock cam" and made["license_id"] == "lic-9"
    assert made["auto_create_persons"] is True and made["identify_facesize_threshold"] == 7000
    assert client.sources.get(made["id"]) == made
    changed = client.sources.update(made["id"], identify_facesize_threshold=9000)
    assert changed["identify_facesize_threshold"] == 9000
    assert sb.requests("PATCH")[-1].body == {"identify_facesize_threshold": 9000}
    client.sources.delete(made["id"])
    with pytest.raises(NotFoundError):
        client.sources.get(made["id"])


def test_server_validation_error_is_typed(sb, client):
    taken = sb.source(2)["name"]
    same_space = [i for i, s in sb.sources.items() if s["space_id"] == sb.source(2)["space_id"] and i != 2]
    with pytest.raises(APIError) as info:
        client.sources.update(same_space[0], name=taken)
    assert info.value.status_code == 400 and "name" in info.value.field_errors


def test_user_agent_and_keepalive(make_sandbox, client_for, connections_opened):
    """Every request says who sends it and carries the token; one reader reads every page over one
    kept-alive connection."""
    sb = make_sandbox(sources=500)
    client_for(sb, max_workers=1).sources.to_frame(progress=False)
    assert all(r.user_agent and r.user_agent.startswith("neuroio-nb/") for r in sb.log)
    assert all(r.authorized for r in sb.log)
    assert len(sb.log) > 1 and len(connections_opened) == 1


def test_frame_builds_from_dicts_with_unknown_and_missing_fields():
    from neuroio_nb._jobs.frames import frame_from_records

    frame = frame_from_records(
        [
            {"id": 2, "name": "a", "use_pps_time": None, "new_thing": {"x": 1}, "license_id": 5},
            {"id": 1, "name": "b", "use_pps_time": True, "license_id": "lic-1"},
        ]
    )
    assert list(frame.index) == [2, 1]
    assert frame["use_pps_time"].dtype == "boolean" and frame["use_pps_time"].isna().tolist() == [True, False]
    assert frame["license_id"].tolist() == ["5", "lic-1"]
    assert frame.loc[2, "new_thing"] == {"x": 1}
    assert list(frame.columns) == ["name", "license_id", "use_pps_time", "new_thing"]
    assert pd.isna(frame.loc[1, "new_thing"])


def test_whole_number_license_ids_stay_whole_when_one_is_missing():
    from neuroio_nb._jobs.frames import frame_from_records

    frame = frame_from_records(
        [{"id": 1, "license_id": 1001}, {"id": 2, "license_id": None}, {"id": 3, "license_id": 7}]
    )
    assert frame["license_id"].tolist()[::2] == ["1001", "7"] and pd.isna(frame.loc[2, "license_id"])


def test_a_number_too_big_for_the_column_is_kept_with_a_warning():
    from neuroio_nb._jobs.frames import frame_from_records

    with pytest.warns(UserWarning, match="identify_facesize_threshold"):
        frame = frame_from_records(
            [{"id": 1, "identify_facesize_threshold": 2**70}, {"id": 2, "identify_facesize_threshold": 5}]
        )
    assert frame.loc[1, "identify_facesize_threshold"] == 2**70


# ---- reading page after page while the listing changes ---------------------------------------------


def delete_early(source_id: int):
    def act(sandbox):
        sandbox.remove_source(source_id)

    return act


@pytest.mark.parametrize("reader", ["iter", "to_frame"])
def test_a_sequential_read_loses_no_source_when_one_before_it_is_deleted(make_sandbox, client_for, churn, reader):
    """No ``count`` (so pages are read one after another, as iter(), ``list --format json``, the
    picker and create's check always read): a source deleted before the read position makes the
    rest slide back a row. Every source there all along is still read, once, and a warning says
    the listing changed."""
    sb = make_sandbox(sources=200, omit_count=True, page_cap=50)
    c = client_for(sb)
    churn(sb, {3: delete_early(10)})
    with pytest.warns(ListingChangedWarning):
        ids = (
            [r["id"] for r in c.sources.iter()] if reader == "iter" else list(c.sources.to_frame(progress=False).index)
        )
    assert len(ids) == len(set(ids))
    assert set(ids) >= set(sb.sources)  # every source still there was read (10 may still be listed)


def test_a_count_that_becomes_too_low_does_not_end_the_read(make_sandbox, client_for, churn):
    """Sources added at the end while the pages are read: the first page's ``count`` is too low, and
    the last page's ``next`` says there is more. The read goes on and gets them, and warns."""
    sb = make_sandbox(sources=300, page_cap=50)
    c = client_for(sb, max_workers=1)

    def add_three(sandbox):
        return [sandbox.add_source(name=f"Late arrival {n}")["id"] for n in range(3)]

    added = churn(sb, {2: add_three})
    with pytest.warns(ListingChangedWarning):
        frame = c.sources.to_frame(progress=False)
    assert len(added) == 3 and set(added) <= set(frame.index)
    assert sorted(frame.index) == sorted(sb.sources)


def test_an_error_body_with_scalar_codes_and_fields_is_an_api_error(make_sandbox, client_for):
    """``"error_codes": 1007`` and ``"fields": "settings"`` instead of lists: an APIError that keeps
    them, not a TypeError; in a bulk update, a failed row with the server's message."""
    sb = make_sandbox(sources=10)
    c = client_for(sb, max_retries=0)
    frame = c.sources.to_frame(progress=False)
    sb.faults = {"scalar_error": 1.0}
    with pytest.raises(APIError) as info:
        c.sources.update(2, use_pps_time=True)
    assert info.value.status_code == 400 and info.value.error_codes == [1007]
    assert "locked by another operation" in str(info.value) and "settings" in str(info.value)
    sb.faults = {}
    edited = frame.copy()
    edited["use_pps_time"] = ~frame["use_pps_time"]
    plan = c.sources.plan(edited)
    sb.faults = {"scalar_error": 1.0}
    report = plan.apply(progress=False)
    assert set(report["status"]) == {"failed"} and report["error"].str.contains("locked").all()


#: A count far above the 230 sources there: the server lies (each page says it, and ``next`` goes on).
LYING_COUNT = 10**6


@pytest.mark.parametrize("read", ["to_frame", "iter", "bulk_update(base=)", "plan(key='name', delete=True)"])
def test_a_count_far_above_the_sources_there_ends_the_read_with_the_data(make_sandbox, client_for, read):
    sb = make_sandbox(sources=230, page_cap=50, claimed_count=LYING_COUNT)
    src = client_for(sb, max_readers=4).sources
    if read == "to_frame":
        with warnings.catch_warnings():
            warnings.simplefilter("error", ListingChangedWarning)  # the count is wrong, the listing did not move
            assert sorted(src.to_frame(progress=False).index) == list(range(1, 231))
    elif read == "iter":
        assert [s["id"] for s in src.iter()] == list(range(1, 231))
    elif read == "bulk_update(base=)":
        sb.claimed_count = None
        base = src.to_frame(progress=False)
        sb.claimed_count = LYING_COUNT
        sb.clear_log()
        edited = base.copy()
        edited.loc[[5, 200], "auto_check_liveness"] = ~edited.loc[[5, 200], "auto_check_liveness"]
        report = src.bulk_update(edited, base=base, progress=False)
        assert report["status"].tolist() == ["updated", "updated"]
    else:
        sb.claimed_count = None
        desired = src.to_frame(progress=False).reset_index(drop=True)
        sb.claimed_count = LYING_COUNT
        sb.clear_log()
        plan = src.plan(desired.iloc[1:], key="name", delete=True)
        assert plan.deletes["id"].tolist() == [1]
        # source 1 is in another space than the token's: undo could not bring it back
        assert plan.apply(irreversible=True)["status"].tolist() == ["deleted"]
    # the 5 pages of 50 there are, and the end: a few pages past it at most, never the million claimed
    assert len(listed_offsets(sb)) <= 2 * (5 + 2 * 4 + 2)
