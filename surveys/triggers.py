"""When the embed shows a survey: trigger kind, URL rules, device, sampling and frequency.

The embed loader takes these decisions in the shopper's browser, from the compact JSON of
`embed_document`; the pure helpers here state the same rules for the server and the tests.

URL patterns
    A pattern starting with `/` matches the page's path; one starting with `http://` or
    `https://` matches the full address (scheme, host and path). The query string and the
    fragment are never part of the match. `*` matches any run of characters, `/` included;
    every other character matches itself. Matching ignores case and a trailing `/`, and
    compares percent-decoded paths (`/garn%C3%A9` is `/garné`). No include pattern means
    every page; an exclude pattern wins over an include pattern.

Devices
    `desktop` means desktop browsers; `mobile` means touch devices, phones and tablets,
    because exit intent there needs the mobile signals (fast scroll up, tab return).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

from surveys.errors import DefinitionError, DefinitionInvalid, text_problem

DEFAULT_COOLDOWN_DAYS = 7
COOLDOWN_DAYS_MAX = 365
DELAY_SECONDS_MAX = 3600
FREQUENCY_DAYS_MAX = 365
PATTERN_MAX = 300
PATTERNS_MAX = 20
EMBED_CONFIG_VERSION = 1


class TriggerKind(StrEnum):
    EXIT_INTENT = "exit_intent"
    POST_PURCHASE = "post_purchase"
    AFTER_SECONDS = "after_seconds"
    PAGE_LOAD = "page_load"


class Device(StrEnum):
    ALL = "all"
    DESKTOP = "desktop"
    MOBILE = "mobile"


class Frequency(StrEnum):
    ONCE = "once"  # never again once shown, answered or not
    UNTIL_ANSWERED = "until_answered"  # again (cooldown permitting) until answered
    EVERY_N_DAYS = "every_n_days"  # at most once every N days, answered or not


@dataclass(frozen=True, slots=True)
class TriggerSettings:
    kind: TriggerKind = TriggerKind.EXIT_INTENT
    delay_seconds: int | None = None  # only for AFTER_SECONDS
    url_include: tuple[str, ...] = ()
    url_exclude: tuple[str, ...] = ()
    device: Device = Device.ALL
    sample_percent: int = 100
    frequency: Frequency = Frequency.ONCE
    frequency_days: int | None = None  # only for EVERY_N_DAYS

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "delay_seconds": self.delay_seconds,
            "url_include": list(self.url_include),
            "url_exclude": list(self.url_exclude),
            "device": self.device.value,
            "sample_percent": self.sample_percent,
            "frequency": self.frequency.value,
            "frequency_days": self.frequency_days,
        }


_FIELDS = frozenset(TriggerSettings().to_dict())


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def url_pattern_problem(pattern: object) -> str | None:
    """Why `pattern` is not a usable URL pattern, or None."""
    if not isinstance(pattern, str):
        return "A pattern must be text."
    if not pattern.strip():
        return "Enter a pattern or remove this line."
    if problem := text_problem(pattern):
        return problem
    if len(pattern) > PATTERN_MAX:
        return f"A pattern is at most {PATTERN_MAX} characters long."
    if pattern != pattern.strip() or any(c.isspace() for c in pattern):
        return "A pattern cannot contain spaces."
    if "?" in pattern or "#" in pattern:
        return "Patterns match the address without its query string: leave out ? and #."
    lower = pattern.lower()
    if pattern.startswith("/"):
        return None
    if lower.startswith(("http://", "https://")):
        host = lower.split("://", 1)[1].split("/", 1)[0]
        if not host:
            return "Name the shop's host after https://, for example https://shop.example/*."
        return None
    return "Start a pattern with / (a path such as /products/*) or https:// (a full address)."


def _validate_patterns(value: object, path: str) -> list[DefinitionError]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [DefinitionError(path, "Must be a list of patterns.")]
    errors = []
    if len(value) > PATTERNS_MAX:
        errors.append(DefinitionError(path, f"At most {PATTERNS_MAX} patterns."))
    for i, pattern in enumerate(value):
        if problem := url_pattern_problem(pattern):
            errors.append(DefinitionError(f"{path}[{i}]", problem))
    return errors


def _choice(value: object, enum: type[StrEnum], path: str, what: str) -> list[DefinitionError]:
    if not isinstance(value, str) or value not in {m.value for m in enum}:
        allowed = ", ".join(m.value for m in enum)
        return [DefinitionError(path, f"Choose a {what}: {allowed}.")]
    return []


def _bounded(value: object, low: int, high: int, path: str, what: str) -> list[DefinitionError]:
    if not _is_int(value) or not low <= value <= high:  # type: ignore[operator]
        return [DefinitionError(path, f"{what} must be a whole number from {low} to {high}.")]
    return []


def validate_triggers(data: object, path: str = "triggers") -> list[DefinitionError]:
    """Every problem in a trigger-settings dict (as `TriggerSettings.to_dict` writes it).

    Missing keys take their defaults. `path` prefixes each error's path.
    """
    if not isinstance(data, Mapping):
        return [DefinitionError(path, "Trigger settings must be an object.")]
    errors = [
        DefinitionError(_join(path, str(key)), "Unknown setting.")
        for key in data
        if key not in _FIELDS
    ]
    kind = data.get("kind", TriggerKind.EXIT_INTENT.value)
    errors += _choice(kind, TriggerKind, _join(path, "kind"), "trigger")
    delay = data.get("delay_seconds")
    if kind == TriggerKind.AFTER_SECONDS:
        errors += _bounded(delay, 1, DELAY_SECONDS_MAX, _join(path, "delay_seconds"), "Delay")
    elif delay is not None:
        errors.append(
            DefinitionError(
                _join(path, "delay_seconds"), "Only 'after N seconds' surveys have a delay."
            )
        )
    errors += _validate_patterns(data.get("url_include"), _join(path, "url_include"))
    errors += _validate_patterns(data.get("url_exclude"), _join(path, "url_exclude"))
    errors += _choice(data.get("device", "all"), Device, _join(path, "device"), "device")
    errors += _bounded(
        data.get("sample_percent", 100), 0, 100, _join(path, "sample_percent"), "Sample"
    )
    frequency = data.get("frequency", Frequency.ONCE.value)
    errors += _choice(frequency, Frequency, _join(path, "frequency"), "frequency")
    days = data.get("frequency_days")
    if frequency == Frequency.EVERY_N_DAYS:
        errors += _bounded(days, 1, FREQUENCY_DAYS_MAX, _join(path, "frequency_days"), "Days")
    elif days is not None:
        errors.append(
            DefinitionError(
                _join(path, "frequency_days"), "Only 'every N days' surveys have a number of days."
            )
        )
    return errors


def parse_triggers(data: object) -> TriggerSettings:
    """TriggerSettings from a dict, or DefinitionInvalid listing every problem."""
    errors = validate_triggers(data, path="")
    if errors:
        raise DefinitionInvalid(errors)
    assert isinstance(data, Mapping)
    return TriggerSettings(
        kind=TriggerKind(data.get("kind", TriggerKind.EXIT_INTENT.value)),
        delay_seconds=data.get("delay_seconds"),
        url_include=tuple(data.get("url_include") or ()),
        url_exclude=tuple(data.get("url_exclude") or ()),
        device=Device(data.get("device", Device.ALL.value)),
        sample_percent=data.get("sample_percent", 100),
        frequency=Frequency(data.get("frequency", Frequency.ONCE.value)),
        frequency_days=data.get("frequency_days"),
    )


def validate_cooldown_days(value: object) -> str | None:
    """Why `value` is not a shop-wide cooldown in days (0 turns the cooldown off), or None."""
    if not _is_int(value) or not 0 <= value <= COOLDOWN_DAYS_MAX:  # type: ignore[operator]
        return f"The cooldown must be a whole number of days from 0 to {COOLDOWN_DAYS_MAX}."
    return None


# --- the embed's configuration ---------------------------------------------------------------


def to_embed_config(survey_id: str | int, triggers: TriggerSettings) -> dict[str, Any]:
    """One survey's entry in the JSON the embed loader downloads; short keys keep it small."""
    config: dict[str, Any] = {"id": survey_id, "kind": triggers.kind.value}
    if triggers.kind is TriggerKind.AFTER_SECONDS:
        config["delay"] = triggers.delay_seconds
    config["include"] = list(triggers.url_include)
    config["exclude"] = list(triggers.url_exclude)
    config["device"] = triggers.device.value
    config["sample"] = triggers.sample_percent
    config["freq"] = triggers.frequency.value
    if triggers.frequency is Frequency.EVERY_N_DAYS:
        config["days"] = triggers.frequency_days
    return config


