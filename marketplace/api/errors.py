"""One mapping from service exceptions to HTTP answers for API views: `{"error": message}` with a status."""
from rest_framework.response import Response
from rest_framework.views import APIView


class ServiceErrorView(APIView):
    """Subclasses list `error_status`: (exception class, HTTP status) pairs, the first isinstance match wins."""

    error_status: tuple[tuple[type[Exception], int], ...] = ()

    def handle_exception(self, exc: Exception) -> Response:
        code = next((code for kind, code in self.error_status if isinstance(exc, kind)), None)
        if code is None:
            return super().handle_exception(exc)
        return Response({"error": str(exc)}, status=code)
