"""Test settings: production settings plus a fast password hasher (PBKDF2 costs ~0.5 s per user)."""
import os

from marketplace.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Internal tasks run inline unless a test starts a real Celery worker; agent queues use the real Redis.
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER", "1") == "1"
CELERY_TASK_EAGER_PROPAGATES = True
# The payment tests' amounts were written against a 1,000-token payout minimum; the default is now a mid-range
# GPU's day (payments.conf.PAYOUT_MIN_TOKENS, issue 11), checked on its own in tests/payments/test_payouts.py.
PAYOUT_MIN_MICRO = 1_000 * MICRO  # noqa: F405
