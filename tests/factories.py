"""Rows made directly with the models, so that a test reads like its scenario."""

from datetime import UTC, datetime

from webapp.extensions import db
from webapp.models import Customer, Order, OrderLine, Survey

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def add_customer(first=None, last=None, email=None, **fields) -> Customer:
    customer = Customer(
        first_name=first,
        last_name=last,
        email=email,
        email_norm=email.strip().lower() if email else None,
        **fields,
    )
    db.session.add(customer)
    db.session.commit()
    return customer


def add_order(customer, external_id, total_cents, lines=(), **fields) -> Order:
    order = Order(
        customer_id=customer.id,
        external_id=external_id,
        placed_at=fields.pop("placed_at", T0),
        total_cents=total_cents,
        **fields,
    )
    for position, (name, sku, quantity, price, category) in enumerate(lines, start=1):
        order.lines.append(
            OrderLine(
                position=position,
                name=name,
                sku=sku,
                quantity=quantity,
                price_cents=price,
                category=category,
            )
        )
    db.session.add(order)
    db.session.commit()
    return order


def add_survey(template_key: str = "post_purchase_profile", publish: bool = True) -> Survey:
    """A survey made from a stock template, published unless told otherwise."""
    from webapp.surveys.manage import create_survey
    from webapp.surveys.manage import publish as publish_survey

    survey = create_survey(db.session, template_key)
    if publish:
        publish_survey(survey)
    db.session.commit()
    return survey
