"""The shop's background tasks, on Django's tasks framework with pgsaga as the backend.

    python -m examples.django_app.manage saga_worker     # runs them (Django set up)

`send_receipt` uses the ORM, so it runs in a worker with Django set up, unlike the
order saga's steps (sagas.py), which need none. One worker can run both:
`DJANGO_SETTINGS_MODULE=examples.django_app.settings python -m saga.worker
examples.django_app.sagas:saga saga.contrib.django_tasks.worker:sagas`.
"""

from __future__ import annotations

import logging

try:  # Django >= 6 ships the framework; before, the django-tasks backport does
    from django.tasks import task
except ImportError:
    from django_tasks import task

from .models import Order

logger = logging.getLogger(__name__)


@task()
def send_receipt(order_id: int) -> dict[str, object]:
    """Send the receipt of a paid order (here: log it). A raise is retried with backoff."""
    order = Order.objects.get(pk=order_id)
    if order.status != Order.PAID:
        raise ValueError(f"order {order_id} is {order.status}, not paid: no receipt yet")
    logger.info("receipt for %s sent to %s", order, order.customer)
    return {"order": order.pk, "to": order.customer, "item": order.item}
