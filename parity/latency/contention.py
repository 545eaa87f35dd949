"""How much other work shared the cores while latency was timed, and when
that makes the figures unreliable.

The load average alone cannot tell: it counts this process's own threads
(one per core while timing) and, at the start of a certificate's latency
step, the evaluation that just ran. So the timing is bracketed by two
readings of the kernel's CPU counters (/proc/stat, Linux) and of this
process's own CPU time: what the cores spent busy beyond this process is
other work (steal time of a virtual machine included). Without /proc/stat,
and in records made before this measure existed, the 1-minute load average
per core is the fallback, with a threshold above what the benchmark itself
can cause.
"""
from __future__ import annotations

import os
import time
from typing import Optional

# Other processes keeping more than this share of every core busy on average
# slow the timed paths unevenly (a path timed while they ran loses): the
# comparison between paths is then unreliable.
MAX_OTHER_PER_CORE = 0.25
# Fallback on the 1-minute load average per core: this process alone can
# bring it to about 1 (one thread per core), so only well above that does it
# show other work.
MAX_LOAD_PER_CORE = 1.5


def _busy_seconds() -> Optional[float]:
    """CPU seconds all cores have spent busy since boot (None off Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    ticks = [int(v) for v in fields[1:9]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def reading() -> dict:
    """A snapshot to pass to `other_load` after the timed work."""
    return {"wall": time.perf_counter(), "busy": _busy_seconds(), "own": _own_seconds()}


def other_load(start: dict, end: Optional[dict] = None) -> Optional[dict]:
    """Cores kept busy by other work between two readings, on average (None
    where the counters cannot be read)."""
    end = end or reading()
    wall = end["wall"] - start["wall"]
    if start["busy"] is None or end["busy"] is None or wall <= 0:
        return None
    other = max(0.0, (end["busy"] - start["busy"]) - (end["own"] - start["own"]))
    cores = os.cpu_count() or 1
    return {"cores_busy": round(other / wall, 3), "per_core": round(other / wall / cores, 3), "cpu_count": cores,
            "seconds": round(wall, 2), "source": "/proc/stat busy time minus this process's CPU time"}


def caution(data: dict) -> Optional[str]:
    """One sentence when the recorded contention makes the latency figures of
    `data` (parity.latency.bench.measure_latency's result) unreliable, else None."""
    env = data.get("environment", {})
    other = env.get("other_load")
    if other is not None:
        if other["per_core"] <= MAX_OTHER_PER_CORE:
            return None
        return (f"UNRELIABLE: other work kept {other['cores_busy']:.2f} of {other['cpu_count']} cores busy on "
                f"average while the paths were timed (above {MAX_OTHER_PER_CORE:g} per core); paths timed while "
                "it ran are slowed more than others, so do not compare these figures; rerun on an idle machine")
    loads = [v[0] for v in (env.get("load_average"), env.get("load_average_end")) if v]
    cores = env.get("cpu_count") or 1
    if not loads or max(loads) / cores <= MAX_LOAD_PER_CORE:
        return None
    return (f"UNRELIABLE: load average {max(loads):.2f} on {cores} cores (above {MAX_LOAD_PER_CORE:g} per core) "
            "while the paths were timed: other work slowed them unevenly, so do not compare these figures; rerun "
            "on an idle machine")
