"""DRF's anonymous and per-user throttles, with rates read when a request comes in.

DRF copies DEFAULT_THROTTLE_RATES into the class when it is imported, so a settings change (a
test, a reload) would not reach it; these read `api_settings` each time instead.
"""

from __future__ import annotations

from typing import Any

from rest_framework import throttling
from rest_framework.settings import api_settings


def current_rate(scope: str | None) -> str | None:
    rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
    rate = rates.get(scope or "")
    return None if rate is None else str(rate)


class AnonRateThrottle(throttling.AnonRateThrottle):
    def get_rate(self) -> str | None:
        return current_rate(self.scope)


class UserRateThrottle(throttling.UserRateThrottle):
    def get_rate(self) -> str | None:
        return current_rate(self.scope)
