"""Camera frame sources: video file (optionally looped), RTSP/HTTP stream, image folder,
single image. OpenCV does the decoding. Each source yields ``Frame`` objects at most
``max_fps`` per second; streams that drop are reopened with backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Event
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from alpr_common.retry import Backoff

log = logging.getLogger(__name__)
Img = npt.NDArray[np.uint8]
STREAM_BACKOFF = Backoff(initial_s=0.5, max_s=30.0)  # reopening a camera stream that dropped

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mjpeg", ".mjpg", ".webm"}


@dataclass
class Frame:
    image: npt.NDArray[np.uint8]
    t: float  # seconds: media time for files, wall-clock for live streams
    wall_time: float  # time.time() when captured (the read's capture time)
    index: int


class SourceError(Exception):
    """The source cannot be opened at all (bad path); the message says what to fix."""


def describe(uri: str) -> str:
    if uri.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return "stream"
    p = Path(uri)
    if p.is_dir():
        return "folder"
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return "video"


def open_source(
    uri: str, max_fps: float | Callable[[], float] = 0.0, loop: bool = False, stop: Event | None = None
) -> Iterator[Frame]:
    """Frames from ``uri``. ``max_fps`` 0 = no cap (a callable is asked again for every frame, so the
    cap can change while the camera runs); ``loop`` repeats files forever."""
    kind = describe(uri)
    stop = stop or Event()
    if kind != "stream" and not Path(uri).exists():
        raise SourceError(f"camera source {uri!r} does not exist (a video file, image, folder or rtsp:// URL)")
    frames = {
        "stream": _stream,
        "folder": _folder,
        "image": _image,
        "video": _video,
    }[kind](uri, loop, stop)
    return _paced(frames, max_fps, stop, live=kind == "stream")


def _paced(frames: Iterator[Frame], max_fps: float | Callable[[], float], stop: Event, live: bool) -> Iterator[Frame]:
    """Cap the rate: files are paced to max_fps in real time; live streams drop extra frames."""
    next_due = time.monotonic()
    for frame in frames:
        if stop.is_set():
            return
        fps = max_fps() if callable(max_fps) else max_fps
        period = 1.0 / fps if fps > 0 else 0.0
        if period:
            now = time.monotonic()
            if live:
                if now < next_due:
                    continue
            elif now < next_due:
                stop.wait(next_due - now)
            next_due = max(next_due + period, time.monotonic() - period)
        yield frame


def _video(uri: str, loop: bool, stop: Event) -> Iterator[Frame]:
    index = 0
    offset = 0.0
    while not stop.is_set():
        cap = cv2.VideoCapture(uri)
        if not cap.isOpened():
            raise SourceError(f"cannot decode video {uri!r}")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        last_t = 0.0
        local = 0
        while not stop.is_set():
            ok, img = cap.read()
            if not ok:
                break
            last_t = local / fps
            yield Frame(cast(Img, img), offset + last_t, time.time(), index)
            index += 1
            local += 1
        cap.release()
        if not loop or local == 0:
            return
        offset += last_t + 1.0 / fps + 5.0  # a gap, so the tracker never joins the end to the start


def _stream(uri: str, loop: bool, stop: Event) -> Iterator[Frame]:
    index = 0
    failures = 0
    while not stop.is_set():
        cap = cv2.VideoCapture(uri)
        if not cap.isOpened():
            delay = STREAM_BACKOFF.delay(failures)
            failures += 1
            log.warning("camera stream %s unavailable; retrying in %.1f s", uri, delay)
            stop.wait(delay)
            continue
        failures = 0
        while not stop.is_set():
            ok, img = cap.read()
            if not ok:
                log.warning("camera stream %s dropped; reconnecting", uri)
                break
            now = time.time()
            yield Frame(cast(Img, img), now, now, index)
            index += 1
        cap.release()


def _read_image(path: Path) -> npt.NDArray[np.uint8] | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        log.warning("skipping unreadable image %s", path)
    return cast(Img | None, img)


def _folder(uri: str, loop: bool, stop: Event) -> Iterator[Frame]:
    paths = sorted(p for p in Path(uri).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {uri!r}")
    index = 0
    while not stop.is_set():
        for p in paths:
            img = _read_image(p)
            if img is not None:
                # Stills are independent scenes: space them apart so no track spans two.
                yield Frame(img, index * 10.0, time.time(), index)
                index += 1
        if not loop:
            return


def _image(uri: str, loop: bool, stop: Event) -> Iterator[Frame]:
    img = _read_image(Path(uri))
    if img is None:
        raise SourceError(f"cannot decode image {uri!r}")
    index = 0
    while not stop.is_set():
        yield Frame(img, index * 10.0, time.time(), index)
        index += 1
        if not loop:
            return
