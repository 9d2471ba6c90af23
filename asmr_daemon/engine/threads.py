"""CPU threads for torch: the engine's worker thread runs the model with ``[engine] cpu_threads``
intra-op threads; 0 (the default) chooses them as the machine's other processes leave room
(``CpuShare``).

What we measured (issue 14): torch's CPU kernels run their parallel loops on OpenMP, and libgomp
gives every OS thread that starts a parallel region its own team of threads. Once two teams exist
(the main thread ran the model once, then the worker runs it), libgomp counts more threads than
CPUs and throttles every team's spin-wait to a few spins, so each of the hundreds of small
parallel regions of a decoding step sleeps and wakes through the kernel: ``generate`` ran 2-2.7x
slower on the second thread (and ``OMP_WAIT_POLICY=PASSIVE`` made the first one as slow). With one
team, a worker thread runs as fast as the main thread. The daemon's main thread only loads the
model, which starts no team, so the worker's is the only one; don't run the model on two
long-lived threads of one process (benchmarks/engine.py measures each contender in a process of
its own for that reason).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# How often ``CpuShare`` looks at the other processes' load (a look reads /proc/stat: ~20 us); its
# first two looks come sooner, so a fresh engine on a quiet machine soon has every core.
INTERVAL_S = 0.5
FIRST_LOOK_S = 0.05
# A look after a longer pause (the engine sat idle) would average over the pause: it only starts
# a fresh window, looked at FIRST_LOOK_S later.
STALE_S = 2.0
# Busy cores of other processes tolerated before a core is left to them (a desktop's idle noise,
# an editor's keystrokes, stay under it; one busy process is ~1.0).
TOLERATED_BUSY = 0.3


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """One intra-op thread per core this process may run on, less one for everything else: what
    ``cpu_threads = 0`` uses where the other processes' load cannot be read (not Linux)."""
    return max(1, usable_cores() - 1)


def threads_for(cores: int, others_busy: float) -> int:
    """Threads to run with when other processes keep ``others_busy`` cores busy: every core but
    the ones they use, at least one.

    Measured (issue 14, 2-core machine, the engine on 320 lines): alone on the machine, two
    threads were ×1.1-1.17 faster than one on the tiny model (673-733 vs 624-639 lines/s) and
    ×1.4-1.7 on the mid-size GLM; with one other busy process, two threads fell to 19-181
    lines/s while one kept 602-638 -- an OpenMP team waits at every parallel region for its
    thread that the other process pushed off a core.
    """
    leave = math.ceil(max(0.0, others_busy - TOLERATED_BUSY))
    return max(1, min(cores, cores - leave))


class OthersLoad:
    """Cores that processes other than this one kept busy since the last look, on the CPUs this
    process may run on (from /proc/stat, less this process's own CPU time)."""

    def __init__(self) -> None:
        self._cpus = {f"cpu{n}" for n in os.sched_getaffinity(0)}
        self._tick = os.sysconf("SC_CLK_TCK")
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        busy = 0
        with open("/proc/stat", encoding="ascii") as stat:
            for line in stat:
                name, *fields = line.split()
                if name in self._cpus:
                    user, nice, system, idle, iowait, irq, softirq = (int(f) for f in fields[:7])
                    busy += user + nice + system + irq + softirq
        return time.monotonic(), busy / self._tick, time.process_time()

    def busy_cores(self) -> float:
        (then, busy_then, own_then), now = self._last, self._sample()
        self._last = now
        wall = now[0] - then
        return 0.0 if wall <= 0 else max(0.0, (now[1] - busy_then) - (now[2] - own_then)) / wall


class CpuShare:
    """The worker's intra-op threads. A fixed ``setting`` is used as it is; 0 means every usable
    core while other processes leave them idle, one fewer per core they keep busy, looked at
    every ``INTERVAL_S`` (``tick``, between decoding steps): fewer threads at once, more only
    after two looks agree. It starts on one per core less one, the safe side (two threads on a
    core another process wants are many times slower than one), and the one used where the load
    cannot be read (not Linux)."""

    def __init__(self, setting: int, *, load: Callable[[], float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.setting = setting
        self.cores = usable_cores()
        self._clock = clock
        self._load = load
        if setting == 0 and load is None:
            try:
                self._load = OthersLoad().busy_cores
            except (OSError, AttributeError, ValueError):
                self._load = None
        self.threads = setting or default_threads()
        self._looks = 0
        self._last_look = clock()
        self._next_look = self._last_look + FIRST_LOOK_S
        self._wanted_more = False

    @property
    def adaptive(self) -> bool:
        return self.setting == 0 and self._load is not None

    def start(self) -> int:
        """Give the calling thread its threads; how many."""
        _set_threads(self.threads)
        return self.threads

    def tick(self) -> None:
        """Between steps: look at the other processes' load if it is time, and follow it."""
        now = self._clock()
        if not self.adaptive or now < self._next_look:
            return
        assert self._load is not None
        stale, self._last_look = now - self._last_look > STALE_S, now
        others = self._load()
        if stale:
            self._next_look = now + FIRST_LOOK_S
            return
        self._looks += 1
        self._next_look = now + (FIRST_LOOK_S if self._looks < 2 else INTERVAL_S)
        wanted = threads_for(self.cores, others)
        if wanted > self.threads and not self._wanted_more:
            self._wanted_more = True  # once more before taking cores back
            return
        self._wanted_more = False
        if wanted != self.threads:
            log.info("the model now runs on %d CPU thread(s): other processes keep %.1f of %d cores busy",
                     wanted, others, self.cores)
            self.threads = wanted
            _set_threads(wanted)


def _set_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)
