"""Test settings: production settings plus a fast password hasher (PBKDF2 costs ~0.5 s per user)."""
import os

from marketplace.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Internal tasks run inline unless a test starts a real Celery worker; agent queues use the real Redis.
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER", "1") == "1"
CELERY_TASK_EAGER_PROPAGATES = True
