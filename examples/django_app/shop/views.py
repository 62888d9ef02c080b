"""The shop's JSON views: create an order (and its saga), show it, take the gateway's call.

Every saga call passes Django's own connection (`saga.contrib.django.connection()`), so
the web process never opens the saga's pool: it needs no SAGA_DSN of its own.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from saga import ConcurrencyException, SagaNotFound, Status
from saga.contrib.django import connection

from ..sagas import OrderRef, payment, reserve, saga
from .models import Order


class TooManyOrders(Exception):
    """The customer has too many open orders."""


@csrf_exempt
@require_POST
def create_order(request: HttpRequest) -> HttpResponse:
    """Write an Order and start its saga: both commit, or neither."""
    try:
        body = json.loads(request.body)
        customer, item = str(body["customer"]), str(body["item"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'expected {"customer": ..., "item": ...}'}, status=400)
    try:
        with transaction.atomic():
            order = Order.objects.create(customer=customer, item=item)
            saga.start(order.saga_id, reserve, OrderRef(order.pk), conn=connection())
            # Anything that fails from here on undoes the order and the saga alike: no
            # worker ever sees a saga whose order was rolled back.
            open_orders = Order.objects.filter(customer=customer, status__in=Order.OPEN)
            if open_orders.count() > settings.SHOP_MAX_OPEN_ORDERS:
                raise TooManyOrders(customer)
    except TooManyOrders:
        return JsonResponse({"error": f"{customer} has too many open orders"}, status=409)
    return JsonResponse({"order": order.pk, "saga": order.saga_id}, status=201)


@require_GET
def order_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The order and its saga."""
    order = get_object_or_404(Order, pk=pk)
    try:
        # Outside atomic(): Django's connection in autocommit, a read on its own.
        instance = saga.get(order.saga_id, conn=connection(atomic=False))
    except SagaNotFound:
        flow = None
    else:
        flow = {"status": instance.status.name, "step": instance.step,
                "attempts": instance.attempts, "error": instance.error,
                "result": instance.state if instance.status == Status.COMPLETE else None}
    return JsonResponse({"order": order.pk, "status": order.status, "saga": flow})


@csrf_exempt
@require_POST
def payment_webhook(request: HttpRequest, pk: int) -> HttpResponse:
    """The gateway's verdict, {"status": "paid" | "declined"}, handed to the saga."""
    try:
        verdict = json.loads(request.body)["status"]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'expected {"status": "paid" | "declined"}'}, status=400)
    if verdict not in ("paid", "declined"):
        return JsonResponse({"error": f"unknown status {verdict!r}"}, status=400)
    conn = connection(atomic=False)
    busy = JsonResponse({"error": f"order {pk} is not waiting for a payment"}, status=409)
    try:
        # `call` replaces the next step of any PENDING instance: an early webhook must
        # not skip `reserve`. The step cannot go back to `reserve`, so the check holds.
        if saga.get(f"order-{pk}", conn=conn).step != payment.name:
            return busy  # not reserved yet: the gateway retries later
        saga.call(f"order-{pk}", payment, verdict, conn=conn)
    except SagaNotFound:
        return JsonResponse({"error": f"no order {pk}"}, status=404)
    except ConcurrencyException:  # running (the time-out fired), or decided already
        return busy
    return HttpResponse(status=204)
