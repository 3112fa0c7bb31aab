"""A reader pool: decode the next inputs in threads while the engine runs, results kept in input order.

OpenCV and Pillow release the GIL while they decode, so a few threads keep a 2-core inference fed. The queue
of work ahead is bounded (``ahead`` items), so memory does not grow with the size of the folder.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_prefetch(items: Iterable[T], load: Callable[[T], R], *, workers: int = 2,
                     ahead: int = 32) -> Iterator[R]:
    """``map(load, items)`` on ``workers`` threads with at most ``ahead`` loads in flight, in input order.

    ``load`` must not raise for a bad input (return an error value instead): an exception here would end the
    stream. ``items`` is consumed lazily, so a streaming folder walk stays streaming.
    """
    if workers <= 1:
        yield from map(load, items)
        return
    pending: collections.deque[Future[R]] = collections.deque()
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgerec-read") as pool:
        try:
            for item in source:
                pending.append(pool.submit(load, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # the consumer stopped early: drop what is queued, let running loads finish
            for f in pending:
                f.cancel()
