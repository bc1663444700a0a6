"""The web console against a real, auth-enabled hub and Cassandra: sign-in and sessions,
CSRF and security headers, the live queue (server-sent events from AlertService.Watch),
hit review and decisions. Browser-driven checks are in test_console_browser.py."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alpr.v1 import alert_pb2
from cassandra.cluster import Session

from tests.console_support import (
    Browserless,
    ConsoleServer,
    Stack,
    console_stack,
    problem_of,
    settings_for,
    wait_until,
)


@pytest.fixture(scope="module")
def stack(cassandra: tuple[list[str], int], cql: Session) -> Iterator[Stack]:
    with console_stack(cassandra, cql) as st:
        yield st


def test_sign_in_sets_a_strict_http_only_cookie_and_security_headers(stack: Stack) -> None:
    b = Browserless(stack.console.url)
    try:
        form = b.get("/signin")
        csp = form.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert form.headers["x-frame-options"] == "DENY" and form.headers["cache-control"] == "no-store"
        r = b.sign_in(stack.officer)
        assert r.status_code == 303 and r.headers["location"] == "/queue"
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("alpr_console=")).lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        # The cookie holds a random session id, not the token.
        assert stack.officer not in cookie
        page = b.get("/queue")
        assert page.status_code == 200 and "ofc-1" in page.text
    finally:
        b.close()


def test_unknown_token_is_refused_with_the_hubs_message(stack: Stack) -> None:
    b = Browserless(stack.console.url)
    try:
        r = b.sign_in("not-a-token")
        assert r.status_code == 401
        assert "unknown access token" in problem_of(r.text)
    finally:
        b.close()


def test_sign_in_form_needs_its_own_csrf_value(stack: Stack) -> None:
    with httpx.Client(base_url=stack.console.url) as h:
        r = h.post("/signin", data={"csrf": "forged", "token": stack.officer})
        assert r.status_code == 403 and "alpr_console=" not in r.headers.get("set-cookie", "")


def test_password_sign_in_gets_a_hub_session_that_sign_out_ends(stack: Stack) -> None:
    stack.set_password("ofc-1", "gloves on 2026")
    b = Browserless(stack.console.url)
    try:
        r = b.sign_in(user="ofc-1", password="gloves on 2026")
        assert r.status_code == 303 and r.headers["location"] == "/queue"
        assert b.get("/whoami").status_code == 200
        assert len(stack.audited("ofc-1", "auth.signin")) >= 1
        assert b.post("/signout").status_code == 303
        assert stack.audited("ofc-1", "auth.signout"), "the hub's session was not ended at sign-out"
        assert b.get("/queue").status_code == 303  # to the sign-in again
    finally:
        b.close()


def test_a_wrong_password_is_refused_with_the_hubs_message_and_the_user_id_kept(stack: Stack) -> None:
    b = Browserless(stack.console.url)
    try:
        r = b.sign_in(user="disp-1", password="not my password")
        assert r.status_code == 401 and "wrong user id or password" in problem_of(r.text)
        assert 'id="user" name="user"' in r.text and 'value="disp-1"' in r.text
        assert "not my password" not in r.text
        r = b.sign_in(user="disp-1", password="")
        assert r.status_code == 400 and "user id and password" in problem_of(r.text)
    finally:
        b.close()


def test_pages_need_a_session(stack: Stack) -> None:
    with httpx.Client(base_url=stack.console.url) as h:
        r = h.get("/queue")
        assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=%2Fqueue")
        assert h.post("/alerts/x/decide", data={}).status_code == 401
        assert h.get("/queue/events").status_code == 401


def events(
    b: Browserless,
    query: str = "",
    last_event_id: str = "",
    stop_when: Callable[[list[dict[str, Any]]], bool] | None = None,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Read the queue's event stream until ``stop_when(events)`` holds; returns the events."""
    headers = {"last-event-id": last_event_id} if last_event_id else {}
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with b.http.stream("GET", "/queue/events" + query, headers=headers, timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        ev: dict[str, Any] = {}
        for line in r.iter_lines():
            if line.startswith("event: "):
                ev["event"] = line[7:]
            elif line.startswith("id: "):
                ev["id"] = line[4:]
            elif line.startswith("data: "):
                ev["data"] = json.loads(line[6:])
            elif line == "" and ev:
                ev["at"] = time.monotonic()
                got.append(ev)
                ev = {}
                if stop_when and stop_when(got):
                    return got
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"the stream did not deliver in time: {got}")


