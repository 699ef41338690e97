"""Dispute settings, read at call time.

DISPUTE_WINDOW_HOURS  how long after a frame settles its artist may dispute it, and how long the
                      provider's pay for it stays pending (default 72).
"""

from datetime import timedelta

from django.conf import settings

REASON_MIN_CHARS = 10
REASON_MAX_CHARS = 2000
NOTE_MAX_CHARS = 2000


def window() -> timedelta:
    return timedelta(hours=getattr(settings, "DISPUTE_WINDOW_HOURS", 72))
