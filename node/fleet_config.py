"""The node's side of central configuration (``FleetConfigService``).

:class:`ConfigManager` holds the node's effective configuration: its own file (plus
``ALPR_NODE__*`` environment) with the hub's overlay on top (:mod:`node.fleet_overlay`). A new
overlay, or an edit of the file, is composed and validated with :class:`NodeConfig` and handed
to the runtime; if anything fails the node keeps its last good configuration and reports the
error (heartbeat ``config_error``). The last good state (file settings, overlay, version) is
kept in ``<state_dir>/fleet_config.json``, so a node whose file breaks still starts on it.

:class:`FleetConfigSync` runs the Subscribe stream (like the hot-list sync: resume from the
version held, fail over between hub targets with backoff) and acknowledges each version with
what the node made of it.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from alpr.v1 import fleet_config_pb2, fleet_config_pb2_grpc

from alpr_common.config import ConfigError, load_config_data, validate_config
from alpr_common.retry import Backoff
from node.config import ENV_PREFIX, NodeConfig
from node.fleet_overlay import apply_overlay
from node.model_releases import ModelManager

log = logging.getLogger(__name__)

STATE_FILE = "fleet_config.json"
# The runtime's answer to a new configuration: None when applied, else why not.
Applier = Callable[[NodeConfig], str | None]


def compose(local: dict[str, Any], overlay: dict[str, Any], source: str = "node settings") -> NodeConfig:
    return validate_config(NodeConfig, apply_overlay(local, overlay), f"{source} + fleet overlay")


class ConfigManager:
    """The node's effective configuration and its last good state."""

    def __init__(
        self,
        local: dict[str, Any],
        *,
        local_path: Path | None = None,
        source: str = "node settings",
        local_error: str = "",
    ) -> None:
        self.local = local
        self.local_path = local_path
        self.source = source
        self._lock = threading.RLock()
        self._mtime = _mtime(local_path)
        self.applier: Applier | None = None
        base = validate_config(NodeConfig, local, source)
        self.state_path = Path(base.state_dir) / STATE_FILE
        self.version = 0
        self.overlay: dict[str, Any] = {}
        self.error = local_error
        self._offer: tuple[int, dict[str, Any]] | None = None  # latest overlay the hub sent
        saved = _load_state(self.state_path)
        self.current = base
        if saved is not None:
            try:
                self.current = compose(local, saved["overlay"], source)
                self.version, self.overlay = int(saved["version"]), dict(saved["overlay"])
            except (ConfigError, KeyError, TypeError, ValueError) as e:
                self.error = f"stored fleet overlay v{saved.get('version')} no longer applies: {e}"

    @classmethod
    def from_config(cls, config: NodeConfig) -> ConfigManager:
        """For a node built from a config object (no file to watch)."""
        return cls(config.model_dump(mode="json"))

    @classmethod
    def from_file(cls, path: str | Path, state_dir: str | None = None) -> ConfigManager:
        """From the node's file; when the file is broken, from the last good state in the state
        directory (``state_dir``, else the one the file names, else ``.run/node``)."""
        p = Path(path)
        data, source = load_config_data(NodeConfig, p, ENV_PREFIX)
        try:
            validate_config(NodeConfig, data, source)
            return cls(data, local_path=p, source=source)
        except ConfigError as e:
            guess = state_dir or (data.get("state_dir") if isinstance(data, dict) else None) or ".run/node"
            saved = _load_state(Path(str(guess)) / STATE_FILE)
            if saved is None or not isinstance(saved.get("local"), dict):
                raise
            log.error("%s; running on the last good configuration in %s", e, guess)
            m = cls(saved["local"], local_path=p, source=source, local_error=f"local configuration file: {e}")
            m._mtime = _mtime(p)
            return m

    # -- what the runtime and the heartbeat read ------------------------------------------

    def status(self) -> tuple[int, str]:
        with self._lock:
            return self.version, self.error

    # -- changes ------------------------------------------------------------------------

    def offer(self, version: int, overlay: dict[str, Any]) -> str:
        """A new overlay from the hub: applied (""), or why the last good configuration stays."""
        with self._lock:
            self._offer = (version, overlay)
            return self._try(self.local, version, overlay)

    def confirm(self, version: int) -> bool:
        """The hub says the node's overlay is current at ``version`` (unless the last one failed)."""
        with self._lock:
            if self._offer is not None and self._offer[0] > self.version and self.error:
                return False
            if version > self.version:
                self.version = version
                self._save()
            return True

    def check_local_file(self) -> bool:
        """Re-read the node's own file if it changed; True when something was re-applied."""
        if self.local_path is None:
            return False
        m = _mtime(self.local_path)
        with self._lock:
            if m == self._mtime:
                return False
            self._mtime = m
            try:
                data, source = load_config_data(NodeConfig, self.local_path, ENV_PREFIX)
                validate_config(NodeConfig, data, source)
            except ConfigError as e:
                self.error = f"local configuration file: {e}"
                log.error("%s; keeping the last good configuration", self.error)
                return False
            version, overlay = self._offer if self._offer is not None else (self.version, self.overlay)
            if self._try(data, version, overlay) == "":
                self.local = data
                return True
            return False

    def _try(self, local: dict[str, Any], version: int, overlay: dict[str, Any]) -> str:
        try:
            new = compose(local, overlay, self.source)
        except ConfigError as e:
            self.error = f"fleet configuration v{version} not applied: {e}"
            log.error("%s; keeping the last good configuration", self.error)
            return self.error
        problem = self.applier(new) if self.applier is not None else None
        if problem:
            self.error = f"fleet configuration v{version} not applied: {problem}"
            log.error("%s; keeping the last good configuration", self.error)
            return self.error
        self.local, self.current, self.version, self.overlay, self.error = local, new, version, overlay, ""
        self._save()
        log.info("fleet configuration v%d applied", version)
        return ""

    def _save(self) -> None:
        state = {"version": self.version, "overlay": self.overlay, "local": self.local}
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, default=str))
            os.replace(tmp, self.state_path)
        except OSError as e:
            log.warning("cannot keep the fleet configuration state in %s: %s", self.state_path, e)


