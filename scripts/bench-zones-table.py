#!/usr/bin/env python3
"""The table of `scripts/bench-cluster.sh zones`: one row per round and
cluster (direct: no relays; no-delay: relays that hold nothing; zones:
relays with the delay), each against the no-delay run of its own round.

    python3 scripts/bench-zones-table.py OUT_DIR DELAY JITTER
"""
import json
import pathlib
import re
import sys


def load(path):
    return json.loads(path.read_text())


def limit_row(limit, prefix):
    return next((r for r in limit["rows"] if r["what"].startswith(prefix)), None)


def leader(jsz, stream):
    for account in jsz.get("account_details") or []:
        for s in account.get("stream_detail") or []:
            if s["name"] == stream:
                return (s.get("cluster") or {}).get("leader", "?")
    return "?"


def relay_delay(lines):
    """The delay the relay with the most chunks applied (most of the
    replication): p50 / p99 in ms."""
    busiest = None
    for line in lines:
        m = re.search(r"(\d+) chunks.* p50 ([\d.]+) p99 ([\d.]+)", line)
        if m and (busiest is None or int(m[1]) > busiest[0]):
            busiest = (int(m[1]), float(m[2]), float(m[3]))
    return "-" if busiest is None else f"{busiest[1]:.2f} / {busiest[2]:.2f}"


def cores(cpu, prefix):
    return sum(c["cores"] for c in cpu if c["name"].startswith(prefix))


def row(out, name, base):
    steady = load(out / f"{name}-steady.json")
    limit = load(out / f"{name}-limit.json")
    jsz = load(out / f"{name}-jsz.json")
    relays = (out / f"{name}-relays.txt").read_text().splitlines()
    lat, blat = steady["latency_ms"], base["latency_ms"]
    paced = limit_row(limit, "jetstream paced")
    publish = limit_row(limit, "jetstream publish, 1 event(s)/msg")
    cpu = steady["cpu"]
    nats, relay = cores(cpu, "nats-"), cores(cpu, "relay-")
    weir = cores(cpu, "edge") + cores(cpu, "producer")
    total = sum(c["cores"] for c in cpu)
    v = steady["verify"]
    eps = steady["events_per_s"]
    return [
        name.split("-", 1)[0],
        name.split("-", 1)[1],
        leader(jsz, "WEIR_EVENTS"),
        f"{eps:,.0f}",
        f"{eps / base['events_per_s']:.2f}",
        f"{lat['p50']:.1f} / {lat['p99']:.1f}",
        f"{lat['p50'] / blat['p50']:.2f} / {lat['p99'] / blat['p99']:.2f}",
        f"{v['clients_ok']}/{v['clients']}",
        f"{paced['latency_ms']['p50']:.1f} / {paced['latency_ms']['p99']:.1f}"
        if paced and paced.get("latency_ms") else "-",
        f"{publish['events_per_s']:,.0f}" if publish else "-",
        relay_delay(relays),
        f"{100 * nats:.0f}%",
        f"{100 * weir:.0f}%",
        f"{100 * relay:.0f}%" if relays else "-",
        f"{100 * total:.0f}%",
    ]


def main():
    out, delay, jitter = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    rounds = sorted({p.name.split("-", 1)[0] for p in out.glob("*-steady.json")}, key=int)
    head = ["round", "cluster", "WEIR_EVENTS leader", "events/s", "÷ no-delay",
            "latency p50 / p99 ms", "÷ no-delay", "clients exact",
            "JetStream paced 10k/s stored → republished p50 / p99 ms",
            "JetStream publish (1 event a message, 256 in flight) events/s", "busiest relay's applied delay p50 / p99 ms",
            "CPU NATS (3 nodes)", "CPU edge + producer", "CPU relays", "CPU total (every process, load tool and relays too)"]
    print(f"zones: {delay} ± {jitter} each way between nodes; weir and clients at n1")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    paired = []
    for r in rounds:
        if not (out / f"{r}-no-delay-steady.json").exists():
            continue  # an unfinished round
        base = load(out / f"{r}-no-delay-steady.json")
        for name in ("direct", "no-delay", "zones"):
            if (out / f"{r}-{name}-steady.json").exists():
                print("| " + " | ".join(row(out, f"{r}-{name}", base)) + " |")
        if (out / f"{r}-zones-steady.json").exists():
            paired.append((base, load(out / f"{r}-zones-steady.json")))
    if paired:
        print(summary(paired))


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def summary(paired):
    """Zones against no-delay, the median over the rounds."""
    ratio = lambda f: median([f(z) / f(b) for b, z in paired])
    more = lambda f: median([f(z) - f(b) for b, z in paired])
    p50, p99 = (lambda r: r["latency_ms"]["p50"]), (lambda r: r["latency_ms"]["p99"])
    return (f"zones ÷ no-delay, median of {len(paired)} rounds: events/s "
            f"{ratio(lambda r: r['events_per_s']):.2f}, latency p50 {ratio(p50):.2f} "
            f"({more(p50):+.1f} ms), p99 {ratio(p99):.2f} ({more(p99):+.1f} ms)")


if __name__ == "__main__":
    main()
