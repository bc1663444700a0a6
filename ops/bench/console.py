"""Console benchmark: new hit → on screen in a real browser, and review page render time.

A hub with access control serves the console; a second hub on the same keyspace (no auth,
the node path) ingests reads that match the hot list. A headless Chromium (Debian's
chromium + chromium-driver, through selenium) is signed in on the live queue. For each hit
the time from the read's ack to the row being painted (the page stamps data-shown-ms after
the next animation frame) is measured, and, as the baseline in the same run, the time from
the ack to the same event reaching a plain gRPC AlertService.Watch client of the same hub.
Then each hit's review page is loaded and its navigation timing (load event end) measured,
against the baseline of a plain GetAlert call for the same alert.

    python -m ops.bench.console [--hits 20]

Prints progress on stderr and one JSON line on stdout: hit_to_screen_p50_ms / _p95_ms,
watch_p50_ms / _p95_ms, their ratios, review_render_p50_ms / _p95_ms, get_alert_p50_ms,
where the review page's time goes (first byte, of which the hub call and the template, and the
document parsed), the 1-minute load average at the start and the end, and whether the targets
(2 s p95 on screen, 500 ms review) are met.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from alpr.v1 import alert_pb2, alert_pb2_grpc, hotlist_pb2, hotlist_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from alpr_common.simulation import make_read, noise_jpeg
from alpr_common.timestamps import timestamp_in
from hub.alerts import alert_id_for
from ops.bench.common import ROOT, cassandra, hub_process, log, percentile

FAST_FEED = {"feed_poll_interval_s": 0.075}  # the hub's default, stated


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_user(config: Path, user: str, role: str) -> str:
    out = subprocess.run([sys.executable, "-m", "hub.cli", "add-user", "--config", str(config), "--user", user,
                          "--role", role], capture_output=True, text=True, check=True, cwd=ROOT).stdout  # fmt: skip
    return out.strip().splitlines()[-1]


class Watch:
    """The baseline: a plain gRPC watcher; records when each alert's CREATED event arrives."""

    def __init__(self, target: str, token: str) -> None:
        self.seen: dict[str, float] = {}
        self.channel = grpc.insecure_channel(target)
        md = (("authorization", f"Bearer {token}"),)
        self.call = alert_pb2_grpc.AlertServiceStub(self.channel).Watch(alert_pb2.WatchRequest(), metadata=md)
        self.call.initial_metadata()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for ev in self.call:
                if ev.kind == alert_pb2.ALERT_EVENT_KIND_CREATED:
                    self.seen.setdefault(ev.alert.alert_id, time.time() * 1000)
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self.call.cancel()  # type: ignore[no-untyped-call]
        self.channel.close()


class Ingest:
    """One long-lived Ingest stream (as a node keeps); ``send`` returns the ack's wall time (ms)."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.q: queue.Queue[ingest_pb2.IngestRequest | None] = queue.Queue()
        self.acks: queue.Queue[tuple[str, float]] = queue.Queue()
        self.responses = ingest_pb2_grpc.IngestServiceStub(self.channel).Ingest(iter(self.q.get, None))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        try:
            for r in self.responses:
                if r.WhichOneof("result") == "ack":
                    self.acks.put((r.ack.read_id, time.time() * 1000))
                elif r.WhichOneof("result") == "error":
                    log(f"console bench: read refused: {r.error.message}")
        except grpc.RpcError:
            pass  # the stream ends when the bench closes the channel

    def send(self, read: Any) -> float:
        self.q.put(ingest_pb2.IngestRequest(read=read))
        read_id, at = self.acks.get(timeout=30)
        assert read_id == read.read_id
        return at

    def close(self) -> None:
        self.q.put(None)
        self.channel.close()


def shown_js(d: Any, aid: str) -> Any:
    """A wait condition: the row of alert ``aid`` has been painted (it carries data-shown-ms)."""

    def check(_: Any) -> Any:
        return d.execute_script(f"const r = document.getElementById('hit-{aid}'); return r && r.dataset.shownMs")

    return check


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hits", type=int, default=20)
    args = ap.parse_args()
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        print(
            "console bench: needs chromium and chromium-driver (apt-get install chromium chromium-driver)",
            file=sys.stderr,
        )
        return 2

    keyspace = f"alpr_bench_console_{uuid.uuid4().hex[:8]}"
    run_dir = ROOT / ".run" / "bench-console"
    with cassandra() as cass:
        migrate(cass, keyspace, run_dir)
        try:
            return run(args.hits, cass, keyspace, run_dir, chromium, driver)
        finally:
            drop(cass, keyspace)


def migrate(cass: tuple[list[str], int], keyspace: str, run_dir: Path) -> None:
    """Create the keyspace first, without the hubs' start-up time limit: schema changes are slow on
    a busy shared Cassandra, and what is measured here starts after the hubs serve."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"insecure_dev": True, "cassandra": {"contact_points": cass[0], "port": cass[1], "keyspace": keyspace,
                                               "request_timeout_s": 120}}  # fmt: skip
    (run_dir / "migrate.yaml").write_text(json.dumps(cfg))
    subprocess.run([sys.executable, "-m", "hub.cli", "migrate", "--config", str(run_dir / "migrate.yaml")],
                   check=True, cwd=ROOT, timeout=900)  # fmt: skip


