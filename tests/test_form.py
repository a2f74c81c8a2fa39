"""The one-source form, driven in-process against a real sandbox over HTTP,
and notebook 03 executed in a real kernel (nbclient) and driven there."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from neuroio_nb import Client
from neuroio_nb import _schema as schema
from neuroio_nb._form import UNSAVED_CLASS, SourceForm, SourcePicker
from neuroio_nb._form_state import FormState, parse_whole_number
from neuroio_nb.sandbox import EXTRA_FIELDS, Sandbox

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_edit_one_source.ipynb"

pytestmark = [pytest.mark.sandbox(sources=40, seed=3), pytest.mark.client(max_retries=0)]


@pytest.fixture
def form(client: Client, sb: Sandbox) -> SourceForm:
    f = client.sources.form(1)
    sb.clear_log()
    return f


def flip(form: SourceForm, name: str) -> bool:
    form.inputs[name].value = not form.inputs[name].value
    return form.inputs[name].value


def text(widget: widgets.HTML) -> str:
    """What an HTML widget shows, tags removed."""
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


def unsaved(form: SourceForm, name: str) -> bool:
    return UNSAVED_CLASS in form.inputs[name]._dom_classes


# ---- built from the schema -------------------------------------------------------
def test_every_field_comes_from_the_schema(form: SourceForm, sb: Sandbox) -> None:
    source = sb.source(1)
    for field in schema.FIELDS:
        control = form.inputs[field.name]
        assert control.description == field.label
        assert html.escape(field.help) in _help_text(form, field.name)
        if not field.writable:
            assert control.disabled
            assert control.tooltip == control.value  # a long value shows whole on hover
            continue
        assert control.tooltip and field.help in control.tooltip
        if field.kind == "bool":
            assert isinstance(control, widgets.Checkbox) and control.value is source[field.name]
        elif field.kind == "int":
            # a text box that parses, never IntText (it reads "7000.5" as 70005 in the browser)
            assert isinstance(control, widgets.Text) and control.value == str(source[field.name])
        elif field.kind == "list":
            assert isinstance(control, widgets.SelectMultiple)
            assert tuple(v for _, v in control.options) == field.choices
            assert set(control.value) == set(source[field.name] or [])
    assert form.inputs["name"].value == source["name"]
    assert form.inputs["id"].value == "1" and form.inputs["id"].disabled
    assert form.inputs["space_id"].value == str(source["space_id"])
    # a field the schema does not know: shown, read-only
    for name in EXTRA_FIELDS:
        assert form.inputs[name].disabled and form.inputs[name].value == str(source[name])
    assert form.status.value == "no unsaved changes"
    assert sb.log == []


def test_fields_the_server_did_not_send(sb: Sandbox, make_sandbox, client_for) -> None:
    row = {k: v for k, v in sb.source(1).items() if k not in ("use_pps_time", *EXTRA_FIELDS)}
    row["use_pps_timestamp"] = True  # the JavaScript SDK's spelling: unknown here
    row["identify_facesize_threshold"] = None
    other = make_sandbox(sources=[row])
    c = client_for(other)
    form = c.sources.form(1)
    assert form.inputs["use_pps_time"].disabled
    assert form.inputs["identify_facesize_threshold"].disabled
    assert "did not send" in text(form.errors["use_pps_time"])
    assert form.inputs["use_pps_timestamp"].disabled and form.inputs["use_pps_timestamp"].value == "True"
    assert "auto_check_angle_threshold" not in form.inputs
    assert form.changes() == {}
    other.external_edit(1, use_pps_time=True, auto_check_angle_threshold=45)
    form.reload_button.click()
    assert not form.inputs["use_pps_time"].disabled and form.inputs["use_pps_time"].value is True
    assert text(form.errors["use_pps_time"]) == "changed on the server: — -> True"
    assert form.inputs["auto_check_angle_threshold"].value == "45"
    assert text(form.errors["auto_check_angle_threshold"]) == "changed on the server: — -> 45"
    form.inputs["name"].value = "renamed"
    form.save_button.click()
    assert [r.body for r in other.requests("PATCH")] == [{"name": "renamed"}]


def _help_text(form: SourceForm, name: str) -> str:
    line = form._rows[name].children[0]
    return " ".join(getattr(w, "value", "") for w in line.children if isinstance(w, widgets.HTML))


def test_sections_follow_the_groups(form: SourceForm) -> None:
    headings = [
        w.children[0].value
        for w in form.children
        if isinstance(w, widgets.VBox) and w.children and isinstance(w.children[0], widgets.HTML)
    ]
    for group in schema.GROUPS:
        assert any(group in h for h in headings)
    assert any("Other fields" in h for h in headings)


# ---- save ------------------------------------------------------------------------
def test_save_sends_exactly_the_changed_fields(form: SourceForm, sb: Sandbox, patches) -> None:
    pps = flip(form, "use_pps_time")
    form.inputs["identify_facesize_threshold"].value = "4321"
    assert form.changes() == {"use_pps_time": pps, "identify_facesize_threshold": 4321}
    assert "2 unsaved changes" in text(form.status)
    assert unsaved(form, "use_pps_time") and unsaved(form, "identify_facesize_threshold")
    assert UNSAVED_CLASS in form._rows["use_pps_time"]._dom_classes
    assert not unsaved(form, "name")

    form.save_button.click()

    assert patches() == {1: [{"use_pps_time": pps, "identify_facesize_threshold": 4321}]}
    assert sb.requests("PATCH")[-1].path == "/v1/sources/1/"
    assert "saved: General > Identify face size, General > Use PPS time" in text(form.status)
    assert "no unsaved changes" in text(form.status)
    assert not unsaved(form, "use_pps_time") and form.changes() == {}
    assert sb.source(1)["identify_facesize_threshold"] == 4321
    assert not form.save_button.disabled


def test_changing_back_is_no_change(form: SourceForm, sb: Sandbox) -> None:
    flip(form, "auto_check_liveness")
    flip(form, "auto_check_liveness")
    assert form.changes() == {} and not unsaved(form, "auto_check_liveness")
    form.save_button.click()
    assert sb.log == []
    assert "nothing to save" in text(form.status)


def test_nothing_changed_sends_nothing(form: SourceForm, sb: Sandbox) -> None:
    form.save_button.click()
    assert sb.log == []
    assert "nothing to save" in text(form.status)


def test_save_button_is_disabled_while_saving(client: Client, sb: Sandbox) -> None:
    form = client.sources.form(2)
    seen: list[tuple[str, bool]] = []
    sb.before_request = lambda method, path: seen.append((method, form.save_button.disabled))
    form.inputs["auto_create_facesize_threshold"].value = "31000"
    form.save_button.click()
    assert ("PATCH", True) in seen
    assert not form.save_button.disabled


def test_store_images_is_a_set(client: Client, sb: Sandbox, patches) -> None:
    sb.external_edit(3, store_images_for_results=["ha", "new"])
    form = client.sources.form(3)
    images = form.inputs["store_images_for_results"]
    images.value = ("ha", "new")  # another order: no change
    assert form.changes() == {}
    images.value = ("junk", "new", "ha")
    form.save_button.click()
    assert patches() == {3: [{"store_images_for_results": ["new", "ha", "junk"]}]}


def test_license_id_keeps_its_type(client: Client, sb: Sandbox, patches) -> None:
    sb.external_edit(4, license_id="lic-00ab")
    sb.external_edit(5, license_id=1001)
    text_form, number_form = client.sources.form(4), client.sources.form(5)
    text_form.inputs["license_id"].value = "lic-00ac"
    number_form.inputs["license_id"].value = "1002"
    text_form.save_button.click()
    number_form.save_button.click()
    assert patches() == {4: [{"license_id": "lic-00ac"}], 5: [{"license_id": 1002}]}


@pytest.mark.parametrize(
    ("typed", "sent"),
    [(" 1003 ", 1003), ("204.0", 204), ("007", "007"), ("²", "²"), ("+5", "+5"), ("lic-9", "lic-9")],
)
def test_license_id_is_sent_as_a_frame_sends_it(client: Client, sb: Sandbox, patches, typed: str, sent: Any) -> None:
    """Plain digits are the number, anything else (leading zeros, other scripts' digits) stays text."""
    from neuroio_nb._values import sendable

    sb.external_edit(6, license_id=1001)
    form = client.sources.form(6)
    form.inputs["license_id"].value = typed
    form.save_button.click()
    assert patches() == {6: [{"license_id": sent}]}
    assert sendable("license_id", typed.strip()) == sent  # the one rule, as plan.apply uses it


def test_name_is_editable(form: SourceForm, sb: Sandbox, patches) -> None:
    form.inputs["name"].value = "Brand new name"
    form.save_button.click()
    assert patches() == {1: [{"name": "Brand new name"}]}
    assert "Brand new name" in form.title.value


# ---- refused: locally, then by the server ---------------------------------------
def test_negative_threshold_is_refused_before_sending(form: SourceForm, sb: Sandbox, patches) -> None:
    form.inputs["manual_create_facesize_threshold"].value = "-5"
    assert "must be 0 or more" in text(form.errors["manual_create_facesize_threshold"])
    form.save_button.click()
    assert sb.log == []
    assert "nothing was sent" in text(form.status)
    assert "must be 0 or more" in text(form.errors["manual_create_facesize_threshold"])
    form.inputs["manual_create_facesize_threshold"].value = "26000"
    assert form.errors["manual_create_facesize_threshold"].value == ""
    form.save_button.click()
    assert patches() == {1: [{"manual_create_facesize_threshold": 26000}]}


@pytest.mark.parametrize("value,message", [("", "must not be empty"), ("   ", "must not be empty")])
def test_empty_name_is_refused_before_sending(form: SourceForm, sb: Sandbox, value: str, message: str) -> None:
    form.inputs["name"].value = value
    flip(form, "use_pps_time")
    form.save_button.click()
    assert sb.log == []
    assert message in text(form.errors["name"])
    assert form.errors["use_pps_time"].value == ""


def test_too_large_threshold_is_refused(form: SourceForm, sb: Sandbox) -> None:
    form.inputs["identify_facesize_threshold"].value = str(schema.MAX_THRESHOLD + 1)
    form.save_button.click()
    assert sb.log == []
    assert f"must be at most {schema.MAX_THRESHOLD:,}" in text(form.errors["identify_facesize_threshold"])


def test_server_field_error_shows_next_to_its_field(client: Client, sb: Sandbox) -> None:
    by_space: dict[int, list[dict]] = {}
    for s in sb.sources.values():
        by_space.setdefault(s["space_id"], []).append(s)
    first, second = next(rows for rows in by_space.values() if len(rows) >= 2)[:2]
    form = client.sources.form(first["id"])
    sb.clear_log()
    form.inputs["name"].value = second["name"]  # already used in this space
    flip(form, "auto_create_persons")
    form.save_button.click()

    assert len(sb.requests("PATCH")) == 1 and sb.requests("PATCH")[0].status == 400
    assert "already exists" in text(form.errors["name"])
    assert form.errors["auto_create_persons"].value == ""
    assert "not saved (400" in text(form.status) and "see General > Name" in text(form.status)
    assert set(form.changes()) == {"name", "auto_create_persons"}  # the edits are kept
    assert sb.source(first["id"])["name"] == first["name"]
    form.inputs["name"].value = first["name"] + " (2)"  # editing clears the error
    assert form.errors["name"].value == ""
    form.save_button.click()
    assert "saved:" in text(form.status)


def test_server_error_without_fields_goes_to_the_status(form: SourceForm, sb: Sandbox) -> None:
    flip(form, "use_pps_time")
    sb.faults = {"503": 1.0}
    form.save_button.click()
    assert "not saved (503" in text(form.status)
    assert form.changes() and not form.save_button.disabled


# ---- revert, reload, conflicts --------------------------------------------------
def test_revert_restores_the_last_saved_values(form: SourceForm, sb: Sandbox) -> None:
    original = sb.source(1)
    flip(form, "manual_create_on_ha")
    form.save_button.click()
    saved = sb.source(1)["manual_create_on_ha"]
    flip(form, "manual_create_on_ha")
    form.inputs["name"].value = "scratch"
    form.inputs["identify_facesize_threshold"].value = "-1"
    form.revert_button.click()
    assert form.changes() == {}
    assert form.inputs["manual_create_on_ha"].value is saved is not original["manual_create_on_ha"]
    assert form.inputs["name"].value == original["name"]
    assert form.errors["identify_facesize_threshold"].value == ""
    assert "reverted 3 changes" in text(form.status)
    assert len(sb.requests("PATCH")) == 1


def test_reload_without_edits_takes_the_server(form: SourceForm, sb: Sandbox) -> None:
    sb.external_edit(1, identify_facesize_threshold=12345)
    form.reload_button.click()
    assert form.inputs["identify_facesize_threshold"].value == "12345"
    assert form.changes() == {}
    assert "reloaded: 1 setting changed on the server" in text(form.status)
    assert "changed on the server: " in text(form.errors["identify_facesize_threshold"])
    assert "-> 12345" in text(form.errors["identify_facesize_threshold"])


def test_reload_with_unsaved_edits_keeps_them_and_names_server_changes(form: SourceForm, sb: Sandbox) -> None:
    before = sb.source(1)
    mine = flip(form, "auto_check_face_angle")
    form.inputs["identify_facesize_threshold"].value = "5555"
    sb.external_edit(1, identify_facesize_threshold=8888, auto_create_on_junk=not before["auto_create_on_junk"])

    form.reload_button.click()

    status = form.status.value
    assert "reloaded: 2 settings changed on the server (see the notes); your 2 unsaved changes kept" in status
    assert "\n" not in text(form.status)  # one line; the details are under each field
    assert "-> " in text(form.errors["auto_create_on_junk"])
    # both sides survive: my edits stay, the setting I had not touched takes the server's value
    assert form.inputs["identify_facesize_threshold"].value == "5555"
    assert form.inputs["auto_check_face_angle"].value is mine
    assert form.inputs["auto_create_on_junk"].value is (not before["auto_create_on_junk"])
    assert "8888" in text(form.errors["identify_facesize_threshold"])
    assert form.changes() == {"auto_check_face_angle": mine, "identify_facesize_threshold": 5555}
    assert sb.requests("PATCH") == []

    form.revert_button.click()  # discard mine: the server's values
    assert form.inputs["identify_facesize_threshold"].value == "8888"
    assert form.inputs["auto_check_face_angle"].value is before["auto_check_face_angle"]
    assert form.changes() == {}


def test_reload_then_save_writes_mine(form: SourceForm, sb: Sandbox, patches) -> None:
    form.inputs["identify_facesize_threshold"].value = "5555"
    sb.external_edit(1, identify_facesize_threshold=8888)
    form.reload_button.click()
    form.save_button.click()
    assert patches() == {1: [{"identify_facesize_threshold": 5555}]}


def test_save_does_not_silently_overwrite_a_server_change(form: SourceForm, sb: Sandbox, patches) -> None:
    form.inputs["auto_create_facesize_threshold"].value = "11111"
    sb.external_edit(1, auto_create_facesize_threshold=22222)
    form.save_button.click()
    assert sb.requests("PATCH") == []
    assert "changed on the server meanwhile: Video stream > Create face size" in text(form.status)
    assert "22222" in text(form.errors["auto_create_facesize_threshold"])
    form.save_button.click()  # told once: the second Save overwrites
    assert patches() == {1: [{"auto_create_facesize_threshold": 11111}]}
    assert sb.source(1)["auto_create_facesize_threshold"] == 11111


def test_save_mentions_other_server_changes(form: SourceForm, sb: Sandbox, patches) -> None:
    flip(form, "use_pps_time")
    sb.external_edit(1, auto_identify_asm=not sb.source(1)["auto_identify_asm"])
    form.save_button.click()
    assert patches() == {1: [{"use_pps_time": form.inputs["use_pps_time"].value}]}
    assert "also changed on the server meanwhile: Video stream > Estimate age, sex, mood" in text(form.status)
    assert form.inputs["auto_identify_asm"].value is sb.source(1)["auto_identify_asm"]


# ---- the picker --------------------------------------------------------------------
def test_picker_filters_and_opens_forms(client: Client, sb: Sandbox) -> None:
    picker = client.sources.form()
    assert isinstance(picker, SourcePicker)
    assert len(picker.select.options) == 40 and picker.form is None
    target = sb.source(7)
    picker.filter.value = target["name"].upper()
    labels = [label for label, _ in picker.select.options]
    assert f"{target['name']} - space {target['space_id']} (7)" in labels
    assert all(target["name"].casefold() in label.casefold() for label in labels)
    picker.filter.value = "(7)"
    assert [i for _, i in picker.select.options] == [7]
    picker.select.value = 7
    assert isinstance(picker.form, SourceForm) and picker.form.source_id == 7
    flip(picker.form, "use_pps_time")
    picker.filter.value = "no source is called this"
    assert picker.select.options == () and picker.form.source_id == 7  # the form stays
    picker.filter.value = ""
    picker.select.value = 8
    picker.select.value = 7
    assert picker.form.changes()  # edits wait where they were left
    assert "40 of 40 sources match" in text(picker.count)


def test_enter_in_the_picker_filter_opens_the_first_match(client: Client) -> None:
    """Where the page script does not run, the text box's own Enter message ("submit") opens the
    first match of the text the kernel has, and typing alone opens nothing."""
    picker = client.sources.form()
    from_browser(picker.filter, value="(7)")
    assert picker.form is None  # typing filters, it opens nothing
    from_browser(picker.filter, event="submit")
    assert picker.form is not None and picker.form.source_id == 7


def from_browser(widget: widgets.Widget, **data: Any) -> None:
    """A comm message as the browser's widget manager sends it: a state update, or (``event=``) a custom message."""
    if "event" in data:
        message = {"method": "custom", "content": data}
    else:
        message = {"method": "update", "state": data, "buffer_paths": []}
    widget._handle_msg({"content": {"data": message}, "buffers": []})


def enter_pressed(picker: SourcePicker, text: str, times: int = 1) -> None:
    """What the page script sends for Enter in the filter box: the text it was pressed on, numbered
    (the ``times``-th Enter), on the picker's hidden "entered" box."""
    from_browser(picker.entered, value=json.dumps([times, text]))


def test_enter_right_after_typing_opens_what_was_typed(client: Client) -> None:
    """On a busy kernel the browser holds the filter's text back (one state update of a widget in
    flight at a time) while Enter goes at once: Enter must still open the match of the text it was
    pressed on, not re-open the source open before."""
    picker = client.sources.form()
    picker.select.value = 8
    from_browser(picker.filter, value="(")  # the first key; "(7)" waits in the browser
    enter_pressed(picker, "(7)")
    assert picker.form is not None and picker.form.source_id == 7
    assert "1 of 40 sources match" in text(picker.count)
    from_browser(picker.filter, value="(7)")  # the held-back text arrives: nothing more happens
    assert picker.form.source_id == 7 and [i for _, i in picker.select.options] == [7]
    enter_pressed(picker, "(8)", times=2)
    assert picker.form.source_id == 8


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_enter_acts_on_its_own_text_whatever_the_kernel_has_seen(client: Client, data: st.DataObject) -> None:
    """Whatever part of the typing reached the kernel before Enter, Enter opens the first source
    whose label contains the typed text (any case), or nothing when none does."""
    picker = client.sources.form()
    labels = [label for label, _ in picker.choices]
    label = data.draw(st.sampled_from(labels))
    start = data.draw(st.integers(0, len(label) - 1))
    typed = data.draw(
        st.one_of(
            st.integers(start + 1, len(label)).map(lambda end: label[start:end]),
            st.text(alphabet="ab( )71", max_size=5),
        )
    )
    typed = data.draw(st.sampled_from([typed, typed.upper(), f" {typed} "]))
    seen = data.draw(st.integers(0, len(typed)))  # characters the kernel has when Enter arrives
    if seen:
        from_browser(picker.filter, value=typed[:seen])
    enter_pressed(picker, typed)
    from_browser(picker.filter, value=typed)
    matching = [i for label, i in picker.choices if typed.strip().casefold() in label.casefold()]
    opened = picker.form.source_id if picker.form is not None else None
    assert opened == (matching[0] if matching else None)
    assert [i for _, i in picker.select.options] == matching


# ---- Save on a busy kernel: what the screen shows, once ------------------------------
THRESHOLD, IMAGES = "identify_facesize_threshold", "store_images_for_results"
CODES = [result.value for result in schema.EntryResult]


def shown_by_browser(form: SourceForm, **typed: Any) -> dict[str, Any]:
    """What the page script reads from every editable input at a Save click (a text box's text,
    a checkbox's tick, the labels of a multiple choice's picks): what the kernel has, but ``typed``."""
    shown: dict[str, Any] = {}
    for field in schema.FIELDS:
        widget = form.inputs[field.name]
        if widget.disabled:
            continue
        shown[field.name] = list(widget.label) if isinstance(widget, widgets.SelectMultiple) else widget.value
    return {**shown, **typed}


def save_clicked(form: SourceForm, shown: dict[str, Any], times: int = 1) -> None:
    """What the page script sends for the ``times``-th Save click: what every input showed, on the
    form's hidden "shown" box (the button's own click message is cancelled)."""
    from_browser(form.shown, value=json.dumps([times, shown]))


def picks_of(codes: list[str]) -> list[int]:
    """The indexes of ``codes`` among "Keep images for"'s options, as its state update sends them."""
    return sorted(CODES.index(code) for code in codes)


def labels_of(form: SourceForm, picks: list[int]) -> list[str]:
    """The labels of "Keep images for"'s options at ``picks``, as the page script reads them."""
    return [form.inputs[IMAGES].options[i][0] for i in sorted(picks)]


def test_save_right_after_typing_saves_what_the_screen_shows(form: SourceForm, sb: Sandbox, patches) -> None:
    """On a busy kernel the browser holds an input's later keys and picks back (one state update of
    a widget in flight at a time) while the Save click goes at once: Save sends what the screen
    shows ("4242", three picks, a box ticked and unticked), not what the kernel had ("4", one
    pick, the box ticked), exactly once."""
    box, images, pps = form.inputs[THRESHOLD], form.inputs[IMAGES], form.inputs["use_pps_time"]
    picked = [code for code in CODES if code not in (sb.source(1)[IMAGES] or [])][:3]
    assert len(picked) == 3
    ticked = pps.value
    from_browser(box, value="4")  # the first key; "4242" waits in the browser
    from_browser(images, index=picks_of(picked[:1]))  # the first pick; two more wait
    from_browser(pps, value=not ticked)  # the first click; the second (back) waits
    shown = {THRESHOLD: "4242", IMAGES: labels_of(form, picks_of(picked)), "use_pps_time": ticked}
    save_clicked(form, shown_by_browser(form, **shown))
    wanted = {THRESHOLD: 4242, IMAGES: picked}
    assert patches() == {1: [wanted]}
    assert "saved: General > Identify face size" in text(form.status)
    assert "no unsaved changes" in text(form.status)
    from_browser(box, value="4242")  # the held-back updates arrive: nothing is left to save
    from_browser(images, index=picks_of(picked))
    from_browser(pps, value=ticked)
    assert form.changes() == {} and "no unsaved changes" in text(form.status)
    assert not any(unsaved(form, name) for name in (THRESHOLD, IMAGES, "use_pps_time"))
    assert patches() == {1: [wanted]}
    assert sb.source(1)[THRESHOLD] == 4242


def test_a_save_click_refuses_what_typing_it_would_refuse(form: SourceForm, sb: Sandbox) -> None:
    """The text shown at the click is read as typing it is: "42x" (the kernel has "4") is refused
    next to its field, the text kept to fix, and nothing is sent."""
    box = form.inputs[THRESHOLD]
    from_browser(box, value="4")
    save_clicked(form, shown_by_browser(form, **{THRESHOLD: "42x"}))
    assert sb.log == []
    assert "not a whole number" in text(form.errors[THRESHOLD])
    assert "not saved: 1 problem (General > Identify face size)" in text(form.status)
    assert box.value == "42x" and form.state.first_in_error() == THRESHOLD


def test_the_same_values_saved_twice_are_two_saves(form: SourceForm, sb: Sandbox, patches) -> None:
    """Refused once for a colleague's change, the same screen saved again overwrites it: each
    click counts, even when what it shows is the same."""
    sb.external_edit(1, **{THRESHOLD: 5000})
    from_browser(form.inputs[THRESHOLD], value="4")
    shown = shown_by_browser(form, **{THRESHOLD: "4242"})
    save_clicked(form, shown)
    assert patches() == {} and "Save again to overwrite" in text(form.status)
    save_clicked(form, shown, times=2)
    assert patches() == {1: [{THRESHOLD: 4242}]}


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        json.dumps([1, "4242"]),
        json.dumps([1, {THRESHOLD: 4242}]),
        json.dumps([1, {IMAGES: ["new: new person created", "an option the kernel does not have"]}]),
    ],
)
def test_a_save_message_that_cannot_be_read_sends_nothing(form: SourceForm, sb: Sandbox, message: str) -> None:
    """A Save whose shown values cannot be read (never sent by the page script) saves nothing, not
    even the kernel's own edits, and says to press Save again."""
    from_browser(form.inputs[THRESHOLD], value="4")
    from_browser(form.shown, value=message)
    assert sb.log == []
    assert "nothing was sent. Save again" in text(form.status)
    assert form.changes() == {THRESHOLD: 4}