def _mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None


def _load_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class FleetConfigSync:
    """Keeps the node's overlay current from the hub (background thread)."""

    def __init__(
        self,
        manager: ConfigManager,
        targets: list[str],
        node_id: str,
        groups: list[str],
        *,
        backoff: Backoff | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        models: ModelManager | None = None,
    ) -> None:
        """``models``: the unit's model releases, whose assignments and reports share this stream."""
        self.models = models
        self.manager = manager
        self.targets = targets
        self.node_id = node_id
        self.groups = groups
        self.backoff = backoff or Backoff()
        self.credentials = credentials
        self.connected = False
        self.hub_version: int | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._call: Any = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fleet-config", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        attempt = 0
        i = 0
        while not self._stop.is_set():
            target = self.targets[i % len(self.targets)]
            try:
                self._session(target)
                attempt = 0
            except grpc.RpcError as e:
                if self._stop.is_set():
                    break
                self.last_error = f"{target}: {e.code().name}: {e.details()}"
                log.warning("fleet configuration subscription to %s failed: %s", target, self.last_error)
            except Exception as e:
                self.last_error = f"{target}: {e!r}"
                log.exception("fleet configuration subscription to %s failed", target)
            self.connected = False
            i += 1
            self._stop.wait(self.backoff.delay(attempt))
            attempt += 1

    def _session(self, target: str) -> None:
        out: queue.Queue[fleet_config_pb2.FleetConfigServiceSubscribeRequest | None] = queue.Queue()
        have, _ = self.manager.status()
        out.put(
            fleet_config_pb2.FleetConfigServiceSubscribeRequest(
                start=fleet_config_pb2.FleetConfigSubscribeStart(
                    node_id=self.node_id, have_version=have, groups=self.groups,
                    model_release_id=self.models.current if self.models else "",
                )
            )
        )  # fmt: skip
        models = self.models
        if models is not None:
            models.on_report = lambda m: out.put(fleet_config_pb2.FleetConfigServiceSubscribeRequest(model=m))
            if models.last_report is not None:  # what the hub may have missed while the link was down
                out.put(fleet_config_pb2.FleetConfigServiceSubscribeRequest(model=models.last_report))

        def requests() -> Iterator[fleet_config_pb2.FleetConfigServiceSubscribeRequest]:
            while (m := out.get()) is not None:
                yield m

        def ack(version: int, error: str) -> None:
            out.put(
                fleet_config_pb2.FleetConfigServiceSubscribeRequest(
                    ack=fleet_config_pb2.FleetConfigAck(version=version, error=error[:2000])
                )
            )

        creds = self.credentials
        with grpc.secure_channel(target, creds) if creds is not None else grpc.insecure_channel(target) as ch:
            call = fleet_config_pb2_grpc.FleetConfigServiceStub(ch).Subscribe(requests())
            self._call = call
            try:
                for resp in call:
                    self.connected = True
                    self.last_error = None
                    kind = resp.WhichOneof("payload")
                    if kind == "update":
                        u = resp.update
                        self.hub_version = u.version
                        try:
                            overlay = json.loads(u.overlay_json or "{}")
                            if not isinstance(overlay, dict):
                                raise ValueError("not a JSON object")
                        except ValueError as e:
                            ack(u.version, f"overlay v{u.version} unreadable: {e}")
                            continue
                        ack(u.version, self.manager.offer(u.version, overlay))
                    elif kind == "model" and models is not None:
                        models.assign(resp.model.release_id, resp.model.paused, resp.model.rollout_version)
                    elif kind == "current":
                        self.hub_version = resp.current.version
                        if self.manager.confirm(resp.current.version):
                            ack(resp.current.version, "")
                        else:
                            v, err = self.manager.status()
                            ack(v, err)
                    if self._stop.is_set():
                        break
            finally:
                if models is not None:
                    models.on_report = None
                out.put(None)
                call.cancel()  # type: ignore[no-untyped-call]
                self._call = None
