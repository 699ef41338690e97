from marketplace.errors import NotFound, PaymentRequired, Refused


class JobNotFound(NotFound):
    """No such job or scene for this user (ids reveal nothing)."""


class JobRefused(Refused):
    """Bad input or a state that does not allow the action; nothing was changed."""


class FundsInsufficient(PaymentRequired, JobRefused):
    """The wallet cannot cover the escrow hold; nothing was changed."""
