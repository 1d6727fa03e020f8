"""Survey answers per second under gunicorn, against the ceiling of the same machine.

For each engine: a fresh database with one published one-question survey and enough
responses shown (tokens) that every request answers a different one. Then, under the same
gunicorn settings (2 sync workers), wrk drives for --seconds at --connections:

- **ceiling**: bench/ceiling_app.py, a minimal Flask endpoint that parses the same JSON and
  commits one row per request, and nothing else;
- **answers**: Patchwork's POST /embed/r/<token>/answers (signed token, validation, answer,
  choices and traits stored, response moved on), with SURVEY_RATE_LIMIT raised to 10^9 per
  minute so that the limiter is counted but never refuses (the benchmark says so).

Afterwards it counts the rows: every acknowledged (200) answer must be in the database.
Goal (issue 3): answers >= 70% of the ceiling's requests/s, p99 < 50 ms, zero errors.
Also prints the gzipped size of the embed loader (goal: at most 5 KB), and the CPU time per
request of both targets (under gunicorn from /proc, and in-process with bench/answers_cpu.py),
which a busy machine changes far less than requests/s.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from import_orders import PG_ADMIN, FreshDatabase, env_for  # noqa: E402

SECRET = "bench-secret-key"
RAISED_LIMIT = "1000000000 per minute"
THROUGHPUT_GOAL = 0.70
P99_GOAL_MS = 50.0
LOADER_GOAL_BYTES = 5 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(url: str, responses: int, tokens_file: Path) -> None:
    """A published one-question survey and `responses` shown responses; their tokens to a file."""
    from sqlalchemy import insert

    from webapp import create_app
    from webapp.extensions import db
    from webapp.models import SurveyResponse
    from webapp.surveys.manage import create_survey, publish
    from webapp.surveys.tokens import response_token

    app = create_app("default", {"DATABASE_URL": url, "SECRET_KEY": SECRET})
    with app.app_context():
        survey = create_survey(db.session, "craft")
        publish(survey)
        db.session.commit()
        ids = [uuid.uuid4().hex for _ in range(responses)]
        rows = [
            {"public_id": public_id, "survey_id": survey.id, "next_question": "craft"}
            for public_id in ids
        ]
        for start in range(0, len(rows), 20_000):
            db.session.execute(insert(SurveyResponse), rows[start : start + 20_000])
        db.session.commit()
        tokens_file.write_text("\n".join(response_token(i) for i in ids) + "\n")
        db.engine.dispose()


def count_rows(url: str, table: str) -> int:
    from sqlalchemy import create_engine, text

    from webapp import normalise_database_url

    engine = create_engine(normalise_database_url(url))
    with engine.connect() as connection:
        n = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return n


def serve(app_spec: str, env: dict[str, str], workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        # --preload: the app is built once before forking, so both workers answer at once.
        [str(gunicorn), "-w", str(workers), "-k", "sync", "--backlog", "2048", "--preload",
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", app_spec],
        env=env, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:  # any HTTP answer (a 404 too) means a worker serves requests
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1)
            return process, port
        except urllib.error.HTTPError:
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"gunicorn {app_spec} did not start")


def drive(port: int, path_template: str, tokens: Path, seconds: int, connections: int) -> dict:
    threads = 2
    result = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-s", str(BENCH / "answers.lua"), f"http://127.0.0.1:{port}",
         "--", str(tokens), path_template, str(threads)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["rps"] = figures["requests"] / figures["seconds"]
    return figures


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (gunicorn's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def database_backends(url: str) -> list[int]:
    """PostgreSQL: the server processes serving this database's connections."""
    if not url.startswith("postgres"):
        return []
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchall()
    return [pid for (pid,) in rows]


def run_target(name, app_spec, env, url, table, path, tokens, args) -> dict:
    """Serve the target under gunicorn and drive it; CPU time per request from /proc too.

    The CPU milliseconds per request (gunicorn's workers, and on PostgreSQL the server
    processes of the benchmark's database) hardly depend on what else the machine runs,
    unlike requests/s.
    """
    before = count_rows(url, table)
    process, port = serve(app_spec, env, args.workers)
    try:
        workers = children(process.pid)
        cpu_before = cpu_seconds(workers)
        figures = drive(port, path, tokens, args.seconds, args.connections)
        worker_cpu = cpu_seconds(workers) - cpu_before
        database_cpu = cpu_seconds(database_backends(url))  # connected during the drive
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    figures["stored"] = count_rows(url, table) - before
    figures["target"] = name
    figures["worker_cpu_ms"] = 1000 * worker_cpu / max(figures["requests"], 1)
    figures["database_cpu_ms"] = 1000 * database_cpu / max(figures["requests"], 1)
    return figures


