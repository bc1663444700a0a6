"""The console in a real headless Chromium (Debian's chromium + chromium-driver, driven by
selenium) against a real hub and Cassandra: sign in, a new hit appears in the open queue
within 2 s, review it with both images, reject without a reason is refused, accept with the
sign-offs, the fleet page, and a role without access refused by the server.

Screenshots of the queue, the review page and the fleet page go to .run/console-screenshots/
(ALPR_CONSOLE_SCREENSHOTS=DIR to put them elsewhere, e.g. docs/console)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alpr.v1 import fleet_pb2, fleet_pb2_grpc, ingest_pb2
from cassandra.cluster import Session

from hub.model_releases import ReleaseStore
from tests.access_support import call
from tests.console_support import Stack, console_stack
from tests.support import ROOT, run_stream

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip(
        "needs chromium and chromium-driver (apt-get install chromium chromium-driver)", allow_module_level=True
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SHOTS = Path(os.environ.get("ALPR_CONSOLE_SCREENSHOTS", ROOT / ".run" / "console-screenshots"))


def chrome(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--autoplay-policy=no-user-gesture-required"):  # fmt: skip
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(str(DRIVER)), options=opts)


@pytest.fixture(scope="module")
def stack(cassandra: tuple[list[str], int], cql: Session) -> Iterator[Stack]:
    with console_stack(cassandra, cql) as st:
        yield st


@pytest.fixture()
def browser() -> Iterator[webdriver.Chrome]:
    d = chrome()
    try:
        yield d
    finally:
        d.quit()


def sign_in(d: webdriver.Chrome, base: str, token: str) -> None:
    d.get(base + "/signin")
    d.find_element(By.ID, "token").send_keys(token)
    d.find_element(By.ID, "signin").click()
    try:
        WebDriverWait(d, 10).until(ec.presence_of_element_located((By.CSS_SELECTOR, "header .who")))
    except Exception as e:
        raise AssertionError(
            f"sign-in did not complete: {d.current_url}\n{d.page_source[d.page_source.find('<main') :][:1500]}"
        ) from e


def shot(d: webdriver.Chrome, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(SHOTS / name))


def heartbeats(stack: Stack) -> None:
    """Two units report: one healthy pole camera, one patrol car on shift with a dead camera, its
    GPS fix and a fleet configuration it could not apply."""
    now = time.time()
    reqs = []
    for node, kind, ok in (("pole-12", 1, True), ("car-207", 2, False)):
        hb = ingest_pb2.Heartbeat(node_id=node, node_kind=kind, queue_depth=0 if ok else 340, queue_oldest_age_s=0 if ok else 912.0,  # type: ignore[arg-type]
                                  hotlist_version=1, detector_ok=True, disk_free_bytes=52 * 2**30, software_version="0.1.0")  # fmt: skip
        hb.sent_time.FromSeconds(int(now))
        hb.hotlist_synced_time.FromSeconds(int(now) - 30)
        hb.position.latitude, hb.position.longitude = (41.525, -88.0817) if ok else (41.87811, -87.62980)
        hb.position_time.FromSeconds(int(now) - (0 if ok else 95))
        hb.config_version = 4 if ok else 3
        if not ok:
            hb.shift_state = ingest_pb2.SHIFT_STATE_ON_SHIFT
            hb.config_error = "cameras.0.fps: must be at most 30"
        hb.cameras.add(
            camera_id=f"{node}-front",
            frames_received=290 if ok else 0,
            ok=ok,
            problem="" if ok else "no frames for 45 s",
        )
        if not ok:
            hb.problems.append("camera car-207-front: no frames for 45 s")
        reqs.append(ingest_pb2.IngestRequest(heartbeat=hb))
    stack.hub.ingest([])  # the stand-in node path is up
    assert stack.hub._open is not None
    res = run_stream(stack.hub._open.target, reqs)
    assert len(res.heartbeat_acks) == 2, res
    # What each unit reported about its model release, recorded by the hub's own store as the
    # hub does from a unit's configuration stream; and an officer's damage report.
    releases = ReleaseStore(session=stack.hub.cql, config=stack.hub.config)
    asyncio.run(releases.record_node("pole-12", "rel-2026-11", "rel-2026-11", "RUNNING", ""))
    asyncio.run(releases.record_node("car-207", "", "rel-2026-12", "FAILED", "self-test: 3 of 20 samples misread"))
    call(fleet_pb2_grpc.FleetServiceStub(stack.hub.channel).ReportDamage,
         fleet_pb2.ReportDamageRequest(node_id="car-207", note="camera mount cracked"), stack.officer)  # fmt: skip


def test_live_hit_review_reject_refused_accept_stored(stack: Stack, browser: webdriver.Chrome) -> None:
    d, base = browser, stack.console.url
    sign_in(d, base, stack.officer)
    assert d.current_url.endswith("/queue")
    WebDriverWait(d, 10).until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    stack.hit("QRS5678", camera="cam-east")  # an older hit, so the queue is not a single row
    t_ack = 0.0

    def appeared(_: Any) -> Any:
        return d.find_elements(By.ID, f"hit-{alert_id}")

    t0 = time.monotonic()
    alert_id = stack.hit("A8C1234", camera="cam-main")  # look-alike of ABC1234; returns once acked
    t_ack = time.monotonic()
    WebDriverWait(d, 2.0, poll_frequency=0.02).until(appeared)
    on_screen = time.monotonic() - t_ack
    assert on_screen < 2.0, f"hit on screen {on_screen:.2f} s after the ack (ingest took {t_ack - t0:.2f} s)"
    row = d.find_element(By.ID, f"hit-{alert_id}")
    assert "fresh" in (row.get_attribute("class") or "") and not d.find_element(By.ID, "banner").get_attribute("hidden")
    assert d.title.startswith("(2) NEW HIT")  # both hits arrived while the page was open
    assert (
        d.find_element(By.CSS_SELECTOR, "#queue > a").get_attribute("id") == f"hit-{alert_id}"
    )  # newest pending first
    shot(d, "queue.png")

    row.click()
    WebDriverWait(d, 10).until(ec.presence_of_element_located((By.ID, "accept-form")))
    WebDriverWait(d, 10).until(lambda _: d.execute_script("return document.readyState") == "complete")
    crop_w = d.execute_script("return document.getElementById('crop').naturalWidth")
    frame_w = d.execute_script("return document.getElementById('frame-img').naturalWidth")
    assert crop_w == 120 and frame_w == 640
    box = d.find_element(By.CSS_SELECTOR, "#frame rect.box").rect  # drawn over the frame, in its coordinates
    frame = d.find_element(By.ID, "frame-img").rect
    scale = frame["width"] / 640
    assert abs(box["x"] - frame["x"] - 100 * scale) < 3 and abs(box["width"] - 120 * scale) < 3
    assert "NOT EXACT" in d.page_source
    shot(d, "review.png")

    d.find_element(By.ID, "reject").click()  # no reason chosen
    problem = WebDriverWait(d, 10).until(ec.presence_of_element_located((By.ID, "problem"))).text
    assert "reject.reason is required" in problem

    d.find_element(By.ID, "characters_verified").click()
    d.find_element(By.ID, "state_verified").click()
    d.find_element(By.ID, "leads_done").click()
    d.find_element(By.ID, "action_taking").click()
    d.find_element(By.ID, "accept").click()
    assert "accepted" in WebDriverWait(d, 10).until(ec.presence_of_element_located((By.ID, "done"))).text
    assert d.find_element(By.CSS_SELECTOR, "#history .officer").text == "ofc-1"
    stored = stack.alert(alert_id)
    assert stored.alert.disposition.officer_id == "ofc-1" and stored.alert.status == 2


def test_fleet_page_failing_units_first_and_a_role_without_access_refused(
    stack: Stack, browser: webdriver.Chrome
) -> None:
    heartbeats(stack)
    d, base = browser, stack.console.url
    sign_in(d, base, stack.fleet)
    assert d.current_url.endswith("/fleet")
    rows = d.find_elements(By.CSS_SELECTOR, "#fleet tbody tr")
    assert rows[0].get_attribute("id") == "node-car-207" and "failing" in (rows[0].get_attribute("class") or "")
    assert "no frames for 45 s" in rows[0].text and "340" in rows[0].text
    car = rows[0].text
    assert "on shift" in car and "41.87811, -87.62980" in car and "fix, 2 min ago" in car
    assert "config v3" in car and "latest configuration not applied: cameras.0.fps: must be at most 30" in car
    assert "config v4" in rows[1].text and "software 0.1.0" in rows[1].text
    assert "models rel-2026-11" in rows[1].text and "models as shipped" in car
    assert "model release rel-2026-12 failed: self-test: 3 of 20 samples misread; runs its own models" in car
    assert "damage reported by ofc-1: camera mount cracked" in car
    assert not d.find_elements(By.CSS_SELECTOR, 'nav a[href="/queue"]')
    shot(d, "fleet.png")
    d.get(base + "/queue")
    assert "may not call" in d.find_element(By.ID, "problem").text


def test_patrol_car_screen_narrow_layout(stack: Stack) -> None:
    d = chrome(500, 900)  # headless Chromium's narrowest window
    try:
        sign_in(d, stack.console.url, stack.dispatcher)
        WebDriverWait(d, 10).until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
        stack.hit("ABC1234", camera="cam-car")
        WebDriverWait(d, 5).until(lambda _: d.find_elements(By.CSS_SELECTOR, "#queue > a"))
        sizes = d.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert sizes[0] <= sizes[1]  # no sideways scrolling on a car's screen
        button = d.find_element(By.ID, "sound").size
        assert button["height"] >= 44  # touch target
        shot(d, "queue-narrow.png")
    finally:
        d.quit()


def test_csp_blocks_inline_script(stack: Stack, browser: webdriver.Chrome) -> None:
    d = browser
    sign_in(d, stack.console.url, stack.officer)
    d.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.__inj = 1'; document.body.appendChild(s);"
    )
    assert d.execute_script("return window.__inj === undefined")
    cookie = d.get_cookie("alpr_console")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert d.execute_script("return document.cookie") == ""  # not readable by scripts


def test_password_sign_in_on_a_patrol_car_screen(stack: Stack) -> None:
    """Gloves and a touch screen: user id and password, not a pasted token."""
    stack.set_password("disp-1", "night shift 77")
    d = chrome(500, 900)
    try:
        base = stack.console.url
        d.get(base + "/signin")
        d.find_element(By.ID, "user").send_keys("disp-1")
        d.find_element(By.ID, "password").send_keys("wrong password")
        d.find_element(By.ID, "signin-password").click()
        problem = WebDriverWait(d, 10).until(ec.presence_of_element_located((By.ID, "problem"))).text
        assert "wrong user id or password" in problem
        assert d.find_element(By.ID, "user").get_attribute("value") == "disp-1"
        assert d.find_element(By.ID, "signin-password").size["height"] >= 44  # touch target
        shot(d, "signin-narrow.png")
        d.find_element(By.ID, "password").send_keys("night shift 77")
        d.find_element(By.ID, "signin-password").click()
        WebDriverWait(d, 10).until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
        assert d.current_url.endswith("/queue") and "disp-1" in d.find_element(By.CSS_SELECTOR, "header .who").text
        d.find_element(By.CSS_SELECTOR, "header form button").click()  # sign out
        WebDriverWait(d, 10).until(lambda _: "/signin" in d.current_url)
        assert stack.audited("disp-1", "auth.signout")
    finally:
        d.quit()


def test_search_results_show_their_plate_crops(stack: Stack, browser: webdriver.Chrome) -> None:
    stack.hit("ABC1234", camera="cam-search")
    d, base = browser, stack.console.url
    sign_in(d, base, stack.hub.token("inv-b", "investigator"))
    d.get(base + "/search")
    d.find_element(By.ID, "purpose").send_keys("stolen vehicle investigation")
    d.find_element(By.ID, "case_number").send_keys("2026-0077")
    d.find_element(By.ID, "plate").send_keys("ABC1234")
    d.find_element(By.ID, "search").click()
    WebDriverWait(d, 10).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#hits img.result-crop")))
    crop = d.find_element(By.CSS_SELECTOR, "#hits img.result-crop")
    # the image loads (same origin, allowed by the CSP) and has pixels
    WebDriverWait(d, 10).until(
        lambda _: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", crop)
    )
    d.execute_script("arguments[0].scrollIntoView()", crop)
    shot(d, "search.png")
