"""A catalogue of bad inputs: each is caught with a typed error that says where, and nothing is sent.

Every case is its own test. Frame and argument cases run against one sandbox and
assert, through its request log, that not a single request left the client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from neuroio_nb import Client, read_csv
from neuroio_nb.errors import (
    AuthenticationError,
    ConfigurationError,
    TransportError,
    ValidationError,
)
from neuroio_nb.sandbox import Sandbox

pytestmark = pytest.mark.sandbox(sources=40, seed=5, shared=True)


@pytest.fixture(scope="module")
def world(module_sandbox: Sandbox) -> Iterator[tuple[Sandbox, Client, pd.DataFrame]]:
    """The module's one sandbox (``sb`` in a test, its log cleared), a client and its frame."""
    with Client(module_sandbox.token, module_sandbox.url, max_retries=2) as client:
        yield module_sandbox, client, client.sources.to_frame(progress=False)


def set_cell(frame: pd.DataFrame, sid: int, column: str, value: Any) -> pd.DataFrame:
    """A copy of ``frame`` with one cell set to anything (the column widened to object)."""
    edited = frame.copy()
    edited[column] = edited[column].astype(object)
    edited.at[sid, column] = value
    return edited


def assert_names(exc: BaseException, *parts: str) -> None:
    text = str(exc)
    for part in parts:
        assert part in text, f"{part!r} not in message:\n{text}"


# ---- an edited frame: every problem names the row (id), the field and the value ---------------

CELLS = {  # case id: (source id, column, bad value, what the reason says)
    "bool-given-text": (2, "use_pps_time", "yes", "true or false"),
    "bool-given-fraction": (3, "auto_create_persons", 0.5, "true or false"),
    "bool-given-number": (18, "use_pps_time", 2, "true or false"),
    "int-given-text": (4, "identify_facesize_threshold", "7000", "whole number"),
    "int-given-word": (19, "identify_facesize_threshold", "big", "whole number"),
    "int-given-bool": (5, "manual_create_facesize_threshold", True, "whole number"),
    "int-given-fraction": (6, "auto_create_facesize_threshold", 2500.5, "whole number"),
    "int-negative": (7, "auto_create_facesize_threshold", -25, "must be 0 or more"),
    "int-above-schema-maximum": (8, "identify_facesize_threshold", 10_000_001, "must be at most 10,000,000"),
    "text-given-number": (9, "name", 42, "must be text"),
    "text-blank-where-required": (10, "name", "   ", "must not be empty"),
    "nan-where-required": (11, "name", np.nan, "is required"),
    "none-where-required": (20, "name", None, "is required"),
    "license-given-bool": (12, "license_id", True, "number or text"),
    "license-given-fraction": (13, "license_id", 3.5, "number or text"),
    "list-given-text": (14, "store_images_for_results", "new", "must be a list"),
    "enum-wrong-case": (15, "store_images_for_results", ["NEW"], "unknown value"),
    "enum-unknown-value": (16, "store_images_for_results", ["new", "all"], "unknown value"),
    "enum-given-number": (17, "store_images_for_results", [1], "unknown value"),
}


@pytest.mark.parametrize("sid,column,value,reason", CELLS.values(), ids=CELLS.keys())
def test_bad_cell(world, sb, sid, column, value, reason):
    _, client, frame = world
    with pytest.raises(ValidationError) as info:
        client.sources.bulk_update(set_cell(frame, sid, column, value), base=frame, progress=False)
    (problem,) = info.value.problems
    assert (problem.id, problem.field) == (sid, column) and reason in problem.reason
    missing = value is None or value is np.nan  # a missing value has nothing to show
    assert_names(info.value, f"id {sid}", column, reason, *([] if missing else [repr(value)]))
    assert sb.log == []


def duplicated_id(frame):
    return pd.concat([frame, frame.loc[[3]]])


def read_only_space(frame):
    return set_cell(frame, 4, "space_id", 99)


def read_only_license_object(frame):
    return set_cell(frame, 5, "license", {"id": 1, "name": "Forged"})


def unknown_column(frame):
    return frame.assign(colour="red")


def timestamp_in_server_field(frame):
    # auto_check_angle_threshold: a field the server sent but the schema does not know
    return set_cell(frame, 6, "auto_check_angle_threshold", pd.Timestamp("2024-05-01"))


