"""chat/migrations/0009_message_parent_tree.py on a database of line conversations: regenerated,
edited and continued replies become a tree that loses nothing, and the way back keeps the branch."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

# Marked for cluster mode too: the migration must hold on PostgreSQL, where it will run.
pytestmark = pytest.mark.cluster

BEFORE = [("chat", "0008_message_upstream_response")]
AFTER = [("chat", "0009_message_parent_tree")]


@pytest.fixture
def migrate(transactional_db):
    """Migrate the test database to a state; the historical models of that state. Back to the
    latest migrations afterwards."""

    def to(targets):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    yield to
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


class Line:
    """Writes messages as the line code did: in id order, superseded ones marked."""

    def __init__(self, apps, title: str) -> None:
        user = apps.get_model("auth", "User").objects.get_or_create(username="line")[0]
        self.Message = apps.get_model("chat", "Message")
        self.conversation = apps.get_model("chat", "Conversation").objects.create(owner=user, title=title, model="m")

    def add(self, role: str, content: str, **fields) -> int:
        return self.Message.objects.create(conversation=self.conversation, role=role, content=content, **fields).pk

    def supersede(self, *ids: int) -> None:
        """Mark them replaced, as regenerate and edit did just before writing their successor."""
        self.Message.objects.filter(pk__in=ids).update(superseded_at=timezone.now())


def test_a_line_with_regenerations_edits_and_continuations_becomes_a_tree_that_loses_nothing(migrate):
    old = migrate(BEFORE)
    line = Line(old, "history")
    q1 = line.add("user", "Q1")
    a1 = line.add("assistant", "A1")
    line.supersede(a1)  # regenerate
    a1b = line.add("assistant", "A1b")
    q2 = line.add("user", "Q2")
    stopped = line.add("assistant", "A2 stopped ", status="cancelled")
    continued = line.add("assistant", "and continued")  # continue
    line.supersede(q2, stopped, continued)  # edit
    q2b = line.add("user", "Q2b")
    a2b = line.add("assistant", "A2b")
    plain = Line(old, "plain")
    p1, p2 = plain.add("user", "Hi"), plain.add("assistant", "Hello")
    Line(old, "empty")
    count = old.get_model("chat", "Message").objects.count()

    new = migrate(AFTER)

    Message = new.get_model("chat", "Message")
    Conversation = new.get_model("chat", "Conversation")
    parents = dict(Message.objects.values_list("pk", "parent_id"))
    assert len(parents) == count
    assert parents == {
        q1: None,
        a1: q1,
        a1b: q1,  # a regeneration: a sibling of the reply it replaced
        q2: a1b,
        stopped: q2,
        continued: stopped,  # a continuation: the child of the reply it continues
        q2b: a1b,  # an edit: a sibling of the message it replaced
        a2b: q2b,
        p1: None,
        p2: p1,
    }
    leaves = dict(Conversation.objects.values_list("title", "current_leaf_id"))
    assert leaves == {"history": a2b, "plain": p2, "empty": None}
    assert Message.objects.filter(superseded_at__isnull=False).count() == 4  # kept as it was


def test_a_regenerate_after_a_continue_of_the_line_code_stays_under_the_stopped_part(migrate):
    """The line code replaced only the continuation: the new reply's prompt held the stopped part."""
    line = Line(migrate(BEFORE), "continued")
    q = line.add("user", "Q")
    stopped = line.add("assistant", "stopped ", status="cancelled")
    continued = line.add("assistant", "continued")
    line.supersede(continued)
    again = line.add("assistant", "again")

    parents = dict(migrate(AFTER).get_model("chat", "Message").objects.values_list("pk", "parent_id"))

    assert parents == {q: None, stopped: q, continued: stopped, again: stopped}


def test_migrating_back_marks_every_message_off_the_current_branch_superseded(migrate):
    new = migrate(AFTER)
    user = new.get_model("auth", "User").objects.create(username="tree")
    Message = new.get_model("chat", "Message")
    conversation = new.get_model("chat", "Conversation").objects.create(owner=user, model="m")
    q = Message.objects.create(conversation=conversation, role="user", content="Q")
    first = Message.objects.create(conversation=conversation, parent=q, role="assistant", content="first")
    second = Message.objects.create(conversation=conversation, parent=q, role="assistant", content="second")
    conversation.current_leaf = first
    conversation.save()

    old = migrate(BEFORE)

    superseded = dict(old.get_model("chat", "Message").objects.values_list("pk", "superseded_at"))
    assert superseded[q.pk] is None and superseded[first.pk] is None
    assert superseded[second.pk] is not None