def test_a_new_hit_reaches_the_open_queue_within_two_seconds_and_resumes_by_event_id(stack: Stack) -> None:
    import threading

    b = stack.client(stack.dispatcher)
    try:
        box: dict[str, Any] = {}

        def ingest_soon() -> None:
            time.sleep(1.0)
            box["id"] = stack.hit("QRS5678", camera="cam-q")
            box["acked"] = time.monotonic()  # the read's ack has come back

        feeder = threading.Thread(target=ingest_soon, daemon=True)
        feeder.start()
        # Generous stream timeout: on a loaded machine the stand-in node path itself can be slow.
        got = events(b, "?camera=cam-q", timeout=60,
                     stop_when=lambda evs: any(e["data"].get("kind") == "created" for e in evs))  # fmt: skip
        feeder.join(60)
        created = next(e for e in got if e["data"]["kind"] == "created")
        assert created["data"]["alert_id"] == box["id"]
        assert created["at"] - box["acked"] < 2.0  # at the console's client within 2 s of the ack
        assert "QRS5678" in created["data"]["html"] and created["data"]["pending"]
        # A drop: what happens meanwhile comes on reconnect with Last-Event-ID.
        missed = stack.hit("QRS5678", camera="cam-q")
        again = events(b, "?camera=cam-q", last_event_id=created["id"], timeout=60,
                       stop_when=lambda evs: any(e["data"]["alert_id"] == missed for e in evs))  # fmt: skip
        assert next(e for e in again if e["data"]["alert_id"] == missed)["data"]["kind"] == "created"
        assert all(e["data"]["alert_id"] != box["id"] for e in again)  # nothing before the resume point
    finally:
        b.close()


def test_queue_lists_hits_filtered_and_pending_first(stack: Stack) -> None:
    aid = stack.hit("XYZ9876", camera="cam-x")
    b = stack.client(stack.officer)
    try:
        page = wait_until(lambda: (p := b.get("/queue?camera=cam-x")).status_code == 200 and aid in p.text and p)
        assert "XYZ9876" in page.text and "cam-q" not in page.text
        other = b.get("/queue?camera=cam-none")
        assert aid not in other.text
        bad = b.get("/queue?category=bogus")
        assert bad.status_code == 400 and "unknown category" in problem_of(bad.text)
    finally:
        b.close()


def test_review_shows_both_images_the_box_confidences_and_a_look_alike_as_not_exact(stack: Stack) -> None:
    aid = stack.hit("A8C1234")  # B/8 look-alike of ABC1234
    b = stack.client(stack.officer)
    try:
        page = b.get(f"/alerts/{aid}")  # its speed is measured by ops/bench/console.py
        assert page.status_code == 200
        t = page.text
        assert f'id="crop" src="/alerts/{aid}/crop.jpg"' in t
        assert f'id="frame-img" src="/alerts/{aid}/frame.jpg" width="640" height="360"' in t
        assert '<svg viewBox="0 0 640 360"' in t
        assert "hub;dur=" in page.headers["server-timing"]
        crop, frame = b.get(f"/alerts/{aid}/crop.jpg"), b.get(f"/alerts/{aid}/frame.jpg")
        assert crop.headers["content-type"] == frame.headers["content-type"] == "image/jpeg"
        assert crop.content == stack.alert(aid).plate_crop_jpeg and frame.content == stack.alert(aid).frame_jpeg
        assert frame.headers["cache-control"] == "no-store"
        assert re.search(r'<rect class="box" x="100" y="200" width="120" height="40"', t)
        assert t.count('class="ch c-hi"') == 7 and "90%" in t  # per-character confidence
        assert "NOT EXACT: lookalike" in t and "ABC1234" in t
        assert "41.52500, -88.08170" in t
    finally:
        b.close()