FRAMES: dict[str, tuple[Callable[[pd.DataFrame], Any], tuple[str, ...]]] = {
    "duplicate-ids": (duplicated_id, ("id 3", "appears 2 times")),
    "id-edited-to-anothers": (lambda f: f.rename(index={1: 5}), ("id 5", "appears 2 times")),
    "read-only-space_id": (read_only_space, ("id 4", "space_id", "99", "read-only")),
    "read-only-license-object": (read_only_license_object, ("id 5", "license", "Forged", "read-only")),
    "unknown-column": (unknown_column, ("colour", "unknown column")),
    "value-json-cannot-carry": (
        timestamp_in_server_field,
        ("id 6", "auto_check_angle_threshold", "2024-05-01", "cannot be sent as JSON"),
    ),
    "empty-frame": (lambda f: f.iloc[0:0], ("no rows",)),
    "no-id-index": (lambda f: f.reset_index(drop=True), ("'id'", "index")),
    "id-both-index-and-column": (lambda f: f.assign(id=f.index), ("'id' is both the index and a column",)),
    "negative-id": (lambda f: f.rename(index={7: -7}), ("id -7", "a source id is a whole number, 1 or more")),
    "zero-id": (lambda f: f.rename(index={7: 0}), ("id 0", "a source id is a whole number, 1 or more")),
    "id-beyond-uint64": (
        lambda f: f.set_axis(pd.Index([2**64, *list(f.index[1:])], dtype=object, name="id")),
        (f"id {2**64}", "at most 18,446,744,073,709,551,615"),
    ),
    "id-not-a-number": (
        lambda f: f.set_axis(pd.Index(["gate", *list(f.index[1:])], dtype=object, name="id")),
        ("id 'gate'", "whole number"),
    ),
    "missing-id": (lambda f: f.set_axis(pd.Index([np.nan, *list(f.index[1:])], name="id")), ("missing id",)),
    "duplicated-column-names": (lambda f: pd.concat([f, f[["name"]]], axis=1), ("duplicated column", "name")),
    "series-not-frame": (lambda f: f.loc[1], ("got a Series",)),
    "records-not-frame": (lambda f: f.reset_index().to_dict("records"), ("expected a pandas DataFrame", "list")),
}


@pytest.mark.parametrize("make,parts", FRAMES.values(), ids=FRAMES.keys())
def test_bad_frame(world, sb, make, parts):
    _, client, frame = world
    with pytest.raises(ValidationError) as info:
        client.sources.bulk_update(make(frame), base=frame, progress=False)
    assert_names(info.value, *parts, "nothing was sent")
    assert sb.log == []


def test_bad_frame_against_the_server_sends_nothing_either(world, sb):
    """Without a base the plan reads the server, but only once the frame's shape is sound; a bad cell
    is refused once the server's values say it is an edit (a bad value the server holds is not one)."""
    _, client, frame = world
    with pytest.raises(ValidationError):
        client.sources.bulk_update(duplicated_id(frame), progress=False)
    assert sb.log == []
    with pytest.raises(ValidationError) as info:
        client.sources.bulk_update(set_cell(frame, 2, "use_pps_time", "yes"), progress=False)
    assert [(p.id, p.field) for p in info.value.problems] == [(2, "use_pps_time")]
    assert {r.method for r in sb.log} == {"GET"}


def test_series_given_as_base(world, sb):
    _, client, frame = world
    with pytest.raises(ValidationError, match="base must be a DataFrame"):
        client.sources.plan(frame, base=frame["name"])
    assert sb.log == []


def test_base_without_id(world, sb):
    _, client, frame = world
    with pytest.raises(ValidationError, match="'id' index"):
        client.sources.plan(frame, base=frame.reset_index(drop=True))
    assert sb.log == []


def test_bad_on_conflict(world, sb):
    _, client, frame = world
    edited = set_cell(frame, 2, "identify_facesize_threshold", 9100)
    with pytest.raises(ValidationError) as info:
        client.sources.bulk_update(edited, on_conflict="sometimes", progress=False)  # base None: would read
    assert_names(info.value, "on_conflict", "'sometimes'", "'skip' or 'overwrite'")
    assert sb.log == []


def test_undo_of_something_not_a_report(world, sb):
    _, client, frame = world
    with pytest.raises(ValidationError, match="undo needs the report"):
        client.sources.undo(frame)
    assert sb.log == []


# ---- one source: get / update / create / list ------------------------------------------------

