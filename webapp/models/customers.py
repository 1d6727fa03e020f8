from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models._types import UTCDateTime, utcnow


class Customer(db.Model):
    """A shopper, matched by the shop's external id, else by normalised email.

    orders_count, spent_cents and last_order_at are kept up to date by every import so that
    the customers page can sort and page a million rows through indexes.
    """

    __tablename__ = "customers"
    __table_args__ = (
        Index("ix_customers_spent", "spent_cents", "id"),
        Index("ix_customers_orders", "orders_count", "id"),
        Index("ix_customers_last_order", "last_order_at", "id"),
        # Name prefix search on the customers page (webapp/customers.py): plain indexes,
        # probed once per letter-case variant of the first letters typed.
        Index("ix_customers_first_name", "first_name"),
        Index("ix_customers_last_name", "last_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(120), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))  # as the shop spelled it
    email_norm: Mapped[str | None] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(120))
    last_name: Mapped[str | None] = mapped_column(String(120))
    city: Mapped[str | None] = mapped_column(String(120))
    country: Mapped[str | None] = mapped_column(String(120))
    accepts_marketing: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_source: Mapped[str | None] = mapped_column(String(40))
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Suppressions from SendGrid's events: never mailed again.
    bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    spam_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    orders_count: Mapped[int] = mapped_column(Integer, default=0)
    spent_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    last_order_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def display_name(self) -> str:
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or self.email or f"Customer {self.id}"


class ErasedEmail(db.Model):
    """SHA-256 of an erased customer's normalised email: imports never bring them back."""

    __tablename__ = "erased_emails"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The anonymised customer row that keeps the erased person's order totals; later orders
    # with the same email attach to it, without personal data.
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
