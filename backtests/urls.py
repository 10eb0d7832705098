from __future__ import annotations

from django.urls import path

from . import views

app_name = "backtests"

urlpatterns = [
    path("", views.run_list, name="index"),
    path("new/", views.run_new, name="new"),
    path("<int:pk>/", views.run_detail, name="detail"),
]
