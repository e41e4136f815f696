"""`kaeru serve --workers N`: N server processes on one port (SO_REUSEPORT), one Prometheus
view across them (prometheus-client's multiprocess mode, files in a private directory).

Every process runs the related-items learner (unless disabled): they share the event shards
out between them (adserver.learning.worker),
so the learning is spread over the cores and one shopper's
events are still never learnt by two processes at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from types import FrameType

from adserver.config.settings import Settings

log = logging.getLogger(__name__)
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
STOP_SECONDS = 15.0


def _child(settings: Settings, index: int) -> None:
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s [{index}] %(name)s: %(message)s"
    )
    from adserver.app import create_app, run_server
    from adserver.runtime.listen import ListenError, open_listeners

    try:
        sockets = open_listeners(settings.host, settings.port, reuse_port=True)
    except ListenError as exc:  # taken since the parent checked it
        print(f"kaeru: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    run_server(create_app(settings), settings, reuse_port=True, sockets=sockets)


def serve_processes(settings: Settings, workers: int) -> int:
    """Run `workers` server processes until SIGINT/SIGTERM; returns an exit code."""
    metrics_dir = tempfile.mkdtemp(prefix="kaeru-metrics-")
    os.environ[METRICS_DIR_ENV] = metrics_dir  # children inherit it at start
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_child, args=(settings, n), name=f"kaeru-{n}")
        for n in range(workers)
    ]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGINT)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for child in children:
            child.start()
        print(
            f"kaeru: {workers} processes serving http://{settings.host}:{settings.port}", flush=True
        )
        for child in children:
            child.join()
            if not stopping:  # one died on its own: take the others down too
                log.error("server process %s exited with %s", child.name, child.exitcode)
                stop(signal.SIGTERM, None)
        for child in children:
            child.join(STOP_SECONDS)
            if child.is_alive():
                child.kill()
        return 0 if stopping else 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.environ.pop(METRICS_DIR_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
