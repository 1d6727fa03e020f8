"""The demo's own "shop": a few pages on another origin (another port) that carry the embed tag,
so a newcomer sees the surveys as a shopper would, cross-origin as on a real shop.

A plain WSGI app: the pages are built once, when the demo starts, from the shop's embed key,
an order to thank the shopper for, and that order's signature (what the shop's own
templates would compute, e.g. with Liquid's hmac_sha256).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from html import escape
from wsgiref.types import StartResponse, WSGIEnvironment

from werkzeug.serving import BaseWSGIServer, make_server

PRODUCTS = {
    "merino-worsted-yarn": ("Merino Worsted Yarn", "9.50", "Soft, springy and machine washable."),
    "learn-to-knit-scarf-kit": (
        "Learn to Knit Scarf Kit",
        "24.00",
        "Everything for a first scarf.",
    ),
    "acrylic-paint-set": ("Acrylic Paint Set", "32.00", "Twelve artist-grade colours."),
}


@dataclass(frozen=True, slots=True)
class ShopPage:
    """What the pages need to know: where Patchwork is and who the shop is."""

    patchwork_url: str  # the embed's origin, e.g. http://127.0.0.1:5000
    shop_key: str
    shop_name: str
    order_ref: str | None = None  # the order the confirmation page thanks the shopper for
    signature: str | None = None  # sign_identity over that order id

    def tag(self, order: bool = False) -> str:
        attrs = {"src": f"{self.patchwork_url}/embed.js", "data-shop-key": self.shop_key}
        if order and self.order_ref:
            attrs["data-order-id"] = self.order_ref
            if self.signature:
                attrs["data-signature"] = self.signature
        text = " ".join(f'{name}="{escape(value)}"' for name, value in attrs.items())
        return f"<script async {text}></script>"


STYLE = """
  body { margin: 0; font-family: Georgia, serif; color: #3b2f2f; background: #fdf6e3; }
  header, main, footer { max-width: 46rem; margin: 0 auto; padding: 1rem; }
  header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: baseline; }
  header h1 { font-size: 1.6rem; margin: 0; color: #7a1f1f; }
  nav a { margin-right: .75rem; }
  a { color: #0b6e4f; }
  .products { display: grid; gap: 1rem;
              grid-template-columns: repeat(auto-fill, minmax(12rem, 1fr)); }
  .product { background: #fff; border: 1px solid #e2d3b5; border-radius: 6px; padding: 1rem; }
  .note { background: #fff8d6; border: 1px solid #e6d27a; padding: .75rem 1rem; }
  button { background: #7a1f1f; color: #fff; border: 0; padding: .6rem 1rem; border-radius: 4px; }
"""


def _layout(page: ShopPage, title: str, body: str, order: bool = False) -> str:
    name = escape(page.shop_name)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · {name}</title>
<style>{STYLE}</style>
</head>
<body>
<header><h1>{name}</h1>
<nav><a href="/">Shop</a> <a href="/cart">Basket</a>
<a href="/checkout/thank-you">Order confirmation</a></nav>
</header>
<main>
{body}
</main>
<footer><p class="note">A demo page on its own origin, not part of Patchwork: it carries
Patchwork's one-line embed tag, as a real shop's theme would. Move the pointer out through the
top of the window (or, on a phone, scroll up fast or switch tabs and back) to see the
exit-intent survey; the order confirmation page shows the post-purchase one.</p></footer>
{page.tag(order)}
</body>
</html>"""


def _home(page: ShopPage) -> str:
    cards = "".join(
        f'<article class="product"><h2><a href="/products/{slug}">{escape(title)}</a></h2>'
        f"<p>{escape(blurb)}</p><p>${price}</p></article>"
        for slug, (title, price, blurb) in PRODUCTS.items()
    )
    return _layout(page, "Shop", f'<h2>New in</h2><div class="products">{cards}</div>')


def _product(page: ShopPage, slug: str) -> str | None:
    if slug not in PRODUCTS:
        return None
    title, price, blurb = PRODUCTS[slug]
    body = (
        f"<h2>{escape(title)}</h2><p>{escape(blurb)}</p><p>${price}</p>"
        '<form action="/cart"><button type="submit">Add to basket</button></form>'
    )
    return _layout(page, title, body)


def _thank_you(page: ShopPage) -> str:
    order = escape(page.order_ref or "")
    body = (
        f"<h2>Thank you for your order {order}!</h2>"
        "<p>We will email you when it ships. This page's tag carries the order id and its"
        " signature, so your answers are linked to the order and its customer.</p>"
    )
    return _layout(page, "Thank you", body, order=True)


def shop_app(page: ShopPage):
    """The demo shop as a WSGI app."""
    pages = {
        "/": _home(page),
        "/cart": _layout(page, "Basket", "<h2>Your basket</h2><p>Two skeins of merino.</p>"),
        "/checkout/thank-you": _thank_you(page),
    }
    pages |= {f"/products/{slug}": _product(page, slug) for slug in PRODUCTS}

    def app(environ: WSGIEnvironment, start_response: StartResponse):
        html = pages.get(environ.get("PATH_INFO") or "/")
        status = "200 OK" if html else "404 Not Found"
        html = html or _layout(page, "Not found", "<h2>No such page</h2>")
        body = html.encode()
        start_response(
            status,
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def start_shop_page(host: str, port: int, page: ShopPage) -> BaseWSGIServer:
    """Serve the demo shop in a daemon thread; returns the running server."""
    server = make_server(host, port, shop_app(page), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True, name="demo-shop").start()
    return server
