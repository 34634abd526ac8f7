"""Groups: the models their members may use and their limits, the most generous group winning, on every
transport (WebSocket, HTTP, /v1) and in the model lists (the picker, /api/models, /v1/models)."""

import uuid
from decimal import Decimal

import openai
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chat import limits, services, teams
from chat.models import Conversation, GroupPolicy, Message
from tests.engine_fixtures import TEST_MODEL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

OTHER_MODEL = "openai:gpt-other"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def in_group():
    """Put a user in a new group with a policy of these fields."""

    def join(user, **policy):
        group = Group.objects.create(name=f"g-{uuid.uuid4().hex[:8]}")
        GroupPolicy.objects.create(group=group, **policy)
        user.groups.add(group)
        return group

    return join


def conversation_of(user, model: str = TEST_MODEL) -> Conversation:
    return services.conversation_create(owner=user, model=model)


def http_send(user, conversation):
    client = Client()
    client.force_login(user)
    body = {"client_id": uuid.uuid4().hex, "content": "hello"}
    return client.post(f"/api/conversations/{conversation.pk}/messages", body, content_type="application/json")


# --- effective limits ----------------------------------------------------------------------------


def test_a_user_in_no_group_has_the_global_defaults(user, settings):
    settings.CHAT_MESSAGES_PER_MINUTE, settings.CHAT_DAILY_COST_BUDGET = 7, Decimal("2.5")
    found = teams.limits_for(user_id=user.pk)
    assert (found.messages_per_minute, found.daily_cost_budget, found.allowed_models) == (7, Decimal("2.5"), None)


def test_the_most_generous_group_wins_and_no_limit_beats_any_number(user, in_group, settings):
    settings.CHAT_MESSAGES_PER_MINUTE, settings.CHAT_MAX_CONCURRENT_PER_USER = 20, 6
    in_group(user, messages_per_minute=5, max_running=2, daily_cost_budget=Decimal("1"))
    in_group(user, messages_per_minute=50, max_running=0, daily_cost_budget=Decimal("3"))
    found = teams.limits_for(user_id=user.pk)
    assert (found.messages_per_minute, found.max_running, found.daily_cost_budget) == (50, 0, Decimal("3"))


