"""Times secretgate's SecretScanner on the files written by gate's bench_files example.

Same configuration as gate's benchmark: every built-in pattern, entropy off (the proxy default
of both tools), and the same 100 known values harvested from the environment.
"""
import os
import statistics
import sys
import time

out = sys.argv[1]
with open(os.path.join(out, "known-values.env")) as f:
    for line in f:
        k, _, v = line.strip().partition("=")
        os.environ[k] = v

from secretgate.secrets.scanner import SecretScanner  # noqa: E402

t = time.perf_counter()
scanner = SecretScanner(enable_entropy=False, enable_known_values=True)
print(f"secretgate: {len(scanner._patterns)} patterns compiled in {time.perf_counter() - t:.3f}s")

for name in ["llm-anthropic-64KiB.json", "llm-anthropic-1MiB.json", "llm-anthropic-10MiB.json",
             "llm-openai-1MiB.json", "adversarial-1MiB.txt"]:
    with open(os.path.join(out, name), encoding="utf-8") as f:
        text = f.read()
    runs = 1 if len(text) > 4 << 20 else 3
    times = []
    found = 0
    for _ in range(runs):
        t = time.perf_counter()
        found = len(scanner.scan(text))
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"secretgate: {name:28} {len(text):>9} bytes  median {med * 1000:>10.1f}ms  "
          f"{len(text) / med / 1e6:>8.2f} MB/s  findings {found}")
try:
    import resource
    print(f"secretgate: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB")
except ImportError:
    pass
