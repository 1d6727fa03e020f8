"""What the scheduler knows how to run: jobs, and the sources of work the dispatcher starts.

A job is periodic (it fires once per period of an owner-chosen schedule, under the key of
that period), runs at an interval (the queue poll, the dispatcher; only what it starts is
keyed), or runs only when asked to (run now, `patchwork jobs run`). Later parts add work to
the dispatcher rather than jobs of their own:

    @dispatch_source("campaigns")
    def due_campaigns(now: datetime) -> Iterable[Dispatch]:
        for campaign in campaigns scheduled at or before now and not started:
            yield Dispatch(f"campaign:{campaign.id}", campaign.name, partial(send, campaign.id))

and list their module in DISPATCH_MODULES. Each Dispatch runs once under its key, whichever
scheduler finds it first, and is retried (up to SCHEDULER_MAX_ATTEMPTS) when it fails.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from webapp.scheduler.periods import Schedule


class JobBusy(RuntimeError):
    """Another run of the job holds its lock: nothing ran."""


@dataclass
class JobContext:
    """Handed to a job's body: which run this is, and how to report progress."""

    job: str
    key: str
    trigger: str  # schedule|catch-up|manual|cli (or "tick" for an unrecorded interval run)
    now: datetime
    progress: Callable[..., None] = lambda done, total=None, message=None: None
    stop: threading.Event = field(default_factory=threading.Event)


Body = Callable[[JobContext], dict]


@dataclass(frozen=True)
class Job:
    name: str
    title: str
    about: str
    run: Body
    default: Schedule | None = None  # periodic jobs: the schedule a new shop starts with
    frequencies: tuple[str, ...] = ()  # periodic jobs: the choices the owner has
    interval_setting: str | None = None  # interval jobs: the config setting of the period
    lock: str | None = None  # the job lock's name; None: what it runs is claimed one by one
    busy_errors: tuple[type[Exception], ...] = ()  # the body's "another run holds it"
    task_kind: str = "job"  # the queued task that "run now" makes
    retention: bool = False  # the owner sets how long run details are kept
    # The owner may run it now and pause it (not the queue: every "run now" goes through it).
    owner_controls: bool = True

    @property
    def periodic(self) -> bool:
        return self.default is not None


JOBS: dict[str, Job] = {}


def register(job: Job) -> Job:
    JOBS[job.name] = job
    return job


def get_job(name: str) -> Job:
    load_jobs()
    try:
        return JOBS[name]
    except KeyError:
        raise LookupError(f"There is no job named {name!r}; jobs: {', '.join(JOBS)}.") from None


def load_jobs() -> dict[str, Job]:
    import webapp.scheduler.jobs  # noqa: F401  (registers the built-in jobs)

    return JOBS


@dataclass(frozen=True)
class Dispatch:
    key: str  # unique in job_runs, e.g. "campaign:42": done once
    title: str
    run: Body


DispatchSource = Callable[[datetime], Iterable[Dispatch]]
DISPATCH_SOURCES: dict[str, DispatchSource] = {}
# Modules that register dispatch sources; imported before each dispatch.
DISPATCH_MODULES: list[str] = ["webapp.campaigns.sending"]


def dispatch_source(name: str) -> Callable[[DispatchSource], DispatchSource]:
    def add(source: DispatchSource) -> DispatchSource:
        DISPATCH_SOURCES[name] = source
        return source

    return add


def load_dispatch_sources() -> dict[str, DispatchSource]:
    for module in DISPATCH_MODULES:
        importlib.import_module(module)
    return DISPATCH_SOURCES
