"""`patchwork campaigns list|send|resume|cancel`: the operator's hands on campaigns.

`send` and `resume` run the send in the foreground (never two senders at once: the
campaign's lease), with a progress line on stderr, and print a JSON summary with --json.
"""

from __future__ import annotations

import sys

import click
from sqlalchemy import select

from webapp.cli import CommandError, emit_json, json_errors, needs_database
from webapp.extensions import db
from webapp.models import Campaign, Segment, ShopSettings
from webapp.models._types import utcnow


@click.group("campaigns")
def campaigns_group() -> None:
    """Campaigns: list them, send one, resume a paused one, cancel one."""


def _json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(func)


@campaigns_group.command("list")
@_json_option
@json_errors
@needs_database
def list_command(as_json: bool) -> None:
    """Every campaign with its status and ledger counts."""
    from webapp.campaigns.ledger import status_counts

    segments = dict(db.session.execute(select(Segment.id, Segment.name)).all())
    rows = [
        {
            "id": c.id,
            "name": c.name,
            "segment": segments.get(c.segment_id),
            "status": c.status,
            "scheduled_at": c.scheduled_at.isoformat() if c.scheduled_at else None,
            "started_at": c.started_at.isoformat() if c.started_at else None,
            "counts": status_counts(c.id),
        }
        for c in db.session.scalars(select(Campaign).order_by(Campaign.id))
    ]
    if as_json:
        emit_json({"campaigns": rows})
        return
    for row in rows:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(row["counts"].items())) or "-"
        click.echo(f"{row['id']:>4}  {row['status']:<10} {row['name']}  [{counts}]")


def _progress():
    def show(done: int, total: int | None = None, message: str | None = None) -> None:
        sys.stderr.write(f"\r{message or done}   ")
        sys.stderr.flush()

    return show


def _run(campaign_id: int, as_json: bool, resuming: bool) -> None:
    from webapp.campaigns import ledger, sending

    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise CommandError(f"There is no campaign {campaign_id}.")
    if resuming:
        if campaign.status not in ("paused", "sending"):
            raise CommandError(f"Campaign {campaign_id} is {campaign.status}, not paused.")
        sending.resume(campaign_id)
    else:
        if not campaign.editable:
            raise CommandError(
                f"Campaign {campaign_id} is {campaign.status}; use `resume` to go on with it."
            )
        shop = db.session.get(ShopSettings, 1)
        if problems := ledger.readiness(campaign, shop):
            raise CommandError(" ".join(problems))
        campaign.status, campaign.scheduled_at = "scheduled", utcnow()
        db.session.commit()
    try:
        result = sending.send_campaign(campaign_id, progress=_progress(), sending_hours=False)
    except sending.CampaignError as exc:
        raise CommandError(str(exc)) from None
    sys.stderr.write("\n")
    if as_json:
        emit_json(result.as_dict())
    else:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
        click.echo(f"Campaign {campaign_id}: {result.status}; sent now {result.sent_now}; {counts}")
        if result.paused_reason:
            click.echo(result.paused_reason)


@campaigns_group.command("send")
@click.argument("campaign_id", type=int)
@_json_option
@json_errors
@needs_database
def send_command(campaign_id: int, as_json: bool) -> None:
    """Send a draft or scheduled campaign now, in the foreground (sending hours do not
    apply: the operator chose the moment)."""
    _run(campaign_id, as_json, resuming=False)


@campaigns_group.command("resume")
@click.argument("campaign_id", type=int)
@_json_option
@json_errors
@needs_database
def resume_command(campaign_id: int, as_json: bool) -> None:
    """Go on with a paused or interrupted send; nobody is mailed twice, and what was in flight
    when it stopped is reported as unknown."""
    _run(campaign_id, as_json, resuming=True)


@campaigns_group.command("cancel")
@click.argument("campaign_id", type=int)
@_json_option
@json_errors
@needs_database
def cancel_command(campaign_id: int, as_json: bool) -> None:
    """Cancel a campaign: recipients still queued never get it."""
    from webapp.campaigns import sending

    if db.session.get(Campaign, campaign_id) is None:
        raise CommandError(f"There is no campaign {campaign_id}.")
    cancelled = sending.cancel(campaign_id)
    campaign = db.session.get(Campaign, campaign_id)
    if as_json:
        emit_json({"campaign_id": campaign_id, "status": campaign.status, "cancelled": cancelled})
    else:
        click.echo(f"Campaign {campaign_id}: {campaign.status}.")
