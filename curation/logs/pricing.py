"""Cost of a call from its token usage and the price table in settings (LOGTUNE_PRICES)."""

from decimal import Decimal

from django.conf import settings

_PER_MILLION = Decimal(1_000_000)


def _price_for(model: str) -> tuple[Decimal, Decimal] | None:
    # Dated snapshots ("gpt-4o-2024-08-06") and suffixes share the price of their family: longest prefix wins.
    best = max((prefix for prefix in settings.LOGTUNE_PRICES if model.startswith(prefix)), key=len, default=None)
    if best is None:
        return None
    price_in, price_out = settings.LOGTUNE_PRICES[best]
    return Decimal(str(price_in)), Decimal(str(price_out))


def cost_usd(*, model: str, prompt_tokens: int | None, completion_tokens: int | None) -> Decimal | None:
    """USD cost, or None when the model has no price or the usage is unknown."""
    if prompt_tokens is None and completion_tokens is None:
        return None
    price = _price_for(model.lower())
    if price is None:
        return None
    price_in, price_out = price
    return ((prompt_tokens or 0) * price_in + (completion_tokens or 0) * price_out) / _PER_MILLION
