"""The campaign pages through the test client: what the browser tests do not reach."""

from __future__ import annotations

from sqlalchemy import select

from tests.campaign_helpers import consented, everyone_segment, make_campaign, ready_shop, refresh
from tests.conftest import csrf_from
from webapp.extensions import db
from webapp.models import Campaign, CampaignRecipient, Customer, Task


def started_with_unknowns(status: str = "sent") -> Campaign:
    ready_shop()
    for n in range(3):
        consented("Wyn", n)
    refresh()
    campaign = make_campaign(everyone_segment(), status=status)
    campaign.started_at = campaign.scheduled_at
    for n, customer_id in enumerate(db.session.scalars(select(Customer.id).order_by(Customer.id))):
        db.session.add(
            CampaignRecipient(
                campaign_id=campaign.id,
                customer_id=customer_id,
                email=f"wyn{n}@example.com",
                status="unknown" if n < 2 else "failed",
                error="TimeoutError: timed out" if n < 2 else "SendGrid 400: from: not verified",
            )
        )
    db.session.commit()
    return campaign


def statuses(campaign_id: int) -> list[str]:
    return sorted(
        db.session.scalars(
            select(CampaignRecipient.status).where(CampaignRecipient.campaign_id == campaign_id)
        )
    )


def test_the_page_lists_delivery_problems_and_the_owner_counts_unknowns_as_sent(owner_client):
    campaign = started_with_unknowns()
    page = owner_client.get(f"/campaigns/{campaign.id}")
    html = page.get_data(as_text=True)
    assert "TimeoutError: timed out" in html and "from: not verified" in html
    assert "2 recipients are unknown" in html

    owner_client.post(
        f"/campaigns/{campaign.id}/unknown",
        data={"csrf_token": csrf_from(page), "decision": "sent"},
    )

    assert statuses(campaign.id) == ["failed", "sent", "sent"]
    assert db.session.scalar(select(Task)) is None


def test_the_owner_may_send_to_unknowns_again(owner_client):
    campaign = started_with_unknowns()
    page = owner_client.get(f"/campaigns/{campaign.id}")

    response = owner_client.post(
        f"/campaigns/{campaign.id}/unknown",
        data={"csrf_token": csrf_from(page), "decision": "resend"},
        follow_redirects=True,
    )

    assert "may get a second copy" in response.get_data(as_text=True)
    assert statuses(campaign.id) == ["failed", "queued", "queued"]
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).status == "sending"
    assert db.session.scalar(select(Task.kind)) == "campaign_send"


def test_a_finished_send_reloads_the_polling_page(owner_client):
    campaign = started_with_unknowns()
    polled = owner_client.get(f"/campaigns/{campaign.id}/progress", headers={"HX-Request": "true"})
    assert polled.headers["HX-Refresh"] == "true"
    campaign.status = "sending"
    db.session.commit()
    polled = owner_client.get(f"/campaigns/{campaign.id}/progress", headers={"HX-Request": "true"})
    assert "HX-Refresh" not in polled.headers and 'id="ledger-counts"' in polled.get_data(
        as_text=True
    )


def test_unknown_pages_are_404(owner_client):
    assert owner_client.get("/campaigns/999").status_code == 404
    assert owner_client.get("/campaigns/outbox/999").status_code == 404
    assert owner_client.get("/campaigns/2147483648").status_code == 404


def test_campaign_pages_need_a_login(auth, client):
    auth.create_owner()
    response = client.get("/campaigns/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_preview_as_any_member_found_by_email(owner_client):
    ready_shop()
    for n in range(25):  # more than the sample the select offers
        consented("Xan", n)
    consented("Outsider", accepts_marketing=False)
    refresh()
    segment = everyone_segment()
    from webapp.segmentation import segments

    consenting = segments.create_segment(
        db.session, "Consenting", {"match": "all", "rules": [
            {"field": "consent", "op": "is", "value": "sendable"}]}
    )  # fmt: skip
    db.session.commit()
    page = owner_client.get("/campaigns/new")
    form = {
        "csrf_token": csrf_from(page),
        "name": "Hello",
        "segment_id": str(segment.id),
        "from_email": "shop@example.com",
        "subject": "Hi {{ first_name }} #{{ discount_code }}",
        "body_format": "markdown",
        "body": "Hello",
        "holdout_percent": "10",
        "frequency_cap_days": "3",
        "attribution_days": "7",
        "preview_email": " XAN24@example.com ",
    }

    shown = owner_client.post("/campaigns/preview", data=form).get_data(as_text=True)
    assert "Hi Xan #" in shown and "xan24@example.com" in shown

    form.update(segment_id=str(consenting.id), preview_email="outsider@example.com")
    shown = owner_client.post("/campaigns/preview", data=form).get_data(as_text=True)
    assert "outsider@example.com is not in this segment." in shown
