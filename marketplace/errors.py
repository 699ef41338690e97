"""The market's error vocabulary: the few kinds of refusal a service raises, each with the HTTP status it answers.

Apps subclass these for their own refusals (`JobNotFound(NotFound)`, `DisputeRefused(Conflict)` ...); the message
is what the caller reads. One DRF exception handler (`marketplace.api.errors.exception_handler`) turns any of them
into problem details with `status`, and pages that answer a refusal with a status use the same one. This module
imports nothing of the apps, so every layer may raise them.
"""

from http import HTTPStatus


class ServiceError(Exception):
    """A refusal the caller can act on; nothing was changed. `status`: the HTTP status it answers with."""

    status: int = HTTPStatus.BAD_REQUEST

    def problem_members(self) -> dict[str, object]:
        """Members the problem body adds to type, title, status and detail (e.g. the digests still missing)."""
        return {}


class Refused(ServiceError):
    """Bad input, or a state that does not allow the action."""

    status = HTTPStatus.BAD_REQUEST


class PaymentRequired(Refused):
    """The wallet cannot cover it."""

    status = HTTPStatus.PAYMENT_REQUIRED


class Forbidden(ServiceError):
    """This account may not do it, whatever it asks."""

    status = HTTPStatus.FORBIDDEN


class NotFound(ServiceError):
    """No such thing for this caller: someone else's looks the same as none, so ids reveal nothing."""

    status = HTTPStatus.NOT_FOUND


class Conflict(ServiceError):
    """The thing's current state does not allow it (it is in use, decided already, no longer active)."""

    status = HTTPStatus.CONFLICT


class TooLarge(ServiceError):
    """The upload is over its limit."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Unavailable(ServiceError):
    """A service the action needs (e.g. the payment provider) is not configured or not answering."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