def test_a_field_a_group_leaves_empty_is_the_global_default_for_that_group(user, in_group, settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 20
    in_group(user, messages_per_minute=5)
    in_group(user)  # says nothing: the default, 20
    assert teams.limits_for(user_id=user.pk).messages_per_minute == 20


def test_allowed_models_are_the_union_of_the_groups_and_an_empty_list_allows_every_model(user, in_group):
    in_group(user, allowed_models=[TEST_MODEL])
    assert teams.limits_for(user_id=user.pk).allowed_models == {TEST_MODEL}
    in_group(user, allowed_models=[])
    assert teams.limits_for(user_id=user.pk).allowed_models is None


def test_the_stricter_limit_of_a_users_only_group_applies_over_http(user, in_group, settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 20
    in_group(user, messages_per_minute=1)
    assert http_send(user, conversation_of(user)).status_code == 202
    refused = http_send(user, conversation_of(user))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"


def test_a_more_generous_group_lifts_the_global_limit(user, in_group, settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    in_group(user, messages_per_minute=0)
    for _ in range(3):
        assert http_send(user, conversation_of(user)).status_code == 202
    limits.reply_start_check(user_id=user.pk)


@pytest.mark.cluster
async def test_a_groups_running_limit_refuses_over_the_websocket(connect, user, in_group, upstream):
    await database_sync_to_async(in_group)(user, max_running=1)
    conversation = await database_sync_to_async(conversation_of)(user)
    await database_sync_to_async(Message.objects.create)(
        conversation=await database_sync_to_async(conversation_of)(user), role="assistant", status="streaming"
    )
    async with connect(user) as ws:
        refused = await ws.send_message(conversation.pk, "hello")
    assert refused["code"] == "too_many_running" and "1 of your replies" in refused["message"]


# --- the policies a process keeps -----------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    """The policy cache's clock, moved by hand (seconds)."""
    now = [1000.0]
    monkeypatch.setattr(teams, "clock", lambda: now[0])
    return now


def policy_reads(user) -> int:
    with CaptureQueriesContext(connection) as queries:
        teams.limits_for(user_id=user.pk)
    return len(queries)


def test_a_users_policies_are_their_groups_policies_as_the_orm_reads_them(user, make_user, in_group):
    teams.policies_forget()
    in_group(user, max_running=2)
    in_group(user, allowed_models=[OTHER_MODEL], daily_cost_budget=Decimal("1.50"))
    in_group(make_user(), max_running=9)  # someone else's group
    read = teams._policies_of(user.pk)
    by_orm = list(GroupPolicy.objects.filter(group__user__id=user.pk).order_by("pk"))
    assert [(p.pk, p.group_id, p.max_running, p.allowed_models, p.daily_cost_budget) for p in read] == [
        (p.pk, p.group_id, p.max_running, p.allowed_models, p.daily_cost_budget) for p in by_orm
    ]
    assert len(read) == 2


def test_a_users_policies_are_read_once_within_the_cache_window(user, in_group, clock, settings):
    settings.CHAT_LIMITS_CACHE_SECONDS = 5
    in_group(user, messages_per_minute=3)
    assert policy_reads(user) == 1
    clock[0] += 4.9
    assert policy_reads(user) == 0
    assert teams.limits_for(user_id=user.pk).messages_per_minute == 3


def test_a_policy_changed_in_another_process_applies_once_the_window_is_over(user, in_group, clock, settings):
    settings.CHAT_LIMITS_CACHE_SECONDS = 5
    group = in_group(user, messages_per_minute=3)
    assert teams.limits_for(user_id=user.pk).messages_per_minute == 3
    GroupPolicy.objects.filter(group=group).update(messages_per_minute=9)  # no signal: as another process would
    clock[0] += 4.9
    assert teams.limits_for(user_id=user.pk).messages_per_minute == 3
    clock[0] += 0.2
    assert teams.limits_for(user_id=user.pk).messages_per_minute == 9


def test_a_policy_or_membership_changed_in_this_process_applies_at_once(user, in_group, clock, settings):
    settings.CHAT_LIMITS_CACHE_SECONDS = 5
    group = in_group(user, messages_per_minute=3)
    assert teams.limits_for(user_id=user.pk).messages_per_minute == 3
    policy = GroupPolicy.objects.get(group=group)
    policy.messages_per_minute = 9
    policy.save()
    assert teams.limits_for(user_id=user.pk).messages_per_minute == 9
    user.groups.remove(group)
    assert teams.limits_for(user_id=user.pk).messages_per_minute == settings.CHAT_MESSAGES_PER_MINUTE
    user.groups.add(group)
    assert teams.limits_for(user_id=user.pk).messages_per_minute == 9
    group.delete()
    assert teams.limits_for(user_id=user.pk).messages_per_minute == settings.CHAT_MESSAGES_PER_MINUTE


def test_the_cache_keeps_a_bounded_number_of_users(user, make_user, clock, monkeypatch):
    monkeypatch.setattr(teams, "POLICY_CACHE_USERS", 2)
    others = [make_user() for _ in range(2)]
    for someone in [user, *others]:
        teams.limits_for(user_id=someone.pk)
    assert len(teams._policies) <= 2
    assert policy_reads(others[-1]) == 0


def test_a_cache_window_of_zero_reads_the_policies_every_time(user, in_group, clock, settings):
    settings.CHAT_LIMITS_CACHE_SECONDS = 0
    in_group(user, messages_per_minute=3)
    assert (policy_reads(user), policy_reads(user)) == (1, 1)


# --- models a group may not use ------------------------------------------------------------------


@pytest.mark.cluster
async def test_a_send_to_a_model_the_groups_do_not_allow_is_refused_over_the_websocket_writing_nothing(
    connect, user, in_group
):
    conversation = await database_sync_to_async(conversation_of)(user, OTHER_MODEL)
    await database_sync_to_async(in_group)(user, allowed_models=[TEST_MODEL])
    async with connect(user) as ws:
        refused = await ws.send_message(conversation.pk, "hello")
    assert refused["type"] == "error" and refused["code"] == "model_not_allowed"
    assert OTHER_MODEL in refused["message"]
    assert not await database_sync_to_async(Message.objects.filter(conversation=conversation).exists)()


def test_a_send_to_a_model_the_groups_do_not_allow_is_a_403_over_http_writing_nothing(user, in_group):
    conversation = conversation_of(user, OTHER_MODEL)
    in_group(user, allowed_models=[TEST_MODEL])
    response = http_send(user, conversation)
    assert response.status_code == 403 and response.json()["error"]["code"] == "model_not_allowed"
    assert not Message.objects.filter(conversation=conversation).exists()


def test_regenerating_with_a_model_the_groups_do_not_allow_is_refused(user, in_group):
    conversation = conversation_of(user)
    Message.objects.create(conversation=conversation, role="user", content="hi")
    Message.objects.create(conversation=conversation, role="assistant", content="ok")
    in_group(user, allowed_models=[TEST_MODEL])
    client = Client()
    client.force_login(user)
    response = client.post(
        f"/api/conversations/{conversation.pk}/regenerate",
        {"client_id": "r1", "model": OTHER_MODEL},
        content_type="application/json",
    )
    assert response.json()["error"]["code"] == "model_not_allowed"
    assert Message.objects.filter(conversation=conversation).count() == 2


def test_creating_or_switching_a_conversation_to_a_model_not_allowed_is_refused(user, in_group):
    conversation = conversation_of(user)
    in_group(user, allowed_models=[TEST_MODEL])
    client = Client()
    client.force_login(user)
    created = client.post("/api/conversations", {"model": OTHER_MODEL}, content_type="application/json")
    assert created.status_code == 403 and created.json()["error"]["code"] == "model_not_allowed"
    switched = client.patch(
        f"/api/conversations/{conversation.pk}", {"model": OTHER_MODEL}, content_type="application/json"
    )
    assert switched.json()["error"]["code"] == "model_not_allowed"
    assert Conversation.objects.get().model == TEST_MODEL


@pytest.mark.cluster
def test_a_v1_call_to_a_model_the_groups_do_not_allow_is_a_403_writing_nothing(sdk, make_key, make_user, in_group):
    owner = make_user()
    in_group(owner, allowed_models=[TEST_MODEL])
    client = sdk(make_key(owner))
    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        client.chat.completions.create(model=OTHER_MODEL, messages=HI)
    assert excinfo.value.body["code"] == "model_not_allowed"
    assert not Conversation.objects.exists()


@pytest.mark.cluster
def test_v1_models_lists_only_what_the_key_and_the_groups_allow(sdk, make_key, make_user, in_group):
    owner = make_user()
    in_group(owner, allowed_models=[OTHER_MODEL])
    listed = [model.id for model in sdk(make_key(owner)).models.list()]
    assert listed == [OTHER_MODEL]
    with pytest.raises(openai.NotFoundError):
        sdk(make_key(owner)).models.retrieve(TEST_MODEL)


def test_the_model_picker_and_api_models_list_only_allowed_models_and_default_to_one(user, in_group):
    in_group(user, allowed_models=[OTHER_MODEL])
    client = Client()
    client.force_login(user)
    answer = client.get("/api/models").json()
    assert [model["ref"] for model in answer["models"]] == [OTHER_MODEL] and answer["default"] == OTHER_MODEL
    page = client.get("/").content.decode()
    assert f'value="{OTHER_MODEL}"' in page and f'value="{TEST_MODEL}"' not in page
    created = client.post("/api/conversations", {}, content_type="application/json")
    assert created.json()["model"] == OTHER_MODEL


# --- the admin -----------------------------------------------------------------------------------


EMPTY_INLINE = [("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0"), ("MIN_NUM_FORMS", "0"), ("MAX_NUM_FORMS", "1000")]


def test_staff_set_a_groups_models_and_limits_on_the_group_page(django_user_model, user):
    admin_user = django_user_model.objects.create_superuser("boss", password="pw")
    client = Client()
    client.force_login(admin_user)
    form = {
        "name": "Support",
        "policy-TOTAL_FORMS": "1",
        "policy-INITIAL_FORMS": "0",
        "policy-MIN_NUM_FORMS": "0",
        "policy-MAX_NUM_FORMS": "1",
        "policy-0-allowed_models": [TEST_MODEL],
        "policy-0-messages_per_minute": "3",
        "policy-0-daily_cost_budget": "1.50",
        # The page's other inlines (chat/admin/groups.py), left empty.
        **{f"{prefix}-{field}": value for prefix in ("review_scopes", "retention") for field, value in EMPTY_INLINE},
    }
    response = client.post("/admin/auth/group/add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    policy = GroupPolicy.objects.get(group__name="Support")
    assert (policy.allowed_models, policy.messages_per_minute, policy.daily_cost_budget) == (
        [TEST_MODEL],
        3,
        Decimal("1.50"),
    )
    user.groups.add(policy.group)
    assert teams.limits_for(user_id=user.pk).allowed_models == {TEST_MODEL}
