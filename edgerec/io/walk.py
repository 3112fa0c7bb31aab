"""A streaming folder walk: the first file comes out at once, and memory holds one folder's listing per level.

The order equals sorting every path under the folder by its tuple of components (what ``predict`` has always
produced): each folder's entries are sorted by name and a sub-folder is walked at its sorted position, depth
first. Symlinked folders are visited once (loops are cut), and a folder that cannot be listed is yielded as an
``InputError`` in its place, so one unreadable folder costs only its own files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from edgerec.errors import InputError


def walk_files(folder: str, suffixes: frozenset[str] | set[str]) -> Iterator[str | InputError]:
    """Yield the paths under ``folder`` whose lower-cased suffix is in ``suffixes``, in sorted path order."""
    visited: set[tuple[int, int]] = set()
    # an explicit stack of iterators, not recursion: a tree a thousand folders deep must not hit the recursion limit
    stack: list[Iterator[tuple[str, str, bool]]] = []

    def enter(path: str) -> Iterator[tuple[str, str, bool]] | InputError | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:  # gone since the listing
            return None
        except OSError as exc:  # a name too long, a folder that cannot be searched: its files are lost, say so
            return InputError(path, f"cannot access folder ({exc.strerror or exc})")
        key = (st.st_dev, st.st_ino)
        if key in visited:  # a symlink loop or a second link to a folder already walked
            return None
        visited.add(key)
        try:
            with os.scandir(path) as it:
                entries = []
                for e in it:
                    try:
                        is_dir = e.is_dir()  # follows symlinks; loops are cut by ``visited``
                    except OSError:
                        is_dir = False
                    if is_dir or os.path.splitext(e.name)[1].lower() in suffixes:
                        entries.append((e.name, e.path, is_dir))
        except OSError as exc:
            return InputError(path, f"cannot list folder ({exc.strerror or exc})")
        entries.sort(key=lambda t: t[0])
        return iter(entries)

    first = enter(folder)
    if isinstance(first, InputError):
        yield first
        return
    if first is not None:
        stack.append(first)
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        _, path, is_dir = entry
        if not is_dir:
            yield path
            continue
        sub = enter(path)
        if isinstance(sub, InputError):
            yield sub
        elif sub is not None:
            stack.append(sub)
