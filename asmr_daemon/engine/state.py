"""What the engine's public side and its worker thread share, all guarded by ``cond``."""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass, field

from asmr_daemon.config import EngineSettings
from asmr_daemon.engine.backends import Backends
from asmr_daemon.engine.front import MemoryFront
from asmr_daemon.engine.scheduler import Scheduler
from asmr_daemon.engine.waiters import Waiters

COUNTERS = ("submitted", "memory_hits", "corrections_served", "corrections_recorded", "deduplicated",
            "cancelled", "batches", "model_calls", "rows", "retries", "flagged", "failed_batches",
            "failed", "isolated", "adapter_switches", "preempted", "joined")


@dataclass
class EngineState:
    front: MemoryFront
    backends: Backends
    settings: EngineSettings
    scheduler: Scheduler = field(default_factory=Scheduler)
    waiters: Waiters = field(default_factory=Waiters)
    # Re-entrant: cancelling a future runs its callback, which takes this lock, and the engine
    # itself cancels futures (close) and resolves them.
    cond: threading.Condition = field(default_factory=lambda: threading.Condition(threading.RLock()))
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    # Set while an editor request waits to be planned: the call on the model polls it every
    # decoding step and stops, and the editor's request joins the rows it cut short.
    interactive_waiting: threading.Event = field(default_factory=threading.Event)
    last_editor_request: float = -math.inf  # time.monotonic() of the last interactive submission
    closing: bool = False
