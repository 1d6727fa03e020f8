"""Campaigns: compose in the browser, freeze the recipients, send through SendGrid (or the
outbox) without ever sending twice, take SendGrid's events back, and measure the lift over a
holdout group."""
