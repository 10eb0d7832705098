from __future__ import annotations

app_name = "markets"

urlpatterns: list = []
