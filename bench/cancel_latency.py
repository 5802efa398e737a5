"""How fast a run stops when its client leaves, on a loaded machine: runs the disconnect and
browser tests (``job.cancel()``, a killed client process, a REST hang-up, a closed tab, the
Cancel button where the browser test has it) ``--repeats`` times while a second process keeps
the CPU busy with matrix products, and reports the median and worst seconds from the
client's action to a free engine, per way of leaving (figures the tests record in
``out/reliability/load.json``).

    .venv/bin/python bench/cancel_latency.py              # 5 repeats, with load
    .venv/bin/python bench/cancel_latency.py --no-load
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import ROOT, machine, table

LOAD = "import time, torch\nt = time.time()\na = torch.randn(1500, 1500)\nwhile time.time() - t < 3600: a @ a\n"
TESTS = ["tests/test_disconnect.py", "tests/test_browser.py"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-load", action="store_true", help="without the second CPU-heavy process")
    args = p.parse_args()
    figures = ROOT / "out" / "reliability" / "load.json"
    seen: dict[str, list[float]] = {}
    load = None if args.no_load else subprocess.Popen([sys.executable, "-c", LOAD])
    try:
        for i in range(args.repeats):
            figures.unlink(missing_ok=True)
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                cwd=ROOT,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"},
                capture_output=True,
                text=True,
            )
            print(f"run {i + 1}: {done.stdout.strip().splitlines()[-1]}", file=sys.stderr)
            for name, data in json.loads(figures.read_text()).items():
                if "engine_free_after_s" in data:
                    seen.setdefault(name, []).append(float(data["engine_free_after_s"]))
    finally:
        if load is not None:
            load.kill()
            load.wait()  # its CPU time counts as this benchmark's own (the load watch)
    rows = [[name, len(v), f"{statistics.median(v):.2f}", f"{max(v):.2f}"] for name, v in sorted(seen.items())]
    print(f"machine: {machine()}; {'with' if load else 'without'} a second CPU-heavy process\n")
    print(table(["way the client left", "runs", "median s to a free engine", "worst s"], rows))


if __name__ == "__main__":
    main()
