"""Conversations become trees: every message gets a parent, every conversation a current leaf.

Before, a conversation was a line in id order: regenerate marked the last reply `superseded_at` and
wrote a new one; edit marked the last user message and everything after it, and wrote a new message
and reply; continue wrote a reply after the stopped one. The forward rule rebuilds that history,
losing nothing. Walking a conversation's messages in id order, the line as it stood when a message
was written is every earlier message not yet superseded then (`superseded_at` before the message's
`created_at`: the old code marked the replaced messages, then wrote their successor); the message
follows the line's last one. So a regenerated reply becomes a sibling of the reply it replaced, an
edited message a sibling of the message it replaced (a root for the first one), a continuation the
child of the reply it continued. The current leaf is the newest message on the line at the end.
`superseded_at` is kept as it was.

Backwards, the columns go; messages off the current path that were not superseded get
`superseded_at` (now), so the line view of the old code shows the current branch.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone


def line_parents(rows):
    """(id, created_at, superseded_at) rows of one conversation, in id order → ({id: parent id}, leaf id)."""
    parents = {}
    line = []  # (id, superseded_at) of the messages in the conversation when the next one was written
    for pk, created_at, superseded_at in rows:
        line = [(other, gone) for other, gone in line if gone is None or gone > created_at]
        parents[pk] = line[-1][0] if line else None
        line.append((pk, superseded_at))
    current = [pk for pk, gone in line if gone is None] or [pk for pk, _ in line]
    return parents, (current[-1] if current else None)


def build_trees(apps, schema_editor):
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    for conversation_id in Conversation.objects.values_list("pk", flat=True).iterator():
        rows = (
            Message.objects.filter(conversation_id=conversation_id)
            .order_by("id")
            .values_list("id", "created_at", "superseded_at")
        )
        parents, leaf = line_parents(rows)
        children = [Message(pk=pk, parent_id=parent) for pk, parent in parents.items() if parent is not None]
        Message.objects.bulk_update(children, ["parent"], batch_size=500)
        Conversation.objects.filter(pk=conversation_id).update(current_leaf_id=leaf)


def mark_other_branches_superseded(apps, schema_editor):
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    now = timezone.now()
    for conversation in Conversation.objects.all().iterator():
        parents = dict(Message.objects.filter(conversation=conversation).values_list("id", "parent_id"))
        current = conversation.current_leaf_id or max(parents, default=None)
        path = set()
        while current is not None:
            path.add(current)
            current = parents[current]
        off_path = Message.objects.filter(conversation=conversation, superseded_at__isnull=True).exclude(pk__in=path)
        off_path.update(superseded_at=now)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_message_upstream_response"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="chat.message",
            ),
        ),
        migrations.AddField(
            model_name="conversation",
            name="current_leaf",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="chat.message",
            ),
        ),
        migrations.RunPython(build_trees, mark_other_branches_superseded),
    ]
