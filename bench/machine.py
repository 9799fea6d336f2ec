"""The machine a benchmark ran on, its load, and how figures are summarised (median, spread, n)."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path


def load_average() -> str:
    """The 1, 5 and 15-minute load averages (2 cores: above 2, other work is queueing for the CPU)."""
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def spread(values: Sequence[float], unit: str = "", digits: int = 2) -> str:
    """The median with the range of the values and their count: `1.23 s (1.10-1.50, n=5)`."""
    unit = f" {unit}" if unit and unit != "x" else unit
    return (f"{statistics.median(values):.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f}, "
            f"n={len(values)})")


def describe_machine() -> str:
    """CPU model, cores, RAM, load average, Python and torch versions (and torch's thread count)."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {ram:.0f} GiB RAM, load average {load_average()}; Python "
            f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
