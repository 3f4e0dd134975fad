"""``manage.py place_order ITEM [--fail]``: an order and its receipt task in one transaction;
``--fail`` raises after both were written, so the transaction rolls back."""

from django.core.management.base import BaseCommand
from django.db import transaction

from pgqueue.contrib.django import queue_task
from shop.models import Order


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("item")
        parser.add_argument("--fail", action="store_true")

    def handle(self, *args, **options):
        with transaction.atomic():
            order = Order.objects.create(item=options["item"])
            task_id = queue_task("send_receipt", order_id=order.id)
            if options["fail"]:
                raise RuntimeError("payment declined")
        self.stdout.write(f"order {order.id} task {task_id}")
