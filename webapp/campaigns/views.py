"""The owner's campaign pages: the list, the editor with its live preview, scheduling, the
campaign page with live progress and results, and the outbox.

Nothing here sends mail in the request (but the one test message to the owner): a send is
queued for the scheduler process, and the campaign page polls its progress.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from wtforms.fields import SelectChoice

from webapp.campaigns import ledger, sending
from webapp.campaigns import results as campaign_results
from webapp.campaigns.forms import CampaignForm, ScheduleForm
from webapp.campaigns.mailer import mailer_for
from webapp.campaigns.messages import Payloads, Recipient
from webapp.campaigns.render import MERGE_FIELDS, ContentError
from webapp.extensions import db, htmx
from webapp.models import Campaign, CampaignRecipient, Customer, OutboxMessage, Segment
from webapp.models._types import utcnow
from webapp.segmentation import compiler
from webapp.segmentation.rules import RulesError, validate
from webapp.segmentation.segments import LiveCount, live_count, live_scope
from webapp.shop import get_shop, shop_timezone

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")

PREVIEW_MEMBERS = 20
OUTBOX_PAGE = 50


@bp.context_processor
def _helpers() -> dict:
    return {"results_chart": campaign_results.chart}


def _segment_choices() -> list[SelectChoice]:
    return [
        SelectChoice(s.id, s.name)
        for s in db.session.scalars(select(Segment).order_by(Segment.name))
    ]


def _tree_and_scope(segment_id: int | None):
    """The segment's valid rules and the current run's scope; None before any refresh, for
    a segment gone, or rules that no longer hold."""
    segment = db.session.get(Segment, segment_id) if segment_id else None
    scope = live_scope(db.session)
    if segment is None or scope is None:
        return None
    try:
        return validate(segment.rules), scope
    except RulesError:
        return None


def audience(segment_id: int | None) -> LiveCount | None:
    """The segment's members and sendable members now (unsubscribes count at once)."""
    found = _tree_and_scope(segment_id)
    return live_count(db.session, *found, sample=PREVIEW_MEMBERS) if found else None


def member_by_email(segment_id: int | None, email: str) -> Customer | None:
    """The segment's member with this email (matched trimmed and lower-cased), if any."""
    found = _tree_and_scope(segment_id)
    customer = db.session.scalar(select(Customer).where(Customer.email_norm == email.lower()))
    if found is None or customer is None:
        return None
    members = compiler.members(*found).where(compiler.P.customer_id == customer.id)
    return customer if db.session.scalar(members) is not None else None


# --- the list and the editor -------------------------------------------------------------


@bp.get("/")
def index():
    campaigns = db.session.scalars(select(Campaign).order_by(Campaign.id.desc())).all()
    counts: dict[int, dict[str, int]] = {}
    rows = db.session.execute(
        select(CampaignRecipient.campaign_id, CampaignRecipient.status, func.count()).group_by(
            CampaignRecipient.campaign_id, CampaignRecipient.status
        )
    )
    for campaign_id, status, n in rows:
        counts.setdefault(campaign_id, {})[status] = n
    segments = dict(db.session.execute(select(Segment.id, Segment.name)).all())
    return render_template(
        "campaigns/index.html", campaigns=campaigns, counts=counts, segments=segments
    )


def _form(campaign: Campaign | None) -> CampaignForm:
    shop = get_shop()
    choices = _segment_choices()
    defaults = {}
    if campaign is None:
        defaults = {
            "segment_id": choices[0].value if choices else None,  # as the select shows it
            "from_email": current_user.email,
            "from_name": shop.name,
            "holdout_percent": shop.holdout_percent,
            "frequency_cap_days": shop.frequency_cap_days,
            "attribution_days": 7,
        }
    form = CampaignForm(obj=campaign, data=defaults or None, shop=shop)
    form.segment_id.choices = choices
    return form


def _editor(campaign: Campaign | None):
    form = _form(campaign)
    if campaign is not None and not campaign.editable:
        flash("A campaign that has started can no longer be edited.", "error")
        return redirect(url_for(".show", campaign_id=campaign.id))
    if form.validate_on_submit() and not form.content_errors():
        if campaign is None:
            campaign = Campaign()
            db.session.add(campaign)
        form.populate_obj(campaign)
        campaign.template_id = (campaign.template_id or "").strip()
        db.session.commit()
        flash(f"Saved “{campaign.name}”.", "success")
        return redirect(url_for(".show", campaign_id=campaign.id))
    if not form.segment_id.choices:
        flash("Create a segment first: a campaign is sent to one.", "error")
    return render_template(
        "campaigns/edit.html",
        form=form,
        campaign=campaign,
        merge_fields=MERGE_FIELDS,
        audience=audience(form.segment_id.data or None),
    ), (422 if form.errors else 200)


