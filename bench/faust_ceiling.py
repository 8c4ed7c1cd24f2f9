"""What Faust alone can move on this machine: ``python -m bench.faust_ceiling --kafka HOST:PORT --topic T --expect N``.

A Faust app with one agent on one topic, consuming the way the worker's ``detect`` agent does
(``streams/app.py``): the worker's consuming settings (:func:`streams.worker.settings.consuming_options`: raw key and
value serializers, an in-memory store, ``consumer_auto_offset_reset="earliest"``), ``stream.take_events``
with the worker's batch size and window, ``value_type=bytes``, one agent instance. Nothing else runs in it: no
table, no other agent, no sends, no web server. Two modes:

- ``noop``: the agent only counts the events of each batch. With one Kafka record per event this is the
  ceiling of any Faust pipeline on this machine, whatever its agents do;
- ``decode``: the agent also runs :func:`schemas.codec.decode` (the validating decode every haltwatch agent
  does) on every value.

:mod:`bench.replay_throughput` runs both beside the raw ``aiokafka`` rate and the real worker's rate, so that
what the framework costs is told apart from what haltwatch's agents cost.

The app joins a consumer group of its own (``--app-id``, a fresh one by default), so it reads the topic from
its first offset and never disturbs a worker's group (``{prefix}-worker``, ``{prefix}-store``). The clock and
the CPU clock start when the first batch reaches the agent (as for the raw rate, the first batch's own filling,
at most one window, is not timed) and stop once ``--expect`` records were read. Then it prints one line,
``FAUST_CEILING {json}`` with ``records``, ``seconds`` and ``cpu_s`` (CPU time of the whole process over the
same interval), and exits. Faust's own command line is not used (it would take over the arguments): the
arguments are parsed here and the app is run by ``faust.worker.Worker``, as ``haltwatch worker`` does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import faust
import orjson

from schemas.codec import SchemaError, decode
from streams.worker.settings import WorkerSettings, consuming_options

RESULT = "FAUST_CEILING "
"""Prefix of the result line on stdout (the rest is JSON)."""
MODES = ("noop", "decode")
WORKER_GROUP_SUFFIXES = ("-worker", "-store")
"""The consumer groups of ``haltwatch worker`` are ``{prefix}-worker`` and ``{prefix}-store``: never join one."""


def create_app(kafka: str, topic: str, partitions: int, app_id: str, datadir: str, mode: str, expect: int,
               batch: int, within_s: float) -> faust.App:
    """The app (nothing connects until a worker starts it); its agent stops the process once it read ``expect``."""
    app = faust.App(
        app_id,
        **consuming_options(kafka, partitions),
        topic_replication_factor=1,
        web_enabled=False,
        datadir=datadir,
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes, partitions=partitions)
    validate = mode == "decode"

    @app.agent(source, concurrency=1, name="ceiling")
    async def ceiling(stream: Any) -> AsyncIterator[None]:
        records = bad = 0
        started = cpu_started = 0.0
        async for events in stream.take_events(batch, within=within_s):
            if records >= expect:  # reported; the shutdown is on its way
                yield None
                continue
            if not records:
                started, cpu_started = time.perf_counter(), time.process_time()
            records += len(events)
            if validate:
                for event in events:
                    try:
                        decode(event.value)
                    except SchemaError:
                        bad += 1
            if records >= expect:
                result = {"mode": mode, "records": records, "seconds": time.perf_counter() - started,
                          "cpu_s": time.process_time() - cpu_started, "bad": bad, "app_id": app_id,
                          "peak_mb": peak_mb()}
                print(RESULT + orjson.dumps(result).decode(), flush=True)
                os.kill(os.getpid(), signal.SIGTERM)  # the worker's own graceful shutdown
            yield None

    return app


def peak_mb() -> float:
    """This process's VmHWM in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: Sequence[str] | None = None) -> int:
    defaults = WorkerSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kafka", required=True, help="bootstrap server, HOST:PORT")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True, help="records to read (the whole topic)")
    parser.add_argument("--mode", choices=MODES, default="noop")
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument("--batch", type=int, default=defaults.detect_batch, help="take_events batch (worker's)")
    parser.add_argument("--within", type=float, default=defaults.detect_within_s,
                        help="take_events window, seconds (worker's)")
    parser.add_argument("--app-id", help="Faust app id = consumer group (default: a fresh one)")
    args = parser.parse_args(argv)
    app_id = args.app_id or f"bench-faust-ceiling-{args.mode}-{uuid.uuid4().hex[:8]}"
    if app_id.endswith(WORKER_GROUP_SUFFIXES):
        parser.error(f"--app-id {app_id} could be a haltwatch worker's consumer group; choose another")
    if args.expect <= 0:
        parser.error("--expect must be positive")
    from faust.worker import Worker

    datadir = tempfile.mkdtemp(prefix="haltwatch-faust-ceiling-")
    try:
        app = create_app(args.kafka, args.topic, args.partitions, app_id, datadir, args.mode, args.expect,
                         args.batch, args.within)
        # stdout is the result line's alone: by default the worker turns it into log records on stderr, and
        # writes its spinner's terminal codes to it
        worker = Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False, stdout=sys.stderr)
        worker.execute_from_commandline()
    except SystemExit as exc:  # execute_from_commandline always ends with one
        return int(exc.code or 0)
    finally:
        shutil.rmtree(datadir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
