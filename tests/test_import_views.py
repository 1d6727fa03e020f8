"""The browser's import flow: upload -> preview -> confirm -> progress -> result."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import csrf_from
from webapp import tasks
from webapp.extensions import db
from webapp.models import Customer, Order, OrderLine, Product, Task

SHOPIFY_HEADER = (
    "Name,Email,Financial Status,Accepts Marketing,Currency,Total,Created at,"
    "Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Billing Name,Billing City,"
    "Billing Country,Refunded Amount,Cancelled at,Id,Tags,Source"
)
ADA = (
    "#1001,ada@example.com,paid,yes,USD,42.50,2024-03-05 14:23:11 -0500,2,Merino yarn,15.00,"
    "YARN-1,Ada Lovelace,London,GB,0.00,,5001,,web\n"
    "#1001,ada@example.com,,,,,,1,Bamboo needles,12.50,NEED-1,,,,,,,,\n"
)
GRACE_BAD = (
    "#1002,grace@example.com,paid,no,USD,20.00,2024-03-06 10:00:00 -0500,two,Acrylic paint,"
    "20.00,PAINT-1,Grace Hopper,New York,US,0.00,,5002,,web\n"
)
LINUS = (
    "#1003,linus@example.com,paid,yes,USD,30.00,2024-03-07 09:00:00 -0500,1,Air-dry clay,30.00,"
    "CLAY-1,Linus Torvalds,Helsinki,FI,0.00,,5003,,web\n"
)
# The bad row (a quantity of "two") starts on line 4: the header is line 1, Ada's order 2-3.
WITH_BAD_ROW = f"{SHOPIFY_HEADER}\n{ADA}{GRACE_BAD}{LINUS}".encode()
CLEAN = f"{SHOPIFY_HEADER}\n{ADA}{LINUS}".encode()


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def upload(client, content: bytes, filename: str = "orders_export.csv", what: str = "orders"):
    page = client.get("/imports/")
    return client.post(
        "/imports/",
        data={
            "csrf_token": csrf_from(page),
            "what": what,
            "format": "auto",
            "file": (io.BytesIO(content), filename),
        },
    )


def post(client, url: str, **data):
    page = client.get("/imports/")
    return client.post(url, data={"csrf_token": csrf_from(page), **data})


def previewed(client, content: bytes, **kwargs) -> tuple[str, str]:
    """Upload a file, run its preview task; returns (the preview's URL, its page)."""
    response = upload(client, content, **kwargs)
    assert response.status_code == 303, response.get_data(as_text=True)
    url = response.headers["Location"]
    assert tasks.run_pending() == 1
    return url, client.get(url).get_data(as_text=True)


def test_a_bad_row_is_listed_with_its_line_and_nothing_is_imported(owner_client):
    url, html = previewed(owner_client, WITH_BAD_ROW)
    bad_rows = re.search(r'<table class="bad-rows">.*?</table>', html, re.S).group(0)
    assert re.search(r"<td[^>]*>4</td>\s*<td>[^<]*quantity &#39;two&#39;", bad_rows)
    assert "This file has 1 bad row; nothing will be imported" in html
    assert "Import only the good rows" in html
    assert ">Import</button>" not in html
    assert (count(Customer), count(Order), count(OrderLine)) == (0, 0, 0)
    # Without choosing to skip the bad rows, a confirm imports nothing.
    response = post(owner_client, f"{url}/confirm")
    assert response.status_code == 303
    assert response.headers["Location"] == url
    assert tasks.run_pending() == 0
    assert count(Order) == 0


def test_import_only_the_good_rows(owner_client):
    url, _ = previewed(owner_client, WITH_BAD_ROW)
    response = post(owner_client, f"{url}/confirm", skip_bad_rows="1")
    assert response.status_code == 303
    import_url = response.headers["Location"]
    assert import_url != url
    assert tasks.run_pending() == 1
    assert (count(Customer), count(Order), count(OrderLine)) == (2, 2, 3)
    assert db.session.scalar(select(Order).where(Order.external_id == "#1002")) is None
    html = owner_client.get(import_url).get_data(as_text=True)
    assert "The import has finished" in html
    assert "1 bad row was left out." in html
    assert 'href="/customers/"' in html


def test_a_clean_file_imports_after_confirm(owner_client):
    url, html = previewed(owner_client, CLEAN)
    assert "bad row" not in html
    counts = re.search(r'<table class="counts">.*?</table>', html, re.S).group(0)
    assert re.search(r"Customers</th><td[^>]*>2</td>", counts)
    assert re.search(r"Order lines</th><td[^>]*>3</td>", counts)
    assert count(Order) == 0
    response = post(owner_client, f"{url}/confirm")
    assert response.status_code == 303
    tasks.run_pending()
    assert (count(Customer), count(Order), count(OrderLine)) == (2, 2, 3)
    # The preview now points at its import instead of offering it again.
    html = owner_client.get(url).get_data(as_text=True)
    assert response.headers["Location"] in html
    assert ">Import</button>" not in html


def test_a_double_confirm_imports_once(owner_client):
    url, _ = previewed(owner_client, CLEAN)
    first = post(owner_client, f"{url}/confirm")
    second = post(owner_client, f"{url}/confirm")
    assert first.headers["Location"] == second.headers["Location"]
    assert tasks.run_pending() == 1
    third = post(owner_client, f"{url}/confirm")
    assert third.headers["Location"] == first.headers["Location"]
    assert tasks.run_pending() == 0
    assert count(Order) == 2
    assert db.session.scalar(select(func.count()).where(Task.kind == "import_orders")) == 1


def test_upload_is_stored_under_a_random_name_and_nothing_is_parsed_in_the_request(
    app, owner_client
):
    response = upload(owner_client, CLEAN)
    task = db.session.scalars(select(Task)).one()
    assert response.headers["Location"] == f"/imports/{task.id}"
    assert (task.kind, task.status) == ("import_orders_preview", "queued")
    path = Path(task.params["path"])
    assert path.parent == Path(app.config["UPLOAD_DIR"])
    assert re.fullmatch(r"[0-9a-f]{32}\.csv", path.name)
    assert path.read_bytes() == CLEAN
    assert task.params["filename"] == "orders_export.csv"


@pytest.mark.parametrize(
    ("content", "filename", "error"),
    [
        (b"", "orders.csv", "The file is empty."),
        (b"\n\n  \n", "orders.csv", "The file is empty."),
        (b"PK\x03\x04\x14\x00\x06\x00rest of a zip", "orders.xlsx", "This is not a CSV file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "photo.png", "This is not a CSV file"),
        (b"Dear shop\nthis is a letter, really.\n", "letter.txt", "does not look like a CSV file"),
    ],
)
def test_empty_or_non_csv_file_is_a_form_error(app, owner_client, content, filename, error):
    response = upload(owner_client, content, filename=filename)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.search(r'<small class="field-error" id="file-error">[^<]*' + re.escape(error), html)
    assert count(Task) == 0
    upload_dir = Path(app.config["UPLOAD_DIR"])
    assert not upload_dir.exists() or not any(upload_dir.iterdir())


def test_a_missing_file_is_a_form_error(owner_client):
    page = owner_client.get("/imports/")
    response = owner_client.post(
        "/imports/", data={"csrf_token": csrf_from(page), "what": "orders", "format": "auto"}
    )
    assert "Choose the CSV file to upload." in response.get_data(as_text=True)
    assert count(Task) == 0


def test_a_file_over_the_size_limit_gets_the_413_page(app, owner_client):
    app.config["MAX_CONTENT_LENGTH"] = 4096
    response = upload(owner_client, CLEAN + b"#9,x@example.com" * 500)
    assert response.status_code == 413
    assert "File too large" in response.get_data(as_text=True)
    assert count(Task) == 0


def test_htmx_poll_gets_the_progress_partial_until_the_task_is_done(owner_client):
    response = upload(owner_client, CLEAN)
    url = response.headers["Location"]
    task_id = url.rsplit("/", 1)[1]
    headers = {"HX-Request": "true", "HX-Target": f"task-{task_id}-progress"}

    polled = owner_client.get(url, headers=headers).get_data(as_text=True)
    assert "<html" not in polled
    assert polled.lstrip().startswith(f'<div id="task-{task_id}-progress"')
    assert 'hx-trigger="every 1s"' in polled
    assert "<progress" in polled
    assert f'href="{url}">Refresh</a>' in polled  # the way on without JavaScript

    # The whole page embeds the same component.
    page = owner_client.get(url).get_data(as_text=True)
    assert "<html" in page and f'id="task-{task_id}-progress"' in page

    tasks.run_pending()
    finished = owner_client.get(url, headers=headers).get_data(as_text=True)
    assert "<html" not in finished
    assert "hx-trigger" not in finished  # the outcome replaces the component: polling stops
    assert ">Import</button>" in finished


def test_progress_shows_how_far_a_running_task_got(owner_client):
    url = upload(owner_client, CLEAN).headers["Location"]
    task = db.session.scalars(select(Task)).one()
    task.status, task.progress_done, task.progress_total = "running", 250, 1000
    task.message = "Checking rows"
    db.session.commit()
    html = owner_client.get(
        url, headers={"HX-Request": "true", "HX-Target": f"task-{task.id}-progress"}
    ).get_data(as_text=True)
    assert '<progress value="250" max="1000"' in html
    assert "Checking rows · 25%" in html


def test_a_failed_task_shows_its_error(owner_client):
    url = upload(owner_client, CLEAN).headers["Location"]
    task = db.session.scalars(select(Task)).one()
    task.status, task.error = "failed", "OSError: the disk is full"
    db.session.commit()
    html = owner_client.get(url).get_data(as_text=True)
    assert "The preview failed: OSError: the disk is full" in html
    assert "hx-trigger" not in html


def test_a_file_with_an_unknown_header_says_so(owner_client):
    _, html = previewed(owner_client, b"colour,size\nred,L\n")
    assert "The preview failed: The header is neither a Shopify orders export" in html
    assert ">Import</button>" not in html
    assert count(Order) == 0


def test_cancel_deletes_the_upload_and_imports_nothing(owner_client):
    url, _ = previewed(owner_client, CLEAN)
    task = db.session.scalars(select(Task)).one()
    path = Path(task.params["path"])
    assert path.exists()
    response = post(owner_client, f"{url}/cancel")
    assert response.status_code == 303
    assert response.headers["Location"] == "/imports/"
    assert not path.exists()
    assert "Cancelled" in owner_client.get(url).get_data(as_text=True)
    # A confirm sent later (from a stale tab) imports nothing.
    response = post(owner_client, f"{url}/confirm")
    assert response.headers["Location"] == "/imports/"
    assert tasks.run_pending() == 0
    assert count(Order) == 0


def test_history_lists_imports_newest_first(owner_client):
    url, _ = previewed(owner_client, CLEAN, filename="first.csv")
    post(owner_client, f"{url}/confirm")
    tasks.run_pending()
    previewed(owner_client, WITH_BAD_ROW, filename="second.csv")
    html = owner_client.get("/imports/").get_data(as_text=True)
    history = re.search(r'<table id="import-history">.*?</table>', html, re.S).group(0)
    rows = re.findall(r"<tr>.*?</tr>", history, re.S)[1:]
    assert [re.search(r">(\w+\.csv)<", row).group(1) for row in rows] == [
        "second.csv",
        "first.csv",
        "first.csv",
    ]
    assert "1 bad row" in rows[0]
    assert "2 new customers, 2 new orders" in rows[1]


def test_first_thousand_bad_rows_are_listed_with_the_total(owner_client):
    bad = "".join(
        f"#{2000 + i},x{i}@example.com,paid,no,USD,1.00,2024-03-06,many,Yarn,1.00,Y,,,,,,,,\n"
        for i in range(1001)
    )
    _, html = previewed(owner_client, f"{SHOPIFY_HEADER}\n{bad}".encode())
    assert "Showing the first 1,000 of 1,001 bad rows." in html
    assert html.count("quantity &#39;many&#39;") == 1000


def test_products_preview_then_import(owner_client):
    content = b"sku,title,category,tier,price\nYARN-1,Merino yarn,yarn,standard,15.00\n"
    url, html = previewed(owner_client, content, filename="products.csv", what="products")
    assert re.search(r"Products</th><td[^>]*>1</td>", html)
    assert count(Product) == 0
    response = post(owner_client, f"{url}/confirm")
    tasks.run_pending()
    assert count(Product) == 1
    assert 'href="/catalog/"' in owner_client.get(response.headers["Location"]).get_data(
        as_text=True
    )


def test_an_unknown_task_is_not_found(owner_client):
    assert owner_client.get("/imports/999").status_code == 404
    other = tasks.enqueue("refresh_segments", {})
    assert owner_client.get(f"/imports/{other.id}").status_code == 404


def test_the_file_of_a_finished_import_is_removed_at_the_next_upload(owner_client):
    url, _ = previewed(owner_client, CLEAN)
    path = Path(db.session.scalars(select(Task)).one().params["path"])
    post(owner_client, f"{url}/confirm")
    tasks.run_pending()
    assert path.exists()  # an interrupted import is completed from the same file
    upload(owner_client, CLEAN)
    assert not path.exists()
