from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from markets.api.exceptions import api_not_found

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("markets.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("backtests/", include("backtests.urls")),
    path("insights/", include("markets.insight_urls")),
    path("api/v1/", include("backtests.api.urls")),
    path("api/v1/insights/", include("markets.api.insights")),
    re_path(r"^api/(?P<path>.*)$", api_not_found),
    path("", include("markets.urls")),
]
