"""`python -m workers.ops.liveness FILE --max-age SECONDS`: the liveness probe of a worker
or beat container. Exit 0 if FILE was written less than SECONDS ago, 1 with the reason
otherwise. It imports neither Django nor Celery: a probe every few seconds must cost next
to nothing (workers/runtime/heartbeat.py writes the files)."""

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("path")
    parser.add_argument("--max-age", type=float, required=True, help="seconds")
    options = parser.parse_args(argv)
    try:
        age = time.time() - os.stat(options.path).st_mtime
    except FileNotFoundError:
        sys.stderr.write(f"not alive: no heartbeat at {options.path} yet\n")
        return 1
    if age > options.max_age:
        sys.stderr.write(f"not alive: last heartbeat {age:.0f}s ago "
                         f"(limit {options.max_age:.0f}s)\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
