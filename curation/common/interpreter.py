"""Two settings of the Python interpreter for processes where a thread waiting on the database shares the
interpreter with a thread that computes: a file import's reading thread (curation/logs/imports/run.py) and
gunicorn's request threads (config/gunicorn.py). docs/benchmarks.md has the measurements.

- **The switch interval.** A thread coming back from a wait (a query's answer, the end of a `COPY`) must take the
  interpreter's lock back from the thread computing, which gives it up only every `sys.getswitchinterval()`
  (5 ms by default). A batch of a file import makes about ten round trips: up to 50 ms of each batch spent waiting
  for the lock while the database has nothing to do. SWITCH_INTERVAL_S makes that wait short.
- **The collector.** The cyclic garbage collector walks every object that survived its younger generations,
  Django's own (about 150,000 after start-up) among them, again and again while a batch of logs is allocated.
  `gc.freeze()` sets the objects alive now aside, out of its walks: a quarter of an import's time.
"""

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SWITCH_INTERVAL_S = 0.0005


@contextmanager
def threads_overlapped() -> Iterator[None]:
    """For the duration of a piece of work: the short switch interval, and the objects alive now frozen out of the
    collector's walks. Both are restored after, so objects that die later are collected as usual."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL_S))
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        sys.setswitchinterval(interval)


def process_tune() -> None:
    """For a server process, once its application is loaded: the short switch interval, and the objects of its
    start-up (alive for the process's life) frozen out of the collector's walks for good."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()
