"""Position of the camera: fixed from config, or from an NMEA source for mobile nodes.

NMEA comes from a serial device, a file (replayed) or a gpsd TCP socket (raw NMEA mode);
``simulate_nmea`` writes a drive for tests. Only RMC and GGA sentences are used.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KNOTS_TO_MPS = 0.514444


@dataclass(frozen=True)
class Fix:
    latitude: float
    longitude: float
    accuracy_m: float = 0.0
    heading_deg: float | None = None
    speed_mps: float | None = None
    time: float = 0.0  # time.time() when received


def _checksum_ok(sentence: str) -> bool:
    if "*" not in sentence:
        return False
    body, _, given = sentence[1:].partition("*")
    calc = 0
    for ch in body:
        calc ^= ord(ch)
    try:
        return calc == int(given[:2], 16)
    except ValueError:
        return False


def _coord(value: str, hemi: str) -> float:
    if not value:
        raise ValueError("empty coordinate")
    dot = value.index(".")
    degrees = float(value[: dot - 2])
    minutes = float(value[dot - 2 :])
    out = degrees + minutes / 60.0
    return -out if hemi in ("S", "W") else out


class NmeaParser:
    """Folds RMC (position, speed, course) and GGA (HDOP) sentences into fixes."""

    def __init__(self) -> None:
        self.hdop: float | None = None

    def feed(self, line: str, now: float | None = None) -> Fix | None:
        line = line.strip()
        if not line.startswith("$") or not _checksum_ok(line):
            return None
        fields = line.split("*")[0].split(",")
        kind = fields[0][3:]
        try:
            if kind == "GGA" and len(fields) > 8 and fields[8]:
                self.hdop = float(fields[8])
            elif kind == "RMC" and len(fields) > 8 and fields[2] == "A":
                lat = _coord(fields[3], fields[4])
                lon = _coord(fields[5], fields[6])
                speed = float(fields[7]) * KNOTS_TO_MPS if fields[7] else None
                heading = float(fields[8]) % 360.0 if fields[8] else None
                accuracy = self.hdop * 5.0 if self.hdop is not None else 0.0  # ~5 m UERE per HDOP unit
                return Fix(lat, lon, accuracy, heading, speed, time.time() if now is None else now)
        except ValueError:
            return None
        return None


def _nmea(deg: float, is_lat: bool) -> tuple[str, str]:
    hemi = ("N" if deg >= 0 else "S") if is_lat else ("E" if deg >= 0 else "W")
    deg = abs(deg)
    d = int(deg)
    m = (deg - d) * 60
    return (f"{d:02d}{m:07.4f}" if is_lat else f"{d:03d}{m:07.4f}"), hemi


def _with_checksum(body: str) -> str:
    calc = 0
    for ch in body:
        calc ^= ord(ch)
    return f"${body}*{calc:02X}"


def rmc_sentence(lat: float, lon: float, speed_mps: float, heading: float, t: float) -> str:
    la, lh = _nmea(lat, True)
    lo, oh = _nmea(lon, False)
    tm = time.gmtime(t)
    body = (
        f"GPRMC,{tm.tm_hour:02d}{tm.tm_min:02d}{tm.tm_sec:02d}.00,A,{la},{lh},{lo},{oh},"
        f"{speed_mps / KNOTS_TO_MPS:.1f},{heading:.1f},{tm.tm_mday:02d}{tm.tm_mon:02d}{tm.tm_year % 100:02d},,,A"
    )
    return _with_checksum(body)


def gga_sentence(lat: float, lon: float, hdop: float, t: float) -> str:
    la, lh = _nmea(lat, True)
    lo, oh = _nmea(lon, False)
    tm = time.gmtime(t)
    body = (
        f"GPGGA,{tm.tm_hour:02d}{tm.tm_min:02d}{tm.tm_sec:02d}.00,{la},{lh},{lo},{oh},1,08,{hdop:.1f},180.0,M,-34.0,M,,"
    )
    return _with_checksum(body)


def simulate_nmea(path: Path, start: tuple[float, float], heading: float, speed_mps: float, seconds: int) -> None:
    """Write a straight drive as NMEA, one fix per second (a GPS simulator for tests)."""
    import math

    lat, lon = start
    t0 = time.time()
    lines = []
    for i in range(seconds):
        d = speed_mps * i
        la = lat + d * math.cos(math.radians(heading)) / 111_320
        lo = lon + d * math.sin(math.radians(heading)) / (111_320 * math.cos(math.radians(lat)))
        lines += [gga_sentence(la, lo, 0.9, t0 + i), rmc_sentence(la, lo, speed_mps, heading, t0 + i)]
    path.write_text("\n".join(lines) + "\n")


class GpsReader:
    """Keeps the latest fix from an NMEA source in a background thread.

    ``source``: ``file:PATH`` (replayed at ``replay_rate`` lines/s, looping), ``serial:/dev/ttyX``
    (read as a character device at the rate the receiver sends) or ``gpsd:HOST:PORT``.
    """

    def __init__(self, source: str, max_age_s: float = 10.0, replay_rate: float = 2.0) -> None:
        self.source = source
        self.max_age_s = max_age_s
        self.replay_rate = replay_rate
        self.parser = NmeaParser()
        self._fix: Fix | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gps", daemon=True)

    def start(self) -> GpsReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def current(self) -> Fix | None:
        """The latest fix if it is fresh enough, else None (no fix)."""
        fix = self._fix
        if fix is None or time.time() - fix.time > self.max_age_s:
            return None
        return fix

    def last_known(self) -> Fix | None:
        """The latest fix however old (its ``time`` says how old); None when there was none yet."""
        return self._fix

    def _lines(self) -> Iterator[str]:
        kind, _, rest = self.source.partition(":")
        if kind == "file":
            lines = Path(rest).read_text().splitlines()
            while not self._stop.is_set():
                for line in lines:
                    yield line
                    self._stop.wait(1.0 / self.replay_rate)
        elif kind == "serial":
            with open(rest, errors="replace") as dev:
                for line in dev:
                    yield line
        elif kind == "gpsd":
            host, _, port = rest.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(b'?WATCH={"enable":true,"nmea":true}\n')
                buf = b""
                while not self._stop.is_set():
                    data = sock.recv(4096)
                    if not data:
                        return
                    buf += data
                    while b"\n" in buf:
                        raw, buf = buf.split(b"\n", 1)
                        yield raw.decode(errors="replace")
        else:
            raise ValueError(f"unknown GPS source {self.source!r}: use file:PATH, serial:DEVICE or gpsd:HOST:PORT")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in self._lines():
                    fix = self.parser.feed(line)
                    if fix:
                        self._fix = fix
                    if self._stop.is_set():
                        return
            except (OSError, ValueError) as e:
                log.warning("GPS source %s: %s; retrying in 5 s", self.source, e)
            self._stop.wait(5.0)