def test_without_the_page_script_the_click_saves_what_the_kernel_has(form: SourceForm, patches) -> None:
    """Where the page script does not run, the button's own click message saves as before."""
    from_browser(form.inputs[THRESHOLD], value="4242")
    from_browser(form.save_button, event="click")
    assert patches() == {1: [{THRESHOLD: 4242}]}


NUMBERS_TYPED = st.one_of(
    st.integers(0, 40_000).map(str),
    st.integers(1_000, 40_000).map(lambda n: f"{n:,}"),
    st.text(alphabet="0123456789 ,.x-", max_size=7),
)


def what_the_browser_sends(data: st.DataObject, before: dict[str, Any]) -> dict[str, list[Any]]:
    """Field -> the state updates the browser sends for it, one per key, pick or click, in order:
    a number and a name typed, options of "Keep images for" picked and unpicked, a box clicked."""
    typed = data.draw(NUMBERS_TYPED, label="number typed")
    name = data.draw(st.text(alphabet="ab ", max_size=4), label="name typed")
    toggled = data.draw(st.lists(st.integers(0, len(CODES) - 1), max_size=len(CODES) + 2), label="picks")
    clicks = data.draw(st.integers(0, 3), label="clicks on Use PPS time")
    picks: list[list[int]] = []
    for index in toggled:
        last = set(picks[-1] if picks else picks_of(before[IMAGES] or []))
        picks.append(sorted(last ^ {index}))
    return {
        THRESHOLD: [typed[:end] for end in range(1, len(typed) + 1)],
        "name": [name[:end] for end in range(1, len(name) + 1)],
        IMAGES: picks,
        "use_pps_time": [bool(before["use_pps_time"]) ^ (k % 2 == 1) for k in range(1, clicks + 1)],
    }


