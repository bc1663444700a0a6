#!/usr/bin/env python3
"""Fetch and run a real Apache Cassandra 5.0.x locally (Java 17, jars from Maven Central).

Stdlib only: runs with the system ``python3`` before any virtualenv exists.

Commands (``python3 ops/cassandractl.py COMMAND --help`` for options)::

    fetch                              download cassandra-all + runtime jars into the cache
    start      --dir RUN_DIR [--nodes N] [--port 9042] [--heap 1G] [--timeout 180]
    stop       --dir RUN_DIR           SIGTERM every node (Cassandra drains), SIGKILL after 60 s
    status     --dir RUN_DIR           per node: pid alive, CQL answering (exit 0 only if all up)
    kill       --dir RUN_DIR --node K  SIGKILL one node (fault tests)
    start-node --dir RUN_DIR --node K  restart one node of an existing cluster, keeping its data

Layout and conventions
----------------------
* Jars: ``${ALPR_CACHE_DIR:-~/.cache/alpr}/cassandra-<version>/lib`` (outside the repo), fetched
  once with Maven from ``ops/cassandra-maven/pom.xml``; a ``.complete`` marker makes later fetches no-ops.
  ``ALPR_CASSANDRA_VERSION`` overrides the version (default :data:`DEFAULT_VERSION`).
* Node K (1-based) of a cluster lives in ``RUN_DIR/nodeK/`` (conf/, data/, commitlog/,
  saved_caches/, hints/, cdc_raw/, logs/system.log, logs/stdout.log, cassandra.pid) and listens on
  the loopback address ``127.0.0.K`` (Linux routes all of 127.0.0.0/8 to ``lo``).
* Ports, derived from the CQL port P (``--port``, default 9042) so that clusters with different P
  do not collide (keep two clusters' P at least 10 apart):

    - CQL (native transport): P on every node's own address 127.0.0.K
    - internode (storage_port): P - 2042 on 127.0.0.K   (9042 -> 7000, 19042 -> 17000)
    - JMX (local only, 127.0.0.1): P - 1843 + K - 1     (9042 -> 7199, 7200, ...)

* Topology: ``GossipingPropertyFileSnitch``, datacenter **dc1**, rack **rack1**, so
  ``{'class': 'NetworkTopologyStrategy', 'dc1': 3}`` works on a 3-node cluster.
  Each node gets ``num_tokens: 4`` with pre-computed, interleaved, evenly spaced
  ``initial_token``s and ``auto_bootstrap: false`` (a fresh test cluster: nodes join in seconds,
  no streaming, a perfectly balanced ring). Node 1 (127.0.0.1) is the only seed.
* Auth is off (AllowAllAuthenticator / AllowAllAuthorizer), ``auto_snapshot: false`` (DROP and
  TRUNCATE do not leave snapshots behind), small memtables, one compactor.
* Cluster name ``alpr``; partitioner Murmur3; storage_compatibility_mode left at the 5.0
  default (CASSANDRA_4).
* Readiness: a node counts as started once it answers a CQL OPTIONS request (native protocol
  v4, checked with a raw socket) *and*, in a multi-node cluster, it and every other running node
  see each other UP in gossip (read from the "InetAddress … is now UP" lines of their
  system.log) — without the second wait a QUORUM request right after start can fail as
  Unavailable. Start-up failures (process died, timeout) raise with the tail of the node's logs
  and kill the half-started JVM.
* Fast start-up flags: ``-Dcassandra.skip_wait_for_gossip_to_settle=0``,
  ``-Dcassandra.ring_delay_ms=1000``. On 2 cores a node is up in about 4-9 s.

Importable API (for pytest fixtures)::

    from ops.cassandractl import CassandraCluster   # with the repository root on sys.path
    cluster = CassandraCluster("/tmp/run", nodes=3, base_port=19042, heap="768M")
    cluster.start()                       # fetches jars if needed, waits until every node is up
    cluster.contact_points, cluster.port  # ['127.0.0.1', '127.0.0.2', '127.0.0.3'], 19042
    cluster.kill_node(2); cluster.start_node(2)
    cluster.stop()

(Named ``cassandractl``, not ``cassandra``, so that it never shadows the driver package.)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

DEFAULT_VERSION = "5.0.9"
"""Newest 5.0.x of org.apache.cassandra:cassandra-all that resolved from Maven Central."""

DEFAULT_PORT = 9042
DEFAULT_HEAP = "1G"
DEFAULT_START_TIMEOUT = 180.0
DEFAULT_STOP_TIMEOUT = 60.0
CLUSTER_NAME = "alpr"
DATACENTER = "dc1"
RACK = "rack1"
NUM_TOKENS = 4
MAX_NODES = 9
STORAGE_PORT_OFFSET = -2042  # 9042 -> 7000
JMX_PORT_OFFSET = -1843  # 9042 -> 7199

HERE = Path(__file__).resolve().parent
POM = HERE / "cassandra-maven" / "pom.xml"
CLUSTER_FILE = "cluster.json"
MARKER = ".complete"

# JVM flags, following upstream conf/jvm-server.options and conf/jvm17-server.options of the
# apache/cassandra cassandra-5.0 branch (AlwaysPreTouch and the 16m G1 region size are left out:
# they slow start-up or misfit the small heaps used here).
JVM_SERVER_FLAGS: tuple[str, ...] = (
    "-ea",
    "-da:net.openhft...",
    "-XX:+UseThreadPriorities",
    "-XX:+ExitOnOutOfMemoryError",
    "-Xss256k",
    "-XX:+UseTLAB",
    "-XX:+ResizeTLAB",
    "-XX:+PerfDisableSharedMem",
    "-Djava.net.preferIPv4Stack=true",
)
JVM17_FLAGS: tuple[str, ...] = (
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports",
    "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports",
    "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports",
    "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports",
    "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports",
    "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports",
    "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports",
    "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports",
    "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports",
    "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens",
    "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens",
    "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.io=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens",
    "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
)
# Start-up shortcuts for a local test cluster (all are system properties read by Cassandra 5.0,
# see org.apache.cassandra.config.CassandraRelevantProperties).
FAST_START_FLAGS: tuple[str, ...] = (
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=1000",
    "-Dcassandra.superuser_setup_delay_ms=0",
)

Log = Callable[[str], None]


class CassandraError(RuntimeError):
    """Any failure to fetch, start, stop or reach a node; the message says what to do."""


def _print(msg: str) -> None:
    print(msg, flush=True)


def _quiet(msg: str) -> None:
    pass


# --------------------------------------------------------------------------------------------
# CQL native protocol probe


def cql_options(host: str, port: int, timeout: float = 3.0) -> dict[str, list[str]]:
    """Send a native-protocol v4 OPTIONS frame and return the SUPPORTED string multimap.

    Raises ``OSError`` (refused, reset, timeout) or :class:`CassandraError` (not a CQL answer).
    A SUPPORTED answer means the node's CQL server is up; Cassandra starts it last, once the node
    has joined the ring.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        # header: version, flags, stream, opcode (0x05 OPTIONS), body length
        sock.sendall(struct.pack(">BBhBi", 0x04, 0x00, 1, 0x05, 0))
        header = _recv_exact(sock, 9)
        version, _flags, _stream, opcode, length = struct.unpack(">BBhBi", header)
        if length < 0 or length > 1 << 20:
            raise CassandraError(f"{host}:{port}: implausible CQL frame length {length}")
        body = _recv_exact(sock, length)
    if version & 0x7F != 0x04 or not version & 0x80:
        raise CassandraError(f"{host}:{port}: not a CQL v4 response (version byte {version:#x})")
    if opcode == 0x00:  # ERROR: [int code][string message]
        code = struct.unpack(">i", body[:4])[0] if len(body) >= 4 else -1
        msg = _read_string(body, 4)[0] if len(body) >= 6 else ""
        raise CassandraError(f"{host}:{port}: CQL error {code:#06x}: {msg}")
    if opcode != 0x06:
        raise CassandraError(f"{host}:{port}: expected SUPPORTED (0x06), got opcode {opcode:#x}")
    return _read_string_multimap(body)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionResetError("connection closed mid-frame")
        buf += chunk
    return bytes(buf)


