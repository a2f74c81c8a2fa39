"""What a job sends, counted in the sandbox's log: no request that a read already made
needless, and never more requests at once than the client allows."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from neuroio_nb.schema import create_defaults


def site(n: int, prefix: str = "Site 7 cam") -> pd.DataFrame:
    return pd.DataFrame({"name": [f"{prefix} {i:03d}" for i in range(n)], "identify_facesize_threshold": 9000})


def name_lookups(sb, names) -> Counter:
    """GETs that searched for exactly one of ``names`` (a create's own look-up of its name)."""
    wanted = set(names)
    return Counter(r.params.get("q") for r in sb.log if r.method == "GET" and r.params.get("q") in wanted)


@pytest.mark.parametrize(
    "scope",
    [{}, {"q": "Site 7"}, {"spaces_ids": [1]}],
    ids=["unscoped", "q-the-names-contain", "some-spaces-then-one-listing"],
)
def test_a_syncs_creates_send_no_lookup_per_create(make_sandbox, client_for, scope):
    """The listing read before the first POST already says who holds each name: 200 creates
    send 200 POSTs and no GET of their own (a scope that may miss a holder, some spaces only,
    costs one unscoped listing instead)."""
    sb = make_sandbox(sources=300, seed=7)
    c = client_for(sb)
    new = site(200)
    plan = c.sources.plan(new, key="name", create=True, **scope)
    assert len(plan.creates) == 200
    sb.clear_log()
    report = plan.apply(progress=False)
    assert report.counts() == {"created": 200}
    assert sum(r.method == "POST" for r in sb.log) == 200
    assert name_lookups(sb, new["name"]) == Counter()
    gets = [r for r in sb.log if r.method == "GET"]
    listings = 2 if "spaces_ids" in scope else 1  # the scope's, and then the whole account's
    assert len(gets) <= listings * 4  # 300 sources (or fewer, in scope) at 100 a page, each page once
    assert Counter(s["name"] for s in sb.sources.values() if s["name"] in set(new["name"])) == dict.fromkeys(
        new["name"], 1
    )


def test_a_q_the_names_do_not_contain_falls_back_to_a_safe_read(make_sandbox, client_for):
    """A listing searched with a ``q`` that a name does not contain (as the server matches,
    case aside) may miss that name's holders: they are read from elsewhere, never assumed none."""
    sb = make_sandbox(sources=50, seed=7)
    c = client_for(sb)
    new = site(3, prefix="SITE 7 cam")  # q="site 7" matches them on this server, ignoring case
    plan = c.sources.plan(new, key="name", create=True, q="site 7")
    sb.clear_log()
    assert plan.apply(progress=False).counts() == {"created": 3}
    assert name_lookups(sb, new["name"]) == Counter(dict.fromkeys(new["name"], 1))  # few: one look-up each


def test_unknown_outcomes_are_settled_once_against_the_holders_read_before(make_sandbox, client_for):
    """Every POST's answer is lost after it was applied. Each create asks the server once, after
    its POST, and adopts the source it made: never a namesake with the same settings that sat
    in another space before (out of the plan's scope, so the plan creates the name)."""
    namesakes = [f"Dock cam {i:02d}" for i in range(12)]
    others = [{"id": 100 + i, "space_id": 2, "name": name, **create_defaults()} for i, name in enumerate(namesakes)]
    sb = make_sandbox(sources=[{"id": 1, "space_id": 1, "name": "Lobby", **create_defaults()}, *others])
    c = client_for(sb)
    plan = c.sources.plan(pd.DataFrame({"name": namesakes}), key="name", create=True, spaces_ids=[1])
    assert len(plan.creates) == len(namesakes)
    sb.drop_after_apply = 1.0
    sb.clear_log()
    report = plan.apply(progress=False)
    sb.drop_after_apply = 0.0

    assert report.counts() == {"created": len(namesakes)}
    made = {int(sid): name for sid, name in zip(report.index, report["name"], strict=True)}
    assert not set(made) & {s["id"] for s in others}  # none of the namesakes
    assert {sb.source(sid)["space_id"] for sid in made} == {1} and sorted(made.values()) == namesakes
    for name in namesakes:
        assert sorted(s["space_id"] for s in sb.sources.values() if s["name"] == name) == [1, 2]
    posts = [r for r in sb.log if r.method == "POST"]
    assert len(posts) == len(namesakes) and all(r.fault == "drop_after_apply" for r in posts)
    lookups = [r for r in sb.log if r.method == "GET" and r.params.get("q") in set(namesakes)]
    assert Counter(r.params["q"] for r in lookups) == dict.fromkeys(namesakes, 1)  # one settling read each
    post_ended = {r.body["name"]: r.ended for r in posts}
    assert all(r.started >= post_ended[r.params["q"]] for r in lookups)  # after its POST, never before
