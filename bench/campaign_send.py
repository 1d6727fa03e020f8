"""Time a 100,000-recipient campaign send against posting the same requests, pre-built.

    python bench/campaign_send.py --recipients 100000 [--database-url URL] [--concurrency 8]

Builds (once, kept for the next run) a database of N consented customers in one segment
(bench/data/campaign-N.db by default), starts the tests' local SendGrid stand-in
(tests/sendgrid_server.py) in its own process, then, each in a fresh process:

- **send, template**: `patchwork campaigns send` of a campaign with a SendGrid dynamic
  template (1000 personalizations per request, one connection);
- **baseline, template**: the same requests, built before the clock starts, posted over one
  keep-alive connection;
- **send, body**: a campaign whose Markdown body Patchwork renders per recipient (one request
  each, SENDGRID_CONCURRENCY connections);
- **baseline, body**: the same requests, pre-built, posted over as many connections.

Prints one JSON object: seconds, requests, peak RSS (MB) of each process, and the ratio
send / baseline. Goal (issue 6): each send at most 2x its baseline, peak memory < 300 MB.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT / "bench" / "data"
API_KEY = "SG.bench-key"
BODY = """Hi {{ first_name or "there" }},

New in {{ craft or "the shop" }} at {{ shop_name }}: [see what's new](https://shop.example/new).

{% for p in recommendations %}
- {{ p.title }} ({{ p.price }})
{% endfor %}

Use **{{ discount_code }}** at checkout.
"""


def app_for(url: str):
    from webapp import create_app

    return create_app("default", {"DATABASE_URL": url})


def prepare(url: str, recipients: int) -> None:
    """N consented customers, one segment holding them all, one refresh."""
    from sqlalchemy import func, select, text

    from webapp.database import ensure_database
    from webapp.extensions import db
    from webapp.models import Customer

    app = app_for(url)
    ensure_database(app)
    with app.app_context():
        if db.session.scalar(select(func.count()).select_from(Customer)) < recipients:
            _fill(recipients)
        if db.engine.dialect.name == "postgresql":
            # Statistics as a shop's database has them, autovacuum having analyzed since
            # the last refresh (freshly filled, PostgreSQL plans the ledger's INSERT ...
            # SELECT for the 89 profiles it last counted).
            db.session.execute(text("ANALYZE"))
            db.session.commit()


def _fill(recipients: int) -> None:
    from sqlalchemy import insert, select

    from webapp.extensions import db
    from webapp.models import Customer, Segment, ShopSettings
    from webapp.segmentation import segments
    from webapp.segmentation.refresh import run_refresh

    for start in range(0, recipients, 10000):
        db.session.execute(
            insert(Customer),
            [
                {
                    "first_name": f"Maker{n}",
                    "email": f"maker{n}@example.com",
                    "email_norm": f"maker{n}@example.com",
                    "accepts_marketing": True,
                }
                for n in range(start, min(recipients, start + 10000))
            ],
        )
    shop = db.session.get(ShopSettings, 1)
    shop.postal_address = "1 Mill Street\nBurlington"
    if db.session.scalar(select(Segment).where(Segment.name == "Everyone")) is None:
        segments.create_segment(db.session, "Everyone", {"match": "all", "rules": []})
    db.session.commit()
    run_refresh(trigger="cli")


def new_campaign(url: str, template: bool) -> int:
    from datetime import UTC, datetime

    from sqlalchemy import delete, select

    from webapp.extensions import db
    from webapp.models import Campaign, CampaignRecipient, Segment

    app = app_for(url)
    with app.app_context():
        # Each run starts from the same database: the ledgers of earlier runs go.
        earlier = select(Campaign.id).where(Campaign.name.like("Bench %"))
        db.session.execute(
            delete(CampaignRecipient).where(CampaignRecipient.campaign_id.in_(earlier))
        )
        db.session.execute(delete(Campaign).where(Campaign.name.like("Bench %")))
        segment = db.session.scalar(select(Segment).where(Segment.name == "Everyone"))
        campaign = Campaign(
            name=f"Bench {datetime.now(UTC):%H%M%S}",
            segment_id=segment.id,
            from_email="shop@example.com",
            subject="" if template else "Hi {{ first_name }}",
            body="" if template else BODY,
            template_id="d-" + "b" * 32 if template else "",
            discount_code="BENCH10",
            holdout_percent=0,
            frequency_cap_days=0,
            status="draft",
        )
        db.session.add(campaign)
        db.session.commit()
        # ... and on PostgreSQL with the space of the rows deleted given back, as a shop
        # that has not just deleted 100,000 rows has it (without, the ledger grows by a
        # run's rows each run, its dead rows left to autovacuum).
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM FULL campaign_recipients"
                )
        return campaign.id


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- phases, each run in its own process ---------------------------------------------------


def phase_send(url: str, host: str, campaign_id: int, concurrency: int) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SENDGRID_API_KEY": API_KEY,
        "SENDGRID_API_HOST": host,
        "SENDGRID_CONCURRENCY": str(concurrency),
    }
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(Path(__file__)), "_send", url, str(campaign_id)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    inner = json.loads(result.stdout)
    return {**inner, "wall_seconds": round(seconds, 2)}


def _send(url: str, campaign_id: int) -> None:
    from datetime import UTC, datetime

    from webapp.campaigns.sending import send_campaign
    from webapp.extensions import db
    from webapp.models import Campaign

    app = app_for(url)
    with app.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        campaign.status, campaign.scheduled_at = "scheduled", datetime.now(UTC)
        db.session.commit()
        started, cpu = time.perf_counter(), time.process_time()
        summary = send_campaign(campaign_id, sending_hours=False)  # as `campaigns send` does
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    sent = summary.counts.get("sent", 0)
    if not sent or sent != sum(summary.counts.values()):
        raise SystemExit(f"the send did not reach everyone: {summary.counts}")
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "sent": sent,
                "peak_mb": round(peak_mb(), 1),
            }
        )
    )


def _baseline(url: str, host: str, campaign_id: int, connections: int) -> None:
    """The same requests as the send, built first, then posted and timed."""
    from webapp.campaigns.mailer import SendGridMailer
    from webapp.campaigns.messages import Payloads, Recipient
    from webapp.extensions import db
    from webapp.models import Campaign, Customer, ShopSettings

    app = app_for(url)
    with app.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        campaign.id = campaign_id
        people = [
            Recipient(n, customer_id, email)
            for n, (customer_id, email) in enumerate(
                db.session.execute(
                    db.select(Customer.id, Customer.email).order_by(Customer.id)
                ).all(),
                start=1,
            )
        ]
        payloads = Payloads(campaign, db.session.get(ShopSettings, 1))
        encode = SendGridMailer(API_KEY, host).encode  # the very bytes the send posts
        bodies = []
        for start in range(0, len(people), 1000):
            bodies += [encode(p) for p in payloads.build(people[start : start + 1000])]
        db.session.rollback()

    netloc = host.split("://", 1)[1]
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()
    failures = []

    def worker():
        connection = http.client.HTTPConnection(netloc, timeout=30)
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            connection.request("POST", "/v3/mail/send", body=bodies[index], headers=headers)
            answer = connection.getresponse()
            answer.read()
            if answer.status != 202:
                failures.append(answer.status)
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "requests": len(bodies),
                "failures": len(failures),
                "peak_mb": round(peak_mb(), 1),
            }
        )
    )


def phase_baseline(url: str, host: str, campaign_id: int, connections: int) -> dict:
    result = subprocess.run(
        [sys.executable, str(Path(__file__)), "_baseline", url, host, str(campaign_id),
         str(connections)],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


SERVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.sendgrid_server import FakeSendGrid
server = FakeSendGrid(sys.argv[2]).start()
print(server.url, flush=True)
sys.stdin.read()
"""


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_send":
        return _send(sys.argv[2], int(sys.argv[3]))
    if len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        return _baseline(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=100000)
    parser.add_argument("--database-url")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--mode",
        choices=("template", "body"),
        action="append",
        help="only this mode (repeatable; default both)",
    )
    args = parser.parse_args()
    DATA.mkdir(exist_ok=True)
    url = args.database_url or f"sqlite:///{DATA / f'campaign-{args.recipients}.db'}"
    prepare(url, args.recipients)

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(ROOT), API_KEY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    host = server.stdout.readline().strip()
    report = {"recipients": args.recipients, "database": url.split(":", 1)[0]}
    try:
        for mode, template, connections in (
            ("template", True, 1),
            ("body", False, args.concurrency),
        ):
            if args.mode and mode not in args.mode:
                continue
            campaign_id = new_campaign(url, template)
            send = phase_send(url, host, campaign_id, connections)
            baseline = phase_baseline(url, host, campaign_id, connections)
            report[mode] = {
                "connections": connections,
                "send": send,
                "baseline": baseline,
                "ratio": round(send["seconds"] / baseline["seconds"], 2),
            }
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
