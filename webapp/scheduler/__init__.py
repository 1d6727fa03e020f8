"""The scheduler: every timed job, each run exactly once.

periods    when a schedule fires and the key of each period (pure; no Flask, no clock)
registry   jobs and the dispatcher's sources of work (what later parts register)
ledger     the job_runs ledger: unique keys, leases, and each job's lock
schedules  the owner's settings per job: what is due, when it runs next
runner     running a job under its lock and key, for the scheduler, "run now" and the CLI
jobs       the built-in jobs: refresh, dispatch, the queue poll, housekeeping
process    the scheduler process (APScheduler 3), its heartbeat and catch-up
views      the Schedule page, the failed-job banner and /healthz
cli        `patchwork scheduler` and `patchwork jobs`
"""
