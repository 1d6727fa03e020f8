"""A 5,000-recipient send killed (SIGKILL) at random points and resumed from the command
line: the local SendGrid never receives anyone twice, and everyone is mailed once except
at most one batch in flight per kill, which the ledger reports as unknown."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from sqlalchemy import insert, select

from tests.campaign_helpers import API_KEY, everyone_segment, make_campaign, ready_shop, refresh
from tests.sendgrid_server import FakeSendGrid
from webapp.extensions import db
from webapp.models import CampaignRecipient, Customer

RECIPIENTS = 5000
CONCURRENCY = 4
REQUESTS_PER_WORKER = 10  # a batch: 40 requests in flight together at most
KILLS = 3
WAIT = 120


def command(app, sg, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PATCHWORK_CONFIG": "test",
        "DATABASE_URL": app.config["DATABASE_URL"],
        "SENDGRID_API_KEY": API_KEY,
        "SENDGRID_API_HOST": sg.url,
        "SENDGRID_CONCURRENCY": str(CONCURRENCY),
        "CAMPAIGN_REQUESTS_PER_WORKER": str(REQUESTS_PER_WORKER),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "webapp.cli", "campaigns", *args, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_sigkill_at_random_points_then_resume_never_sends_twice(app):
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    ready_shop()
    db.session.execute(
        insert(Customer),
        [
            {
                "first_name": f"Knitter{n}",
                "email": f"k{n}@example.com",
                "email_norm": f"k{n}@example.com",
                "accepts_marketing": True,
            }
            for n in range(RECIPIENTS)
        ],
    )
    db.session.commit()
    refresh()
    campaign = make_campaign(everyone_segment(), status="draft", scheduled_at=None)

    with FakeSendGrid(API_KEY) as sg:
        sg.delay = 0.002  # a send of a few seconds, so that the kills land inside it
        verb = "send"
        for kill in range(KILLS):
            target = sg.accepted_count() + rng.randrange(50, 1200)
            process = command(app, sg, verb, str(campaign.id))
            wait_for(
                lambda t=target, p=process: sg.accepted_count() >= t or p.poll() is not None,
                f"kill {kill + 1} (seed {seed})",
            )
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=WAIT)
            verb = "resume"
        process = command(app, sg, "resume", str(campaign.id))
        out, err = process.communicate(timeout=WAIT)
        assert process.returncode == 0, err
        summary = json.loads(out)
        received = sg.recipients()

    assert summary["status"] == "sent", (seed, summary)
    assert len(received) == len(set(received)), f"duplicates at SendGrid (seed {seed})"
    db.session.expire_all()
    rows = db.session.execute(
        select(CampaignRecipient.email, CampaignRecipient.status).where(
            CampaignRecipient.campaign_id == campaign.id
        )
    ).all()
    by_status: dict[str, set[str]] = {}
    for email, status in rows:
        by_status.setdefault(status, set()).add(email)
    sent, unknown = by_status.get("sent", set()), by_status.get("unknown", set())
    assert set(by_status) <= {"sent", "unknown"}, (seed, by_status.keys())
    assert len(sent) + len(unknown) == RECIPIENTS
    assert sent <= set(received), "a row marked sent that SendGrid never took"
    assert set(received) <= sent | unknown
    assert len(unknown) <= KILLS * CONCURRENCY * REQUESTS_PER_WORKER, (seed, len(unknown))
