"""Full-text search: the index behind GET /api/search (chat/services/search_index.py keeps it in step).

PostgreSQL: tsvector columns on messages (answer, reasoning) and conversations (title), each with a
GIN index, filled here for the rows that exist with the configuration CHAT_SEARCH_CONFIG names.
SQLite: two FTS5 tables (rowid = the message's or conversation's id), filled here too; the
tsvector columns exist there too (SQLite takes any column type) and stay null.
The GIN indexes and FTS5 tables are raw SQL because each exists on one database only.
"""

import django.contrib.postgres.search
from django.db import migrations

# The index's SQL lives in one place; the rebuild reads only `content`, `parts`, `title` and the
# columns and tables made here.
from chat.services.search_index import search_index_rebuild

def index_create(apps, schema_editor):
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        run("CREATE INDEX message_search ON chat_message USING gin (search_vector)")
        run("CREATE INDEX message_search_reasoning ON chat_message USING gin (search_reasoning)")
        run("CREATE INDEX conversation_search ON chat_conversation USING gin (search_vector)")
    elif schema_editor.connection.vendor == "sqlite":
        tokenize = "tokenize='porter unicode61 remove_diacritics 2'"
        run(f"CREATE VIRTUAL TABLE chat_message_fts USING fts5(content, reasoning, {tokenize})")
        run(f"CREATE VIRTUAL TABLE chat_conversation_fts USING fts5(title, {tokenize})")
    search_index_rebuild()


def index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in ("message_search", "message_search_reasoning", "conversation_search"):
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TABLE IF EXISTS chat_message_fts")
        schema_editor.execute("DROP TABLE IF EXISTS chat_conversation_fts")


class Migration(migrations.Migration):
    dependencies = [("chat", "0010_api_keys")]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="search_vector",
            field=django.contrib.postgres.search.SearchVectorField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="message",
            name="search_vector",
            field=django.contrib.postgres.search.SearchVectorField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="message",
            name="search_reasoning",
            field=django.contrib.postgres.search.SearchVectorField(editable=False, null=True),
        ),
        migrations.RunPython(index_create, index_drop),
    ]
