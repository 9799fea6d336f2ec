"""The machine a benchmark ran on, printed with every figure."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe_machine() -> str:
    """CPU model, cores, RAM, load average, Python and torch versions (and torch's thread count)."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, {ram:.0f} GiB RAM, load average {load}; Python "
            f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
