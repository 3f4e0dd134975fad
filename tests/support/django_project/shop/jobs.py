"""The shop's jobs: they use the ORM, so the worker must have Django set up."""

import pgqueue

from .models import Order


@pgqueue.job()
def send_receipt(consumer, order_id: int) -> str:
    order = Order.objects.get(pk=order_id)
    order.receipt = f"receipt for {order.item}"
    order.save(update_fields=["receipt"])
    return order.receipt
