"""Scoped transcript review: a reviewer of "Support" reads Support members' transcripts only, on every
admin route (lists, transcript pages, exports, search, shares, keys, imports, usage); superusers read all;
staff without a scope read none. Out of scope is a 404, exactly like a row that does not exist."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from chat import services
from chat.models import Conversation, ImportJob, Message, ShareLink, TranscriptView
from tests.review_helpers import join_groups, make_reviewer

pytestmark = [pytest.mark.django_db, pytest.mark.cluster]  # also on PostgreSQL

User = get_user_model()
CONVERSATIONS = reverse("admin:chat_conversation_changelist")
MESSAGES = reverse("admin:chat_message_changelist")
SHARES = reverse("admin:chat_sharelink_changelist")
KEYS = reverse("admin:chat_apikey_changelist")
IMPORTS = reverse("admin:chat_importjob_changelist")
USAGE = reverse("admin:chat_conversation_usage")


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def conversation_of(owner: User, title: str) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title, model="openai:gpt-4o")
    question = Message.objects.create(conversation=conversation, role="user", content=f"{title} question")
    Message.objects.create(conversation=conversation, parent=question, role="assistant", content=f"{title} answer")
    return conversation


@pytest.fixture
def world() -> dict:
    """Sam in Support and Carla in Sales, each with a conversation, a share, a key and an import job."""
    sam = join_groups(User.objects.create_user("sam"), ["Support"])
    carla = join_groups(User.objects.create_user("carla"), ["Sales"])
    rows = {"sam": sam, "carla": carla}
    for name, user in (("sam", sam), ("carla", carla)):
        conversation = conversation_of(user, f"{name}-secret")
        rows[f"{name}_conversation"] = conversation
        rows[f"{name}_message"] = conversation.messages.first()
        rows[f"{name}_share"] = ShareLink.objects.create(
            token=f"{name}-token", owner=user, conversation=conversation, title=f"{name}-secret"
        )
        rows[f"{name}_key"] = services.api_key_create(user=user, name=f"{name}-key").api_key
        rows[f"{name}_import"] = ImportJob.objects.create(owner=user, filename=f"{name}-file.json")
    return rows


@pytest.fixture
def support_reviewer() -> User:
    return make_reviewer(User.objects.create_user("rita", password="pw"), ["Support"])


def change_url(obj) -> str:
    return reverse(f"admin:chat_{obj._meta.model_name}_change", args=[obj.pk])


def object_routes(obj) -> list[str]:
    name = f"admin:chat_{obj._meta.model_name}"
    return [reverse(f"{name}_{view}", args=[obj.pk]) for view in ("change", "history", "delete")]


def listed(response) -> set:
    return set(response.context["cl"].result_list)


def test_a_support_reviewer_lists_only_support_members_rows(world, support_reviewer):
    client = logged_in(support_reviewer)
    assert listed(client.get(CONVERSATIONS)) == {world["sam_conversation"]}
    assert listed(client.get(MESSAGES)) == set(world["sam_conversation"].messages.all())
    assert listed(client.get(SHARES)) == {world["sam_share"]}
    assert listed(client.get(KEYS)) == {world["sam_key"]}
    assert listed(client.get(IMPORTS)) == {world["sam_import"]}


@pytest.mark.parametrize("kind", ["conversation", "message", "share", "key", "import"])
def test_a_support_reviewer_gets_404_on_every_route_of_a_sales_members_rows(world, support_reviewer, kind):
    client = logged_in(support_reviewer)
    for url in object_routes(world[f"carla_{kind}"]):
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"carla" not in response.content
    for url in object_routes(world[f"sam_{kind}"])[:2]:
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("action", ["export_json", "export_markdown"])
def test_an_export_naming_a_sales_members_conversation_is_a_404(world, support_reviewer, action):
    client = logged_in(support_reviewer)
    for selected in ([world["carla_conversation"].pk], [world["sam_conversation"].pk, world["carla_conversation"].pk]):
        response = client.post(CONVERSATIONS, {"action": action, "_selected_action": selected})
        assert response.status_code == 404 and b"carla-secret" not in response.content
    assert not TranscriptView.objects.filter(conversation=world["carla_conversation"]).exists()


def test_an_export_of_a_support_members_conversation_works_and_is_audited(world, support_reviewer):
    client = logged_in(support_reviewer)
    data = {"action": "export_json", "_selected_action": [world["sam_conversation"].pk]}
    exported = json.loads(client.post(CONVERSATIONS, data).content)
    assert [c["title"] for c in exported["conversations"]] == ["sam-secret"]
    view = TranscriptView.objects.get()
    assert (view.viewer, view.conversation, view.via) == (support_reviewer, world["sam_conversation"], "json")


def test_opening_a_support_members_transcript_is_audited(world, support_reviewer):
    page = logged_in(support_reviewer).get(change_url(world["sam_conversation"])).content.decode()
    assert "sam-secret answer" in page
    assert TranscriptView.objects.get().conversation == world["sam_conversation"]


def test_search_never_finds_a_sales_members_conversation(world, support_reviewer):
    client = logged_in(support_reviewer)
    assert listed(client.get(CONVERSATIONS, {"q": "secret"})) == {world["sam_conversation"]}
    assert listed(client.get(CONVERSATIONS, {"q": "carla-secret"})) == set()
    assert listed(client.get(MESSAGES, {"q": "answer"})) == {world["sam_conversation"].messages.last()}


def test_the_owner_and_key_filters_offer_only_support_members(world, support_reviewer):
    page = logged_in(support_reviewer).get(CONVERSATIONS).content.decode()
    assert "sam-key" in page and "carla-key" not in page and "carla" not in page


def test_the_usage_summary_has_rows_for_support_members_only(world, support_reviewer):
    summary = logged_in(support_reviewer).get(USAGE).context["summary"]
    assert [row.username for row in summary.rows] == ["sam"]


def test_a_superuser_reviews_everyone(world):
    client = logged_in(User.objects.create_superuser("root", password="pw"))
    assert listed(client.get(CONVERSATIONS)) == {world["sam_conversation"], world["carla_conversation"]}
    assert client.get(change_url(world["carla_conversation"])).status_code == 200
    assert [row.username for row in client.get(USAGE).context["summary"].rows] == ["carla", "sam"]


def test_staff_without_a_scope_see_no_transcript_at_all(world):
    client = logged_in(User.objects.create_user("idle", password="pw", is_staff=True))
    for url in (CONVERSATIONS, MESSAGES, SHARES, KEYS, IMPORTS):
        assert listed(client.get(url)) == set(), url
    assert client.get(change_url(world["sam_conversation"])).status_code == 404
    assert client.get(USAGE).context["summary"].rows == []


def test_a_reviewer_of_two_groups_sees_both(world):
    client = logged_in(make_reviewer(User.objects.create_user("both", password="pw"), ["Support", "Sales"]))
    assert listed(client.get(CONVERSATIONS)) == {world["sam_conversation"], world["carla_conversation"]}


def test_a_user_sees_on_their_settings_page_which_groups_may_review_them(world, support_reviewer, settings):
    settings.CHAT_REVIEW_POLICY = "Reviews keep us honest."
    page = logged_in(world["sam"]).get(reverse("chat:settings")).content.decode()
    assert "reviewers of these groups" in page and "<li>Support</li>" in page and "Reviews keep us honest." in page
    other = logged_in(world["carla"]).get(reverse("chat:settings")).content.decode()
    assert "No reviewer has a scope on any of your groups." in other and "Sales" not in other


def test_the_group_admin_page_grants_review_scopes(world):
    client = logged_in(User.objects.create_superuser("root", password="pw"))
    group = world["sam"].groups.get()
    page = client.get(reverse("admin:auth_group_change", args=[group.pk])).content.decode()
    assert "reviewers of this group" in page.lower() and "retention" in page.lower()
