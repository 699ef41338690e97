"""What jobs asks of the apps above it before new work starts, without importing them.

payments registers its `wallet_frozen` here in its AppConfig.ready(): a wallet that owes tokens after a refunded
or disputed top-up may not quote, accept or retry.
"""

from __future__ import annotations

from collections.abc import Callable

_wallet_frozen: list[Callable[..., bool]] = []


def wallet_frozen_register(fn: Callable[..., bool]) -> None:
    """`fn(*, user) -> bool`: True while the user's wallet owes tokens."""
    if fn not in _wallet_frozen:
        _wallet_frozen.append(fn)


def wallet_frozen(*, user) -> bool:
    return any(fn(user=user) for fn in _wallet_frozen)
