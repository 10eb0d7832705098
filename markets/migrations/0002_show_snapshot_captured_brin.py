"""A BRIN index on snapshot capture time, for time-range reads across all markets.

Snapshots arrive in time order, so a BRIN index (one min/max summary per 32 heap pages) narrows
"captured between t0 and t1" to a few block ranges at a cost of ~0.01 byte per row: about
100-200 kB for 10M rows, against ~240 MB for a B-tree on the same column. The admin's date
drill-down uses it. autosummarize keeps freshly filled ranges summarized between vacuums, so
recent data does not fall back to scanning unsummarized ranges.
PostgreSQL only; other databases get no index (their tables are small).
"""

from django.contrib.postgres.indexes import BrinIndex
from django.db import migrations


class AddIndexOnPostgreSQL(migrations.AddIndex):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("markets", "0001_initial")]

    operations = [
        AddIndexOnPostgreSQL(
            model_name="marketsnapshot",
            index=BrinIndex(
                fields=["captured_at"], name="snapshot_captured_brin", autosummarize=True, pages_per_range=32
            ),
        ),
    ]
