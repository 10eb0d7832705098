"""The insights pages, mounted at /insights/ by kalshi_insights/urls.py."""

from __future__ import annotations

from django.urls import path

from . import insight_views

app_name = "insights"

urlpatterns = [
    path("calibration/", insight_views.calibration_page, name="calibration"),
    path("movers/", insight_views.movers_page, name="movers"),
]
