"""CPU milliseconds per request of the answer endpoint and of the ceiling, in one process.

The load-independent half of bench/survey_answers.py: requests/s under gunicorn depend on
whatever else the machine runs, but the CPU time a request costs this process hardly does.
Both apps are driven through their WSGI callables (Flask's test client: no server, no socket,
so the figures leave out the HTTP parsing both would pay under gunicorn), in alternating
rounds, and each round's CPU time (time.process_time) per request is recorded; the report
gives the median and the best round of each, and the answers/ceiling ratio of the medians.

Run by survey_answers.py on its prepared database (with tokens that wrk does not reach), or
alone: python bench/answers_cpu.py --db sqlite|postgresql.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT)]

BODY = b'{"question": "craft", "answer": ["knitting", "crochet"]}'
REPLY = {"next": None, "completed": True}


def measure(url: str, tokens: list[str], rounds: int, config: dict) -> dict:
    """Alternate rounds of ceiling and answer requests; CPU ms per request of each round."""
    os.environ["DATABASE_URL"] = url  # the ceiling app reads it when imported
    import ceiling_app

    from webapp import create_app

    ceiling_app.rows.create(ceiling_app.engine, checkfirst=True)
    patchwork = create_app("default", {"DATABASE_URL": url} | config).test_client()
    ceiling = ceiling_app.app.test_client()
    per_round = len(tokens) // (rounds + 1)
    batches = [tokens[i * per_round : (i + 1) * per_round] for i in range(rounds + 1)]

    def run(client, template: str, batch: list[str]) -> float:
        started = time.process_time()
        for token in batch:
            reply = client.post(template % token, data=BODY, content_type="application/json")
            if reply.status_code != 200 or reply.json != REPLY:
                raise SystemExit(f"{template % token}: {reply.status_code} {reply.data!r}")
        return 1000 * (time.process_time() - started) / len(batch)

    run(ceiling, "/ceiling/%s", batches[0][: per_round // 2])  # warm both up
    run(patchwork, "/embed/r/%s/answers", batches[0][per_round // 2 :])
    figures: dict[str, list[float]] = {"ceiling": [], "answers": []}
    for batch in batches[1:]:
        half = len(batch) // 2
        figures["ceiling"].append(run(ceiling, "/ceiling/%s", batch[:half]))
        figures["answers"].append(run(patchwork, "/embed/r/%s/answers", batch[half:]))
    ceiling_app.engine.dispose()
    result = {
        name: {"median_ms": statistics.median(values), "best_ms": min(values)}
        for name, values in figures.items()
    }
    result["ratio"] = result["answers"]["median_ms"] / result["ceiling"]["median_ms"]
    result["requests"] = per_round * rounds
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--url", help="a prepared database (survey_answers.py passes it)")
    parser.add_argument("--tokens", type=Path, help="tokens of unanswered responses, one a line")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--limiter-storage", default="memory://", help="RATELIMIT_STORAGE_URI")
    args = parser.parse_args()
    from survey_answers import RAISED_LIMIT, SECRET

    # As under gunicorn: the same secret as the tokens, the limit counted but never refusing.
    config = {
        "SECRET_KEY": SECRET,
        "SURVEY_RATE_LIMIT": RAISED_LIMIT,
        "RATELIMIT_STORAGE_URI": args.limiter_storage,
    }
    if args.url:
        tokens = args.tokens.read_text().split()[-args.requests :]
        print(json.dumps(measure(args.url, tokens, args.rounds, config)))
        return
    from import_orders import FreshDatabase
    from survey_answers import prepare

    with (
        tempfile.TemporaryDirectory(prefix="patchwork-bench-") as tmp,
        FreshDatabase(args.db, Path(tmp)) as database,
    ):
        tokens_file = Path(tmp) / "tokens.txt"
        prepare(database.url, args.requests, tokens_file)
        tokens = tokens_file.read_text().split()
        print(json.dumps(measure(database.url, tokens, args.rounds, config)))


if __name__ == "__main__":
    main()
