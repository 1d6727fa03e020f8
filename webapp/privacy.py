"""Privacy: what is kept of an erased customer, so that imports never bring them back."""

from __future__ import annotations

import hashlib


def email_hash(email: str) -> str:
    """One-way SHA-256 of the normalised (trimmed, lower-cased) email."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()
