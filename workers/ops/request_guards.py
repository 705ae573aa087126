"""Refuse form and query input no database column can hold, before any view sees it.

PostgreSQL text refuses NUL (0x00): a NUL in an admin search, a note, an edit's reason
or a hidden field reached a query or an INSERT and answered 500 (a hostile walk of the
admin found eight such paths, one open to read-only users). Every view reading
`request.GET` / `request.POST` is covered here at once; JSON bodies are refused by their
own parser (workers/core/json_input.py), and raw bodies (the Stripe webhook) are left to
their views, which must see the exact bytes they verify.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

NUL = "\x00"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class RejectNulCharacters:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _holds_nul(request.GET) or (request.method == "POST"
                                       and request.content_type in FORM_TYPES
                                       and _holds_nul(request.POST)):
            return HttpResponseBadRequest("NUL characters are not accepted in form or query "
                                          "input.", content_type="text/plain")
        return self.get_response(request)


def _holds_nul(data: object) -> bool:
    lists = getattr(data, "lists", None)
    if lists is None:
        return False
    return any(NUL in key or any(NUL in value for value in values if isinstance(value, str))
               for key, values in lists())
