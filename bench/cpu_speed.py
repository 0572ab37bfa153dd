"""How fast this machine's CPU is right now: seconds for a fixed pure-Python loop (5 million multiply-adds), five
times. Printed beside suite timings, so that two timings on a shared machine can be compared (lower is faster).

python bench/cpu_speed.py
"""

import time


def loop_seconds(n: int = 5_000_000) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - start


if __name__ == "__main__":
    print("cpu speed (s per 5M-iteration loop, lower is faster):", " ".join(f"{loop_seconds():.3f}" for _ in range(5)))
