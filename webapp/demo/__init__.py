"""The demo craft shop: a seeded generator of Shopify exports (also used by bench/) and the
`patchwork demo` command that imports them and serves the app."""

from webapp.demo.command import demo_command

__all__ = ["demo_command"]
