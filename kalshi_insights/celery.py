"""Celery application, wired exactly as in Celery's Django recipe."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_insights.settings")

app = Celery("kalshi_insights")
# All CELERY_* settings in settings.py configure the app (CELERY_BROKER_URL -> broker_url, ...).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
