"""A campaign's lease: the one process sending it holds it, renewed every batch.

A lease whose process is gone (same host, pid no longer alive) or that has run out may be
taken over; any other sender finds the campaign busy and leaves it alone.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, select, update

from webapp.extensions import db
from webapp.models import Campaign
from webapp.models._types import utcnow


def sender_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def holder_is_dead(owner: str | None) -> bool:
    """A lease held by a process of this host that no longer runs."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():  # another thread of this process: alive
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _lease_seconds() -> float:
    return current_app.config["CAMPAIGN_LEASE_SECONDS"]


def take(campaign_id: int, owner: str) -> bool:
    now = utcnow()
    current = db.session.execute(
        select(Campaign.lease_owner, Campaign.lease_expires_at).where(Campaign.id == campaign_id)
    ).one()
    free = or_(Campaign.lease_owner.is_(None), Campaign.lease_expires_at < now)
    if current.lease_owner and holder_is_dead(current.lease_owner):
        free = or_(free, Campaign.lease_owner == current.lease_owner)
    taken = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, free)
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=_lease_seconds()))
    ).rowcount
    db.session.commit()
    return bool(taken)


def renew(campaign_id: int, owner: str) -> bool:
    """False when the lease is no longer this sender's. (Once a batch: on the table, not
    through the ORM's bulk update, which costs a millisecond more.)"""
    campaigns = Campaign.__table__
    return bool(
        db.session.connection()
        .execute(
            update(campaigns)
            .where(campaigns.c.id == campaign_id, campaigns.c.lease_owner == owner)
            .values(lease_expires_at=utcnow() + timedelta(seconds=_lease_seconds()))
        )
        .rowcount
    )


def release(campaign_id: int, owner: str) -> None:
    db.session.rollback()
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )
    db.session.commit()
