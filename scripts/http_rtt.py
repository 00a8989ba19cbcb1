"""Median keep-alive round trip of GET paths on a running `encore serve` (stdlib only), to split
the server's overhead into HTTP and handler time next to /metrics' server-side histograms.

python3 scripts/http_rtt.py PORT PATH [PATH ...]
"""
import http.client
import statistics
import sys
import time

port, paths = int(sys.argv[1]), sys.argv[2:]
c = http.client.HTTPConnection("127.0.0.1", port)
for p in paths:
    xs = []
    for i in range(3000):
        a = time.perf_counter()
        c.request("GET", p)
        r = c.getresponse()
        r.read()
        if i >= 500:  # warm-up
            xs.append((time.perf_counter() - a) * 1e6)
    print(f"{p}: median {statistics.median(xs):.0f} us over {len(xs)}")
