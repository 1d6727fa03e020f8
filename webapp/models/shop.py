from __future__ import annotations

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db


class ShopSettings(db.Model):
    """The shop's own settings: one row, edited on the Settings page."""

    __tablename__ = "shop_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="My shop")
    postal_address: Mapped[str] = mapped_column(Text, default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    churn_window_days: Mapped[int] = mapped_column(Integer, default=90)
    quiet_hours_start: Mapped[str] = mapped_column(String(5), default="09:00")
    quiet_hours_end: Mapped[str] = mapped_column(String(5), default="20:00")
    holdout_percent: Mapped[int] = mapped_column(Integer, default=10)
    frequency_cap_days: Mapped[int] = mapped_column(Integer, default=3)
    embed_key: Mapped[str] = mapped_column(String(64), default="")
    embed_secret: Mapped[str] = mapped_column(String(128), default="")
    webhook_secret: Mapped[str] = mapped_column(String(128), default="")
    # Keys the hashes of erased customers' emails (webapp.privacy.email_hash); never shown.
    erasure_key: Mapped[str] = mapped_column(String(64), default="")
    allowed_origins: Mapped[str] = mapped_column(Text, default="")
    trust_unsigned_identity: Mapped[bool] = mapped_column(Boolean, default=False)
    # Days after any survey before a shopper is shown another one (0: no cooldown).
    survey_cooldown_days: Mapped[int] = mapped_column(Integer, default=7)
    # Preference traits (webapp.segmentation.traits): with declared and observed evidence,
    # score = declared weight x [declared] + observed weight x share; a value needs the
    # threshold to win, else the trait is "mixed". Percentages, so that 0.6 stays exact.
    trait_declared_weight_pct: Mapped[int] = mapped_column(Integer, default=60)
    trait_observed_weight_pct: Mapped[int] = mapped_column(Integer, default=40)
    trait_threshold_pct: Mapped[int] = mapped_column(Integer, default=40)
