"""A view that writes a note and enqueues a task in one transaction."""

from __future__ import annotations

import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from .models import Note
from .tasks import add


class Refused(Exception):
    """Raised after the enqueue, to roll the whole request back."""


def create_note(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    try:
        with transaction.atomic():
            note = Note.objects.create(text=body["text"])
            result = add.enqueue(note.pk, 1)
            if body.get("refuse"):
                raise Refused(result.id)
    except Refused as e:
        return JsonResponse({"refused": str(e)}, status=409)
    return JsonResponse({"note": note.pk, "task": result.id}, status=201)
