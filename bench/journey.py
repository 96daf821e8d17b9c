"""Whole journeys through the five services, as `make run` starts them, beside raw Kafka on the same broker.

    python -m bench.journey [--journeys 12] [--concurrent 3] [--poll-ms 20]

One run, on the stack from the environment (`eval "$(STACK=test deploy/local/stack.sh env)"`), measures:

1. Raw baseline (`bench.hop.measure_raw` on a fresh `bench.raw.*` topic): one aiokafka producer and group consumer in
   this process; the round-trip latency of a message at a steady 20/s, and messages/s flat out.
2. Journeys: the five services and the contact-centre simulator (acknowledging at once) as separate OS processes
   (`deploy/local/fleet.py`, the same command and environment as `make run`), then `--journeys` copies of the sample
   journey `make run` plays (`deploy/local/demo.py`: referral → panel → lead confirmed → case, network, assessment →
   plan endorsed → actions → review and exit, then a critical concern acknowledged by the contact centre), with
   `--concurrent` journeys at a time, after one warm-up journey that is not counted.

A journey is driven the way people drive it: an agency's Kafka message, then practitioners' HTTP calls, waiting
(polling the services' APIs every `--poll-ms`) for each service to react to the last. So a stage's latency is its HTTP
calls plus the Kafka hops and handlers it waits for, plus up to one poll interval. It prints, per stage, p50/p90/max
in milliseconds and the p50 as a multiple of the raw round trip's p50; and journeys per second; and writes
bench/results/journey.json. Nothing is asserted: these are measurements for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.hop import RESULTS, create_topics, delete_topics, latency_ms, machine, measure_raw, rate
from deploy.local.demo import play
from deploy.local.fleet import Fleet

PORT_BASE = 18500
# The journey's steps, in the order deploy/local/demo.py takes them; each stage ends with its step.
STAGES = (
    "agency sends the referral",
    "referral received",
    "panel accepts",
    "lead proposed",
    "manager confirms the lead",
    "case opened",
    "action network formed",
    "assessment completed",
    "plan written and endorsed",
    "plan implemented, action done",
    "review and exit",
    "critical concern raised",
    "contact centre acknowledged",
)


async def timed_journey(bootstrap: str, poll_seconds: float) -> list[float]:
    """One journey; the seconds each stage took."""
    marks = [time.monotonic()]

    async def mark(_: str) -> None:
        marks.append(time.monotonic())

    journey = await play(PORT_BASE, bootstrap, echo=lambda _: None, after_step=mark, poll_seconds=poll_seconds)
    if len(journey.steps) != len(STAGES):
        raise RuntimeError(f"the journey took {len(journey.steps)} steps, not {len(STAGES)}: {journey.steps}")
    return [after - before for before, after in itertools.pairwise(marks)]


async def measure_journeys(bootstrap: str, *, journeys: int, concurrent: int, poll_seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-journey-") as logs:
        fleet = Fleet(PORT_BASE, Path(logs), ack_after=0)
        fleet.start_all()
        try:
            deadline = time.monotonic() + 120
            while not await fleet.ready():
                if time.monotonic() > deadline:
                    raise RuntimeError("the services were not ready within 120 s")
                await asyncio.sleep(0.2)
            await timed_journey(bootstrap, poll_seconds)  # warm-up: connections, caches, consumer groups settled
            print("  warm-up journey done", flush=True)

            slots = asyncio.Semaphore(concurrent)

            async def one() -> list[float]:
                async with slots:
                    return await timed_journey(bootstrap, poll_seconds)

            started = time.monotonic()
            stages = await asyncio.gather(*(one() for _ in range(journeys)))
            elapsed = time.monotonic() - started
        finally:
            fleet.stop_all()
    totals = [sum(s) for s in stages]
    return {
        "journeys": journeys,
        "concurrent": concurrent,
        "poll_ms": round(poll_seconds * 1000),
        "journeys_per_s": rate(journeys, elapsed),
        "journey_ms": latency_ms(totals),
        "stages_ms": {name: latency_ms([s[n] for s in stages]) for n, name in enumerate(STAGES)},
    }


def print_report(results: dict[str, Any]) -> None:
    raw = results["raw"]
    raw_p50 = raw["steady"]["latency_ms"]["p50"]
    journeys = results["journeys"]
    print(f"\nRaw Kafka round trip at 20/s: p50 {raw_p50} ms, p99 {raw['steady']['latency_ms']['p99']} ms;")
    print(f"raw flat out: {raw['throughput']['end_to_end_per_s']:,.0f} messages/s")
    print(
        f"\nJourneys: {journeys['journeys']} ({journeys['concurrent']} at a time, polling every "
        f"{journeys['poll_ms']} ms): {journeys['journeys_per_s']} journeys/s; a whole journey p50 "
        f"{journeys['journey_ms']['p50']:,.0f} ms, max {journeys['journey_ms']['max']:,.0f} ms\n"
    )
    print(f"{'stage':<34}{'p50 ms':>10}{'p90 ms':>10}{'max ms':>10}{'p50 / raw p50':>16}")
    for name, stage in journeys["stages_ms"].items():
        ratio = stage["p50"] / raw_p50 if raw_p50 else float("nan")
        print(f"{name:<34}{stage['p50']:>10,.0f}{stage['p90']:>10,.0f}{stage['max']:>10,.0f}{ratio:>15,.0f}x")


async def bench(options: argparse.Namespace) -> dict[str, Any]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:30092")
    raw_topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    print("Raw Kafka baseline", flush=True)
    await create_topics(bootstrap, [raw_topic])
    try:
        raw = await measure_raw(bootstrap, raw_topic, per_second=20, seconds=5, flat=2000)
    finally:
        await delete_topics(bootstrap, [raw_topic])
    print("Journeys through the five services", flush=True)
    journeys = await measure_journeys(
        bootstrap, journeys=options.journeys, concurrent=options.concurrent, poll_seconds=options.poll_ms / 1000
    )
    return {"machine": machine(), "raw": raw, "journeys": journeys}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.journey")
    parser.add_argument("--journeys", type=int, default=12)
    parser.add_argument("--concurrent", type=int, default=3)
    parser.add_argument("--poll-ms", type=float, default=20)
    options = parser.parse_args()
    results = asyncio.run(bench(options))
    print_report(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "journey.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
