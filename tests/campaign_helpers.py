"""A shop with a segment and a campaign, for the campaign tests."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from tests.factories import add_customer
from webapp.campaigns.mailer import SendGridMailer
from webapp.extensions import db
from webapp.models import Campaign, CampaignRecipient, Category, Product, ShopSettings
from webapp.segmentation import segments
from webapp.segmentation.refresh import run_refresh

API_KEY = "SG.test-key"


def ready_shop(**fields) -> ShopSettings:
    shop = db.session.get(ShopSettings, 1)
    shop.name = "Wool & Co"
    shop.postal_address = "1 High Street\nTownsville"
    shop.quiet_hours_start, shop.quiet_hours_end = "00:00", "23:59"
    for key, value in fields.items():
        setattr(shop, key, value)
    db.session.commit()
    return shop


def consented(first: str, n: int | None = None, **fields):
    email = f"{first.lower()}{'' if n is None else n}@example.com"
    fields.setdefault("accepts_marketing", True)
    return add_customer(first, "Maker", email, **fields)


def everyone_segment(name: str = "Everyone"):
    segment = segments.create_segment(db.session, name, {"match": "all", "rules": []})
    db.session.commit()
    return segment


def add_catalogue() -> None:
    if db.session.scalar(select(Category).where(Category.name == "yarn")) is None:
        db.session.add(Category(name="yarn", craft="knitting"))
    db.session.add_all(
        Product(sku=f"Y{i}", title=f"Yarn {i}", category="yarn", price_cents=900 + i)
        for i in range(1, 6)
    )
    db.session.commit()


def make_campaign(segment, **fields) -> Campaign:
    values = {
        "name": "Spring yarn",
        "segment_id": segment.id,
        "from_email": "shop@example.com",
        "from_name": "Wool & Co",
        "subject": "Hi {{ first_name }}",
        "body": "Hello {{ first_name }}, new {{ craft or 'things' }}. [Shop](https://shop.example/new)",
        "holdout_percent": 0,
        "frequency_cap_days": 3,
        "status": "scheduled",
        "scheduled_at": datetime.now(UTC),
    }
    campaign = Campaign(**{**values, **fields})
    db.session.add(campaign)
    db.session.commit()
    return campaign


def refresh() -> None:
    run_refresh(trigger="cli")


def mailer(sg, **kwargs) -> SendGridMailer:
    kwargs.setdefault("concurrency", 4)
    kwargs.setdefault("backoff", 0.01)
    return SendGridMailer(API_KEY, sg.url, **kwargs)


def sent_recipient() -> CampaignRecipient:
    """Ada, mailed by a campaign: the ledger row behind her unsubscribe link and events."""
    customer = add_customer("Ada", email="ada@example.com", accepts_marketing=True)
    campaign = Campaign(name="Spring yarns", from_email="shop@example.com")
    db.session.add(campaign)
    db.session.flush()
    row = CampaignRecipient(
        campaign_id=campaign.id, customer_id=customer.id, email=customer.email, status="sent"
    )
    db.session.add(row)
    db.session.commit()
    return row