def embed_document(
    surveys: Iterable[tuple[str | int, TriggerSettings]],
    cooldown_days: int = DEFAULT_COOLDOWN_DAYS,
) -> dict[str, Any]:
    """The whole document for the loader: the shop-wide cooldown and each active survey."""
    return {
        "v": EMBED_CONFIG_VERSION,
        "cooldown_days": cooldown_days,
        "surveys": [to_embed_config(survey_id, t) for survey_id, t in surveys],
    }


# --- decisions -------------------------------------------------------------------------------


def _trim(text: str) -> str:
    return text.rstrip("/") or "/"


@lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern[str]:
    parts = (re.escape(part) for part in _trim(unquote(pattern)).split("*"))
    return re.compile(".*".join(parts), re.IGNORECASE | re.DOTALL)


def _pattern_matches(pattern: str, path: str, full: str | None) -> bool:
    if pattern.startswith("/"):
        return _glob(pattern).fullmatch(path) is not None
    if full is None:
        return False
    # The home page is "https://shop/", and the trimmed pattern "https://shop/" reads
    # "https://shop": try the address without its last slash too.
    glob = _glob(pattern)
    return glob.fullmatch(full) is not None or glob.fullmatch(full.rstrip("/")) is not None


def url_matches(triggers: TriggerSettings, url: str) -> bool:
    """Whether the URL rules allow showing the survey on `url` (a full address or a path)."""
    parts = urlsplit(url)
    path = _trim(unquote(parts.path or "/"))
    full = f"{parts.scheme}://{parts.netloc}{path}" if parts.scheme and parts.netloc else None
    if any(_pattern_matches(p, path, full) for p in triggers.url_exclude):
        return False
    if not triggers.url_include:
        return True
    return any(_pattern_matches(p, path, full) for p in triggers.url_include)