CALLS: dict[str, tuple[Callable[[Any], Any], tuple[str, ...]]] = {
    "get-text-id": (lambda s: s.get("gate"), ("id 'gate'", "whole number")),
    "get-fractional-id": (lambda s: s.get(1.5), ("id 1.5", "whole number")),
    "get-negative-id": (lambda s: s.get(-1), ("id -1", "a source id is a whole number, 1 or more")),
    "delete-zero-id": (lambda s: s.delete(0), ("id 0", "a source id is a whole number, 1 or more")),
    "get-bool-id": (lambda s: s.get(True), ("id True", "whole number")),
    "update-none-id": (lambda s: s.update(None, use_pps_time=True), ("whole number",)),
    "update-read-only-field": (lambda s: s.update(3, space_id=2), ("id 3", "space_id", "2", "read-only")),
    "update-bad-value": (lambda s: s.update(3, use_pps_time="yes"), ("id 3", "use_pps_time", "'yes'", "true or false")),
    "update-alias-and-field": (lambda s: s.update(3, license=5, license_id=6), ("id 3", "license", "not both")),
    "update-nan-json-cannot-carry": (
        lambda s: s.update(3, auto_check_angle_threshold=float("nan")),
        ("auto_check_angle_threshold", "nan", "cannot be sent as JSON"),
    ),
    "create-blank-name": (lambda s: s.create(""), ("name", "''", "must not be empty")),
    "create-negative-threshold": (
        lambda s: s.create("Dock", identify_facesize_threshold=-1),
        ("identify_facesize_threshold", "-1", "must be 0 or more"),
    ),
    "create-with-id": (lambda s: s.create("Dock", id=7), ("id", "7", "read-only")),
    "list-limit-text": (lambda s: s.list(limit="ten"), ("limit", "'ten'", "whole number")),
    "list-negative-offset": (lambda s: s.list(offset=-5), ("offset", "-5", "must be a whole number, 0 or more")),
    "spaces-not-ids": (
        lambda s: s.to_frame(spaces_ids=["north"], progress=False),
        ("spaces_ids", "north", "space ids"),
    ),
}


@pytest.mark.parametrize("call,parts", CALLS.values(), ids=CALLS.keys())
def test_bad_call(world, sb, call, parts):
    _, client, _ = world
    with pytest.raises(ValidationError) as info:
        call(client.sources)
    assert_names(info.value, *parts, "nothing was sent")
    assert sb.log == []


def test_spaces_as_the_api_writes_them_are_fine(world, sb):
    _, client, frame = world
    got = client.sources.to_frame(spaces_ids="1, 2", progress=False)
    assert set(got.index) == set(frame.index[frame["space_id"].isin([1, 2])])
    assert sb.requests("GET")[0].params["spaces_ids"] == "1,2"


# ---- CSV files ---------------------------------------------------------------------------------

CSVS = {  # case id: (file bytes, what the message says)
    "empty": (b"", ("empty",)),
    "newlines-only": (b"\n\n", ("empty",)),
    "blank-lines-only": (b"\n \n\n", ("empty",)),
    "no-header": (b"1,Gate,true\n2,Door,false\n", ("no header", "'1'")),
    "ragged-row": (b"id,name\n1,Gate\n2,Door,extra\n", ("id '2'", "line 3 has 3 cells, the header has 2")),
    "ragged-first-row": (b"id,name\n1,Gate,extra\n", ("id '1'", "line 2 has 3 cells, the header has 2")),
    "not-utf8": (b"id,name\n1,Gate\n2,T\xfcr\n", ("line 3", "not UTF-8", "0xfc")),
    "not-utf8-first-row": (b"id,name\n1,Gat\xe9\n", ("line 2", "not UTF-8", "0xe9")),
    "unclosed-quote": (b'id,name\n1,"Gate\n2,Door\n', ("not valid CSV", "quotes")),
    "stray-quote": (b'id,name\n1,"Gate"s\n', ("line 2", "not valid CSV")),
    "missing-id-cell": (b"id,name\n,Gate\n", ("line 2", "no source id", "1 or more")),
    "zero-id-cell": (b"id,name\n0,Gate\n", ("line 2", "a source id is a whole number, 1 or more")),
    "id-too-large": (b"id,name\n99999999999999999999999,Gate\n", ("line 2", "too large")),
    "bool-cell-unreadable": (
        b"id,use_pps_time\n4,maybe\n",
        ("id '4'", "use_pps_time", "'maybe'", "line 2, column 2", "true or false"),
    ),
    "duplicate-header": (b"id,name,name\n1,a,b\n", ("unique", "name")),
    "utf-16": ("id,name\n1,Gate\n".encode("utf-16"), ("UTF-16", "not UTF-8", "CSV UTF-8", "iconv")),
    "utf-16-no-bom": ("id,name\n1,Gate\n".encode("utf-16-le"), ("UTF-16", "CSV UTF-8")),
    "cp1252": (
        "id,name\n1,Gate\n2,Caf\u00e9 Nord\n".encode("cp1252"),
        ("line 3, character 6", "0xe9", "Windows-1252", "'2,Caf\u00e9 Nord'", "CSV UTF-8", "iconv -f CP1252"),
    ),
    "cp1252-cr-only": ("id,name\r1,Gate\r2,Caf\u00e9\r".encode("cp1252"), ("line 3, character 6", "Windows-1252")),
    "semicolons-no-id": (b"name;use_pps_time\nGate;true\n", ("no header row with an 'id' column", "semicolons")),
    "ragged-semicolons": (
        b"id;name;use_pps_time\n1;Gate;true\n2;Door\n",
        ("line 3 has 2 cells, the header has 3", "separated by semicolons"),
    ),
}


