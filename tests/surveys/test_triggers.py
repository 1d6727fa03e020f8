"""Unit tests of the survey domain (surveys/): no database, no Flask."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from surveys.errors import DefinitionInvalid
from surveys.triggers import (
    DEFAULT_COOLDOWN_DAYS,
    TriggerSettings,
    cooldown_allows,
    device_allowed,
    device_class,
    embed_document,
    frequency_allows,
    in_sample,
    parse_triggers,
    to_embed_config,
    url_matches,
    validate_cooldown_days,
    validate_triggers,
)

# --- triggers ------------------------------------------------------------------------------


def test_default_triggers_are_valid_and_round_trip():
    settings_ = TriggerSettings()
    assert validate_triggers(settings_.to_dict()) == []
    assert parse_triggers(settings_.to_dict()) == settings_
    assert parse_triggers({}) == settings_


@pytest.mark.parametrize(
    ("data", "path", "message_part"),
    [
        ({"kind": "after_seconds"}, "triggers.delay_seconds", "from 1 to 3600"),
        ({"kind": "after_seconds", "delay_seconds": 0}, "triggers.delay_seconds", "from 1"),
        ({"kind": "after_seconds", "delay_seconds": "5"}, "triggers.delay_seconds", "whole"),
        ({"kind": "page_load", "delay_seconds": 5}, "triggers.delay_seconds", "Only 'after N"),
        ({"device": "phone"}, "triggers.device", "all, desktop, mobile"),
        ({"sample_percent": 101}, "triggers.sample_percent", "0 to 100"),
        ({"sample_percent": -1}, "triggers.sample_percent", "0 to 100"),
        ({"sample_percent": 50.5}, "triggers.sample_percent", "whole number"),
        ({"frequency": "daily"}, "triggers.frequency", "once, until_answered"),
        ({"frequency": "every_n_days"}, "triggers.frequency_days", "from 1 to 365"),
        ({"frequency": "every_n_days", "frequency_days": 400}, "triggers.frequency_days", "365"),
        ({"frequency": "once", "frequency_days": 3}, "triggers.frequency_days", "Only 'every"),
        ({"url_include": "/products/*"}, "triggers.url_include", "list of patterns"),
        ({"url_include": ["products/*"]}, "triggers.url_include[0]", "Start a pattern with /"),
        ({"url_include": ["/a", ""]}, "triggers.url_include[1]", "Enter a pattern"),
        ({"url_include": ["/a b"]}, "triggers.url_include[0]", "spaces"),
        ({"url_exclude": ["/cart?x=1"]}, "triggers.url_exclude[0]", "query string"),
        ({"url_exclude": ["https:///cart"]}, "triggers.url_exclude[0]", "host"),
        ({"url_exclude": [3]}, "triggers.url_exclude[0]", "must be text"),
        ({"url_exclude": ["/" + "a" * 300]}, "triggers.url_exclude[0]", "at most 300"),
        ({"url_exclude": [f"/p{i}" for i in range(21)]}, "triggers.url_exclude", "At most 20"),
        ({"colour": "red"}, "triggers.colour", "Unknown setting"),
    ],
)
def test_each_trigger_problem_is_reported_at_its_path(data, path, message_part):
    errors = {e.path: e.message for e in validate_triggers(data)}
    assert path in errors, errors
    assert message_part in errors[path]


def test_parse_triggers_raises_on_invalid_settings():
    with pytest.raises(DefinitionInvalid):
        parse_triggers({"sample_percent": 200})


def test_cooldown_days_validation():
    assert validate_cooldown_days(DEFAULT_COOLDOWN_DAYS) is None
    assert validate_cooldown_days(0) is None
    assert DEFAULT_COOLDOWN_DAYS == 7
    for bad in (-1, 366, "7", 7.0, True):
        assert validate_cooldown_days(bad)


@pytest.mark.parametrize(
    ("include", "exclude", "url", "shown"),
    [
        ((), (), "https://shop.example/anything?x=1", True),
        (("/products/*",), (), "https://shop.example/products/yarn", True),
        (("/products/*",), (), "/products/yarn/red?variant=2#top", True),
        (("/products/*",), (), "https://shop.example/collections/yarn", False),
        (("/products/*",), (), "/products", False),
        (("/cart",), (), "/cart/", True),
        (("/cart/",), (), "/cart", True),
        (("/Cart",), (), "/CART", True),
        (("/",), (), "https://shop.example/", True),
        (("/",), (), "https://shop.example", True),
        (("/",), (), "/products/yarn", False),
        (("*",), (), "x", False),  # not a valid pattern anyway: never matches a path
        (("/collections/garné",), (), "/collections/garn%C3%A9", True),
        (("/a.b",), (), "/aXb", False),
        (("https://shop.example/*",), (), "https://shop.example/products/x", True),
        (("https://shop.example/*",), (), "https://other.example/products/x", False),
        (("https://*.shop.example/*",), (), "https://eu.shop.example/a", True),
        (("https://shop.example/*",), (), "/products/x", False),
        (("https://shop.example/",), (), "https://shop.example/", True),  # the home page
        (("https://shop.example/",), (), "https://shop.example", True),
        (("https://shop.example/",), (), "https://shop.example/products/x", False),
        (("https://shop.example/*",), (), "https://shop.example/", True),
        ((), ("/checkout*",), "/checkouts/123", False),
        ((), ("/checkout*",), "/products/x", True),
        (("/products/*",), ("/products/gift-card",), "/products/gift-card", False),
        (("/products/*",), ("/products/gift-card",), "/products/yarn", True),
    ],
)
def test_url_matches(include, exclude, url, shown):
    assert url_matches(TriggerSettings(url_include=include, url_exclude=exclude), url) is shown


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "mobile",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0 Mobile Safari/537.36",
            "mobile",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Mobile/15E148",
            "tablet",
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0 Safari/537.36",
            "tablet",
        ),
        ("Mozilla/5.0 (Android 13; Tablet; rv:120.0) Gecko/120.0 Firefox/120.0", "tablet"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0 Safari/537.36",
            "desktop",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Safari/605.1.15",
            "desktop",
        ),
        ("", "desktop"),
        (None, "desktop"),
    ],
)
def test_device_class(user_agent, expected):
    assert device_class(user_agent) == expected


def test_device_setting_treats_tablets_as_mobile():
    assert device_allowed(TriggerSettings(), "tablet")
    desktop = parse_triggers({"device": "desktop"})
    mobile = parse_triggers({"device": "mobile"})
    assert device_allowed(desktop, "desktop") and not device_allowed(desktop, "mobile")
    assert device_allowed(mobile, "mobile") and device_allowed(mobile, "tablet")
    assert not device_allowed(mobile, "desktop")


def test_sampling_is_stable_and_roughly_the_percentage():
    assert not any(in_sample(0, 1, f"v{i}") for i in range(200))
    assert all(in_sample(100, 1, f"v{i}") for i in range(200))
    picked = sum(in_sample(30, 1, f"v{i}") for i in range(5000))
    assert 1300 < picked < 1700
    assert in_sample(50, 7, "visitor") == in_sample(50, 7, "visitor")


NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_frequency_once_shows_only_once():
    once = TriggerSettings()
    assert frequency_allows(once, last_shown=None, answered=False, now=NOW)
    assert not frequency_allows(once, last_shown=NOW - timedelta(days=400), answered=False, now=NOW)


def test_frequency_until_answered_repeats_until_answered():
    until = parse_triggers({"frequency": "until_answered"})
    assert frequency_allows(until, last_shown=NOW - timedelta(hours=1), answered=False, now=NOW)
    assert not frequency_allows(until, last_shown=NOW, answered=True, now=NOW)


def test_frequency_every_n_days_waits_n_days():
    every = parse_triggers({"frequency": "every_n_days", "frequency_days": 30})
    assert not frequency_allows(every, last_shown=NOW - timedelta(days=29), answered=True, now=NOW)
    assert frequency_allows(every, last_shown=NOW - timedelta(days=30), answered=True, now=NOW)


def test_shop_wide_cooldown():
    assert cooldown_allows(None, NOW)
    assert not cooldown_allows(NOW - timedelta(days=6, hours=23), NOW)
    assert cooldown_allows(NOW - timedelta(days=7), NOW)
    assert cooldown_allows(NOW, NOW, cooldown_days=0)


def test_embed_config_is_compact_and_carries_only_relevant_numbers():
    delayed = parse_triggers(
        {
            "kind": "after_seconds",
            "delay_seconds": 20,
            "url_include": ["/products/*"],
            "device": "mobile",
            "sample_percent": 25,
            "frequency": "every_n_days",
            "frequency_days": 14,
        }
    )
    assert to_embed_config(3, delayed) == {
        "id": 3,
        "kind": "after_seconds",
        "delay": 20,
        "include": ["/products/*"],
        "exclude": [],
        "device": "mobile",
        "sample": 25,
        "freq": "every_n_days",
        "days": 14,
    }
    plain = to_embed_config("abc", TriggerSettings())
    assert "delay" not in plain and "days" not in plain
    document = embed_document([(3, delayed), ("abc", TriggerSettings())])
    assert document["v"] == 1
    assert document["cooldown_days"] == 7
    assert [s["id"] for s in document["surveys"]] == [3, "abc"]
