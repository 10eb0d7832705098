"""A lock that keeps two poll cycles from running at once, across processes.

With Redis configured (REDIS_URL, or a redis:// broker) it is a Redis lock with a TTL, so a worker
killed mid-cycle cannot block polling for longer than KALSHI_POLL_LOCK_TIMEOUT. Without Redis (the
embedded SQLite setup, one machine) it is an flock() on a file in var/, released by the OS when the
process dies.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)


class LockUnavailable(RuntimeError):
    """The lock's store (Redis at REDIS_URL) cannot be reached; the message says what to do."""


class HeldLock(Protocol):
    def extend(self) -> None:
        """Push the expiry back: called after every page of a long cycle."""


class _RedisHeld:
    def __init__(self, lock: object) -> None:
        self._lock = lock

    def extend(self) -> None:
        self._lock.reacquire()  # type: ignore[attr-defined]


class _FileHeld:
    def extend(self) -> None:
        return None


@contextmanager
def exclusive(name: str, *, timeout: int | None = None) -> Iterator[HeldLock | None]:
    """Yield a held lock, or None at once if another process holds `name`."""
    ttl = timeout or settings.KALSHI_POLL_LOCK_TIMEOUT
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3, socket_timeout=5)
        # Scoped to the database: two installations (or test runs) sharing one Redis must not
        # block each other, while every process writing to the same database must.
        database = connection.settings_dict["NAME"]
        lock = client.lock(f"kalshi_insights:{database}:lock:{name}", timeout=ttl, blocking=False)
        try:
            acquired = lock.acquire()
        except redis.RedisError as exc:
            raise LockUnavailable(
                f"Redis at REDIS_URL ({_redact(settings.REDIS_URL)}) is unreachable: {str(exc).rstrip('.')}. "
                "Start Redis, or unset REDIS_URL and CELERY_BROKER_URL to use the embedded mode."
            ) from exc
        if not acquired:
            yield None
            return
        try:
            yield _RedisHeld(lock)
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                # The TTL ran out during a very long cycle; another process may hold it now.
                logger.warning("Lock %s had already expired when the cycle finished.", name)
        return

    path = Path(settings.VAR_DIR) / f"{name}-{Path(str(connection.settings_dict['NAME'])).name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield _FileHeld()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _redact(url: str) -> str:
    """Hide a password in a URL before it goes into a log or an error message."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
