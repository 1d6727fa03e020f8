"""Time `patchwork import-orders` against a hand-written baseline, on SQLite and PostgreSQL.

    python bench/import_orders.py [--lines 1000000] [--db sqlite|postgresql|both] [--repeat 1]

For each engine and each repetition, on a freshly created and migrated database each time:
  import    `patchwork import-orders FILE --json` in a subprocess;
  baseline  bench/baseline_load.py in a subprocess: csv module + executemany in one
            transaction (SQLite) or COPY (PostgreSQL) into the same tables.
Wall seconds and peak RSS come from the operating system's accounting of each finished child
(os.wait4). The orders file is generated once (bench/data/orders-N.csv) and reused.
Goal (issue 2): import <= 2x baseline, import peak memory < 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from gen_orders import generate  # noqa: E402

PG_ADMIN = os.environ.get("PATCHWORK_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# ../shared/CEILINGS.md: "Bulk loads of 10M orders: SQLite executemany in one transaction
# 10.5 s; PostgreSQL COPY 15 s" (hand-written code, a 2-core machine like this one).
CEILING_SECONDS_PER_10M_ORDERS = {"sqlite": 10.5, "postgresql": 15.0}
MEMORY_GOAL_MB = 300
RATIO_GOAL = 2.0


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # the child's own user + system time (not the database server's)
    peak_mb: float
    output: str


def timed(command: list[str], env: dict[str, str]) -> Run:
    """Run a child to completion; its wall time and its own peak RSS (not ours)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{stdout}\n{stderr}")
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds, cpu, usage.ru_maxrss / 1024, stdout.strip())  # ru_maxrss is in KiB


class FreshDatabase:
    """A new, migrated, empty database for one run; dropped afterwards."""

    def __init__(self, engine: str, workdir: Path):
        self.engine = engine
        self.workdir = workdir
        self.name = f"patchwork_bench_{uuid.uuid4().hex[:8]}"
        if engine == "sqlite":
            self.url = f"sqlite:///{workdir / (self.name + '.db')}"
        else:
            self.url = PG_ADMIN.rsplit("/", 1)[0] + "/" + self.name

    def __enter__(self) -> FreshDatabase:
        if self.engine == "postgresql":
            self._admin(f'CREATE DATABASE "{self.name}"')
        subprocess.run(
            [*patchwork(), "init-db"],
            env=env_for(self.url),
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        return self

    def __exit__(self, *exc) -> None:
        if self.engine == "postgresql":
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        else:
            for path in self.workdir.glob(self.name + ".db*"):
                path.unlink()

    @staticmethod
    def _admin(sql: str) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(sql)


def env_for(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = url
    env.pop("PATCHWORK_CONFIG", None)
    return env


def patchwork() -> list[str]:
    """The installed console script, else the same entry point through this interpreter."""
    script = Path(sys.executable).with_name("patchwork")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from webapp.cli import main; main()"]


def bench_engine(engine: str, file: Path, repeat: int, workdir: Path) -> dict:
    imports, baselines = [], []
    for _ in range(repeat):
        with FreshDatabase(engine, workdir) as database:
            run = timed([*patchwork(), "import-orders", str(file), "--json"], env_for(database.url))
            report = json.loads(run.output.splitlines()[-1])
            if report.get("errors"):
                raise SystemExit(f"import reported errors: {report['errors'][:3]}")
            imports.append((run, report))
        with FreshDatabase(engine, workdir) as database:
            run = timed(
                [sys.executable, str(BENCH / "baseline_load.py"), database.url, str(file)],
                env_for(database.url),
            )
            baselines.append((run, json.loads(run.output.splitlines()[-1])))
    import_s = statistics.median(r.seconds for r, _ in imports)
    baseline_s = statistics.median(r.seconds for r, _ in baselines)
    return {
        "engine": engine,
        "import_s": import_s,
        "baseline_s": baseline_s,
        "ratio": import_s / baseline_s,
        "import_cpu_s": statistics.median(r.cpu_seconds for r, _ in imports),
        "baseline_cpu_s": statistics.median(r.cpu_seconds for r, _ in baselines),
        "import_peak_mb": max(r.peak_mb for r, _ in imports),
        "baseline_peak_mb": max(r.peak_mb for r, _ in baselines),
        "orders": baselines[0][1]["orders"],
        "lines": baselines[0][1]["lines"],
        "customers": baselines[0][1]["customers"],
        "import_report": imports[0][1],
        "runs": repeat,
    }


def print_table(results: list[dict]) -> None:
    print()
    print(
        f"{'engine':<11} {'import s':>9} {'baseline s':>11} {'ratio':>6} {'peak MB':>8} "
        f"{'baseline MB':>12} {'cpu s':>13}  ceiling (CEILINGS.md, scaled)"
    )
    for r in results:
        ceiling = CEILING_SECONDS_PER_10M_ORDERS[r["engine"]] * r["orders"] / 10_000_000
        kind = "executemany, one transaction" if r["engine"] == "sqlite" else "COPY"
        print(
            f"{r['engine']:<11} {r['import_s']:>9.1f} {r['baseline_s']:>11.1f} "
            f"{r['ratio']:>6.2f} {r['import_peak_mb']:>8.0f} {r['baseline_peak_mb']:>12.0f} "
            f"{r['import_cpu_s']:>6.1f}/{r['baseline_cpu_s']:<6.1f}  {ceiling:.1f} s ({kind})"
        )
    print()
    for r in results:
        verdicts = [
            f"ratio {'within' if r['ratio'] <= RATIO_GOAL else 'OVER'} {RATIO_GOAL:g}x",
            f"memory {'within' if r['import_peak_mb'] < MEMORY_GOAL_MB else 'OVER'} "
            f"{MEMORY_GOAL_MB} MB",
        ]
        print(
            f"{r['engine']}: {r['orders']:,} orders, {r['lines']:,} lines, "
            f"{r['customers']:,} customers; median of {r['runs']} run(s); {'; '.join(verdicts)}"
        )
    print(
        "seconds: wall time of the whole process, median; cpu s: import/baseline process CPU "
        "(user+system), without the database server's."
    )
    print(
        "CEILINGS.md: bulk loads of 10M orders: SQLite executemany in one transaction 10.5 s; "
        "PostgreSQL COPY 15 s (scaled above to this file's order count)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine (median)")
    parser.add_argument("--file", type=Path, help="an existing orders export to use instead")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write results here")
    args = parser.parse_args()

    file = args.file or BENCH / "data" / f"orders-{args.lines}.csv"
    if not file.exists():
        print(f"Generating {file} ...", flush=True)
        generate(args.lines, file)
    print(f"File: {file} ({file.stat().st_size / 1e6:.0f} MB)", flush=True)
    engines = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    results = []
    with tempfile.TemporaryDirectory(prefix="patchwork-bench-", dir=BENCH / "data") as workdir:
        for engine in engines:
            print(f"{engine}: running ...", flush=True)
            results.append(bench_engine(engine, file, args.repeat, Path(workdir)))
    print_table(results)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
