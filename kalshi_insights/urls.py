from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("backtests/", include("backtests.urls")),
    path("api/v1/", include("backtests.api.urls")),
    path("", include("markets.urls")),
]
