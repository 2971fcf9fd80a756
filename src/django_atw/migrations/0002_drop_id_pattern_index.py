"""Drop the pattern-ops index PostgreSQL creates for the varchar primary key.

A separate migration: Django creates that index in deferred SQL at the end of 0001.
"""

from django.db import migrations


def drop_id_pattern_index(apps, schema_editor):
    """Drop the varchar_pattern_ops index PostgreSQL gets for a CharField primary key.

    It only serves case-sensitive prefix LIKE on ids, which nothing runs, and every claim and
    completion would pay for maintaining it.
    """
    if schema_editor.connection.vendor != "postgresql":
        return
    table = apps.get_model("django_atw", "TaskRecord")._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname LIKE %s",
            [table, "%\\_like"],
        )
        for (name,) in cursor.fetchall():
            schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("django_atw", "0001_initial")]

    operations = [migrations.RunPython(drop_id_pattern_index, migrations.RunPython.noop)]
