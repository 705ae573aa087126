# The outbox's index of published rows made partial (published rows only), so that the
# INSERT in an enqueueing caller's transaction does not maintain it.
#
# Built without locking the table on PostgreSQL: the outbox keeps OUTBOX_RETENTION_HOURS of
# published rows (millions on a busy site), and a plain CREATE INDEX after a DROP INDEX in
# one transaction would hold every enqueue, and every read of the outbox, for the build.
# Elsewhere (SQLite, `make dev`) the index is simply replaced.

from django.db import migrations, models

OLD = models.Index(fields=["published_at"], name="outbox_published_at")
NEW = models.Index(fields=["published_at"], condition=models.Q(published_at__isnull=False),
                   name="outbox_published")


def _replace(schema_editor, model, *, add, remove):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.add_index(model, add, concurrently=True)
        schema_editor.remove_index(model, remove, concurrently=True)
    else:
        schema_editor.add_index(model, add)
        schema_editor.remove_index(model, remove)


def forwards(apps, schema_editor):
    _replace(schema_editor, apps.get_model("workers", "OutboxMessage"), add=NEW, remove=OLD)


def backwards(apps, schema_editor):
    _replace(schema_editor, apps.get_model("workers", "OutboxMessage"), add=OLD, remove=NEW)


class Migration(migrations.Migration):

    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ('workers', '0013_unique_keys_without_like_indexes'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name='outboxmessage', name='outbox_published_at'),
                migrations.AddIndex(model_name='outboxmessage', index=NEW),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
