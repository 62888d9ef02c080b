"""The app factory and the views of the Flask example.

The app makes one `Saga` at startup and opens its pool there; it is closed when the
process exits. Each `start`/`call`/`get` takes a pooled connection and commits on its own.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request

from saga import ConcurrencyException, DuplicateSaga, Saga, SagaNotFound, Status

from .sagas import Payment, make_saga

views = Blueprint("payments", __name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Make the app; SAGA_DSN and SAGA_SCHEMA come from *config*, else the environment
    (a schema left unset is the library's default: SAGA_SCHEMA, else "saga")."""
    app = Flask(__name__)
    app.config.from_mapping(SAGA_DSN=os.environ.get("SAGA_DSN"),
                            SAGA_SCHEMA=os.environ.get("SAGA_SCHEMA"))
    app.config.from_mapping(config or {})
    saga = make_saga(app.config["SAGA_DSN"], schema=app.config["SAGA_SCHEMA"])
    saga.pool  # noqa: B018  open it now, once per process (after the fork, for gunicorn)
    atexit.register(saga.close)
    app.extensions["saga"] = saga
    app.register_blueprint(views)

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create or upgrade the saga tables."""
        applied = saga.init_db()
        print(f"applied {len(applied)} migration(s)")

    return app


def the_saga() -> Saga:
    saga: Saga = current_app.extensions["saga"]
    return saga


def error(status: int, message: str) -> tuple[Any, int]:
    return jsonify(error=message), status


@views.post("/payments")
def create_payment() -> tuple[Any, int]:
    """Start a payment: {"id": "p-1", "amount": 250}."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        return error(400, 'expected {"id": "...", "amount": cents}')
    try:
        payment = Payment(amount=body.get("amount"), currency=body.get("currency", "EUR"))
        the_saga().start(body["id"], "charge", payment)
    except DuplicateSaga:
        return error(409, f"payment {body['id']!r} exists")
    except (TypeError, ValueError) as e:  # an input that does not fit Payment, a bad id
        return error(400, str(e))
    return jsonify(id=body["id"]), 202


@views.get("/payments/<id>")
def show_payment(id: str) -> tuple[Any, int]:
    try:
        instance = the_saga().get(id)
    except SagaNotFound:
        return error(404, f"no payment {id!r}")
    return jsonify(
        id=id, status=instance.status.name, step=instance.step, error=instance.error,
        result=instance.state if instance.status == Status.COMPLETE else None,
    ), 200


@views.post("/gateway/<id>")
def gateway_webhook(id: str) -> tuple[Any, int]:
    """The gateway's verdict on a charge: {"status": "CONFIRMED" | "DECLINED"}."""
    body = request.get_json(silent=True)
    verdict = body.get("status") if isinstance(body, dict) else None
    if verdict not in ("CONFIRMED", "DECLINED"):
        return error(400, 'expected {"status": "CONFIRMED" | "DECLINED"}')
    saga = the_saga()
    try:
        # `call` replaces the next step of any PENDING instance: a reply that comes
        # before the charge was even asked for must not skip it.
        if saga.get(id).step != "gateway_reply":
            return error(409, f"payment {id!r} has not been sent to the gateway yet")
        saga.call(id, "gateway_reply", verdict)
    except SagaNotFound:
        return error(404, f"no payment {id!r}")
    except ConcurrencyException:  # running, or decided already: the gateway retries
        return error(409, f"payment {id!r} is not waiting for the gateway")
    return "", 204
