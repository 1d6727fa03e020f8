"""The ceiling for bench/survey_answers.py: a minimal Flask endpoint that parses the same JSON
and commits one row per request, and nothing else, on the same database with the same
connection settings as Patchwork (SQLite: WAL, synchronous=NORMAL, busy_timeout)."""

from __future__ import annotations

import json
import os

from flask import Flask, request
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, create_engine, event

from webapp import normalise_database_url

engine = create_engine(normalise_database_url(os.environ["DATABASE_URL"]))
rows = Table(
    "bench_ceiling_answers",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("token", String(200)),
    Column("question", String(40)),
    Column("value", Text),
)


@event.listens_for(engine, "connect")
def _pragmas(connection, _record) -> None:
    if engine.dialect.name == "sqlite":
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
            connection.execute(f"PRAGMA {pragma}")


app = Flask(__name__)


@app.post("/ceiling/<token>")
def answer(token: str):
    data = request.get_json()
    with engine.begin() as connection:
        connection.execute(
            rows.insert().values(
                token=token, question=data["question"], value=json.dumps(data["answer"])
            )
        )
    return {"next": None, "completed": True}


if __name__ == "__main__":  # create the table once, before gunicorn starts its workers
    rows.create(engine, checkfirst=True)
