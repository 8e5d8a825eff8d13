"""Where routing tables come from: a local file, or something else pushing into the store.

A source is an object with ``async run(store)`` that loads tables into a
:class:`~ballast.gateway.snapshot.TableStore` and keeps them current until cancelled.
:class:`FileSource` serves ``ballast gateway --routes FILE``: it re-reads the file every
``interval`` seconds (content compared, not only mtime, so an edit within one timestamp
tick is not missed) and parses a changed file in a worker thread; a broken file is
logged and the last good tables stay in force. The in-cluster ConfigMap watch is in
:mod:`ballast.gateway.watch`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ballast.gateway.snapshot import TableStore
from ballast.routing import RoutesError, RoutingTable, parse_tables

log = logging.getLogger(__name__)


class TableSource(Protocol):
    async def run(self, store: TableStore) -> None: ...


class StaticSource:
    """Fixed tables, loaded once (benchmarks, embedding)."""

    def __init__(self, tables: Sequence[RoutingTable]) -> None:
        self.tables = list(tables)

    async def run(self, store: TableStore) -> None:
        store.replace(self.tables)


def read_routes(path: Path) -> list[RoutingTable]:
    """The tables in a routes file; RoutesError (also for an unreadable file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RoutesError(f"{path}: cannot read: {e}") from None
    return parse_tables(text, str(path))


class FileSource:
    """Serves a routes file and follows its changes."""

    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self._last_text: str | None = None

    async def run(self, store: TableStore) -> None:
        while True:
            await self.check(store)
            await asyncio.sleep(self.interval)

    async def check(self, store: TableStore) -> None:
        """Load the file if its content changed since the last check."""
        try:
            text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self._report(store, f"{self.path}: cannot read: {e}", key=f"<unreadable:{e}>")
            return
        if text == self._last_text:
            return
        self._last_text = text
        try:
            tables = await asyncio.to_thread(parse_tables, text, str(self.path))
        except RoutesError as e:
            self._report(store, f"{e}; keeping the last good tables", key=None)
            return
        store.replace(tables)

    def _report(self, store: TableStore, message: str, key: str | None) -> None:
        if key is not None:
            if key == self._last_text:
                return  # same problem as last time: reported already
            self._last_text = key
        log.error("routes file: %s", message)
        store.failed(message)
