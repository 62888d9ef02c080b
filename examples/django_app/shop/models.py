from django.db import models


class Order(models.Model):
    # The saga's steps update `status` with SQL on the worker's connection (see
    # sagas.py), so that the worker needs no Django: the table name is fixed here.
    NEW, RESERVED, PAID, CANCELLED = "new", "reserved", "paid", "cancelled"
    OPEN = (NEW, RESERVED)

    customer = models.CharField(max_length=100)
    item = models.CharField(max_length=100)
    status = models.CharField(max_length=20, default=NEW)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "shop_order"

    def __str__(self) -> str:
        return f"order {self.pk}: {self.item} for {self.customer} ({self.status})"

    @property
    def saga_id(self) -> str:
        """The id of this order's saga instance."""
        return f"order-{self.pk}"
