"""Shared helpers for the benchmarks: timing with warm-up and medians, tables, machine info,
and the load watch.

The load watch: a figure measured beside other work is not a figure (a busy machine once
turned a 1.71× bf16 gain into a recorded 1.01×). Importing this module samples the CPU for a
second and refuses to start when other processes use more than ``BUSY_CORES`` cores
(``BENCH_ALLOW_BUSY=1`` runs anyway, flagged); at exit the benchmark prints how many cores
other processes used on average while it ran, with the load averages before and after, and
flags the run when that exceeds ``BUSY_CORES``. Subprocesses a benchmark starts inherit the
watch and neither check nor print.
"""

from __future__ import annotations

import atexit
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BUSY_CORES = 0.3  # cores other processes may use on average before a run is refused or flagged
_WATCH_ENV = "BENCH_LOAD_WATCH"  # set by the top benchmark process: its subprocesses stay quiet


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (/proc/stat; None elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadWatch:
    """Cores used by other processes, on average, since ``start`` (or a ``sample``)."""

    def __init__(self) -> None:
        self.loadavg = os.getloadavg()
        self.reported = False
        self.wall, self.busy, self.own = time.monotonic(), _busy_cpu_seconds(), _own_cpu_seconds()

    def others(self) -> float | None:
        """Average cores busy outside this process (and its waited-for children) so far."""
        busy = _busy_cpu_seconds()
        if busy is None or self.busy is None:
            return None
        wall = max(1e-3, time.monotonic() - self.wall)
        return max(0.0, (busy - self.busy) - (_own_cpu_seconds() - self.own)) / wall

    def report(self, *, mark: bool = False) -> str:
        """The load line every benchmark ends with (flagged when the machine was busy);
        ``mark``: the benchmark writes it itself (into its Markdown), so the exit does not."""
        self.reported = self.reported or mark
        others = self.others()
        after = os.getloadavg()
        avg = (
            f"load average before {self.loadavg[0]:.2f} / {self.loadavg[1]:.2f}, after {after[0]:.2f} / {after[1]:.2f}"
        )
        if others is None:
            return f"load: {avg} (no /proc/stat: other processes' share unknown)"
        line = f"load: other processes used {others:.2f} cores on average during this run; {avg}"
        if others > BUSY_CORES:
            line += f"\n\n**⚠ BUSY MACHINE** (over {BUSY_CORES} cores used beside the benchmark): do not record these figures"
        return line


def _start_watch() -> LoadWatch | None:
    """The top benchmark process: refuse a busy machine, then watch until exit."""
    if os.environ.get(_WATCH_ENV):
        return None
    os.environ[_WATCH_ENV] = "1"
    probe = LoadWatch()
    time.sleep(1.0)
    others = probe.others()
    if others is not None and others > BUSY_CORES and not os.environ.get("BENCH_ALLOW_BUSY"):
        sys.exit(
            f"bench: other processes use {others:.2f} cores (over {BUSY_CORES}; load average "
            f"{os.getloadavg()[0]:.2f}): stop them and rerun, or set BENCH_ALLOW_BUSY=1 to run flagged"
        )
    watch = LoadWatch()
    atexit.register(lambda: None if watch.reported else print("\n" + watch.report(), flush=True))
    return watch


WATCH = _start_watch()


def median_time(
    fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1, sync: Callable[[], None] | None = None
) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` calls (seconds)."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def publish(lines: list[str], out: str | None) -> None:
    """Print a benchmark's Markdown ``lines`` with the load line at the end, and write them to
    ``out`` too when given."""
    if WATCH is not None:
        lines = [*lines, "", WATCH.report(mark=True)]
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
