class JobNotFound(Exception):
    """No such job or scene for this user (shown as 404: ids reveal nothing)."""


class JobRefused(Exception):
    """Bad input or a state that does not allow the action; nothing was changed."""


class FundsInsufficient(JobRefused):
    """The wallet cannot cover the escrow hold; nothing was changed."""
