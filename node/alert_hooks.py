"""Local alert hooks (e.g. a siren or an in-car display) run off the pipeline thread.

A hot-list hit must never stall plate reading: each hit is handed to a small, bounded pool
of workers that run the configured command with the alert as JSON on stdin. A command that
outlives its timeout is killed with everything it started (its own process group); when
the backlog is full a new alert is dropped and counted (the console line and the hub alert
still happen).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class AlertHooks:
    """``submit(payload)`` never blocks; ``stop()`` ends the workers and kills running commands."""

    def __init__(
        self,
        command: list[str],
        timeout_s: float,
        workers: int,
        max_pending: int,
        on_drop: Callable[[], None] = lambda: None,
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self.command = command
        self.timeout_s = timeout_s
        self._on_drop = on_drop
        self._on_failure = on_failure
        self._pending: queue.Queue[bytes | None] = queue.Queue(maxsize=max_pending)
        self._running: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._workers = [
            threading.Thread(target=self._work, name=f"alert-hook-{i}", daemon=True) for i in range(workers)
        ]
        for th in self._workers:
            th.start()

    def submit(self, payload: bytes) -> bool:
        """Queue one alert; False (and counted) when the backlog is full or the hooks are stopped."""
        if self._closed.is_set():
            return False
        try:
            self._pending.put_nowait(payload)
            return True
        except queue.Full:
            log.error("alert command backlog full (%d waiting): alert dropped", self._pending.maxsize)
            self._on_drop()
            return False

    def pending(self) -> int:
        return self._pending.qsize()

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def _work(self) -> None:
        while (payload := self._pending.get()) is not None:
            if self._closed.is_set():
                continue
            self._run(payload)

    def _run(self, payload: bytes) -> None:
        try:
            # its own session: a timeout kills the command and whatever it started
            proc = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True
            )
        except OSError as e:
            log.error("alert command %s failed to start: %s", self.command, e)
            self._on_failure()
            return
        with self._lock:
            self._running.add(proc)
        if self._closed.is_set():  # stop() ran while it started
            self._kill(proc)
        try:
            proc.communicate(payload, timeout=self.timeout_s)
            if proc.returncode:
                log.error("alert command %s exited with %d", self.command, proc.returncode)
                self._on_failure()
        except subprocess.TimeoutExpired:
            log.error("alert command %s still running after %.1f s: killed", self.command, self.timeout_s)
            self._kill(proc)
            self._on_failure()
        except OSError as e:  # e.g. the command closed stdin early
            log.error("alert command %s failed: %s", self.command, e)
            self._kill(proc)
            self._on_failure()
        finally:
            with self._lock:
                self._running.discard(proc)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Drop what waits, kill what runs, end the workers (bounded by ``timeout_s``)."""
        self._closed.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._pending.get_nowait()
        with self._lock:
            running = list(self._running)
        for proc in running:
            self._kill(proc)
        for _ in self._workers:
            with contextlib.suppress(queue.Full):
                self._pending.put(None, timeout=timeout_s)
        for th in self._workers:
            th.join(timeout_s)
