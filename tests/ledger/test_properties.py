"""Property-based: any sequence of ledger operations keeps balances == sum of postings and total == 0."""

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.accounts.services import user_create
from marketplace.ledger import selectors
from marketplace.ledger.models import Account
from marketplace.ledger.services import (
    LedgerError,
    Leg,
    account_get,
    hold_escrow,
    refund_escrow,
    release_escrow,
    transfer,
)

pytestmark = pytest.mark.django_db
Kind = Account.Kind
RUN = itertools.count()  # examples share one test database: keep names and keys unique

op = st.one_of(
    st.tuples(st.just("topup"), st.integers(0, 2), st.integers(1, 10**9)),
    st.tuples(st.just("pay"), st.integers(0, 2), st.integers(0, 2), st.integers(1, 10**9)),
    st.tuples(st.just("hold"), st.integers(0, 2), st.integers(0, 3), st.integers(1, 10**9)),
    st.tuples(st.just("release"), st.integers(0, 2), st.integers(0, 3), st.integers(1, 10**9)),
    st.tuples(st.just("refund"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("replay"), st.integers(0, 40)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=25))
def test_random_operations_keep_the_ledger_consistent(ops, provider):
    run = next(RUN)
    artists = [user_create(username=f"p{i}-{run}", password="x") for i in range(3)]
    clearing = account_get(kind=Kind.PAYMENT_CLEARING)
    done: list = []
    for n, o in enumerate(ops):
        key = f"{run}:{n}"
        try:
            if o[0] == "topup":
                legs = [Leg(clearing, -o[2]), Leg(account_get(kind=Kind.ARTIST_WALLET, owner=artists[o[1]]), o[2])]
                done.append((key, legs))
                transfer(key=key, memo="topup", legs=legs)
            elif o[0] == "pay":
                legs = [
                    Leg(account_get(kind=Kind.ARTIST_WALLET, owner=artists[o[1]]), -o[3]),
                    Leg(account_get(kind=Kind.ARTIST_WALLET, owner=artists[o[2]]), o[3]),
                ]
                if o[1] != o[2]:
                    done.append((key, legs))
                    transfer(key=key, memo="pay", legs=legs)
            elif o[0] == "hold":
                hold_escrow(artist=artists[o[1]], job_ref=f"job:{o[2]}", amount=o[3], key=key)
            elif o[0] == "release":
                release_escrow(artist=artists[o[1]], job_ref=f"job:{o[2]}", provider=provider, amount=o[3], key=key)
            elif o[0] == "refund":
                refund_escrow(artist=artists[o[1]], job_ref=f"job:{o[2]}", key=key)
            elif o[0] == "replay" and done:
                k, legs = done[o[1] % len(done)]
                transfer(key=k, memo="replay", legs=legs)
        except LedgerError:
            pass  # refused operations (overdrafts) must leave no trace, which the asserts below check
        for account in Account.objects.all():
            assert account.balance == selectors.account_balance_from_postings(account=account)
            assert account.allow_negative or account.balance >= 0
        assert selectors.ledger_total() == 0
