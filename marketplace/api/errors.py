"""One error body for every API error: RFC 9457 problem details, `application/problem+json`.

    {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no such scene"}

Field errors add `errors` (DRF's field -> messages dictionary, unchanged). Every API error goes through
`exception_handler` (settings `REST_FRAMEWORK["EXCEPTION_HANDLER"]`): DRF's own exceptions (validation,
authentication, permission, 404, 405, 415 ...) and the apps' service exceptions, each of which carries its own
status (`marketplace.errors`: NotFound, Refused, Conflict ...). The schema documents the shape once, as
`Problem`, for every 4xx/5xx answer of every operation (`marketplace.api.schema.problem_responses`). `type` stays
`about:blank` (RFC 9457 §4.2.1): the status says what kind of problem it is and `detail` says what happened, in
the services' own words.
"""

from http import HTTPStatus

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from marketplace.errors import ServiceError

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem(status: int, detail: str, **extra: object) -> Response:
    """A problem-details response; `extra` adds members such as `errors`."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail, **extra}
    return Response(body, status=status, content_type=PROBLEM_CONTENT_TYPE)


def _detail_text(data: object) -> str:
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])
    if isinstance(data, list) and data:
        return " ".join(str(item) for item in data)
    return str(data)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler (which also turns Django's Http404/PermissionDenied into 404/403), then one body shape."""
    if isinstance(exc, ServiceError):  # the services commit (or not) in their own transactions
        return problem(exc.status, str(exc), **exc.problem_members())
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API exception: a 500, logged by Django as usual
    if isinstance(exc, exceptions.ValidationError) and isinstance(response.data, dict):
        refused = problem(response.status_code, "The request has invalid fields: see `errors`.", errors=response.data)
    else:
        refused = problem(response.status_code, _detail_text(response.data))
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            refused[header] = response[header]
    return refused


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    """`handler404`: an API path no route matches (e.g. `/api/v1/jobs/abc/`) answers problem details too."""
    if _is_api(request):
        return _plain_problem(404, "no such API path")
    return defaults.page_not_found(request, exception)


def server_error(request):
    """`handler500`: an API caller gets problem details, a browser the usual page."""
    if _is_api(request):
        return _plain_problem(500, "the server failed; the error was logged")
    return defaults.server_error(request)


def lockout(request, original_response=None, credentials=None) -> HttpResponse:
    """`AXES_LOCKOUT_CALLABLE`: a locked-out API caller (too many bad tokens) gets problem details, a browser the
    plain message axes gives by default; both with AXES_HTTP_RESPONSE_CODE (429)."""
    from axes.helpers import get_cool_off, get_lockout_message  # imports axes' models: only once apps are loaded

    status = settings.AXES_HTTP_RESPONSE_CODE
    if not _is_api(request):
        return HttpResponse(get_lockout_message(), status=status)
    response = _plain_problem(status, get_lockout_message())
    cool_off = get_cool_off(request)
    if cool_off:
        response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response


def _plain_problem(status: int, detail: str):
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    return JsonResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE)