def send_state(form: SourceForm, name: str, state: Any) -> None:
    """One state update of a field's input, as the browser sends it ("Keep images for": its indexes)."""
    from_browser(form.inputs[name], **{"index" if name == IMAGES else "value": state})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_save_sends_what_was_shown_whatever_the_kernel_has_seen(
    client: Client, sb: Sandbox, patches, data: st.DataObject
) -> None:
    """Whatever part of the typing, picking and clicking reached the kernel before the Save click,
    Save sends what a form that had received all of it would send (or refuses what it would
    refuse), once, and nothing is left unsaved when the rest arrives."""
    sends = what_the_browser_sends(data, sb.source(1))
    seen = {
        name: data.draw(st.integers(0, len(states)), label=f"{name} updates the kernel has")
        for name, states in sends.items()
    }
    sb.clear_log()
    everything = client.sources.form(1)  # the oracle: every update arrived, no click yet
    form = client.sources.form(1)
    shown = {}
    for name, states in sends.items():
        if states:
            send_state(everything, name, states[-1])
            shown[name] = labels_of(form, states[-1]) if name == IMAGES else states[-1]
        if seen[name]:
            send_state(form, name, states[seen[name] - 1])
    problems, wanted = everything.state.problems(), everything.changes()

    save_clicked(form, shown_by_browser(form, **shown))
    for name, states in sends.items():
        if states:
            send_state(form, name, states[-1])  # the updates held back arrive

    event("refused" if problems else "saved" if wanted else "nothing to save")
    if problems or not wanted:
        assert patches() == {}
        assert set(form.state.problems()) == set(problems)
    else:
        assert patches() == {1: [wanted]}
        assert form.changes() == {} and not form.dirty


