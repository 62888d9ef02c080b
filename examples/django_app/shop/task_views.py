"""Views of the shop's tasks: enqueue a receipt in the request's transaction, read it back."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .models import Order
from .tasks import send_receipt


@csrf_exempt
@require_POST
def request_receipt(request: HttpRequest, pk: int) -> HttpResponse:
    """Enqueue the receipt of order *pk*: the task row commits with the request, or not."""
    with transaction.atomic():
        order = get_object_or_404(Order.objects.select_for_update(), pk=pk)
        result = send_receipt.enqueue(order.pk)
    return JsonResponse({"task": result.id, "status": result.status}, status=202)


@require_GET
def receipt_status(request: HttpRequest, task_id: str) -> HttpResponse:
    """The receipt task as Django's framework sees it: status, attempts, result, errors."""
    result = send_receipt.get_result(task_id)  # TaskResultDoesNotExist: a 500 in this demo
    return JsonResponse({
        "task": result.id, "status": result.status, "attempts": result.attempts,
        "result": result.return_value if result.status == "SUCCESSFUL" else None,
        "errors": [e.traceback.splitlines()[-1] for e in result.errors],
    })