def drop(cass: tuple[list[str], int], keyspace: str) -> None:
    from cassandra.cluster import Cluster

    cluster = Cluster(cass[0], port=cass[1])
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=300)
    except Exception as e:  # best effort: a leftover keyspace is only clutter
        log(f"console bench: could not drop {keyspace}: {e!r}")
    finally:
        cluster.shutdown()


def run(hits: int, cass: tuple[list[str], int], keyspace: str, run_dir: Path, chromium: str, driver: str) -> int:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    dir_a, dir_b = run_dir / "a", run_dir / "b"
    load_start = os.getloadavg()[0]  # the machine may be shared: the figures say how busy it was
    with hub_process(cass, keyspace, dir_a, auth={"enabled": True}, alerts=FAST_FEED, migrate_on_start=False) as secured, \
            hub_process(cass, keyspace, dir_b, hub_id="bench-ingest", alerts=FAST_FEED, migrate_on_start=False) as open_hub:  # fmt: skip
        admin = add_user(run_dir / "a" / "hub.yaml", "bench-admin", "admin")
        officer = add_user(run_dir / "a" / "hub.yaml", "bench-officer", "officer")
        md = (("authorization", f"Bearer {admin}"),)
        with grpc.insecure_channel(secured) as ch:
            v = hotlist_pb2_grpc.HotListServiceStub(ch).AddEntry(hotlist_pb2.AddEntryRequest(expire_time=timestamp_in(timedelta(days=30)),
                plate="ABC1234", state="IL", category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE,
                reason="bench", entered_by="bench-admin"), metadata=md).version  # fmt: skip
        with grpc.insecure_channel(open_hub) as ch:
            deadline = time.time() + 30
            while hotlist_pb2_grpc.HotListServiceStub(ch).GetVersion(hotlist_pb2.GetVersionRequest()).version < v:
                if time.time() > deadline:
                    raise RuntimeError("the ingest hub did not get the hot-list entry")
                time.sleep(0.05)
        port = free_port()
        console_log = open(run_dir / "console.log", "w")  # noqa: SIM115 - closed below
        console = subprocess.Popen([sys.executable, "-m", "console.cli", "--hub", secured, "--port", str(port), "--insecure-dev"],
                                   stdout=console_log, stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for a in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,900",
        ):
            opts.add_argument(a)
        d = webdriver.Chrome(service=Service(driver), options=opts)
        ingest = Ingest(open_hub)
        watch = Watch(secured, officer)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.time() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    if time.time() > deadline or console.poll() is not None:
                        raise RuntimeError(
                            "console did not start: " + (run_dir / "console.log").read_text()[-2000:]
                        ) from None
                    time.sleep(0.1)
            d.get(base + "/signin")
            d.find_element(By.ID, "token").send_keys(officer)
            d.find_element(By.ID, "signin").click()
            WebDriverWait(d, 20).until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
            ingest.send(make_read(plate="NOHIT12"))  # warm the stream
            crop, frame = noise_jpeg(160, 48, seed=1), noise_jpeg(960, 540, seed=2)
            screen, base_watch, alerts = [], [], []
            for i in range(hits):
                read = make_read(plate="ABC1234", camera_id=f"cam-{i % 4}", crop_jpeg=crop, frame_jpeg=frame)
                read.frame_width, read.frame_height = 960, 540
                aid = str(alert_id_for(read.read_id))
                acked = ingest.send(read)
                WebDriverWait(d, 10, poll_frequency=0.05).until(shown_js(d, aid))
                shown = float(d.execute_script(f"return document.getElementById('hit-{aid}').dataset.shownMs"))
                screen.append(shown - acked)
                deadline = time.time() + 10
                while aid not in watch.seen and time.time() < deadline:
                    time.sleep(0.01)
                base_watch.append(watch.seen[aid] - acked)
                alerts.append(aid)
                time.sleep(0.3)  # hits a few hundred ms apart, not a burst
            log(f"console bench: {hits} hits on screen")
            render, get_alert, first_byte, dom_ready = [], [], [], []
            server_hub: list[float] = []
            server_render: list[float] = []
            with grpc.insecure_channel(secured) as ch:
                stub = alert_pb2_grpc.AlertServiceStub(ch)
                omd = (("authorization", f"Bearer {officer}"),)
                for aid in alerts:
                    t0 = time.perf_counter()
                    stub.GetAlert(alert_pb2.GetAlertRequest(alert_id=aid), metadata=omd)
                    get_alert.append((time.perf_counter() - t0) * 1000)
                    d.get(f"{base}/alerts/{aid}")
                    WebDriverWait(d, 10).until(lambda _: d.execute_script("return document.readyState") == "complete")
                    nav = d.execute_script(
                        "const n = performance.getEntriesByType('navigation')[0]; return [n.loadEventEnd - n.startTime,"
                        " n.responseStart - n.startTime, n.domContentLoadedEventEnd - n.startTime,"
                        " n.serverTiming.map(s => [s.name, s.duration])]")  # fmt: skip
                    render.append(float(nav[0]))
                    first_byte.append(float(nav[1]))
                    dom_ready.append(float(nav[2]))
                    timing = dict(nav[3])
                    server_hub.append(float(timing.get("hub", 0.0)))
                    server_render.append(float(timing.get("render", 0.0)))
        finally:
            d.quit()
            ingest.close()
            watch.close()
            console.terminate()
            console.wait(10)
            console_log.close()
    p50, p95 = percentile(screen, 0.5), percentile(screen, 0.95)
    w50, w95 = percentile(base_watch, 0.5), percentile(base_watch, 0.95)
    r50, r95 = percentile(render, 0.5), percentile(render, 0.95)
    g50 = percentile(get_alert, 0.5)
    result = {
        "bench": "console", "hits": hits, "cpus": os.cpu_count(),
        "load_avg_1m_start": round(load_start, 2), "load_avg_1m_end": round(os.getloadavg()[0], 2),
        "hit_to_screen_p50_ms": round(p50, 1), "hit_to_screen_p95_ms": round(p95, 1),
        "watch_p50_ms": round(w50, 1), "watch_p95_ms": round(w95, 1),
        "screen_vs_watch_p50_ratio": round(p50 / w50, 2) if w50 > 0 else None,
        "screen_vs_watch_p95_ratio": round(p95 / w95, 2) if w95 > 0 else None,
        "review_render_p50_ms": round(r50, 1), "review_render_p95_ms": round(r95, 1),
        # Where the review page's time goes: first byte (the console's hub call and template, from
        # its Server-Timing header), the document parsed, then the images fetched and decoded.
        "review_first_byte_p50_ms": round(percentile(first_byte, 0.5), 1),
        "review_dom_ready_p50_ms": round(percentile(dom_ready, 0.5), 1),
        "review_server_hub_p50_ms": round(percentile(server_hub, 0.5), 1),
        "review_server_render_p50_ms": round(percentile(server_render, 0.5), 1),
        "get_alert_p50_ms": round(g50, 1), "review_vs_get_alert_p50_ratio": round(r50 / g50, 2) if g50 > 0 else None,
        "target_hit_to_screen_p95_ms": 2000, "hit_to_screen_met": p95 <= 2000,
        "target_review_render_ms": 500, "review_render_met": r95 <= 500,
    }  # fmt: skip
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
