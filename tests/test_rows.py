"""chat/rows.py: the send path's written-out statements store and return exactly what the ORM would."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from chat import rows, selectors, services
from chat.errors import ChatError
from chat.models import Conversation, Message
from tests.engine_fixtures import TEST_MODEL

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("db", "engine")]

STAMPS = ("id", "created_at", "updated_at")


@pytest.fixture
def conversation(make_user):
    return services.conversation_create(owner=make_user(), model=TEST_MODEL)


def stored(message: Message) -> dict:
    """The message's row as the ORM reads it back, but its id and time stamps."""
    row = Message.objects.filter(pk=message.pk).values().get()
    return {name: value for name, value in row.items() if name not in STAMPS}


def fields_of(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_an_inserted_message_is_stored_as_the_orms_create_stores_it(conversation):
    values = {"conversation": conversation, "role": Message.Role.USER, "content": "Plan a trip", "client_id": "c-1"}
    by_orm = Message.objects.create(**values)
    written = rows.insert(Message(**{**values, "client_id": "c-2"}))
    assert stored(written) == {**stored(by_orm), "client_id": "c-2"}


def test_values_other_than_the_defaults_are_stored_each_as_its_field_prepares_it(conversation):
    written = rows.insert(
        Message(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            status=Message.Status.PENDING,
            parts=[{"kind": "reasoning", "text": "Hm."}, {"kind": "text", "text": "Yes."}],
            cost=Decimal("0.00012345"),
            tokens_estimated=True,
            seq=7,
            queued_at=timezone.now() - timedelta(seconds=3),
        )
    )
    assert fields_of(Message.objects.get(pk=written.pk)) == fields_of(written)


def test_an_inserted_instance_is_saved_with_its_id_and_time_stamps(conversation):
    before = timezone.now()
    written = rows.insert(Message(conversation=conversation, role=Message.Role.USER, content="Hi"))
    assert written.pk is not None and not written._state.adding
    assert before <= written.created_at == written.updated_at <= timezone.now()
    assert Message.objects.get(pk=written.pk).created_at == written.created_at


def test_a_default_that_is_a_new_object_each_time_is_never_shared_between_instances(conversation):
    first = rows.insert(Message(conversation=conversation, role=Message.Role.USER, content="One"))
    second = rows.insert(Message(conversation=conversation, role=Message.Role.USER, content="Two"))
    first.parts.append({"kind": "text", "text": "changed"})
    assert second.parts == [] and Message.objects.get(pk=second.pk).parts == []


def test_a_read_row_is_the_instance_the_orm_returns_with_every_value_converted(conversation):
    conversation.parameters = {"temperature": 0.5}
    conversation.pinned_at = timezone.now()
    conversation.save()
    read = rows.read_one(Conversation, "id = %s", [conversation.pk])
    assert fields_of(read) == fields_of(Conversation.objects.get(pk=conversation.pk))
    assert read.parameters == {"temperature": 0.5} and timezone.is_aware(read.pinned_at)
    assert not read._state.adding


def test_a_read_of_several_rows_returns_each_converted_in_the_order_asked(conversation):
    first = services.message_send(conversation=conversation, client_id="c-1", content="Plan a trip")
    read = rows.read(Message, "WHERE conversation_id = %s ORDER BY id DESC", [conversation.pk])
    assert [m.pk for m in read] == [first.reply.pk, first.user_message.pk]
    assert [fields_of(m) for m in read] == [fields_of(m) for m in conversation.messages.order_by("-id")]


def test_a_read_with_no_matching_row_is_none(conversation):
    assert rows.read_one(Conversation, "id = %s", [conversation.pk + 1000]) is None


def test_an_update_writes_only_the_named_columns_and_says_how_many_rows_changed(conversation):
    instant = timezone.now() + timedelta(minutes=5)
    assert rows.update(Conversation, conversation.pk, {"title": "Trips", "updated_at": instant}) == 1
    after = Conversation.objects.get(pk=conversation.pk)
    assert (after.title, after.updated_at, after.model) == ("Trips", instant, conversation.model)
    assert rows.update(Conversation, conversation.pk + 1000, {"title": "Nobody's"}) == 0


def test_no_save_signal_is_listened_to_for_the_models_written_without_save():
    # rows.insert sends none: a receiver added for these models would silently miss every send.
    for signal in (pre_save, post_save):
        for model in (Message, Conversation):
            assert not signal.has_listeners(model), f"{signal} has a receiver for {model.__name__}"


def test_the_written_ownership_read_sees_what_conversation_objects_sees(conversation, make_user):
    owner = conversation.owner
    hidden = services.conversation_create(owner=owner, model=TEST_MODEL)
    Conversation.objects.filter(pk=hidden.pk).update(deleted_by_owner_at=timezone.now())
    assert selectors.conversation_get_for(user=owner, conversation_id=conversation.pk) == conversation
    for user, conversation_id in ((owner, hidden.pk), (make_user(), conversation.pk)):
        assert not Conversation.objects.filter(pk=conversation_id, owner=user).exists()
        with pytest.raises(ChatError) as refused:
            selectors.conversation_get_for(user=user, conversation_id=conversation_id)
        assert refused.value.code == "not_found"


def test_the_written_tree_read_is_the_conversations_messages(conversation):
    result = services.message_send(conversation=conversation, client_id="c-1", content="Plan a trip")
    tree = selectors.tree_for(conversation=conversation)
    assert tree.parents == {result.user_message.pk: None, result.reply.pk: result.user_message.pk}
    assert tree.roles == dict(conversation.messages.values_list("id", "role"))


def test_a_read_with_its_related_row_is_the_orms_select_related(conversation):
    sent = services.message_send(conversation=conversation, client_id="c-1", content="Plan a trip")
    where = f"{Message._meta.db_table}.id = %s"
    read = rows.read_one_with(Message, "conversation", where, [sent.reply.pk])
    by_orm = Message.objects.select_related("conversation").get(pk=sent.reply.pk)
    assert fields_of(read) == fields_of(by_orm)
    assert fields_of(read.conversation) == fields_of(by_orm.conversation)
    assert rows.read_one_with(Message, "conversation", where, [sent.reply.pk + 1000]) is None


def test_an_update_only_where_its_condition_holds(conversation):
    sent = services.message_send(conversation=conversation, client_id="c-1", content="Plan a trip")
    pending = ["status = %s", [Message.Status.PENDING]]
    assert rows.update(Message, sent.reply.pk, {"seq": 3}, where=pending[0], params=pending[1]) == 1
    assert rows.update(Message, sent.user_message.pk, {"seq": 3}, where=pending[0], params=pending[1]) == 0
    assert Message.objects.get(pk=sent.user_message.pk).seq == 0


def test_an_update_writes_a_computed_column_from_its_expression(conversation):
    expression = ("%s || ' (' || %s || ')'", ["Trips", "draft"])
    assert rows.update(Conversation, conversation.pk, {}, computed={"title": expression}) == 1
    assert Conversation.objects.get(pk=conversation.pk).title == "Trips (draft)"


def test_an_update_returning_answers_the_row_as_updated_or_none_when_it_did_not_match(conversation):
    sent = services.message_send(conversation=conversation, client_id="c-1", content="Plan a trip")
    claim = {"status": Message.Status.STREAMING, "lease_holder": "w/1", "started_at": timezone.now()}
    claimed = rows.update_returning(Message, sent.reply.pk, claim, where="status = %s", params=["pending"])
    assert fields_of(claimed) == fields_of(Message.objects.get(pk=sent.reply.pk))
    assert (claimed.status, claimed.lease_holder) == (Message.Status.STREAMING, "w/1")
    assert rows.update_returning(Message, sent.reply.pk, claim, where="status = %s", params=["pending"]) is None


def test_an_id_too_large_for_its_column_is_no_such_conversation_not_an_overflow(conversation):
    assert rows.storable_id(Conversation, conversation.pk)
    assert not rows.storable_id(Conversation, 10**30) and not rows.storable_id(Conversation, -(10**30))
    with pytest.raises(ChatError) as refused:
        selectors.conversation_get_for(user=conversation.owner, conversation_id=10**30)
    assert refused.value.code == "not_found"


def test_a_whole_written_statement_reads_its_fields_defers_the_rest_and_sets_its_extra_columns(conversation):
    sent = services.message_send(conversation=conversation, client_id="c-1", content="Plan a trip")
    fields = ("id", "conversation", "role", "content", "tokens_estimated", "created_at")  # the model's order
    sql = "SELECT id, conversation_id, role, content, tokens_estimated, created_at, 7 FROM chat_message WHERE id = %s"
    (read,) = rows.read_sql(Message, sql, [sent.user_message.pk], fields=fields, extra=["lucky"])
    by_orm = Message.objects.get(pk=sent.user_message.pk)
    assert [getattr(read, f.attname) for f in map(Message._meta.get_field, fields)] == [
        getattr(by_orm, f.attname) for f in map(Message._meta.get_field, fields)
    ]
    assert read.lucky == 7 and read.get_deferred_fields() >= {"status", "parts"}


def test_fields_named_out_of_the_models_order_are_refused_not_misread():
    with pytest.raises(ValueError, match="order"):
        rows.read_sql(Message, "SELECT 1", [], fields=("content", "id"))
