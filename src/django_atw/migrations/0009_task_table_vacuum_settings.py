"""Autovacuum settings of the task table, on PostgreSQL only (SQLite keeps no dead row versions).

Every claim and every completion updates a task row, and neither can be a HOT update: the
status is in the predicate of the partial indexes, started_at and completed_at are indexed.
So each task leaves two dead row versions, and a dead entry in the claim index right where the
next claim starts reading: claims slow down until a vacuum removes them (over a 1,000,000-task
drain with none, the claim's round trip tripled). The server's defaults wait until a fifth of
the table is dead. These settings make autovacuum, when the server runs it, vacuum the task
table sooner and always clean its indexes. Autovacuum still looks at a table at most once a
minute; the workers' own check (``store/maintenance.py``, ``ATW["VACUUM_INTERVAL"]``) covers
faster drains, and servers that run no autovacuum.
"""

from django.db import migrations

# Storage parameters of the task table, each with why:
TASK_TABLE_OPTIONS = {
    # Vacuum once dead rows pass 1,000 + 5% of the table instead of 50 + 20%. Each claimed
    # task leaves a dead claim-index entry that costs every later claim 10-14 ns until a
    # vacuum, while a vacuum's cost grows with the table (0.3-0.6 s for 1,000,000 rows here):
    # the best point grows with the square root of the table's size (VACUUM_SCALE in
    # store/maintenance.py), and 5% stays near it from one to ten million rows, where 20%
    # would let 2,000,000 dead rows pile up (13 ms more per claim). The 1,000 keeps a small
    # table from being vacuumed at every autovacuum_naptime for a handful of rows; the
    # workers' own check waits for 20,000, as it looks every few seconds, not once a minute.
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_vacuum_scale_factor": "0.05",
    # Always clean the indexes. With fewer than 2% of the table's pages holding dead rows
    # (a backlog drained on top of millions of finished rows), PostgreSQL 14+ skips the index
    # pass, and the claim index's dead entries are exactly what slows claims: measured, after
    # 20,000 claims over 2,100,000 rows, a VACUUM left to decide kept the next claim reading
    # 136 index pages; with the index pass, 19.
    "vacuum_index_cleanup": "on",
}
# Not set: fillfactor. Free space on a page only helps HOT updates, and neither a claim nor a
# completion can be one (n_tup_hot_upd stayed 0 over a 1,000,000-task drain). Not set either:
# autovacuum_vacuum_insert_scale_factor. The rows a bulk enqueue inserts are updated by their
# claim soon after; an insert-triggered vacuum of them would mark pages all-visible that the
# drain dirties again, and the update-triggered vacuum above covers them.


def _table(apps):
    return apps.get_model("django_atw", "TaskRecord")._meta.db_table


def set_options(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(_table(apps))
    options = ", ".join(f"{name} = {value}" for name, value in TASK_TABLE_OPTIONS.items())
    schema_editor.execute(f"ALTER TABLE {table} SET ({options})")


def reset_options(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(_table(apps))
    schema_editor.execute(f"ALTER TABLE {table} RESET ({', '.join(TASK_TABLE_OPTIONS)})")


class Migration(migrations.Migration):
    dependencies = [("django_atw", "0008_operations_dashboard")]

    operations = [migrations.RunPython(set_options, reset_options)]
