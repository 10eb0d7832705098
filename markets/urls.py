from __future__ import annotations

from django.urls import path

from . import views

app_name = "markets"

urlpatterns = [
    path("", views.index, name="index"),
    path("markets/<str:ticker>/", views.market_detail, name="market"),
    path("markets/<str:ticker>/chart/", views.market_chart, name="market-chart"),
    path("events/<str:event_ticker>/", views.event_detail, name="event"),
    path("status/", views.status_page, name="status"),
]