def test_a_hits_images_need_the_session_and_the_hubs_permission(stack: Stack) -> None:
    aid = stack.hit("ABC1234")
    officer, fleet, nobody = stack.client(stack.officer), stack.client(stack.fleet), stack.client()
    try:
        assert officer.get(f"/alerts/{aid}").status_code == 200  # images now held for the officer's session
        assert nobody.get(f"/alerts/{aid}/frame.jpg").status_code == 303  # to the sign-in
        denied = fleet.get(f"/alerts/{aid}/frame.jpg")  # not held for this session: the hub decides
        assert denied.status_code == 403 and "may not call" in problem_of(denied.text)
        fresh = stack.client(stack.officer)  # another session of the same person: asks the hub again
        try:
            assert fresh.get(f"/alerts/{aid}/crop.jpg").content == stack.alert(aid).plate_crop_jpeg
        finally:
            fresh.close()
        assert officer.get(f"/alerts/{aid}/plate.jpg").status_code == 404
    finally:
        for b in (officer, fleet, nobody):
            b.close()


def test_accept_with_sign_offs_records_the_signed_in_officer(stack: Stack) -> None:
    aid = stack.hit("ABC1234")
    b = stack.client(stack.officer)
    try:
        r = b.post(f"/alerts/{aid}/decide", {
            "decision": "accept", "characters_verified": "on", "state_verified": "on",
            "leads": "done", "action": "taking_action", "officer_id": "someone-else",
        })  # fmt: skip
        assert r.status_code == 303, problem_of(r.text)
        page = b.get(r.headers["location"])
        assert "Decision stored: accepted" in page.text and 'class="officer">ofc-1<' in page.text
        got = stack.alert(aid)
        assert got.alert.status == alert_pb2.ALERT_STATUS_ACCEPTED
        assert got.alert.disposition.officer_id == "ofc-1"  # the session, not a form field
        # Amending needs a note (the hub's rule, shown on the page).
        r = b.post(f"/alerts/{aid}/decide", {"decision": "reject", "reason": "misread", "amend": "1"})
        assert r.status_code == 400 and "amendment needs a note" in problem_of(r.text)
        r = b.post(
            f"/alerts/{aid}/decide", {"decision": "reject", "reason": "misread", "amend": "1", "note": "second look"}
        )
        assert r.status_code == 303
        assert [d.status for d in stack.alert(aid).history] == [
            alert_pb2.ALERT_STATUS_ACCEPTED,
            alert_pb2.ALERT_STATUS_REJECTED,
        ]
    finally:
        b.close()


def test_incomplete_decisions_are_refused_with_the_hubs_reason(stack: Stack) -> None:
    aid = stack.hit("ABC1234")
    b = stack.client(stack.officer)
    try:
        r = b.post(f"/alerts/{aid}/decide", {"decision": "reject"})
        assert r.status_code == 400 and "reject.reason is required" in problem_of(r.text)
        r = b.post(f"/alerts/{aid}/decide", {"decision": "accept", "leads": "done", "action": "taking_action"})
        assert r.status_code == 400 and "policy 4.2" in problem_of(r.text)
        assert stack.alert(aid).alert.status == alert_pb2.ALERT_STATUS_PENDING
    finally:
        b.close()


def test_a_form_without_the_csrf_token_or_from_another_origin_is_refused(stack: Stack) -> None:
    aid = stack.hit("ABC1234")
    b = stack.client(stack.officer)
    try:
        form = {"decision": "reject", "reason": "misread"}
        r = b.post(f"/alerts/{aid}/decide", form, csrf=False)
        assert r.status_code == 403 and "did not come from the console" in problem_of(r.text)
        r = b.post(f"/alerts/{aid}/decide", form, headers={"origin": "https://evil.example"})
        assert r.status_code == 403
        assert stack.alert(aid).alert.status == alert_pb2.ALERT_STATUS_PENDING
    finally:
        b.close()


def test_a_role_the_hub_refuses_gets_403_from_the_console(stack: Stack) -> None:
    b = stack.client(stack.fleet)
    try:
        page = b.get("/fleet")
        assert page.status_code == 200 and 'href="/queue"' not in page.text  # not offered...
        r = b.get("/queue")  # ...and refused by the hub when asked for anyway
        assert r.status_code == 403 and "may not call /alpr.v1.AlertService/ListAlerts" in problem_of(r.text)
        assert b.get("/queue/events").status_code == 200  # the stream reports the refusal as an event
    finally:
        b.close()


