from rest_framework import authentication, exceptions

from marketplace.accounts import throttle
from marketplace.accounts.services import api_token_authenticate
from marketplace.logs import bind


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer tok….secret` for scripts using the artist/provider API."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header.startswith(self.keyword + " "):
            return None
        plaintext = header[len(self.keyword) + 1 :]
        credentials = throttle.bearer_credentials(kind="api-token", plaintext=plaintext)
        throttle.bearer_allowed(request._request, credentials)
        user = api_token_authenticate(plaintext=plaintext)
        if user is None:
            throttle.bearer_failed(request._request, credentials)
            raise exceptions.AuthenticationFailed("invalid or revoked API token")
        bind(user_id=user.pk)  # the rest of the request's lines name the caller
        return user, None

    def authenticate_header(self, request) -> str:
        return self.keyword