# ---- notebook 03 in a real kernel --------------------------------------------------
@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return tmp_path


def _notebook_client(nb: Any) -> Any:
    from nbclient import NotebookClient

    return NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )


@contextmanager
def _notebook_run_against(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """Notebook 03 run cell by cell against ``sb``, its kernel kept open: (the notebook, its client)."""
    import nbformat

    monkeypatch.setenv("NEUROIO_API_TOKEN", sb.token)
    monkeypatch.setenv("NEUROIO_API_URL", sb.url)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = _notebook_client(nb)
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        yield nb, client


def _form_output(nb: Any) -> dict[str, Any]:
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view:
                return view
    raise AssertionError("no widget was displayed")


@pytest.mark.notebook
def test_notebook_runs_standalone(kernel_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a user without an account runs it: the notebook starts its own sandbox."""
    import nbformat

    monkeypatch.delenv("NEUROIO_API_TOKEN", raising=False)
    monkeypatch.delenv("NEUROIO_API_URL", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    _notebook_client(nb).execute()
    _form_output(nb)
    text = nbformat.writes(nb)
    assert "Token " not in text and "token=" not in text


@pytest.mark.notebook
def test_notebook_form_python_objects(kernel_env: Path, monkeypatch: pytest.MonkeyPatch, sb: Sandbox) -> None:
    """Layer A: run the notebook against the test's sandbox, then drive the form's objects."""
    import nbformat

    before = sb.source(1)
    with _notebook_run_against(sb, monkeypatch) as (nb, client):
        assert sb.token not in nbformat.writes(nb)
        sb.clear_log()
        nb.cells.append(
            nbformat.v4.new_code_cell(
                "form.inputs['use_pps_time'].value = not form.inputs['use_pps_time'].value\n"
                "form.inputs['identify_facesize_threshold'].value = '4242'\n"
                "form.save_button.click()\n"
                "print(form.status.value)"
            )
        )
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "saved: General > Identify face size, General > Use PPS time" in html.unescape(printed)
    [patch] = sb.requests("PATCH")
    assert patch.path == "/v1/sources/1/"
    assert patch.body == {"use_pps_time": not before["use_pps_time"], "identify_facesize_threshold": 4242}


@pytest.mark.notebook
def test_notebook_form_widget_protocol(kernel_env: Path, monkeypatch: pytest.MonkeyPatch, sb: Sandbox) -> None:
    """Layer B: send the comm messages a browser's widget manager would send."""
    from jupyter_core.utils import run_sync

    before = sb.source(1)
    with _notebook_run_against(sb, monkeypatch) as (nb, client):
        root = _form_output(nb)["model_id"]
        states = client.widget_state
        assert "neuroio-form" in states[root]["_dom_classes"]
        models = _descendants(states, root)

        def find(model: str, **match: Any) -> str:
            hits = [
                m
                for m in models
                if states[m].get("_model_name") == model and all(states[m].get(k) == v for k, v in match.items())
            ]
            assert len(hits) == 1, (model, match, hits)
            return hits[0]

        checkbox = find("CheckboxModel", description="Use PPS time")
        threshold = find("TextModel", description="Identify face size")
        save = find("ButtonModel", description="Save")
        status = next(m for m in models if "neuroio-status" in states[m].get("_dom_classes", ()))
        assert states[checkbox]["value"] is before["use_pps_time"]
        sb.clear_log()

        def send(comm_id: str, data: dict[str, Any]) -> None:
            msg = client.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
            client.kc.shell_channel.send(msg)

        send(checkbox, {"method": "update", "state": {"value": not before["use_pps_time"]}, "buffer_paths": []})
        send(threshold, {"method": "update", "state": {"value": "4343"}, "buffer_paths": []})
        send(save, {"method": "custom", "content": {"event": "click"}})
        deadline = time.monotonic() + 30
        text = ""
        while "saved:" not in text:  # the save runs after the click message: read iopub until the status says saved
            assert time.monotonic() < deadline, f"status never said saved: {text!r}"
            msg = run_sync(client.kc.get_iopub_msg)(timeout=deadline - time.monotonic())
            content = msg["content"]
            if msg["header"]["msg_type"] == "comm_msg" and content.get("comm_id") == status:
                text = content["data"].get("state", {}).get("value", text)
    assert "saved: General > Identify face size, General > Use PPS time" in html.unescape(text)
    [patch] = sb.requests("PATCH")
    assert patch.body == {"use_pps_time": not before["use_pps_time"], "identify_facesize_threshold": 4343}


def _descendants(states: dict[str, dict[str, Any]], root: str) -> list[str]:
    """Every model under ``root`` (children of boxes), ``IPY_MODEL_`` prefixes removed."""
    seen, todo = [], [root]
    while todo:
        model = todo.pop()
        if model in seen or model not in states:
            continue
        seen.append(model)
        todo += [c.removeprefix("IPY_MODEL_") for c in states[model].get("children", [])]
    return seen


# ---- numbers typed into a box (no widgets needed) -------------------------------------
@pytest.mark.parametrize(
    "typed,number",
    [
        ("7000", 7000),
        ("7 000", 7000),
        ("7,000", 7000),
        (" 12 345 ", 12345),
        ("1,234,567", 1234567),
        ("-5", -5),
        ("0", 0),
        ("7\u202f000", 7000),
    ],
)
def test_whole_numbers_are_read(typed: str, number: int) -> None:
    assert parse_whole_number(typed) == number


@pytest.mark.parametrize(
    "typed", ["7000.5", "1e5", "12abc", "", "  ", "7,00", "7 000,000", "1.000", "0x10", "٣", "7000.0", "+", "--5"]
)
def test_anything_else_is_refused(typed: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_whole_number(typed)
    assert "whole number" in str(info.value)


@pytest.mark.parametrize("typed", ["7000.5", "1e5", "12abc"])
def test_a_number_box_refuses_with_the_reason_and_sends_nothing(form: SourceForm, sb: Sandbox, typed: str) -> None:
    form.inputs["identify_facesize_threshold"].value = typed
    assert "not a whole number" in text(form.errors["identify_facesize_threshold"])
    assert "identify_facesize_threshold" in form.state.unsaved()
    form.save_button.click()
    assert sb.log == []
    assert "<span class='neuroio-error'>not saved: 1 problem (General &gt; Identify face size)" in form.status.value
    assert form.state.first_in_error() == "identify_facesize_threshold"
    assert form.inputs["identify_facesize_threshold"].value == typed  # what was typed stays to fix


def test_grouped_thousands_are_saved_as_the_number(form: SourceForm, patches) -> None:
    form.inputs["identify_facesize_threshold"].value = "12 345"
    form.inputs["auto_create_facesize_threshold"].value = "30,000"
    form.save_button.click()
    assert patches() == {1: [{"identify_facesize_threshold": 12345, "auto_create_facesize_threshold": 30000}]}
    assert form.inputs["identify_facesize_threshold"].value == "12345"


def test_state_works_without_widgets(client: Client, sb: Sandbox, patches) -> None:
    """FormState alone: edits, problems, the refused save and the three-way rule, no widget involved."""
    state = FormState(client.sources, 2)
    sb.clear_log()
    state.set("manual_create_facesize_threshold", None, "'1e5' is not a whole number")
    state.set("name", "   ")
    assert set(state.problems()) == {"manual_create_facesize_threshold", "name"}
    assert not state.save() and sb.log == [] and state.message_is_error
    assert "Photo uploads > Create face size" in state.message and "General > Name" in state.message
    assert state.first_in_error() == "name"
    state.set("manual_create_facesize_threshold", 26000)
    state.set("name", "Gate 2")
    sb.external_edit(2, use_pps_time=not sb.source(2)["use_pps_time"])  # a field I did not touch
    assert state.save()
    assert patches() == {2: [{"name": "Gate 2", "manual_create_facesize_threshold": 26000}]}
    assert "also changed on the server meanwhile: General > Use PPS time" in state.message


def test_read_only_long_values_show_whole_on_hover_and_codes_are_explained(
    sb: Sandbox, make_sandbox, client_for
) -> None:
    long_licence = {
        "id": 1001,
        "name": "Enterprise site licence, 500 cameras",
        "valid_until": "2031-12-31",
        "features": ["identify", "liveness", "age-sex-mood"],
    }
    row = {**sb.source(1), "license": long_licence}
    form = client_for(make_sandbox(sources=[row])).sources.form(1)
    licence = form.inputs["license"]
    assert licence.disabled and licence.tooltip == licence.value
    assert json.loads(licence.value) == long_licence
    images = form.inputs["store_images_for_results"]
    assert ("nm: no match", "nm") in images.options
    assert "nm: no match" in _help_text(form, "store_images_for_results")


def test_picker_says_when_the_filter_hides_the_open_source(client: Client, sb: Sandbox) -> None:
    picker = client.sources.form()
    picker.select.value = 7
    picker.filter.value = "no source is called this"
    label = f"{sb.source(7)['name']} - space {sb.source(7)['space_id']} (7)"
    assert f"The open form ({label}) is hidden by this filter" in text(picker.count)
    picker.filter.value = ""
    assert "hidden" not in text(picker.count)
