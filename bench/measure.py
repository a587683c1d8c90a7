"""Run one command as this (fresh) process's only child and report on it alone.

    python bench/measure.py RESULT.json STDOUT_FILE -- CMD [ARG...]

Writes RESULT.json: exit status, the Unix time just before the child was launched, wall seconds,
user/system CPU seconds and the child's peak resident memory (``getrusage(RUSAGE_CHILDREN)``, which
covers exactly one run because this helper runs nothing else), and how busy the rest of the machine was
meanwhile (``others_cores``: CPU seconds of all other processes, from /proc/stat, per wall second). The child's stdout goes to STDOUT_FILE;
its stderr to STDOUT_FILE + ".err".
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") != 2:
        sys.exit(__doc__)
    result, stdout, cmd = Path(argv[0]), Path(argv[1]), argv[3:]
    with open(stdout, "wb") as out, open(f"{stdout}.err", "wb") as err:
        busy0 = busy_seconds()
        launch_unix = time.time()
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, stdout=out, stderr=err)
        wall = time.perf_counter() - t0
        busy = busy_seconds() - busy0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = usage.ru_utime + usage.ru_stime
    result.write_text(json.dumps({
        "rc": rc,
        "launch_unix": launch_unix,
        "wall_s": round(wall, 4),
        "user_s": round(usage.ru_utime, 3),
        "sys_s": round(usage.ru_stime, 3),
        "max_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "others_cores": round(max(0.0, busy - own) / wall, 2) if wall > 0 else None,
    }) + "\n")


if __name__ == "__main__":
    main()
