"""The demo's orders and the services that judge them: validation and a payment gateway.

Orders are generated from a seed, so a run with the same ``--orders`` and seed sees the same
orders and the same failures: a few have a negative quantity (rejected at once), a few use a
card whose issuer times out once (paid on retry), and a few use a card whose issuer never
answers (dead-lettered when the retry budget is spent).
"""

from __future__ import annotations

import random

import pydantic

__all__ = [
    "CARD_ALWAYS_FAILS",
    "CARD_FAILS_ONCE",
    "CARD_OK",
    "InvalidOrder",
    "IssuerUnavailable",
    "Order",
    "charge",
    "generate_orders",
    "validate",
]

CARD_OK = "4242-4242-4242-4242"
CARD_FAILS_ONCE = "4000-0000-0000-0119"  # the issuer times out on the first try only
CARD_ALWAYS_FAILS = "4000-0000-0000-0002"  # the issuer never answers

_SKUS = ("mug", "t-shirt", "sticker-pack", "hoodie", "notebook")
_CUSTOMERS = ("ada", "grace", "linus", "margaret", "barbara", "ken", "dennis")


class Order(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)

    id: str
    customer: str
    sku: str
    quantity: int
    unit_price_cents: int
    card: str

    @property
    def total_cents(self) -> int:
        return self.quantity * self.unit_price_cents


class InvalidOrder(Exception):
    """The order can never be processed; retrying will not help."""


class IssuerUnavailable(Exception):
    """The card issuer did not answer; another attempt may succeed."""


def generate_orders(count: int, seed: int = 7) -> list[Order]:
    """``count`` orders; ``seed`` picks which ones fail, the number that fail depends only on
    ``count``: one in twelve invalid, one in twenty declined for good, one in eight paid on
    retry (at least one of each from three orders up)."""
    rng = random.Random(seed)
    invalid, always, once = set(), set(), set()
    if count >= 3:
        picked = rng.sample(range(count), max(1, count // 12) + max(1, count // 20)
                            + max(1, count // 8))
        invalid = set(picked[: max(1, count // 12)])
        always = set(picked[len(invalid): len(invalid) + max(1, count // 20)])
        once = set(picked[len(invalid) + len(always):])
    orders = []
    for i in range(count):
        quantity = rng.randint(1, 5)
        card = CARD_ALWAYS_FAILS if i in always else CARD_FAILS_ONCE if i in once else CARD_OK
        orders.append(Order(
            id=f"order-{i + 1:04d}",
            customer=rng.choice(_CUSTOMERS),
            sku=rng.choice(_SKUS),
            quantity=-quantity if i in invalid else quantity,
            unit_price_cents=rng.randint(300, 6000),
            card=card,
        ))
    return orders


def validate(order: Order) -> None:
    """Raise InvalidOrder for an order no retry can fix."""
    if order.quantity <= 0:
        raise InvalidOrder(f"quantity {order.quantity} of {order.sku!r} is not positive")


def charge(order: Order, attempt: int) -> str:
    """Charge the card; the payment reference, or IssuerUnavailable."""
    if order.card == CARD_ALWAYS_FAILS or (order.card == CARD_FAILS_ONCE and attempt == 1):
        raise IssuerUnavailable(f"issuer of card ending {order.card[-4:]} did not answer")
    return f"pay-{order.id}"
