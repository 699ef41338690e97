from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    class Role(models.TextChoices):
        ARTIST = "artist", "Artist"
        PROVIDER = "provider", "GPU provider"
        ADMIN = "admin", "Admin"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ARTIST)
    # A reserved account of the platform itself (it owns the canary jobs). Found by this flag, never by its
    # name; it has no usable password and no token, so nobody can log in as it or sign up as it.
    is_platform = models.BooleanField(default=False)
    # A ban is the provider's, not one node's: none of its nodes, old or new, gets work (verification.policy).
    banned_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractUser.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["is_platform"], condition=models.Q(is_platform=True), name="one_platform_account"
            )
        ]

    @property
    def is_artist(self) -> bool:
        return self.role == self.Role.ARTIST

    @property
    def is_provider(self) -> bool:
        return self.role == self.Role.PROVIDER

    @property
    def is_market_admin(self) -> bool:
        return self.role == self.Role.ADMIN or self.is_superuser


class ApiToken(models.Model):
    """A bearer token for scripts. Only the SHA-256 of the secret is stored; the prefix finds the row."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