def test_dispatcher_may_watch_but_not_decide(stack: Stack) -> None:
    aid = stack.hit("ABC1234")
    b = stack.client(stack.dispatcher)
    try:
        assert b.get(f"/alerts/{aid}").status_code == 200
        r = b.post(f"/alerts/{aid}/decide", {"decision": "reject", "reason": "misread"})
        assert r.status_code == 403 and "DecideAlert" in problem_of(r.text)
    finally:
        b.close()


def test_sign_out_ends_the_session(stack: Stack) -> None:
    b = stack.client(stack.officer)
    try:
        cookie = b.http.cookies.get("alpr_console")
        assert cookie is not None
        r = b.post("/signout")
        assert r.status_code == 303
        with httpx.Client(base_url=stack.console.url, cookies={"alpr_console": cookie}) as h:
            assert h.get("/queue").status_code == 303  # the old cookie opens nothing
    finally:
        b.close()


def test_sessions_expire_when_idle(stack: Stack) -> None:
    console = ConsoleServer(settings_for(stack.hub, session_idle_s=1.0, session_max_s=60.0)).start()
    b = Browserless(console.url)
    try:
        assert b.sign_in(stack.officer).status_code == 303
        assert b.get("/queue").status_code == 200
        time.sleep(1.3)
        r = b.get("/queue")
        assert r.status_code == 303 and "session+has+ended" in r.headers["location"].replace("%20", "+")
    finally:
        b.close()
        console.stop()


# Search, evidence export, hot lists, audit, dead letters.