@bp.route("/new", methods=["GET", "POST"])
def new():
    return _editor(None)


@bp.route("/<int:campaign_id>/edit", methods=["GET", "POST"])
def edit(campaign_id: int):
    return _editor(db.get_or_404(Campaign, campaign_id))


@bp.get("/audience")
def audience_count():
    """The picked segment's member and sendable counts, beside the select."""
    return render_template(
        "campaigns/_audience.html", audience=audience(request.args.get("segment_id", type=int))
    )


@bp.post("/preview")
def preview():
    """The message as one member of the segment would get it, from the editor's current
    (unsaved) values; errors show with their line."""
    form = _form(None)
    form.validate()
    errors = form.content_errors() if not form.template_id.data else []
    live = audience(form.segment_id.data)
    members = live.sample if live else []
    chosen = request.form.get("preview_as", type=int)
    customer = next((c for c in members if c.id == chosen), members[0] if members else None)
    looked_up = request.form.get("preview_email", "").strip()
    if looked_up:  # any member, not only the sample: found by email
        found = member_by_email(form.segment_id.data, looked_up)
        if found is None:
            errors = [*errors, ContentError("Preview", f"{looked_up} is not in this segment.")]
        else:
            customer, members = found, [found, *(c for c in members if c.id != found.id)]
    rendered = None
    if not errors and customer is not None:
        draft = Campaign()
        form.populate_obj(draft)
        draft.id = 0
        payload = next(
            Payloads(draft, get_shop()).build(
                [Recipient(None, customer.id, customer.email or "", customer.display_name)]
            )
        )
        if isinstance(payload, ContentError):  # this member's fields break the template
            errors = [payload]
        else:
            rendered = _shown(payload)
    return render_template(
        "campaigns/_preview.html",
        errors=errors,
        rendered=rendered,
        members=members,
        customer=customer,
        looked_up=looked_up,
    )


def _shown(payload: dict) -> dict:
    person = payload["personalizations"][0]
    contents = {part["type"]: part["value"] for part in payload.get("content") or []}
    return {
        "subject": payload.get("subject", ""),
        "html": contents.get("text/html"),
        "data": person.get("dynamic_template_data"),
        "template_id": payload.get("template_id"),
    }


# --- one campaign ------------------------------------------------------------------------


