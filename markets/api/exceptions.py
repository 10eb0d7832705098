"""Every API error is JSON: `{"detail": "...", "code": "...", "errors": {...}}`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .renderers import CSVRenderer, JSONRenderer


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler with one body shape: a sentence in `detail`, a `code`, and per-field `errors`."""
    if isinstance(exc, DjangoValidationError):
        # A value that passed our parsing but not the model field's (should not happen; never a 500).
        exc = exceptions.ValidationError(exc.messages)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    request = context.get("request")
    if request is not None and isinstance(getattr(request, "accepted_renderer", None), CSVRenderer):
        # Errors are JSON even when CSV was asked for: a client parsing CSV would misread them.
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {
            "detail": "Invalid request: " + "; ".join(_messages(errors)),
            "code": "invalid",
            "errors": errors,
        }
        response.status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        response.data = {"detail": str(detail), "code": getattr(detail, "code", exc.default_code)}
    return response


def _messages(errors: Any, prefix: str = "") -> list[str]:
    if isinstance(errors, dict):
        return [m for key, value in errors.items() for m in _messages(value, f"{prefix}{key}: ")]
    if isinstance(errors, list):
        return [m for value in errors for m in _messages(value, prefix)]
    return [f"{prefix}{errors}"]


class ContentNegotiation(DefaultContentNegotiation):
    """An unknown `?format=` is a 400 naming the formats this endpoint has, not a bare 404."""

    def filter_renderers(self, renderers: Iterable[BaseRenderer], format: str) -> list[BaseRenderer]:
        renderers = list(renderers)
        matching = [r for r in renderers if r.format == format]
        if not matching:
            offered = ", ".join(sorted({r.format for r in renderers if r.format != "api"}))
            raise exceptions.ValidationError(
                {"format": [f"Unknown format {format!r}; use one of: {offered}."]}
            )
        return matching


def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any /api/ URL no route matches: a JSON 404 in the API's error shape, not Django's HTML page."""
    return JsonResponse(
        {
            "detail": f"No API endpoint at {request.path}. The endpoints are listed at /api/docs/.",
            "code": "not_found",
        },
        status=404,
    )
