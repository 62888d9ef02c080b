"""The fund-transfer saga: debit, credit, then wait for the payment gateway's webhook.

`python -m examples.transfer` runs it end to end: it starts a throwaway PostgreSQL
(unless SAGA_DSN names one), a worker process (`python -m saga.worker
examples.transfer:saga`), and three transfers: one the gateway confirms, one it never
answers (the saga times out and compensates), and one without the funds (it fails).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from saga import Saga, SagaError, Status

saga = Saga("transfer_fund", schema="demo")  # the database comes from SAGA_DSN

# How long a transfer waits for the gateway's webhook before it is reversed.
WEBHOOK_TIMEOUT = float(os.environ.get("DEMO_WEBHOOK_TIMEOUT", "3"))


@dataclass
class Transfer:
    source: str
    target: str
    amount: Decimal


def move(conn: psycopg.Connection[Any], account: str, amount: Decimal) -> Decimal | None:
    """Add *amount* to *account* unless that would overdraw it; return the new balance."""
    row = conn.execute(
        "UPDATE demo.account SET balance = balance + %s"
        " WHERE name = %s AND balance + %s >= 0 RETURNING balance",
        (amount, account, amount),
    ).fetchone()
    return None if row is None else row[0]


# A step with a `conn` parameter runs inside the transaction that records its outcome:
# the debit and the move to the next step commit together, exactly once.
@saga.step
def debit(input: Transfer, state, set_state, logger, *, conn):
    balance = move(conn, input.source, -input.amount)
    if balance is None:
        raise SagaError(f"insufficient funds in {input.source} for {input.amount}")
    logger.info("debited %s from %s (balance %s)", input.amount, input.source, balance)
    return credit(input)


@saga.step
def credit(input: Transfer, state, set_state, logger, *, conn):
    balance = move(conn, input.target, input.amount)
    logger.info("credited %s to %s (balance %s)", input.amount, input.target, balance)
    # Wait for the gateway: `webhook` runs when it calls back (saga.call), or with
    # "TIMEOUT" once the delay is over. The transfer travels on as the state.
    return webhook("TIMEOUT", state=input, delay=WEBHOOK_TIMEOUT)


@saga.step
def webhook(input: str, state: Transfer, set_state, logger):
    if input == "CONFIRMED":
        logger.info("gateway confirmed the transfer")
        return {"outcome": "confirmed", "amount": str(state.amount)}
    logger.warning("no word from the gateway (%s): reversing the transfer", input)
    return refund(state)


@saga.step
def refund(input: Transfer, state, set_state, logger, *, conn):
    move(conn, input.target, -input.amount)
    move(conn, input.source, input.amount)
    logger.info("refunded %s to %s", input.amount, input.source)
    return {"outcome": "refunded", "amount": str(input.amount)}


# -- the demo ---------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} demo   | {message}", flush=True)


def wait_for(instance: str, done: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done(saga.get(instance)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{instance} did not get there in {timeout:.0f}s")
        time.sleep(0.05)


def start_worker(dsn: str) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "saga.worker", "examples.transfer:saga", "--workers", "4",
         "--dsn", dsn, "--heartbeat-timeout", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )

    def relay() -> None:
        assert worker.stdout is not None
        for line in worker.stdout:
            print(f"         worker | {line.rstrip()}", flush=True)

    threading.Thread(target=relay, daemon=True).start()
    return worker


def demo(dsn: str) -> None:
    os.environ["SAGA_DSN"] = dsn
    saga.init_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS demo.account (name text PRIMARY KEY,"
                     " balance numeric NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS demo.transfer_order (id text PRIMARY KEY)")
        conn.execute("TRUNCATE demo.account, demo.transfer_order")
        conn.execute("DELETE FROM demo.instance WHERE name = %s", (saga.name,))
        conn.execute("INSERT INTO demo.account VALUES ('alice', 100), ('bob', 0)")
    say("accounts: alice 100, bob 0")

    worker = start_worker(dsn)
    try:
        # A web view would do this: its own write and the saga commit together.
        with psycopg.connect(dsn) as conn:
            conn.execute("INSERT INTO demo.transfer_order VALUES ('tx-1')")
            saga.start("tx-1", debit, Transfer("alice", "bob", Decimal(30)), conn=conn)
        say("started tx-1: alice -> bob 30 (the gateway will confirm it)")
        saga.start("tx-2", debit, Transfer("alice", "bob", Decimal(20)))
        say(f"started tx-2: alice -> bob 20 (the gateway stays silent for {WEBHOOK_TIMEOUT:g}s)")
        saga.start("tx-3", debit, Transfer("bob", "alice", Decimal(500)))
        say("started tx-3: bob -> alice 500 (bob cannot pay that)")

        wait_for("tx-1", lambda r: r.step == "webhook" and r.status == Status.PENDING)
        saga.call("tx-1", webhook, "CONFIRMED")  # what the gateway's webhook view does
        say("the gateway called back for tx-1: CONFIRMED")

        for tx in ("tx-1", "tx-2", "tx-3"):
            wait_for(tx, lambda r: r.done, timeout=WEBHOOK_TIMEOUT + 30)
        for tx in ("tx-1", "tx-2", "tx-3"):
            r = saga.get(tx)
            say(f"{tx}: {r.status.name:8} after step {r.step!r}: {r.state or r.error}")
        with psycopg.connect(dsn) as conn:
            balances = conn.execute("SELECT name, balance FROM demo.account ORDER BY name")
            say("accounts: " + ", ".join(f"{n} {b}" for n, b in balances))
    finally:
        worker.terminate()  # SIGTERM: a graceful stop
        code = worker.wait(timeout=40)
        say(f"worker stopped (exit code {code})")


def main() -> None:
    dsn = os.environ.get("SAGA_DSN")
    if dsn:
        demo(dsn)
        return
    from saga.testing import temporary_postgres

    say("no SAGA_DSN: starting a throwaway PostgreSQL")
    with temporary_postgres(env_var="SAGA_DSN") as dsn:
        demo(dsn)


if __name__ == "__main__":
    main()