@bp.get("/<int:campaign_id>")
def show(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    shop = get_shop()
    return render_template(
        "campaigns/show.html",
        campaign=campaign,
        segment=db.session.get(Segment, campaign.segment_id) if campaign.segment_id else None,
        problems=ledger.readiness(campaign, shop) if campaign.editable else [],
        audience=audience(campaign.segment_id) if campaign.editable else None,
        counts=ledger.status_counts(campaign.id),
        problems_seen=ledger.problems_of(campaign.id) if campaign.started_at else [],
        results=campaign_results.compute(campaign) if campaign.started_at else None,
        schedule_form=ScheduleForm(),
        tz=shop.timezone,
    )


@bp.get("/<int:campaign_id>/progress")
def progress(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    if htmx and campaign.status not in ("scheduled", "sending"):
        # Finished, paused or cancelled while the page polled: reload it once, with its
        # buttons and results as they are now.
        return "", 200, {"HX-Refresh": "true"}
    return render_template(
        "campaigns/_progress.html", campaign=campaign, counts=ledger.status_counts(campaign.id)
    )


@bp.post("/<int:campaign_id>/schedule")
def schedule(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    form = ScheduleForm()
    shop = get_shop()
    if not campaign.editable:
        flash("This campaign has already started.", "error")
    elif problems := ledger.readiness(campaign, shop):
        flash(" ".join(problems), "error")
    elif not form.validate_on_submit():
        flash(" ".join(e for errors in form.errors.values() for e in errors), "error")
    else:
        when = sending.schedule(campaign, shop, form.moment(shop_timezone()))
        if when <= utcnow():
            flash("Sending now: the progress shows below.", "success")
        else:
            local = when.astimezone(shop_timezone()).strftime("%Y-%m-%d %H:%M")
            flash(f"Scheduled for {local} ({shop.timezone}), inside your sending hours.", "success")
    return redirect(url_for(".show", campaign_id=campaign_id))


@bp.post("/<int:campaign_id>/unschedule")
def unschedule(campaign_id: int):
    sending.unschedule(db.get_or_404(Campaign, campaign_id))
    flash("Back to draft: it will not be sent.", "success")
    return redirect(url_for(".show", campaign_id=campaign_id))


@bp.post("/<int:campaign_id>/pause")
def pause(campaign_id: int):
    db.get_or_404(Campaign, campaign_id)
    if sending.pause(campaign_id):
        flash("Paused: nothing more goes out until you resume.", "success")
    return redirect(url_for(".show", campaign_id=campaign_id))


@bp.post("/<int:campaign_id>/resume")
def resume(campaign_id: int):
    db.get_or_404(Campaign, campaign_id)
    if sending.resume(campaign_id):
        sending.queue_send(campaign_id)
        flash("Resumed: the queued recipients are being sent; nobody gets it twice.", "success")
    return redirect(url_for(".show", campaign_id=campaign_id))


@bp.post("/<int:campaign_id>/cancel")
def cancel(campaign_id: int):
    db.get_or_404(Campaign, campaign_id)
    if sending.cancel(campaign_id):
        flash("Cancelled: the recipients still queued will not get it.", "success")
    return redirect(url_for(".show", campaign_id=campaign_id))


@bp.post("/<int:campaign_id>/unknown")
def settle_unknown(campaign_id: int):
    """The owner decides on recipients whose request got no answer."""
    db.get_or_404(Campaign, campaign_id)
    resend = request.form.get("decision") == "resend"
    changed = ledger.settle_unknown(campaign_id, resend)
    if resend and changed:
        sending.queue_send(campaign_id)
        flash(f"{changed} recipients queued again: they may get a second copy.", "success")
    elif changed:
        flash(f"{changed} recipients counted as sent.", "success")
    return redirect(url_for(".show", campaign_id=campaign_id))


@bp.post("/<int:campaign_id>/test")
def test_send(campaign_id: int):
    """One message to the owner's own address, as the first member would get it."""
    campaign = db.get_or_404(Campaign, campaign_id)
    shop = get_shop()
    live = audience(campaign.segment_id)
    if not live or not live.sample:
        flash("The segment has no members to fill in the merge fields with.", "error")
        return redirect(url_for(".show", campaign_id=campaign_id))
    member = live.sample[0]
    to_owner = Recipient(None, member.id, current_user.email)
    payload = next(Payloads(campaign, shop).build([to_owner]))
    if isinstance(payload, ContentError):
        flash(str(payload), "error")
        return redirect(url_for(".show", campaign_id=campaign_id))
    payload["subject"] = "[Test] " + payload.get("subject", campaign.name)
    mailer = mailer_for(current_app.config, test=True)
    outcome = mailer.send(payload)
    db.session.commit()
    mailer.close()
    if outcome.status == "sent":
        where = "your outbox" if mailer.name == "outbox" else current_user.email
        flash(f"Test sent to {where}, filled in as {member.display_name}.", "success")
    else:
        flash(f"The test was not sent: {outcome.error}", "error")
    return redirect(url_for(".show", campaign_id=campaign_id))


# --- the outbox --------------------------------------------------------------------------


@bp.get("/outbox")
def outbox():
    page = max(1, request.args.get("page", 1, type=int))
    query = select(OutboxMessage)
    if campaign_id := request.args.get("campaign", type=int):
        query = query.where(OutboxMessage.campaign_id == campaign_id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    messages = db.session.scalars(
        query.order_by(OutboxMessage.id.desc()).offset((page - 1) * OUTBOX_PAGE).limit(OUTBOX_PAGE)
    ).all()
    return render_template(
        "campaigns/outbox.html",
        messages=messages,
        page=page,
        pages=max(1, -(-total // OUTBOX_PAGE)),
        total=total,
        campaign_id=campaign_id,
    )


@bp.get("/outbox/<int:message_id>")
def outbox_message(message_id: int):
    message = db.get_or_404(OutboxMessage, message_id)
    return render_template("campaigns/outbox_message.html", message=message)
