from django.db import transaction
from django.utils import timezone

from marketplace.accounts.models import ApiToken, User
from marketplace.accounts.tokens import secret_issue, secret_matches, secret_split


@transaction.atomic
def user_create(*, username: str, password: str, role: str = User.Role.ARTIST, email: str = "") -> User:
    if role not in User.Role.values:
        raise ValueError(f"unknown role {role!r}")
    user = User(username=username, email=email, role=role, is_staff=role == User.Role.ADMIN)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user


@transaction.atomic
def api_token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """Returns the token row and its plaintext, which is shown once and never stored."""
    issued = secret_issue("tok")
    token = ApiToken.objects.create(user=user, name=name, prefix=issued.prefix, secret_hash=issued.secret_hash)
    return token, issued.plaintext


def api_token_authenticate(*, plaintext: str) -> User | None:
    parts = secret_split(plaintext)
    if parts is None:
        return None
    prefix, secret = parts
    token = ApiToken.objects.select_related("user").filter(prefix=prefix, revoked_at=None).first()
    if token is None or not secret_matches(secret, token.secret_hash) or not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user


@transaction.atomic
def api_token_revoke(*, user: User, token_id: int) -> bool:
    return bool(ApiToken.objects.filter(pk=token_id, user=user, revoked_at=None).update(revoked_at=timezone.now()))


def user_ban(*, user_id: int) -> bool:
    """Ban a provider account (its nodes get no more work: verification.policy). True the first time only."""
    return bool(User.objects.filter(pk=user_id, banned_at=None).update(banned_at=timezone.now()))
