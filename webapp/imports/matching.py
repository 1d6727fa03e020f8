"""Matching a batch's orders to customers: by the shop's external id, else by normalised
email, among the stored customers and those the batch creates."""

from __future__ import annotations

from datetime import datetime
from zlib import adler32, crc32

from webapp.imports.records import OrderRecord

PROFILE_FIELDS = ("first_name", "last_name", "city", "country")
CUSTOMER_FIELDS = (
    "external_id",
    "email",
    "email_norm",
    *PROFILE_FIELDS,
    "accepts_marketing",
    "consent_source",
    "consent_at",
)


class CustomerSlot:
    """A customer touched by the batch: its stored values (None if new) and the new ones."""

    __slots__ = ("id", "stored", "values", "profile_at", "erased", "keys", "totals")

    def __init__(self, stored: dict | None, profile_at: datetime | None = None):
        self.id: int | None = stored["id"] if stored else None
        self.stored = stored
        self.values: dict = {k: stored[k] for k in CUSTOMER_FIELDS} if stored else {}
        self.profile_at = profile_at
        self.erased = bool(stored and stored["erased_at"] is not None)
        self.keys: list[tuple[str, str]] = []
        # orders_count, spent_cents, last_order_at of a new customer, from the batch alone.
        self.totals: list = [0, 0, None]


class CustomerResolver:
    """Finds the customer of each record among the stored ones and those the batch creates,
    by external id, else by normalised email, without ever giving two rows one email."""

    def __init__(self, stored: list[dict], latest: dict[int, datetime]):
        self.db_by_ext = {c["external_id"]: c for c in stored if c["external_id"]}
        self.db_by_email = {c["email_norm"]: c for c in stored if c["email_norm"]}
        self.latest = latest
        self.by_id: dict[int, CustomerSlot] = {}
        self.new_by_ext: dict[str, CustomerSlot] = {}
        self.new_by_email: dict[str, CustomerSlot] = {}
        self.slots: list[CustomerSlot] = []

    def _stored_slot(self, row: dict) -> CustomerSlot:
        slot = self.by_id.get(row["id"])
        if slot is None:
            slot = CustomerSlot(row, self.latest.get(row["id"]))
            self.by_id[row["id"]] = slot
            self.slots.append(slot)
        return slot

    def find(self, ext: str | None, norm: str | None) -> CustomerSlot | None:
        if ext is None and norm is None:
            return None
        slot: CustomerSlot | None = None
        if ext is not None:
            slot = self.new_by_ext.get(ext)
            if slot is None and (row := self.db_by_ext.get(ext)) is not None:
                slot = self._stored_slot(row)
        if slot is None and norm is not None:
            candidate = self.new_by_email.get(norm)
            if candidate is None and (row := self.db_by_email.get(norm)) is not None:
                candidate = self._stored_slot(row)
            if candidate is not None and (
                ext is None or candidate.values.get("external_id") in (None, ext)
            ):
                slot = candidate
        if slot is None:
            slot = CustomerSlot(None)
            self.slots.append(slot)
        values = slot.values
        if ext is not None and values.get("external_id") is None and not slot.erased:
            values["external_id"] = ext
            self.new_by_ext[ext] = slot
            slot.keys.append(("x", ext))
        if (
            norm is not None
            and values.get("email_norm") is None
            and not slot.erased
            and norm not in self.db_by_email
            and norm not in self.new_by_email
        ):
            values["email_norm"] = norm
            self.new_by_email[norm] = slot
            slot.keys.append(("e", norm))
        return slot


class FileTotals:
    """orders_count, spent_cents and last_order_at per customer over a whole file, by the
    shop's customer id, else by normalised email: what a customer the import creates will
    have once all of the file is written, so that it is inserted with them and not
    rewritten by every later batch that brings one of its orders.

    Only a hint: the writer checks every customer's totals against its orders once the
    file is written. Keys are 64-bit hashes of the ids and emails, to keep memory small (a
    few dozen MB at a million lines); a collision only costs that check a rewrite. They
    are the same in every process (unlike hash()), so the totals of a file's two halves,
    counted by two processes, add up.
    """

    def __init__(self) -> None:
        self._by_ext: dict[int, tuple[int, int, datetime | None]] = {}
        self._by_email: dict[int, tuple[int, int, datetime | None]] = {}

    def add(self, record: OrderRecord) -> None:
        if record.customer_external_id:
            known, key = self._by_ext, _hash(record.customer_external_id)
        elif record.email and (norm := record.email.strip().lower()):
            known, key = self._by_email, _hash(norm)
        else:
            return
        count, spent, last = known.get(key, _NO_ORDERS)
        if record.cancelled_at is None:
            count += 1
            spent += record.total_cents - record.refunded_cents
            if last is None or record.placed_at > last:
                last = record.placed_at
        known[key] = (count, spent, last)

    def merge(self, other: FileTotals) -> None:
        """Add another part of the same file's totals to these."""
        for known, more in ((self._by_ext, other._by_ext), (self._by_email, other._by_email)):
            for key, (count, spent, last) in more.items():
                mine = known.get(key)
                if mine is not None:
                    count, spent = count + mine[0], spent + mine[1]
                    if last is None or (mine[2] is not None and mine[2] > last):
                        last = mine[2]
                known[key] = (count, spent, last)

    def get(self, ext: str | None, norm: str | None) -> tuple[int, int, datetime | None] | None:
        if ext:
            return self._by_ext.get(_hash(ext))
        return self._by_email.get(_hash(norm)) if norm else None


def _hash(text: str) -> int:
    data = text.encode()
    return crc32(data) << 32 | adler32(data)  # two unrelated checksums, fast


_NO_ORDERS: tuple[int, int, datetime | None] = (0, 0, None)