def _read_string(body: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">H", body, pos)
    pos += 2
    return body[pos : pos + n].decode("utf-8"), pos + n


def _read_string_multimap(body: bytes) -> dict[str, list[str]]:
    (count,) = struct.unpack_from(">H", body, 0)
    pos, out = 2, {}
    for _ in range(count):
        key, pos = _read_string(body, pos)
        (nvals,) = struct.unpack_from(">H", body, pos)
        pos += 2
        vals = []
        for _ in range(nvals):
            val, pos = _read_string(body, pos)
            vals.append(val)
        out[key] = vals
    return out


def cql_answers(host: str, port: int, timeout: float = 3.0) -> bool:
    """True when ``host:port`` answers a CQL OPTIONS request with SUPPORTED."""
    try:
        cql_options(host, port, timeout)
        return True
    except (OSError, CassandraError, struct.error):
        return False


# --------------------------------------------------------------------------------------------
# Fetching the jars


def cache_root() -> Path:
    """``$ALPR_CACHE_DIR`` or ``~/.cache/alpr``."""
    env = os.environ.get("ALPR_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "alpr"


def cassandra_version() -> str:
    """``$ALPR_CASSANDRA_VERSION`` or :data:`DEFAULT_VERSION`."""
    return os.environ.get("ALPR_CASSANDRA_VERSION") or DEFAULT_VERSION


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fetch(version: str | None = None, cache_dir: Path | None = None, log: Log = _print) -> Path:
    """Make sure the jars of Cassandra ``version`` are in the cache; return the lib directory.

    Runs ``mvn dependency:copy-dependencies`` on ``ops/cassandra-maven/pom.xml`` into a temporary folder,
    checks that cassandra-all, jamm and logback came along, then moves it into place and writes
    the marker. Safe to call concurrently (file lock) and a no-op once cached.
    """
    version = version or cassandra_version()
    base = (Path(cache_dir) if cache_dir else cache_root()) / f"cassandra-{version}"
    lib = base / "lib"
    if (base / MARKER).is_file() and lib.is_dir():
        return lib
    with _flock(base.parent / f".cassandra-{version}.lock"):
        if (base / MARKER).is_file() and lib.is_dir():
            return lib
        mvn = shutil.which("mvn")
        if not mvn:
            raise CassandraError(
                "Maven ('mvn') is not on PATH; it is needed once to fetch the "
                "Cassandra jars (e.g. apt-get install maven)"
            )
        if not POM.is_file():
            raise CassandraError(f"missing {POM}")
        log(f"fetching Apache Cassandra {version} jars from Maven Central into {lib} …")
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="lib.", dir=base))
        t0 = time.monotonic()
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            f"-Dcassandra.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ]
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CassandraError(
                f"mvn failed (exit {proc.returncode}) fetching cassandra-all {version}:\n{_tail_text(proc.stdout, 40)}"
            )
        names = sorted(p.name for p in tmp.glob("*.jar"))
        for want in (f"cassandra-all-{version}.jar", "jamm-", "logback-classic-"):
            if not any(n.startswith(want) for n in names):
                shutil.rmtree(tmp, ignore_errors=True)
                raise CassandraError(f"fetched jars lack {want}*: {names}")
        if lib.exists():
            shutil.rmtree(lib)
        tmp.rename(lib)
        (base / MARKER).write_text("\n".join(names) + "\n")
        log(f"fetched {len(names)} jars in {time.monotonic() - t0:.1f} s")
    return lib


