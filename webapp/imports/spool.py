"""Pass 1's validated orders, parked on disk until pass 2 writes them, in the file's order.

The file's order is also the database's best order: a Shopify export is sorted by time, so
the orders' indexes (Name, Id, Created at) grow at one end and each batch dirties few of
their pages. Memory stays flat: at most one batch of orders waits in memory.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterator

from webapp.imports.records import OrderRecord

# Records are pickled as plain tuples, the cheapest thing to pickle; OrderRecord._make reads
# them back without copying. Lines stay what the parser built (plain tuples from the CSV
# parsers), which the writer reads by position.
_record = OrderRecord._make


class OrderSpool:
    """Add the orders of a file one by one, then read them back in batches of ``size``.

    Anonymous unless given a ``path``, where another process can read it back (a spool
    opened on an existing path reads what is there)."""

    def __init__(self, size: int, path: str | None = None):
        self.size = size
        # Closed by __exit__ or close().
        if path is None:
            self.file = tempfile.TemporaryFile(prefix="patchwork-import-")  # noqa: SIM115
        else:
            self.file = open(path, "a+b")  # noqa: SIM115
        self._pending: list[tuple] = []

    def __enter__(self) -> OrderSpool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def add(self, record: OrderRecord) -> None:
        self._pending.append(tuple(record))
        if len(self._pending) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            pickle.dump(self._pending, self.file, pickle.HIGHEST_PROTOCOL)
            self._pending = []

    def batches(self) -> Iterator[list[OrderRecord]]:
        self.flush()
        self.file.seek(0)
        while True:
            try:
                packed = pickle.load(self.file)
            except EOFError:
                return
            yield list(map(_record, packed))
