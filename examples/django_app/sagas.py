"""The order saga: reserve the order, then wait for the payment gateway's webhook.

    SAGA_DSN=postgresql://app@db/app pgsaga worker examples.django_app.sagas:saga

The views start it (`reserve`) and feed it the webhook's verdict (`payment`). This module
does not import Django, so the worker needs no `django.setup()`: the steps write the
`shop_order` table with SQL on their `conn`, in the transaction that records the step's
outcome, so each change of an order's status happens exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from saga import Saga

# The database is SAGA_DSN and the schema SAGA_SCHEMA (else "saga"), as in the Flask
# example: the web processes and the worker read the same environment.
saga = Saga("order")

PAYMENT_TIMEOUT = 15 * 60.0  # seconds the gateway has to confirm, then the order is cancelled


@dataclass
class OrderRef:
    order: int  # the id of the shop_order row


def set_status(conn: psycopg.Connection[Any], order: int, status: str) -> None:
    conn.execute("UPDATE shop_order SET status = %s WHERE id = %s", (status, order))


@saga.step
def reserve(input: OrderRef, state, set_state, logger, *, conn):
    set_status(conn, input.order, "reserved")  # stock would be reserved here
    logger.info("order %s reserved: waiting for the payment", input.order)
    # `payment` runs when the webhook calls it, or with "timeout" once the delay is over.
    return payment("timeout", state=input, delay=PAYMENT_TIMEOUT)


@saga.step
def payment(input: str, state: OrderRef, set_state, logger, *, conn):
    if input == "paid":
        set_status(conn, state.order, "paid")
    else:  # "declined" by the gateway, or "timeout"
        set_status(conn, state.order, "cancelled")  # and the stock released
    logger.info("order %s: payment %s", state.order, input)
    return {"order": state.order, "payment": input}
