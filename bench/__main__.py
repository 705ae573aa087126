"""`make bench`: every benchmark in turn, then one table of all figures.

    python -m bench [throughput latency replay newsletter]

Each runs in its own process (its own database, Redis db and workers), as it would on
its own; the combined figures go to bench/results/bench.json.
"""

import json
import subprocess
import sys
import time

from bench.harness import RESULTS, ROOT, machine, print_table

# bench.metrics (what metrics cost the workers) and bench.replication (what waiting for a
# Redis replica costs the outbox) run on their own: `python -m bench.metrics`.
BENCHMARKS = ("throughput", "latency", "replay", "redrive", "newsletter", "standard_tasks")


def main() -> None:
    names = sys.argv[1:] or BENCHMARKS
    started = time.monotonic()
    seconds = {}
    for name in names:
        print(f"== bench.{name}", flush=True)
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=ROOT, check=True)
        seconds[name] = round(time.monotonic() - began)
    figures = [row for name in names
               for row in json.loads((RESULTS / f"{name}.json").read_text())["figures"]]
    info = machine()
    print(f"\n== all figures ({info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}; "
          f"{time.monotonic() - started:.0f} s: "
          + ", ".join(f"{name} {took} s" for name, took in seconds.items()) + ")")
    print_table(figures)
    (RESULTS / "bench.json").write_text(json.dumps(
        {"machine": info, "seconds": round(time.monotonic() - started),
         "seconds_each": seconds, "figures": figures},
        indent=2))


if __name__ == "__main__":
    main()