def search_form(**kw: str) -> dict[str, str]:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    base = {
        "start": (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
        "end": (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
        "mode": "exact",
    }
    base.update(kw)
    return base


def test_search_without_purpose_is_refused_with_the_hubs_message(stack: Stack) -> None:
    b = stack.client(stack.officer)
    try:
        r = b.post("/search", search_form(plate="ABC1234", case_number="2026-0042"))
        assert r.status_code == 400 and "purpose is required" in problem_of(r.text)
    finally:
        b.close()


def test_search_then_export_selected_reads_to_a_package_that_verifies(stack: Stack, tmp_path: Path) -> None:
    import io
    import zipfile

    from alpr_common.operator.evidence import verify_package

    stack.hit("XYZ9876", camera="cam-s")
    inv = stack.hub.token("inv-1", "investigator")
    b = stack.client(inv)
    try:
        r = b.post(
            "/search", search_form(plate="XYZ9876", purpose="stolen vehicle investigation", case_number="2026-0042")
        )
        assert r.status_code == 200, problem_of(r.text)
        ids = re.findall(r'name="read_id" value="([^"]+)"', r.text)
        assert ids and "XYZ9876" in r.text and "audit log as" in r.text
        # each result shows its plate crop, held from this search for this session only
        crop = b.get(f"/search/crops/{ids[0]}.jpg")
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
        assert crop.content.startswith(b"\xff\xd8")
        other = stack.client(stack.hub.token("inv-2", "investigator"))
        try:
            assert other.get(f"/search/crops/{ids[0]}.jpg").status_code == 404
        finally:
            other.close()
        z = b.post(
            "/export", {"case_number": "2026-0042", "purpose": "stolen vehicle investigation", "read_id": ids[:1]}
        )
        assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
        assert 'filename="evidence-2026-0042.zip"' in z.headers["content-disposition"]
        zipfile.ZipFile(io.BytesIO(z.content)).extractall(tmp_path / "pkg")
        assert verify_package(tmp_path / "pkg") == []
        manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
        assert manifest["case_number"] == "2026-0042" and len(manifest["reads"]) == 1
    finally:
        b.close()


def test_hot_list_add_remove_and_import_with_preview(stack: Stack) -> None:
    from datetime import UTC, datetime, timedelta

    officer, sup = stack.client(stack.officer), stack.client(stack.supervisor)
    try:
        page = officer.get("/hotlists?plate=ABC1234")
        assert page.status_code == 200 and "ABC1234" in page.text and 'id="add-form"' in page.text
        assert 'id="import-form"' not in page.text  # imports and removals stay with supervisors
        # An officer may add a plate (policy §2, 4.5), entered under the officer's own name.
        expires = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%d")
        mine = {"plate": "OFC0001", "state": "IL", "category": "stolen_vehicle", "reason": "BOLO from roll call"}
        r = officer.post("/hotlists/add", {**mine, "expires": expires})
        assert r.status_code == 303
        assert "ofc-1" in officer.get(r.headers["location"]).text
        entry = {"plate": "MAN0001", "state": "IL", "category": "stolen_vehicle", "reason": "BOLO from shift briefing"}
        r = sup.post("/hotlists/add", entry)
        assert r.status_code == 400 and "expiry" in problem_of(r.text)
        r = sup.post("/hotlists/add", {**entry, "expires": expires, "reason": ""})
        assert r.status_code == 400 and "reason" in problem_of(r.text)
        r = sup.post("/hotlists/add", {**entry, "expires": expires})
        assert r.status_code == 303
        page = sup.get(r.headers["location"])
        assert "MAN0001" in page.text and "sup-1" in page.text  # entered by the signed-in person
        entry_id = re.search(r'name="entry_id" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        r = sup.post("/hotlists/remove", {"entry_id": entry_id, "reason": ""})
        assert r.status_code == 400 and "reason" in problem_of(r.text)
        assert sup.post("/hotlists/remove", {"entry_id": entry_id, "reason": "vehicle recovered"}).status_code == 303
        assert "MAN0001" not in sup.get("/hotlists?plate=MAN0001").text.split('id="entries"')[1]
        # Import: a dry run shows the delta, the commit applies exactly that file.
        csv = b"plate,state,category,reason,expires_at\nCSV0001,IL,stolen_vehicle,stolen,2027-01-01\nCSV0002,IL,stolen_plate,stolen,2027-01-01\n"
        files = {"file": ("list.csv", csv, "text/csv")}
        form = {"csrf": sup.csrf, "format": "csv", "source": "other_agency"}
        assert (
            officer.http.post("/hotlists/import", data={**form, "csrf": officer.csrf}, files=files).status_code == 403
        )
        r = sup.http.post("/hotlists/import", data=form, files=files)
        assert r.status_code == 200, problem_of(r.text)
        assert re.search(r'id="added">2<', r.text) and "Preview" in r.text
        assert "CSV0001" not in sup.get("/hotlists?plate=CSV0001").text.split('id="entries"')[1]
        commit = re.search(r'name="commit" value="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]
        r = sup.post("/hotlists/import", {"commit": commit})
        assert r.status_code == 200 and "Committed as hot-list version" in r.text
        assert "CSV0001" in sup.get("/hotlists?plate=CSV0001").text.split('id="entries"')[1]
        assert sup.post("/hotlists/import", {"commit": commit}).status_code == 410  # used once
    finally:
        officer.close()
        sup.close()


def test_audit_view_and_chain_verification_for_auditors_only(stack: Stack) -> None:
    aud, officer = stack.client(stack.auditor), stack.client(stack.officer)
    try:
        page = aud.get("/audit?action=login")
        assert page.status_code == 200 and "ofc-1" in page.text
        r = aud.post("/audit", {})
        assert r.status_code == 200 and "Every chain verifies" in r.text
        r = officer.get("/audit")
        assert r.status_code == 403 and "ListAudit" in problem_of(r.text)
    finally:
        aud.close()
        officer.close()


def test_dead_letters_page(stack: Stack) -> None:
    sup, disp = stack.client(stack.supervisor), stack.client(stack.dispatcher)
    try:
        page = sup.get("/deadletters")
        assert page.status_code == 200 and "None in the last 24 h" in page.text
        r = sup.post("/deadletters", {"hours": "24"})
        assert r.status_code == 400 and "select the dead letters" in problem_of(r.text)
        assert disp.get("/deadletters").status_code == 403
    finally:
        sup.close()
        disp.close()
