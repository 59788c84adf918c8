"""Crash safety: ``kill -9`` a real stdio server at random moments while it acts.

Each trial starts ``charter serve --agent mailer``, keeps several side-effecting calls in
flight (``email_send`` on the local transport and ``token_issue``) and kills the process at
a random instant. The effects are observable apart from the ledger: a delivered message is
a row in the recipient's local mailbox, an issued token a row in ``tokens``. After every
trial:

* the ledger verifies and its seqs are gap-free;
* every call the client saw succeed has its intent and its ``ok`` outcome entry;
* every delivered message and every issued token has a committed intent entry, and the
  send log holds a row exactly for each committed email intent;
* the next server (the next trial) continues the same chain.

Also: an entry a ``LedgerWriter`` acknowledged is in the database after ``kill -9``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sechelp
from mcp import Client, StdioServerParameters

from charter.home import Home
from charter.testing import make_home, raw_db, raw_tx

pytestmark = pytest.mark.slow

API = "https://api.example.com"
TRIALS = 24
IN_FLIGHT = 4
#: The kill comes this long (uniformly at random) after the first call was sent.
MAX_KILL_DELAY = 0.4
CHILD = str(Path(__file__).with_name("ledger_child.py"))


@dataclass
class Answer:
    """A response the client received before the kill."""

    tool: str
    ok: bool
    result: dict[str, Any] | None
    text: str


@dataclass
class Trial:
    """What the client saw during one trial."""

    answers: list[Answer] = field(default_factory=list)
    sent: int = 0
    in_flight_at_kill: int = 0


@pytest.fixture
async def root(tmp_path: Path) -> Path:
    """A home (real clock: the server subprocess reads it) with the acting agent."""
    path = tmp_path / "home"
    async with await make_home(path) as home:
        await sechelp.add_mailbox(home)
        await sechelp.add_mail_agent(home, "mailer", ["email:send", "token:issue"], audiences=[API])
    return path


def drive(server: sechelp.RawStdioServer, n: int, trial: Trial, stop: threading.Event) -> None:
    """Keep IN_FLIGHT side-effecting calls outstanding until the server dies."""
    pending: dict[int, str] = {}
    try:
        while True:
            while not stop.is_set() and len(pending) < IN_FLIGHT:
                if trial.sent % 2 == 0:
                    args = sechelp.send_args(f"crash {n} {trial.sent}")
                    pending[server.call("email_send", args)] = "email_send"
                else:
                    args = {"audience": API, "scopes": ["email:send"], "ttl_seconds": 60}
                    pending[server.call("token_issue", args)] = "token_issue"
                trial.sent += 1
            message = server.next_response(timeout=60)
            ok, result, text = sechelp.tool_result(message)
            trial.answers.append(Answer(pending.pop(int(message["id"])), ok, result, text))
            trial.in_flight_at_kill = len(pending)
    except sechelp.ServerGone:
        trial.in_flight_at_kill = len(pending)


def run_trial(root: Path, n: int, rng: random.Random, log: Path) -> Trial:
    server = sechelp.RawStdioServer(root, "mailer", log)
    trial = Trial()
    stop = threading.Event()
    try:
        server.initialize(timeout=120)
        driver = threading.Thread(target=drive, args=(server, n, trial, stop))
        driver.start()
        time.sleep(rng.uniform(0, MAX_KILL_DELAY))
        stop.set()
        server.kill()
        driver.join(timeout=60)
        assert not driver.is_alive()
    finally:
        if server.proc.poll() is None:
            server.kill()
    return trial


def by_phase(entries: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(intent entries by call id, outcome entries by call id)."""
    intents = {e["call"]: e for e in entries if e["phase"] == "intent"}
    outcomes = {e["call"]: e for e in entries if e["phase"] == "outcome"}
    return intents, outcomes


def intents_by(entries: list[dict[str, Any]], action: str, key: str) -> dict[str, Any]:
    """Intent entries of ``action`` by their ``details[key]`` (message id, token id)."""
    return {
        e["args"]["details"][key]: e
        for e in entries
        if e["phase"] == "intent" and e["action"] == action
    }


