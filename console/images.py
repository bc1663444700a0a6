"""The crop and frame of hits just opened, held briefly for the review page's image requests.

The review page fetches a hit once (``GetAlert``, the person's token) and names its images
by URL; the browser then asks for them in parallel, and they come from here instead of a
second and third hub call. Held per signed-in session (another session's request misses
and goes to the hub with its own token), for seconds, and only the last few hits.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class HitImages:
    crop: bytes
    frame: bytes


class RecentImages:
    def __init__(self, *, hold_s: float = 30.0, max_hits: int = 64) -> None:
        self.hold_s = hold_s
        self.max_hits = max_hits
        self._held: OrderedDict[tuple[str, str], tuple[float, HitImages]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, sid: str, alert_id: str, crop: bytes, frame: bytes) -> HitImages:
        images = HitImages(crop, frame)
        with self._lock:
            self._held[(sid, alert_id)] = (time.monotonic(), images)
            self._held.move_to_end((sid, alert_id))
            while len(self._held) > self.max_hits:
                self._held.popitem(last=False)
        return images

    def get(self, sid: str, alert_id: str) -> HitImages | None:
        with self._lock:
            got = self._held.get((sid, alert_id))
            if got is None:
                return None
            if time.monotonic() - got[0] > self.hold_s:
                del self._held[(sid, alert_id)]
                return None
            return got[1]

    def forget(self, sid: str) -> None:
        """A session ended: its hits' images go with it."""
        with self._lock:
            for key in [k for k in self._held if k[0] == sid]:
                del self._held[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)
