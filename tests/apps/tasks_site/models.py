"""A model for the views' transactions and the tasks' ORM writes."""

from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=200)
