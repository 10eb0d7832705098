"""The markets API, mounted at /api/v1/ by kalshi_insights/urls.py."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from . import views

app_name = "markets-api"

# SimpleRouter: no API root view of its own, so other apps can mount their routers on /api/v1/ too.
router = SimpleRouter()
router.register("markets", views.MarketViewSet, basename="market")
router.register(
    r"markets/(?P<ticker>[^/]+)/snapshots", views.MarketSnapshotViewSet, basename="market-snapshot"
)
router.register("events", views.EventViewSet, basename="event")
router.register("series", views.SeriesViewSet, basename="series")
router.register("poll-runs", views.PollRunViewSet, basename="poll-run")

urlpatterns = router.urls
