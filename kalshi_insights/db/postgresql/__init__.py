"""Django's PostgreSQL backend with psycopg's C timestamptz loader (see base.py)."""