_TABLET = ("ipad", "tablet", "kindle", "silk/", "playbook")
_MOBILE = ("mobi", "iphone", "ipod", "windows phone", "opera mini", "blackberry")


def device_class(user_agent: str | None) -> str:
    """ "mobile", "tablet" or "desktop" from a User-Agent header.

    iPadOS sends a desktop Safari agent, so an iPad reads as desktop here; the loader, which
    can see touch support, reports the device class it observed and is believed first.
    """
    ua = (user_agent or "").lower()
    if any(marker in ua for marker in _TABLET) or ("android" in ua and "mobile" not in ua):
        return "tablet"
    if any(marker in ua for marker in _MOBILE):
        return "mobile"
    return "desktop"


def device_allowed(triggers: TriggerSettings, device: str) -> bool:
    """Whether a survey targeting `triggers.device` may show on a device of class `device`."""
    if triggers.device is Device.ALL:
        return True
    if triggers.device is Device.DESKTOP:
        return device == "desktop"
    return device in ("mobile", "tablet")


def in_sample(sample_percent: int, survey_id: str | int, visitor_id: str) -> bool:
    """Whether a visitor falls in a survey's sample; stable for the same survey and visitor."""
    digest = hashlib.sha256(f"{survey_id}:{visitor_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < sample_percent


def frequency_allows(
    triggers: TriggerSettings,
    *,
    last_shown: datetime | None,
    answered: bool,
    now: datetime,
) -> bool:
    """Whether this survey's own frequency cap lets it show again to this visitor."""
    if last_shown is None:
        return True
    if triggers.frequency is Frequency.ONCE:
        return False
    if triggers.frequency is Frequency.UNTIL_ANSWERED:
        return not answered
    return now - last_shown >= timedelta(days=triggers.frequency_days or 0)


def cooldown_allows(
    last_any_shown: datetime | None, now: datetime, cooldown_days: int = DEFAULT_COOLDOWN_DAYS
) -> bool:
    """Whether the shop-wide cooldown since the last survey of any kind has passed."""
    return last_any_shown is None or now - last_any_shown >= timedelta(days=cooldown_days)
