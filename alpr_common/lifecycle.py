"""Start-up and shutdown building blocks shared by the hub, the bridge and the node.

Each process registers what it opens on an exit stack (``contextlib.ExitStack`` or
``AsyncExitStack``) right after opening it; a start-up that fails part-way then closes
exactly what was opened, in reverse order, and a normal shutdown closes the same stack.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server


@contextlib.contextmanager
def metrics_endpoint(port: int, host: str, registry: CollectorRegistry) -> Iterator[int]:
    """Serve ``/metrics`` of ``registry`` on ``host:port`` (0: a free port); yields the bound port."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def cancel_task(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait for it to end (its errors are of no interest now)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def in_thread(fn: Callable[[], object]) -> None:
    """Run a blocking close (e.g. ``Cluster.shutdown``) without blocking the event loop."""
    await asyncio.get_running_loop().run_in_executor(None, fn)