def bench_engine(engine: str, args, workdir: Path) -> dict:
    with FreshDatabase(engine, workdir) as database:
        tokens = workdir / f"tokens-{engine}.txt"
        prepare(database.url, args.responses, tokens)
        env = env_for(database.url) | {
            "SECRET_KEY": SECRET,
            "SURVEY_RATE_LIMIT": RAISED_LIMIT,
            "RATELIMIT_STORAGE_URI": args.limiter_storage,
        }
        subprocess.run([sys.executable, str(BENCH / "ceiling_app.py")], env=env, check=True)
        in_process = None
        if args.cpu_requests:  # on the last tokens, which wrk does not reach
            measured = subprocess.run(
                [sys.executable, str(BENCH / "answers_cpu.py"), "--url", database.url,
                 "--tokens", str(tokens), "--requests", str(args.cpu_requests),
                 "--limiter-storage", args.limiter_storage],
                env=env, cwd=ROOT, check=True, capture_output=True, text=True,
            )  # fmt: skip
            in_process = json.loads(measured.stdout.strip().splitlines()[-1])
        env_ceiling = env | {"PYTHONPATH": f"{BENCH}{os.pathsep}{ROOT}"}
        ceiling = run_target(
            "ceiling", "ceiling_app:app", env_ceiling, database.url,
            "bench_ceiling_answers", "/ceiling/%s", tokens, args,
        )  # fmt: skip
        answers = run_target(
            "answers", "webapp:create_app()", env, database.url,
            "survey_answers", "/embed/r/%s/answers", tokens, args,
        )  # fmt: skip
    return {"engine": engine, "ceiling": ceiling, "answers": answers,
            "ratio": answers["rps"] / ceiling["rps"], "in_process_cpu": in_process}  # fmt: skip


def loader_size() -> tuple[int, int]:
    raw = (ROOT / "static" / "embed.js").read_bytes()
    return len(raw), len(gzip.compress(raw, compresslevel=9))


def verdict(result: dict) -> str:
    a = result["answers"]
    problems = []
    if result["ratio"] < THROUGHPUT_GOAL:
        problems.append(f"throughput {result['ratio']:.0%} < {THROUGHPUT_GOAL:.0%}")
    if a["p99_ms"] >= P99_GOAL_MS:
        problems.append(f"p99 {a['p99_ms']:.1f} ms")
    if a["non_200"] or a["socket_errors"]:
        problems.append(f"{a['non_200']} non-200, {a['socket_errors']} socket errors")
    # wrk stops with requests in flight: those may be stored without being counted.
    if a["stored"] < a["acknowledged"]:
        problems.append(f"{a['acknowledged']} acknowledged but only {a['stored']} stored")
    if a["tokens_reused"]:
        problems.append("ran out of tokens (raise --responses)")
    return "meets the goal" if not problems else "MISSES: " + "; ".join(problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--responses", type=int, default=200_000)
    parser.add_argument(
        "--cpu-requests",
        type=int,
        default=4000,
        help="requests for the in-process CPU measure (bench/answers_cpu.py); 0 skips it",
    )
    parser.add_argument(
        "--limiter-storage",
        default="memory://",
        help="RATELIMIT_STORAGE_URI, e.g. redis://127.0.0.1:6379",
    )
    args = parser.parse_args()
    engines = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(
        f"rate limit raised to {RAISED_LIMIT!r} for the run (counted in"
        f" {args.limiter_storage}, never refusing)"
    )
    with tempfile.TemporaryDirectory(prefix="patchwork-bench-") as tmp:
        results = [bench_engine(engine, args, Path(tmp)) for engine in engines]
    for r in results:
        for name in ("ceiling", "answers"):
            f = r[name]
            print(
                f"{r['engine']:<10} {name:<8} {f['rps']:8.0f} req/s  p50 {f['p50_ms']:6.1f} ms"
                f"  p99 {f['p99_ms']:6.1f} ms  non-200 {f['non_200']}"
                f"  errors {f['socket_errors']}  acknowledged {f['acknowledged']}"
                f"  stored {f['stored']}  CPU/request: workers {f['worker_cpu_ms']:.2f} ms,"
                f" database {f['database_cpu_ms']:.2f} ms"
            )
        print(f"{r['engine']:<10} answers/ceiling {r['ratio']:.0%}: {verdict(r)}")
        c, a = r["ceiling"], r["answers"]
        cpu_ratio = (c["worker_cpu_ms"] + c["database_cpu_ms"]) / (
            a["worker_cpu_ms"] + a["database_cpu_ms"]
        )
        print(
            f"{r['engine']:<10} CPU/request under gunicorn (workers + database): answers"
            f" {cpu_ratio:.0%} of the ceiling's requests per CPU second"
        )
        if p := r["in_process_cpu"]:
            print(
                f"{r['engine']:<10} in-process CPU/request (median of rounds): ceiling"
                f" {p['ceiling']['median_ms']:.2f} ms, answers {p['answers']['median_ms']:.2f} ms:"
                f" answers {1 / p['ratio']:.0%} of the ceiling's requests per CPU second"
            )
    raw, gz = loader_size()
    print(f"embed.js: {raw} bytes, {gz} bytes gzipped (goal <= {LOADER_GOAL_BYTES})")
    print(json.dumps({"results": results, "loader_bytes": raw, "loader_gzip_bytes": gz}))


if __name__ == "__main__":
    main()
