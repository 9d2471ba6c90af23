"""CPU threads for torch: the engine's worker thread runs the model with ``[engine] cpu_threads``
intra-op threads.

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

import os


def default_threads() -> int:
    """One intra-op thread per core this process may run on, less one for everything else.

    Measured (issue 14, 2-core machine, tiny model, the engine on 320 lines, medians of 6):
    alone on the machine, 2 threads were no faster than 1 (428-496 vs 402-480 lines/s); with one
    other busy process, 2 threads fell to 100 lines/s while 1 thread kept 412 -- a 2-thread team
    spins and stalls whenever something else wants a core. The daemon always shares the machine
    (the editor, the watch folder, the desktop), so it leaves one core free.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def use_threads(count: int) -> int:
    """Give the calling thread ``count`` intra-op threads (0: ``default_threads()``); returns it."""
    import torch

    count = count or default_threads()
    torch.set_num_threads(count)
    return count
