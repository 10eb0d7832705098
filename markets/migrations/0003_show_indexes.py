"""Indexes for the Show pages and the admin (PostgreSQL only; SQLite databases stay small).

* snapshot_captured_brin: BRIN on MarketSnapshot.captured_at, for time-range reads across all
  markets (the admin's date drill-down). Snapshots arrive in time order, so one min/max summary
  per 32 heap pages narrows a time range to a few block ranges, at ~0.02 byte per row (about
  160 kB for 10M rows, against ~240 MB for a B-tree). autosummarize keeps freshly filled ranges
  summarized between vacuums.
* market_open_*: partial indexes over open markets for the market table's sort orders, so its
  first page is a top-50 index scan instead of a sort of every open market. They cover only
  open markets (tens of thousands of rows), not the snapshot table.
"""

import django.db.models.functions.math
from django.contrib.postgres.indexes import BrinIndex
from django.db import migrations, models
from django.db.models.expressions import CombinedExpression


class AddIndexOnPostgreSQL(migrations.AddIndex):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


OPEN = models.Q(("status", "active"))


class Migration(migrations.Migration):
    dependencies = [("markets", "0002_history_trades_backfill_settlement")]

    operations = [
        AddIndexOnPostgreSQL(
            model_name="marketsnapshot",
            index=BrinIndex(
                fields=["captured_at"], name="snapshot_captured_brin", autosummarize=True, pages_per_range=32
            ),
        ),
        AddIndexOnPostgreSQL(
            model_name="market",
            index=models.Index(
                models.OrderBy(models.F("volume_24h"), descending=True, nulls_last=True),
                models.F("ticker"),
                condition=OPEN,
                name="market_open_volume_idx",
            ),
        ),
        AddIndexOnPostgreSQL(
            model_name="market",
            index=models.Index(
                models.OrderBy(
                    django.db.models.functions.math.Abs(
                        CombinedExpression(models.F("last_price"), "-", models.F("previous_price"))
                    ),
                    descending=True,
                    nulls_last=True,
                ),
                models.OrderBy(models.F("volume_24h"), descending=True, nulls_last=True),
                models.F("ticker"),
                condition=OPEN,
                name="market_open_movers_idx",
            ),
        ),
        AddIndexOnPostgreSQL(
            model_name="market",
            index=models.Index(
                models.OrderBy(
                    models.Case(
                        models.When(
                            then=CombinedExpression(models.F("yes_ask"), "-", models.F("yes_bid")),
                            yes_ask__gt=0,
                            yes_ask__lt=1,
                            yes_bid__gt=0,
                        ),
                        default=models.Value(None),
                        output_field=models.DecimalField(decimal_places=6, max_digits=10),
                    ),
                    descending=True,
                    nulls_last=True,
                ),
                models.F("ticker"),
                condition=OPEN,
                name="market_open_spread_idx",
            ),
        ),
        AddIndexOnPostgreSQL(
            model_name="market",
            index=models.Index(
                models.OrderBy(models.F("open_time"), descending=True, nulls_last=True),
                models.OrderBy(models.F("id"), descending=True),
                condition=OPEN,
                name="market_open_newest_idx",
            ),
        ),
    ]
