"""redis-py's Lock as a peer in tollgate's benchmark.

Usage: python3 redis_py_lock.py REDIS_URL CYCLES

Runs CYCLES acquire + release cycles of one lock (after a warm-up) and
prints the loop's wall seconds and this process's CPU seconds for it.
Exits 3 with the reason on stderr when the `redis` package is missing.
"""

import resource
import sys
import time

try:
    import redis
except ImportError:
    sys.stderr.write("the Python package redis is not installed (pip install redis)\n")
    sys.exit(3)


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    url, cycles = sys.argv[1], int(sys.argv[2])
    client = redis.Redis.from_url(url)
    for _ in range(10):
        lock = client.lock("py-bench", timeout=10)
        lock.acquire(blocking=False)
        lock.release()
    cpu, start = cpu_seconds(), time.perf_counter()
    for _ in range(cycles):
        lock = client.lock("py-bench", timeout=10)
        if not lock.acquire(blocking=False):
            raise SystemExit("the lock was held")
        lock.release()
    print(time.perf_counter() - start, cpu_seconds() - cpu)


if __name__ == "__main__":
    main()
