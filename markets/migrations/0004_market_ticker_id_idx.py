"""A (ticker, id) index for the API's market list (PostgreSQL only, like 0003's).

The list picks a page's market ids in a subquery ordered by ticker (see MarketViewSet.as_rows);
with the id in the index that subquery is an index-only scan, so a deep `?page=` steps over
index entries instead of fetching every skipped market's row from the table.
"""

from django.db import migrations, models


class AddIndexOnPostgreSQL(migrations.AddIndex):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("markets", "0003_show_indexes")]

    operations = [
        AddIndexOnPostgreSQL(
            model_name="market",
            index=models.Index(fields=["ticker", "id"], name="market_ticker_id_idx"),
        ),
    ]