def check_after_trial(home: Home, trial: Trial, before: tuple[int, str]) -> None:
    entries = sechelp.entries(home)
    intents, outcomes = by_phase(entries)
    mails = intents_by(entries, "email.send", "message_id")
    tokens = intents_by(entries, "token.issue", "jti")
    # The restarted server continued the chain where the last one stopped.
    if len(entries) > before[0]:
        assert entries[before[0]]["prev"] == before[1]
    for answer in trial.answers:
        assert answer.ok, answer.text  # nothing fails before the kill
        assert answer.result is not None
        if answer.tool == "email_send":
            intent = mails[answer.result["message_id"]]
            assert intent["seq"] == answer.result["ledger_seq"]
        else:
            intent = tokens[answer.result["jti"]]
        outcome = outcomes[intent["call"]]
        assert outcome["outcome"] == "ok" and outcome["seq"] > intent["seq"]
    # No effect without a committed intent: delivered mail and issued tokens.
    for (message_id,) in raw_db(home).execute(
        "SELECT message_id FROM mail_local_inbox WHERE agent = 'mailbox'"
    ):
        assert message_id in mails, f"message {message_id} was delivered without an intent"
    for (jti,) in raw_db(home).execute("SELECT jti FROM tokens WHERE agent_name = 'mailer'"):
        assert jti in tokens, f"token {jti} was issued without an intent"
    # The send log holds a row exactly for each committed intent (they commit together).
    logged = {m for (m,) in raw_db(home).execute("SELECT message_id FROM mail_sent")}
    assert logged == set(mails), logged ^ set(mails)
    assert set(intents) >= {e["call"] for e in outcomes.values()}


async def head(root: Path) -> tuple[int, str]:
    async with await sechelp.open_home(root) as home:
        return raw_tx(home).ledger.head()


async def test_kill_9_at_random_moments_loses_nothing_acknowledged(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    interrupted = answered = 0
    for n in range(TRIALS):
        before = await head(root)
        trial = run_trial(root, n, rng, tmp_path / "stderr.log")
        answered += len(trial.answers)
        interrupted += trial.in_flight_at_kill
        await sechelp.verify(root)
        async with await sechelp.open_home(root) as home:
            check_after_trial(home, trial, before)
    async with await sechelp.open_home(root) as home:
        entries = sechelp.entries(home)
        intents, outcomes = by_phase(entries)
        cut = len(set(intents) - set(outcomes))  # killed between intent and outcome
        delivered = raw_db(home).execute("SELECT count(*) FROM mail_local_inbox").fetchone()[0]
    figures = {
        "seed": seed,
        "trials": TRIALS,
        "calls_answered": answered,
        "calls_in_flight_at_kill": interrupted,
        "intents_without_outcome": cut,
        "messages_delivered": delivered,
        "ledger_size": len(entries),
    }
    with capsys.disabled():
        print(f"\ncrash trials: {json.dumps(figures)}")
    assert answered > 0 and interrupted > 0  # the kills really landed mid-work


async def test_a_restarted_server_continues_the_chain_for_a_real_client(root: Path) -> None:
    rng = random.Random(7)
    run_trial(root, 0, rng, root.parent / "stderr.log")
    size, last = await head(root)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "charter", "serve", "--agent", "mailer"],
        env=sechelp.server_env(root),
    )
    async with Client(params, mode="legacy") as client:
        sent = await client.call_tool("email_send", sechelp.send_args("after the crash"))
    assert not sent.is_error and sent.structured_content is not None
    await sechelp.verify(root)
    async with await sechelp.open_home(root) as home:
        first_new = raw_tx(home).ledger.get(size)
        assert first_new is not None and first_new.fields["prev"] == last
        assert sent.structured_content["ledger_seq"] >= size


# -- LedgerWriter acknowledgements survive kill -9 --------------------------------------------


@pytest.fixture
async def writer_home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    await (await make_home(root)).close()
    return root


@pytest.mark.sqlite_only(
    "its child drives a SqliteStore of its own;"
    " kill -9 on PostgreSQL: tests/storage/test_pg_team.py"
)
@pytest.mark.parametrize("trial", range(4))
async def test_an_acknowledged_ledger_writer_append_survives_kill_9(
    writer_home: Path, trial: int
) -> None:
    child = subprocess.Popen(
        [sys.executable, CHILD, "writer", str(writer_home), "8"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=sechelp.server_env(writer_home),
    )
    assert child.stdin is not None and child.stdout is not None
    assert child.stdout.readline().strip() == b"ready"
    acks: list[bytes] = []
    reader = threading.Thread(target=lambda: acks.extend(child.stdout or ()), daemon=True)
    reader.start()
    child.stdin.write(b"go\n")
    child.stdin.flush()
    time.sleep(random.Random(trial).uniform(0.3, 0.8))
    child.kill()
    child.wait(timeout=30)
    reader.join(timeout=10)
    child.stdin.close()
    child.stdout.close()
    acknowledged = [line.split() for line in acks if line.endswith(b"\n")]
    assert len(acknowledged) > 10, "the writer acknowledged too little to mean anything"
    await sechelp.verify(writer_home)
    async with await sechelp.open_home(writer_home) as home:
        for seq, digest in acknowledged:
            entry = raw_tx(home).ledger.get(int(seq))
            assert entry is not None and entry.hash == digest.decode()
