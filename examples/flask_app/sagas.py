"""The payment saga: ask the gateway to charge, then wait for its webhook (or give up).

    SAGA_DSN=postgresql://app@db/app pgsaga worker examples.flask_app.sagas:saga

The steps are defined in `make_saga()`, so that the app factory can make its own `Saga`
on the database and schema of its config; `saga` is the one the worker imports (its
database is SAGA_DSN, its schema SAGA_SCHEMA, else "saga": the app's, when both
processes have the same environment). Views name the steps: `saga.start(id, "charge", ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from saga import Saga, SagaError

GATEWAY_TIMEOUT = 10 * 60.0  # seconds the gateway has to confirm a charge


@dataclass
class Payment:
    amount: int  # in cents
    currency: str = "EUR"


def make_saga(dsn: str | None = None, *, schema: str | None = None) -> Saga:
    """The payment saga on *dsn* (None: SAGA_DSN, read when its pool first opens) and
    *schema* (None: SAGA_SCHEMA, else "saga")."""
    saga = Saga("payment", dsn, schema=schema)

    @saga.step
    def charge(input: Payment, state, set_state, logger):
        if input.amount <= 0:
            raise SagaError(f"cannot charge {input.amount}")  # fails for good, no retry
        logger.info("asking the gateway for %s %s", input.amount, input.currency)
        # An HTTP call to the gateway would go here, with the instance id as its
        # idempotency key: a step runs at least once.
        return gateway_reply("TIMEOUT", state=input, delay=GATEWAY_TIMEOUT)

    @saga.step
    def gateway_reply(input: str, state: Payment, set_state, logger):
        logger.info("gateway: %s", input)
        outcome = "paid" if input == "CONFIRMED" else "failed"
        return {"outcome": outcome, "gateway": input, "amount": state.amount}

    return saga


saga = make_saga()
