#!/usr/bin/env python3
"""Summarizes parley-bench JSON lines (results.jsonl from bench_all.sh): one row per label,
each figure the median over that label's runs, as a Markdown table.

    tools/bench/summarize.py OUTDIR/results.jsonl
"""
import json
import statistics
import sys
from collections import OrderedDict


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def main(path):
    groups = OrderedDict()
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            j = json.loads(line)
            groups.setdefault(j.get("label") or j["scenario"], []).append(j)

    traffic = [(k, v) for k, v in groups.items() if v[0]["scenario"] in ("fanout", "rooms")]
    if traffic:
        print("| run | offered msg/s | deliveries/s | delivery ratio | e2e p50 ms | e2e p99 ms | e2e p99.9 ms | e2e max ms | ack p99 ms | server CPU % | server CPU s / M deliveries | server waiting for a CPU, s per s | generator CPU % | runs | load avg at start |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for label, runs in traffic:
            r = [x["result"] for x in runs]
            d = runs[0]["params"]["duration_s"]
            print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                label,
                ("--max, best " + ", ".join(fmt(x.get("best_rate"), 0) for x in runs)) if runs[0]["params"]["max"]
                else fmt(runs[0]["params"]["rate"], 0),
                fmt(med([x["deliveries_per_s"] for x in r]), 0),
                fmt(med([x["delivery_ratio"] for x in r]), 4),
                fmt(med([x["e2e"]["p50_ms"] for x in r]), 2),
                fmt(med([x["e2e"]["p99_ms"] for x in r]), 2),
                fmt(med([x["e2e"]["p999_ms"] for x in r]), 2),
                fmt(med([x["e2e"]["max_ms"] for x in r]), 2),
                fmt(med([x["ack"]["p99_ms"] for x in r]), 2),
                fmt(med([x["server"]["cpu_pct"] for x in r]), 0),
                fmt(med([get(x, "server", "cpu_s_per_million_deliveries") for x in r]), 2),
                fmt(med([(get(x, "server", "sched_wait_s") or 0) / d if get(x, "server", "sched_wait_s") is not None else None for x in r]), 2),
                fmt(med([x["generator_cpu_s"] / d * 100 for x in r]), 0),
                len(runs),
                ", ".join(get(x, "machine", "loadavg_at_start").split()[0] for x in runs if get(x, "machine", "loadavg_at_start"))))
        print()

    ingest = [(k, v) for k, v in groups.items() if v[0]["scenario"] == "ingest"]
    if ingest:
        print("| run | offered sends/s | best rate (--max) | committed sends/s | ack ratio | ack p50 ms | ack p99 ms | ack max ms | server CPU % | server CPU µs / send | server waiting for a CPU, s per s | runs | best rate per run |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for label, runs in ingest:
            r = [x["result"] for x in runs]
            d = runs[0]["params"]["duration_s"]
            print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                label, "search" if runs[0]["params"]["max"] else fmt(runs[0]["params"]["rate"], 0),
                fmt(med([x.get("best_rate") for x in runs]), 0),
                fmt(med([x["acks_per_s"] for x in r]), 0),
                fmt(med([x["ack_ratio"] for x in r]), 4),
                fmt(med([x["ack"]["p50_ms"] for x in r]), 2),
                fmt(med([x["ack"]["p99_ms"] for x in r]), 2),
                fmt(med([x["ack"]["max_ms"] for x in r]), 2),
                fmt(med([x["server"]["cpu_pct"] for x in r]), 0),
                fmt(med([get(x, "server", "cpu_us_per_send") for x in r]), 1),
                fmt(med([get(x, "server", "sched_wait_s") / d if get(x, "server", "sched_wait_s") is not None else None for x in r]), 2),
                len(runs), ", ".join(fmt(x.get("best_rate"), 0) for x in runs) if runs[0]["params"]["max"] else "–"))
        print()

    connect = [(k, v) for k, v in groups.items() if v[0]["scenario"] == "connect"]
    if connect:
        print("| run | handshakes + auth / s | p50 ms | p99 ms | max ms | failed | server CPU % | server CPU µs / connection | server waiting for a CPU, s per s | runs |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for label, runs in connect:
            r = [x["result"] for x in runs]
            d = runs[0]["params"]["duration_s"]
            print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                label, fmt(med([x["per_s"] for x in r]), 0),
                fmt(med([x["latency"]["p50_ms"] for x in r]), 2),
                fmt(med([x["latency"]["p99_ms"] for x in r]), 2),
                fmt(med([x["latency"]["max_ms"] for x in r]), 2),
                fmt(med([x["failed"] for x in r]), 0),
                fmt(med([x["server"]["cpu_pct"] for x in r]), 0),
                fmt(med([get(x, "server", "cpu_us_per_connection") for x in r]), 1),
                fmt(med([get(x, "server", "sched_wait_s") / d if get(x, "server", "sched_wait_s") is not None else None for x in r]), 2),
                len(runs)))
        print()

    idle = [(k, v) for k, v in groups.items() if v[0]["scenario"] == "idle"]
    if idle:
        print("| run | live connections | opened / s | server RSS before MiB | with connections MiB | RSS / connection KiB | idle server CPU % of a core | runs |")
        print("|---|---|---|---|---|---|---|---|")
        for label, runs in idle:
            r = [x["result"] for x in runs]
            print("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
                label, fmt(med([x["live"] for x in r]), 0),
                fmt(med([get(x, "open", "per_s") for x in runs]), 0),
                fmt(med([x["rss_before_bytes"] / 1048576 for x in r]), 1),
                fmt(med([x["rss_bytes"] / 1048576 for x in r]), 1),
                fmt(med([x["rss_per_connection_bytes"] / 1024 for x in r]), 2),
                fmt(med([x["idle_cpu_pct"] for x in r]), 2),
                len(runs)))
        print()


if __name__ == "__main__":
    main(sys.argv[1])
