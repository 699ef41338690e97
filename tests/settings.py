"""Test settings: production settings plus a fast password hasher (PBKDF2 costs ~0.5 s per user)."""
from marketplace.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
