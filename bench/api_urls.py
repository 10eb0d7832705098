"""The project's URLs plus the baseline: a plain Django view returning a JsonResponse."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from kalshi_insights.urls import urlpatterns as project_urlpatterns

BASELINE = {
    "ticker": "KXNFLGAME-26OCT08TBDAL-DAL",
    "status": "active",
    "yes_bid": "0.8050",
    "yes_ask": "0.8100",
    "volume": "271926.68",
}


def baseline(request: HttpRequest) -> JsonResponse:
    return JsonResponse(BASELINE)


urlpatterns = [path("bench/baseline/", baseline), *project_urlpatterns]
