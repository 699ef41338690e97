from marketplace.ledger.models import Account
from marketplace.ledger.services import account_get


def account_locked(*, kind: str, owner) -> Account:
    """The owner's ledger account, row-locked until the caller's transaction ends.

    Call inside `transaction.atomic`. Reading a balance and then moving part of it needs the lock, or a
    concurrent spend could slip in between (Postgres; SQLite already serialises writers).
    """
    account = account_get(kind=kind, owner=owner)
    return Account.objects.select_for_update().get(pk=account.pk)
