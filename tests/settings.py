"""Test settings: production settings plus a fast password hasher (PBKDF2 costs ~0.5 s per user).

The tests run in dev mode on purpose (DEBUG=1 before the production settings load, as `make test` also sets):
production settings refuse to start without a strong SECRET_KEY. The dev payment provider stays off unless a
test turns it on (settings.PAYMENTS_DEV_PROVIDER = True), as in production.
"""

import os

os.environ.setdefault("DEBUG", "1")

from marketplace.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Internal tasks run inline unless a test starts a real Celery worker; agent queues use the real Redis.
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER", "1") == "1"
CELERY_TASK_EAGER_PROPAGATES = True
# Inline tasks would start Blender on every sampled lease of a test job's (often fake) scene, inside the call that
# grants it; the farm's real workers (CELERY_TASK_ALWAYS_EAGER=0) render references ahead as in production.
# tests/verification/test_lease_sampling.py turns it on for inline tasks.
VERIFICATION_REFERENCES_AHEAD = not CELERY_TASK_ALWAYS_EAGER
VERIFICATION_PLATFORM_PREWARM = False
# The payment tests' amounts were written against a 1,000-token payout minimum; the default is now a mid-range
# GPU's day (payments.conf.PAYOUT_MIN_TOKENS, issue 11), checked on its own in tests/payments/test_payouts.py.
PAYOUT_MIN_MICRO = 1_000 * MICRO  # noqa: F405

# django-axes needs the request in authenticate(), which Django's test Client.login() does not pass; the
# throttling tests (tests/accounts/test_throttle.py) turn it on with settings.AXES_ENABLED = True.
AXES_ENABLED = os.environ.get("AXES_ENABLED", "0") == "1"

# The test farm (tests/fixtures/farm.py) loses queued platform-crop messages on purpose (the chaos test restarts
# Redis); it shortens the wait before the resume sweep sends them again (production default: 15 minutes).
VERIFICATION_PLATFORM_RESUME_AFTER_S = int(os.environ.get("VERIFICATION_PLATFORM_RESUME_AFTER_S", "900"))
