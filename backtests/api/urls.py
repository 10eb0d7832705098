from __future__ import annotations

from django.urls import path

from . import views

app_name = "backtests-api"

urlpatterns = [
    path("backtests/", views.BacktestListCreateApi.as_view(), name="list"),
    path("backtests/<int:pk>/", views.BacktestDetailApi.as_view(), name="detail"),
    path("backtests/<int:pk>/trades/", views.BacktestTradesApi.as_view(), name="trades"),
]
