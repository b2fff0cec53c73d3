"""Why one Kafka topic layout delivers slower than another: the daemon's fetches, traced.

    python bench/kafka_trace.py [--events 200000] [--partitions 4] [--layout keyed --layout files]

Runs the ``kafka`` / ``kafka-files`` row (bench/scenarios.py) once per layout with measurement-only hooks
in the daemon's main process (bench/trace/sitecustomize.py: no product code changes) and prints, per
layout: the delivery rate; per partition, its messages and when its last message was fetched (seconds
after the first delivery); messages per fetch, and the rate at which messages were fetched, while 4, 3,
2 or 1 partitions still had messages; how long the main process waited for the brokers (fetches with a
timeout) and for its workers' answers; the pauses. Writes ``<out>/kafka-trace.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import dataset  # noqa: E402
import scenarios  # noqa: E402


def summarise(row: scenarios.Row, trace: dict[str, Any]) -> dict[str, Any]:
    """What the trace says about one run (see the module docstring)."""
    first = row.extra["simulator"].get("first_ingest_at") or 0.0
    last = row.extra["simulator"].get("last_ingest_at") or 0.0
    per = row.extra["topic"]["per_partition"]
    fetches = [f for f in trace["fetch"] if f[3]]
    drained = {}
    for t0, dt, _timeout, counts in fetches:
        for p in counts:
            drained[p] = t0 + dt
    # phases: how many partitions still had messages to come, by the time each fetch ended
    phases: dict[int, dict[str, float]] = {}
    for t0, dt, _timeout, counts in fetches:
        left = sum(1 for end in drained.values() if end >= t0 + dt)
        ph = phases.setdefault(left, {"fetches": 0, "messages": 0, "from": t0 + dt, "to": t0 + dt})
        ph["fetches"] += 1
        ph["messages"] += sum(counts.values())
        ph["from"], ph["to"] = min(ph["from"], t0 + dt), max(ph["to"], t0 + dt)
    waits = [f[1] for f in trace["fetch"] if f[2] > 0]
    answers = trace["answer"]
    return {
        "delivery_span_s": round(last - first, 3),
        "events_per_delivery_s": round(row.events / (last - first)) if last > first else None,
        "partitions": [
            {
                "partition": int(p),
                "messages": per[int(p)]["messages"],
                "mean_type_run": per[int(p)]["mean_type_run"],
                "last_fetched_s": round(end - first, 2),
            }
            for p, end in sorted(drained.items(), key=lambda kv: int(kv[0]))
        ],
        "phases": {
            str(left): {
                "fetches": int(ph["fetches"]),
                "messages": int(ph["messages"]),
                "messages_per_fetch": round(ph["messages"] / ph["fetches"]),
                "seconds": round(ph["to"] - ph["from"], 2),
                "messages_per_s": round(ph["messages"] / (ph["to"] - ph["from"]))
                if ph["to"] > ph["from"]
                else None,
            }
            for left, ph in sorted(phases.items(), reverse=True)
        },
        "fetch_calls": len(trace["fetch"]),
        "fetch_waits": len(waits),
        "fetch_wait_s": round(sum(waits), 3),
        "worker_answers": len(answers),
        "worker_wait_s": round(sum(a[1] for a in answers), 3),
        "batch_size_median": statistics.median(a[2] for a in answers) if answers else None,
        "batches_of_one_partition": sum(1 for a in answers if a[3] == 1),
        "pauses": len(trace["pause"]),
    }


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/kafka_trace.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--partitions", type=int, default=scenarios.KAFKA_PARTITIONS)
    p.add_argument("--layout", action="append", choices=("keyed", "files", "mixed"), default=[])
    p.add_argument("--out", type=Path, default=BENCH / "out")
    args = p.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)
    ds = dataset.ensure(out, 1, args.events)
    dataset.warm(ds)
    ctx = scenarios.Context(out=out, kafka_partitions=args.partitions)
    results = {}
    for layout in args.layout or ["keyed", "files"]:
        where = out / "trace" / f"{layout}-p{args.partitions}"
        for old in where.glob("trace-*.json"):
            old.unlink()
        os.environ["BENCH_KAFKA_TRACE"] = str(where)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(BENCH / "trace"), os.environ.get("PYTHONPATH")])
        )
        name = {"keyed": "kafka", "files": "kafka-files"}.get(layout, f"kafka-{layout}")
        row = scenarios._kafka_row(ctx, ds, f"trace-{layout}-p{args.partitions}", name, layout)
        os.environ.pop("BENCH_KAFKA_TRACE")
        traces = sorted(where.glob("trace-*.json"))
        if row is None or not row.ok or len(traces) != 1:
            print(f"{layout}: no trace ({row and row.notes}, {len(traces)} files)", file=sys.stderr)
            return 1
        results[layout] = summarise(row, json.loads(traces[0].read_text())) | {
            "row": row.run.as_dict() if row.run else None
        }
        print(json.dumps({layout: {k: v for k, v in results[layout].items() if k != "row"}}, indent=1))
    (out / "kafka-trace.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