# --------------------------------------------------------------------------------------------
# Processes


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (reaps it if it is our own dead child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state = stat.rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _port_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (bind with SO_REUSEADDR, as Java does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _tail_text(text: str, lines: int, width: int = 400) -> str:
    out = []
    for line in text.splitlines()[-lines:]:
        out.append(line if len(line) <= width else line[:width] + " …")
    return "\n".join(out)


def _tail_file(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return f"(no {path})"
    return _tail_text(data, lines)


def java_major(java: str) -> int:
    """Major version of the ``java`` binary (e.g. 17)."""
    try:
        out = subprocess.run(
            [java, "-XshowSettings:properties", "-version"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CassandraError(f"cannot run {java}: {exc}") from exc
    m = re.search(r"java\.specification\.version = (\S+)", out)
    if not m:
        raise CassandraError(f"cannot tell the version of {java}:\n{out[-2000:]}")
    spec = m.group(1)
    return int(spec.split(".")[1]) if spec.startswith("1.") else int(spec)


def find_java() -> str:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise CassandraError("no 'java' on PATH (Cassandra 5.0 needs Java 17; set JAVA_HOME)")
    return java


# --------------------------------------------------------------------------------------------
# The cluster


class NodeStatus(NamedTuple):
    """What ``status`` reports for one node."""

    node: int
    address: str
    port: int
    pid: int | None
    alive: bool
    cql: bool
    peers_up: tuple[str, ...] = ()
    """Other nodes this node's gossip last saw UP (from its system.log)."""

    def line(self) -> str:
        pid = f"pid {self.pid}" if self.pid else "no pid"
        state = "UP" if self.alive and self.cql else ("STARTING?" if self.alive else "DOWN")
        out = (
            f"node {self.node} {self.address}:{self.port}  {state:9s} {pid}, "
            f"process {'alive' if self.alive else 'not running'}, "
            f"CQL {'answering' if self.cql else 'not answering'}"
        )
        if self.alive:
            out += f", sees UP: {', '.join(self.peers_up) or '-'}"
        return out


_UPDOWN = re.compile(r"InetAddress /(\d+\.\d+\.\d+\.\d+):\d+ is now (UP|DOWN)")


def _gossip_view(log: Path, offset: int = 0) -> dict[str, str]:
    """Last UP/DOWN state per peer address that a node's system.log reports after ``offset``.

    Cassandra's Gossiper logs "InetAddress /IP:PORT is now UP|DOWN" whenever its failure detector
    changes its mind (and again when a peer restarts), so this is the node's own view of which
    replicas are alive — the view that decides whether a QUORUM request is Unavailable.
    """
    try:
        with open(log, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(offset if offset <= size else 0)  # smaller: rotated, read it all
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return {}
    view: dict[str, str] = {}
    for m in _UPDOWN.finditer(text):
        view[m.group(1)] = m.group(2)
    return view


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _parse_heap(heap: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*[mMgG]", heap):
        raise CassandraError(f"heap must look like 512M or 1G, got {heap!r}")
    return heap.upper()


def _tokens(node: int, nodes: int, per_node: int = NUM_TOKENS) -> list[int]:
    """Evenly spaced Murmur3 tokens, interleaved: node k gets slots k-1, k-1+N, k-1+2N, …"""
    total = nodes * per_node
    step = (2**64) // total
    return [-(2**63) + (i * nodes + node - 1) * step for i in range(per_node)]


class CassandraCluster:
    """A local Cassandra cluster of ``nodes`` nodes on 127.0.0.1..127.0.0.N, CQL on ``base_port``.

    State lives in ``run_dir`` (one ``nodeK`` folder per node plus ``cluster.json``); a later
    instance (or the CLI) pointed at the same ``run_dir`` manages the same processes. Nodes run
    detached from the calling process: call :meth:`stop` (e.g. in a fixture's finaliser).
    """

    def __init__(
        self,
        run_dir: os.PathLike[str] | str,
        nodes: int = 1,
        base_port: int = DEFAULT_PORT,
        heap: str = DEFAULT_HEAP,
        version: str | None = None,
        cache_dir: os.PathLike[str] | str | None = None,
        java: str | None = None,
        log: Log | None = _print,
    ) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise CassandraError(f"nodes must be 1..{MAX_NODES}, got {nodes}")
        if not 2100 <= base_port <= 65535 - 2:
            raise CassandraError(f"port must be in 2100..65533, got {base_port}")
        self.run_dir = Path(run_dir).expanduser().resolve()
        self.nodes = nodes
        self.base_port = base_port
        self.heap = _parse_heap(heap)
        self.version = version or cassandra_version()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.java = java
        self.log: Log = log or _quiet
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    # -- derived facts -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """CQL port, the same on every node."""
        return self.base_port

    @property
    def storage_port(self) -> int:
        """Internode port, the same on every node (each on its own address)."""
        return self.base_port + STORAGE_PORT_OFFSET

    def jmx_port(self, k: int) -> int:
        """Local-only JMX port of node ``k`` (on 127.0.0.1)."""
        return self.base_port + JMX_PORT_OFFSET + k - 1

    @property
    def contact_points(self) -> list[str]:
        """Addresses of all nodes, for a driver's ``contact_points``."""
        return [self.address(k) for k in range(1, self.nodes + 1)]

    @property
    def datacenter(self) -> str:
        """Datacenter name for NetworkTopologyStrategy and load-balancing policies."""
        return DATACENTER

    @staticmethod
    def address(k: int) -> str:
        """Loopback address of node ``k``."""
        return f"127.0.0.{k}"

    def node_dir(self, k: int) -> Path:
        return self.run_dir / f"node{k}"

    def pid_file(self, k: int) -> Path:
        return self.node_dir(k) / "cassandra.pid"

    def system_log(self, k: int) -> Path:
        return self.node_dir(k) / "logs" / "system.log"

    def stdout_log(self, k: int) -> Path:
        return self.node_dir(k) / "logs" / "stdout.log"

    def _yaml_path(self, k: int) -> Path:
        return self.node_dir(k) / "conf" / "cassandra.yaml"

    # -- state --------------------------------------------------------------------------------

    def pid(self, k: int) -> int | None:
        """Pid of node ``k`` if it is running (and really is that node), else None."""
        try:
            pid = int(self.pid_file(k).read_text().strip())
        except (OSError, ValueError):
            return None
        if not _pid_alive(pid):
            return None
        cmd = _cmdline(pid)
        if cmd and f"-Dcassandra.config=file://{self._yaml_path(k)}" not in cmd:
            return None  # stale pid file, pid reused by something else
        return pid

    def cql_ready(self, k: int, timeout: float = 3.0) -> bool:
        return cql_answers(self.address(k), self.port, timeout)

    def node_status(self, k: int) -> NodeStatus:
        pid = self.pid(k)
        view = _gossip_view(self.system_log(k)) if pid is not None else {}
        peers = tuple(a for a in self.contact_points if a != self.address(k) and view.get(a) == "UP")
        return NodeStatus(k, self.address(k), self.port, pid, pid is not None, self.cql_ready(k), peers)

    def status(self) -> list[NodeStatus]:
        return [self.node_status(k) for k in range(1, self.nodes + 1)]

    def is_running(self) -> bool:
        """True when every node's process is alive and answers CQL."""
        return all(s.alive and s.cql for s in self.status())

    # -- configuration ------------------------------------------------------------------------

    def _check_cluster_file(self) -> None:
        """Refuse to reuse a run dir made for a different shape; record ours otherwise."""
        path = self.run_dir / CLUSTER_FILE
        if path.is_file():
            old = json.loads(path.read_text())
            used = any(any(d.iterdir()) for d in self.run_dir.glob("node*/data") if d.is_dir())
            if used and (old.get("nodes") != self.nodes or old.get("base_port") != self.base_port):
                raise CassandraError(
                    f"{self.run_dir} holds a cluster of {old.get('nodes')} node(s) on port "
                    f"{old.get('base_port')}; use the same --nodes/--port, or another --dir "
                    f"(or remove it after 'stop')"
                )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {"nodes": self.nodes, "base_port": self.base_port, "heap": self.heap, "version": self.version}, indent=2
            )
            + "\n"
        )

    @classmethod
    def from_run_dir(cls, run_dir: os.PathLike[str] | str, **kwargs: Any) -> CassandraCluster:
        """A cluster object for an existing run dir (shape read from its cluster.json)."""
        path = Path(run_dir).expanduser() / CLUSTER_FILE
        try:
            meta = json.loads(path.read_text())
        except OSError as exc:
            raise CassandraError(f"no cluster in {run_dir} ({path} missing); run 'start' first") from exc
        kwargs.setdefault("nodes", meta["nodes"])
        kwargs.setdefault("base_port", meta["base_port"])
        kwargs.setdefault("heap", meta.get("heap", DEFAULT_HEAP))
        kwargs.setdefault("version", meta.get("version"))
        return cls(run_dir, **kwargs)

    def _write_config(self, k: int) -> Path:
        nd = self.node_dir(k)
        conf = nd / "conf"
        for sub in ("conf", "data", "commitlog", "saved_caches", "hints", "cdc_raw", "logs", "triggers"):
            (nd / sub).mkdir(parents=True, exist_ok=True)
        q = json.dumps  # JSON strings are valid YAML double-quoted scalars
        tokens = ",".join(str(t) for t in _tokens(k, self.nodes))
        seed = f"{self.address(1)}:{self.storage_port}"
        yaml = f"""\
# Written by ops/cassandractl.py for node {k} of {self.nodes}; regenerated on every start.
cluster_name: {q(CLUSTER_NAME)}
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
num_tokens: {NUM_TOKENS}
initial_token: {q(tokens)}
auto_bootstrap: false
endpoint_snitch: GossipingPropertyFileSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: {q(seed)}
listen_address: {self.address(k)}
rpc_address: {self.address(k)}
storage_port: {self.storage_port}
start_native_transport: true
native_transport_port: {self.port}
data_file_directories:
  - {q(str(nd / "data"))}
commitlog_directory: {q(str(nd / "commitlog"))}
saved_caches_directory: {q(str(nd / "saved_caches"))}
hints_directory: {q(str(nd / "hints"))}
cdc_raw_directory: {q(str(nd / "cdc_raw"))}
cdc_enabled: false
# group: a write is acknowledged only after its commit-log segment is fsynced (batched over
# 10 ms). periodic (the default) acks first and syncs every 10 s, so a killed single node
# loses writes the hub had already acknowledged to a node.
commitlog_sync: group
commitlog_sync_group_window: 10ms
commitlog_total_space: 1024MiB
authenticator:
  class_name: org.apache.cassandra.auth.AllowAllAuthenticator
authorizer:
  class_name: org.apache.cassandra.auth.AllowAllAuthorizer
role_manager:
  class_name: org.apache.cassandra.auth.CassandraRoleManager
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
memtable_flush_writers: 1
concurrent_compactors: 1
auto_snapshot: false
materialized_views_enabled: false
user_defined_functions_enabled: false
hinted_handoff_enabled: true
"""
        (conf / "cassandra.yaml").write_text(yaml)
        (conf / "cassandra-rackdc.properties").write_text(f"dc={DATACENTER}\nrack={RACK}\n")
        (conf / "logback.xml").write_text(_LOGBACK.format(log=nd / "logs"))
        return conf

    def _java_cmd(self, k: int, lib: Path, java: str) -> list[str]:
        nd = self.node_dir(k)
        conf = nd / "conf"
        jamm = sorted(lib.glob("jamm-*.jar"))
        if not jamm:
            raise CassandraError(f"no jamm jar in {lib}")
        return [
            java,
            "-cp",
            f"{conf}:{lib}/*",
            *JVM_SERVER_FLAGS,
            *JVM17_FLAGS,
            f"-javaagent:{jamm[-1]}",
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            f"-XX:HeapDumpPath={nd}",
            f"-Dcassandra.config=file://{conf / 'cassandra.yaml'}",
            f"-Dcassandra.storagedir={nd}",
            f"-Dcassandra.logdir={nd / 'logs'}",
            f"-Dcassandra.triggers_dir={nd / 'triggers'}",
            f"-Dlogback.configurationFile=file://{conf / 'logback.xml'}",
            f"-Dcassandra-rackdc.properties=file://{conf / 'cassandra-rackdc.properties'}",
            f"-Dcassandra.jmx.local.port={self.jmx_port(k)}",
            "-Dcassandra-foreground=yes",
            *FAST_START_FLAGS,
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    # -- lifecycle ----------------------------------------------------------------------------

    def fetch(self) -> Path:
        """Fetch the jars if not cached; return the lib directory."""
        return fetch(self.version, self.cache_dir, self.log)

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> CassandraCluster:
        """Start every node not yet running, one after another, each waiting for CQL.

        Already-running nodes are left alone (a no-op if all are up). Raises
        :class:`CassandraError` with the node's log tail if a node dies or misses ``timeout``.
        """
        with _flock(self.run_dir / ".lock"):
            self._check_cluster_file()
            states = self.status()
            if all(s.alive and s.cql for s in states):
                self.log(
                    f"cluster in {self.run_dir} already running: "
                    f"{', '.join(self.contact_points)} port {self.port} (nothing to do)"
                )
                return self
            lib = self.fetch()
            java = self._checked_java()
            t0 = time.monotonic()
            for s in states:
                self._start_one(s.node, lib, java, timeout)
            if self.nodes > 1:
                self.log(f"cluster of {self.nodes} nodes ready in {time.monotonic() - t0:.1f} s")
        return self

    def start_node(self, k: int, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """(Re)start node ``k`` with its existing data; a no-op if it is running."""
        self._check_node(k)
        with _flock(self.run_dir / ".lock"):
            self._check_cluster_file()
            self._start_one(k, self.fetch(), self._checked_java(), timeout)

    def _checked_java(self) -> str:
        java = self.java or find_java()
        major = java_major(java)
        if major not in (11, 17):
            raise CassandraError(
                f"Cassandra {self.version} runs on Java 11 or 17; {java} is Java {major} (point JAVA_HOME at a JDK 17)"
            )
        return java

    def _start_one(self, k: int, lib: Path, java: str, timeout: float) -> None:
        addr = f"{self.address(k)}:{self.port}"
        pid = self.pid(k)
        if pid is not None:
            if self.cql_ready(k):
                self.log(f"node {k} already running on {addr} (pid {pid})")
                return
            self.log(f"node {k} (pid {pid}) is running but CQL is not answering yet; waiting …")
            self.wait_cql(k, timeout)
            return
        for host, port, what in (
            (self.address(k), self.port, "CQL"),
            (self.address(k), self.storage_port, "internode"),
            ("127.0.0.1", self.jmx_port(k), "JMX"),
        ):
            if not _port_free(host, port):
                raise CassandraError(
                    f"cannot start node {k}: {what} port {host}:{port} is already in use by "
                    f"another process (not node {k} of {self.run_dir}); pick another --port"
                )
        self._write_config(k)
        cmd = self._java_cmd(k, lib, java)
        # Where each node's log stands now: gossip news about this launch comes after it.
        offsets = {j: _size(self.system_log(j)) for j in range(1, self.nodes + 1)}
        self.log(f"starting node {k} on {addr} …")
        with open(self.stdout_log(k), "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.node_dir(k),
                start_new_session=True,
                close_fds=True,
            )
        self._procs[k] = proc
        self.pid_file(k).write_text(f"{proc.pid}\n")
        t0 = time.monotonic()
        try:
            self.wait_cql(k, timeout)
            t_cql = time.monotonic() - t0
            self.wait_gossip(k, max(30.0, timeout - t_cql), offsets)
        except BaseException as exc:
            # Leave no half-started JVM behind (fixtures would leak it): stop what we launched.
            if _pid_alive(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                self._wait_dead([proc.pid], 30.0)
                if isinstance(exc, CassandraError):
                    raise CassandraError(f"{exc}\n(node {k}, pid {proc.pid}, was killed)") from None
            raise
        took = time.monotonic() - t0
        gossip = f" (CQL after {t_cql:.1f} s, gossip converged after {took:.1f} s)" if self.nodes > 1 else ""
        self.log(f"node {k} ready in {took:.1f} s{gossip}")

    def wait_cql(self, k: int, timeout: float = DEFAULT_START_TIMEOUT) -> float:
        """Wait until node ``k`` answers CQL OPTIONS; return seconds waited.

        Fails fast if the node's process exits, and after ``timeout`` seconds; both errors carry
        the tail of the node's logs.
        """
        self._check_node(k)
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            if self.cql_ready(k, timeout=2.0):
                return time.monotonic() - t0
            launched = self._procs.get(k)
            # A child we just forked may not have exec'd java yet (its cmdline is still ours),
            # so trust our own process handle before the pid-file check.
            if (launched is None or launched.poll() is not None) and self.pid(k) is None:
                raise CassandraError(f"node {k} ({self.address(k)}:{self.port}) is not running{self._logs_hint(k)}")
            if time.monotonic() >= deadline:
                raise CassandraError(
                    f"node {k} ({self.address(k)}:{self.port}) did not answer "
                    f"CQL within {timeout:.0f} s{self._logs_hint(k)}"
                )
            time.sleep(0.5)

    def wait_gossip(self, k: int, timeout: float = 60.0, offsets: dict[int, int] | None = None) -> float:
        """Wait until node ``k`` and every other running node see each other UP; return seconds.

        A node answers CQL as soon as it has joined, a second or two before gossip has told it
        (and the others) who is alive; a QUORUM request sent in that window fails as
        Unavailable. This waits on each node's own failure-detector view, read from the
        "InetAddress … is now UP/DOWN" lines of the system logs written after ``offsets``
        (byte offsets per node, taken just before node ``k`` was launched; default: whole logs).
        A no-op for a one-node cluster.
        """
        self._check_node(k)
        offsets = offsets or {}
        me = self.address(k)
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            others = [j for j in range(1, self.nodes + 1) if j != k and self.pid(j) is not None]
            mine = _gossip_view(self.system_log(k), offsets.get(k, 0))
            missing = [f"node {k} does not see node {j} UP" for j in others if mine.get(self.address(j)) != "UP"]
            missing += [
                f"node {j} does not see node {k} UP"
                for j in others
                if _gossip_view(self.system_log(j), offsets.get(j, 0)).get(me) != "UP"
            ]
            if not missing:
                return time.monotonic() - t0
            if self.pid(k) is None:
                raise CassandraError(f"node {k} ({me}) died while joining{self._logs_hint(k)}")
            if time.monotonic() >= deadline:
                raise CassandraError(
                    f"gossip did not converge within {timeout:.0f} s: {'; '.join(missing)}{self._logs_hint(k)}"
                )
            time.sleep(0.5)

    def _logs_hint(self, k: int) -> str:
        return (
            f"\n--- tail of {self.system_log(k)} ---\n{_tail_file(self.system_log(k))}"
            f"\n--- tail of {self.stdout_log(k)} ---\n{_tail_file(self.stdout_log(k), 20)}"
        )

    def kill_node(self, k: int) -> bool:
        """SIGKILL node ``k`` (no drain); return False if it was not running."""
        self._check_node(k)
        pid = self.pid(k)
        if pid is None:
            self.log(f"node {k} is not running")
            return False
        os.kill(pid, signal.SIGKILL)
        self._wait_dead([pid], 30.0)
        self.log(f"node {k} (pid {pid}) killed")
        return True

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """SIGTERM every running node (Cassandra drains), SIGKILL those left after ``timeout``.

        Idempotent; removes the pid files.
        """
        pids = {k: self.pid(k) for k in range(1, self.nodes + 1)}
        running = {k: p for k, p in pids.items() if p is not None}
        if not running:
            self.log(f"no node running in {self.run_dir}")
        for k, pid in running.items():
            self.log(f"stopping node {k} (pid {pid}) …")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        t0 = time.monotonic()
        left = self._wait_dead(list(running.values()), timeout)
        for pid in left:
            k = next(k for k, p in running.items() if p == pid)
            self.log(f"node {k} (pid {pid}) still running after {timeout:.0f} s: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._wait_dead(left, 30.0)
        if running:
            self.log(f"stopped {len(running)} node(s) in {time.monotonic() - t0:.1f} s")
        for k in range(1, self.nodes + 1):
            with contextlib.suppress(FileNotFoundError):
                self.pid_file(k).unlink()
        self._procs.clear()

    @staticmethod
    def _wait_dead(pids: list[int], timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        left = [p for p in pids if _pid_alive(p)]
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = [p for p in left if _pid_alive(p)]
        return left

    def _check_node(self, k: int) -> None:
        if not 1 <= k <= self.nodes:
            raise CassandraError(f"node must be 1..{self.nodes}, got {k}")

    def __enter__(self) -> CassandraCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_LOGBACK = """\
<configuration scan="false">
  <!-- Written by ops/cassandractl.py. -->
  <appender name="SYSTEMLOG" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>{log}/system.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>{log}/system.log.%i.zip</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder>
      <pattern>%-5level [%thread] %date{{ISO8601}} %logger{{1}} - %msg%n</pattern>
    </encoder>
  </appender>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <filter class="ch.qos.logback.classic.filter.ThresholdFilter">
      <level>WARN</level>
    </filter>
    <encoder>
      <pattern>%-5level [%thread] %date{{ISO8601}} %logger{{1}} - %msg%n</pattern>
    </encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <root level="INFO">
    <appender-ref ref="SYSTEMLOG"/>
    <appender-ref ref="STDOUT"/>
  </root>
</configuration>
"""


# --------------------------------------------------------------------------------------------
# CLI


def _cli() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ops/cassandractl.py",
        description="Fetch and run a real Apache Cassandra 5.0 (jars from Maven Central, Java 17) "
        "as a local test cluster on 127.0.0.1..127.0.0.N.",
        epilog=f"Environment: ALPR_CACHE_DIR (jar cache root, default ~/.cache/alpr), "
        f"ALPR_CASSANDRA_VERSION (default {DEFAULT_VERSION}), JAVA_HOME. "
        f"Datacenter name is '{DATACENTER}' (NetworkTopologyStrategy {{'{DATACENTER}': 3}}). "
        f"Ports from --port P: CQL P on every 127.0.0.K, internode P-2042, JMX "
        f"P-1843+K-1 on 127.0.0.1. Logs: RUN_DIR/nodeK/logs/system.log.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    sub.add_parser("fetch", help="download the Cassandra jars into the cache (once)")

    def with_dir(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--dir",
            required=True,
            type=Path,
            metavar="RUN_DIR",
            help="cluster state folder (config, data, logs, pid files)",
        )
        return sp

    sp = with_dir(sub.add_parser("start", help="start a cluster (no-op if already running)"))
    sp.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    sp.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"CQL port on every node (default {DEFAULT_PORT})")
    sp.add_argument("--heap", default=DEFAULT_HEAP, help=f"heap per node (default {DEFAULT_HEAP})")
    sp.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT,
        help=f"seconds to wait for each node's CQL (default {DEFAULT_START_TIMEOUT:.0f})",
    )

    sp = with_dir(sub.add_parser("stop", help="stop every node (SIGTERM, SIGKILL after --timeout)"))
    sp.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT,
        help=f"seconds before SIGKILL (default {DEFAULT_STOP_TIMEOUT:.0f})",
    )

    with_dir(sub.add_parser("status", help="per node: process alive, CQL answering"))

    sp = with_dir(sub.add_parser("kill", help="SIGKILL one node (fault tests)"))
    sp.add_argument("--node", type=int, required=True, metavar="K")

    sp = with_dir(sub.add_parser("start-node", help="restart one node with its existing data"))
    sp.add_argument("--node", type=int, required=True, metavar="K")
    sp.add_argument("--timeout", type=float, default=DEFAULT_START_TIMEOUT)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _cli().parse_args(argv)
    try:
        if args.cmd == "fetch":
            lib = fetch()
            print(f"Cassandra {cassandra_version()} jars in {lib}")
            return 0
        if args.cmd == "start":
            c = CassandraCluster(args.dir, nodes=args.nodes, base_port=args.port, heap=args.heap)
            c.start(timeout=args.timeout)
            print(f"contact points {','.join(c.contact_points)} port {c.port} datacenter {c.datacenter}")
            return 0
        cluster_file = Path(args.dir).expanduser() / CLUSTER_FILE
        if args.cmd == "stop" and not cluster_file.is_file():
            print(f"no cluster in {args.dir} (nothing to stop)")
            return 0
        c = CassandraCluster.from_run_dir(args.dir)
        if args.cmd == "stop":
            c.stop(timeout=args.timeout)
            return 0
        if args.cmd == "status":
            states = c.status()
            for s in states:
                print(s.line())
            return 0 if all(s.alive and s.cql for s in states) else 3
        if args.cmd == "kill":
            c.kill_node(args.node)
            return 0
        if args.cmd == "start-node":
            c.start_node(args.node, timeout=args.timeout)
            return 0
    except CassandraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
