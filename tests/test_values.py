"""The value rules (neuroio_nb._values), each a table of cases; and numpy cells where users pass them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from neuroio_nb._schema import BY_NAME
from neuroio_nb._values import check_value, id_problem, same, sendable, shown, three_way, to_python, whole_number

WHOLE = [
    (7, 7),
    (np.int64(-3), -3),
    (np.uint64(2**64 - 1), 2**64 - 1),
    (7.0, 7),
    (np.float64(204.0), 204),
    (2.0**53 - 1, 2**53 - 1),
    (2.0**53, None),
    (2.0**63, None),
    (7.5, None),
    (float("nan"), None),
    (float("inf"), None),
    (True, None),
    (np.bool_(False), None),
    ("7", None),
    (None, None),
    (pd.NA, None),
]


@pytest.mark.parametrize(("value", "expected"), WHOLE, ids=[repr(v) for v, _ in WHOLE])
def test_whole_number(value: Any, expected: int | None) -> None:
    assert whole_number(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("42", 42), (" 42 ", 42), ("-1", -1), ("4.0", None), ("٤٢", None), ("", None), ("0x1", None)]
)
def test_whole_number_from_text(text: str, expected: int | None) -> None:
    assert whole_number(text, text=True) == expected
    assert whole_number(text) is None


SAME = [
    ("store_images_for_results", ["new", "exact"], ["exact", "new"], True),
    ("store_images_for_results", ["new"], None, False),
    ("license_id", 204, "204", True),
    ("license_id", 204.0, "204", True),
    ("license_id", "204.0", 204, True),  # one rule: a whole number written as pandas shows a float
    ("license_id", "204.5", 204, False),
    ("license_id", "007.0", 7, False),
    ("use_pps_time", True, 1, False),
    ("use_pps_time", np.bool_(True), True, True),
    ("use_pps_time", pd.NA, None, True),
    ("identify_facesize_threshold", np.int64(7000), 7000.0, True),
    ("license", {"id": 3}, '{"id": 3}', True),
    ("license", {"id": 3}, '{"id": 4}', False),
    ("custom_unknown", "007", 7, False),
    ("custom_unknown", float("nan"), None, True),
]


@pytest.mark.parametrize(("field", "a", "b", "expected"), SAME, ids=[f"{f}-{a!r}-{b!r}" for f, a, b, _ in SAME])
def test_same_setting(field: str, a: Any, b: Any, expected: bool) -> None:
    assert same(field, a, b) is expected
    assert same(field, b, a) is expected


THREE_WAY = [
    (1, 2, 1, "mine"),  # the server still has what I read: send mine
    (1, 2, 2, "agree"),  # it already has mine: nothing to send
    (1, 2, 3, "conflict"),  # someone set something else meanwhile
    (None, 2, None, "mine"),
    (1, 1, 3, "conflict"),
]


@pytest.mark.parametrize(("base", "mine", "theirs", "expected"), THREE_WAY)
def test_three_way(base: Any, mine: Any, theirs: Any, expected: str) -> None:
    assert three_way("identify_facesize_threshold", base, mine, theirs) == expected


def test_three_way_uses_the_same_setting_rule() -> None:
    assert three_way("store_images_for_results", ["new"], ["new", "ha"], ["ha", "new"]) == "agree"
    assert three_way("license_id", 204, 205, "204") == "mine"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (pd.NA, "—"),
        (float("nan"), "—"),
        (True, "True"),
        (np.int64(3), "3"),
        (["new", "ha"], "new, ha"),
        ([], "(none)"),
        ({"id": 3}, '{"id": 3}'),
        ("", ""),
    ],
)
def test_shown(value: Any, text: str) -> None:
    assert shown(value) == text


def test_to_python_makes_numpy_plain() -> None:
    assert to_python(np.array([np.int64(1), np.float64("nan")], dtype=object)) == [1, None]
    assert type(to_python(np.bool_(True))) is bool


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("use_pps_time", np.bool_(True)),
        ("identify_facesize_threshold", np.int64(7000)),
        ("identify_facesize_threshold", np.float64(7000.0)),
        ("license_id", np.int64(204)),
        ("name", np.str_("Dock")),
        ("store_images_for_results", np.array(["new"], dtype=object)),
    ],
)
def test_numpy_scalars_from_a_frame_cell_are_accepted(field: str, value: Any) -> None:
    assert check_value(BY_NAME[field], value) is None


def test_update_and_create_take_numpy_scalars_from_a_frame(sb, client) -> None:
    """frame.at[i, col] is a numpy scalar; update() and create() take it as is."""
    frame = client.sources.to_frame()
    sid = int(frame.index[0])
    flag = np.bool_(not frame.at[sid, "use_pps_time"])
    threshold = np.int64(frame.at[sid, "identify_facesize_threshold"] + 1)
    client.sources.update(sid, use_pps_time=flag, identify_facesize_threshold=threshold)
    assert sb.sources[sid]["use_pps_time"] is bool(flag)
    assert sb.sources[sid]["identify_facesize_threshold"] == int(threshold)
    made = client.sources.create(
        "numpy-made", auto_create_persons=np.bool_(True), auto_create_facesize_threshold=np.int64(30000)
    )
    assert sb.sources[made["id"]]["auto_create_persons"] is True
    assert sb.sources[made["id"]]["auto_create_facesize_threshold"] == 30000


@pytest.mark.parametrize(
    ("field", "value", "sent"),
    [
        ("license_id", "204", 204),
        ("license_id", 204.0, 204),
        ("license_id", "204.0", 204),
        ("license_id", "204.00", 204),
        ("license_id", "204.5", "204.5"),
        ("license_id", "007.0", "007.0"),
        ("license_id", "007", "007"),
        ("license_id", "lic-7", "lic-7"),
        ("custom_unknown", 45.0, 45),
        ("custom_unknown", 1.5, 1.5),
        ("custom_unknown", np.float64(2.0**60), 2.0**60),
        ("identify_facesize_threshold", np.float64(7000.0), 7000),
        ("use_pps_time", np.bool_(True), True),
        ("name", "204", "204"),
        ("use_pps_time", pd.NA, None),
    ],
)
def test_sendable(field: str, value: Any, sent: Any) -> None:
    out = sendable(field, value)
    assert out == sent and type(out) is type(sent)


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "(empty)"), (True, "true"), (np.bool_(False), "false"), (["new", "ha"], '["new", "ha"]'), ([], "[]")],
)
def test_shown_as_the_csv_and_json_files_spell_it(value: Any, text: str) -> None:
    """The command line's tables sit beside the CSV and JSON a user edits: same spelling."""
    assert shown(value, missing="(empty)", json_literals=True) == text


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (1, None),
        (np.uint64(2**64 - 1), None),
        ("42", "a source id is a whole number, 1 or more"),  # text only where asked for
        (0, "a source id is a whole number, 1 or more"),
        (-7, "a source id is a whole number, 1 or more"),
        (1.5, "a source id is a whole number, 1 or more"),
        (True, "a source id is a whole number, 1 or more"),
        (2**64, "a source id is at most 18,446,744,073,709,551,615"),
    ],
)
def test_id_problem(value: Any, reason: str | None) -> None:
    assert id_problem(value) == reason
    assert id_problem(" 42 ", text=True) is None