@pytest.mark.parametrize("content,parts", CSVS.values(), ids=CSVS.keys())
def test_bad_csv(tmp_path, content, parts):
    path = tmp_path / "sources.csv"
    path.write_bytes(content)
    with pytest.raises(ValidationError) as info:
        read_csv(path)
    assert_names(info.value, str(path), *parts)


def test_csv_that_does_not_exist(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError) as info:  # Python's own error for a missing file: it names the path
        read_csv(missing)
    assert str(missing) in str(info.value)


def test_csv_path_is_none():
    with pytest.raises(ValidationError, match="needs a file path"):
        read_csv(None)


def test_csv_with_duplicate_ids_is_refused_when_planned(world, sb, tmp_path):
    _, client, frame = world
    path = tmp_path / "dup.csv"
    client.sources.export_csv(path, pd.concat([frame.loc[[1, 2]], frame.loc[[2]]]))
    sb.clear_log()
    with pytest.raises(ValidationError) as info:
        client.sources.plan(read_csv(path), base=frame)
    assert_names(info.value, "id 2", "appears 2 times")
    assert sb.log == []


# ---- the client: token, URL, options, reachability ----------------------------------------------


def test_bad_token_is_an_authentication_error(world, sb):
    with Client("not-the-token", sb.url, max_retries=2) as client, pytest.raises(AuthenticationError) as info:
        client.sources.get(1)
    assert info.value.status_code == 401 and "401" in str(info.value)
    assert [r.authorized for r in sb.log] == [False]  # refused once, never retried


@pytest.mark.parametrize(
    "url",
    ["api.neuroio.com", "ftp://api.neuroio.com", "https://:443", "https://"],
    ids=["no-scheme", "not-http", "no-host", "nothing-after-the-scheme"],
)
def test_bad_url(url):
    with pytest.raises(ConfigurationError) as info:
        Client("t", url)
    assert_names(info.value, url, "Not an API URL")


def test_url_with_a_password_is_refused_without_showing_it():
    with pytest.raises(ConfigurationError) as info:
        Client("t", "https://ops:hunter2@api.neuroio.com")
    assert "user name or password" in str(info.value) and "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "option,value",
    [
        ("timeout", 0),
        ("timeout", "30"),
        ("max_retries", -1),
        ("max_retries", 2.5),
        ("page_size", 0),
        ("max_workers", None),
        ("max_readers", -1),
        ("max_readers", "2"),
    ],
)
def test_bad_client_option(option, value):
    with pytest.raises(ConfigurationError) as info:
        Client("t", "https://api.neuroio.com", **{option: value})
    assert_names(info.value, option, repr(value))


@pytest.mark.parametrize("token", ["tok en", "tok\nen", "tök\u0435n"], ids=["space", "line-break", "non-ascii"])
def test_token_a_header_cannot_carry(token):
    with pytest.raises(ConfigurationError) as info:
        Client(token, "https://api.neuroio.com")
    assert "cannot be sent in an HTTP header" in str(info.value) and token not in str(info.value)


def test_token_with_trailing_newline_is_trimmed(world, sb):
    """A token read from a file keeps its newline: it is trimmed, not sent broken (or shown)."""
    with Client(sb.token + "\n", sb.url) as client:
        assert client.sources.get(1)["id"] == 1
    assert [r.authorized for r in sb.log] == [True]


def test_unreachable_host_is_a_transport_error(free_port):
    with (
        Client("t", f"http://127.0.0.1:{free_port}", max_retries=1, timeout=2) as client,
        pytest.raises(TransportError) as info,
    ):
        client.sources.get(1)
    assert "could not connect" in str(info.value) and info.value.maybe_sent is False
