"""Transcript review in the admin, driven through the Django test client."""

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.templatetags.admin_list import items_for_result, result_headers
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags
from django.utils.text import capfirst

from chat.models import Conversation, Message, TranscriptView
from tests.review_helpers import join_groups, make_reviewer

pytestmark = [pytest.mark.django_db, pytest.mark.cluster]  # also on PostgreSQL (query counts, search)

User = get_user_model()
HOSTILE = "<script>alert(1)</script>"
CONVERSATIONS = reverse("admin:chat_conversation_changelist")
MESSAGES = reverse("admin:chat_message_changelist")
AUDIT = reverse("admin:chat_transcriptview_changelist")
USAGE = reverse("admin:chat_conversation_usage")
REVIEWED = "Reviewed"


# --- Fixtures and factories -------------------------------------------------------------------


def _login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser() -> User:
    return User.objects.create_superuser("root", "root@example.com", "x")


@pytest.fixture
def staff() -> User:
    """A reviewer of the group every conversation owner of these tests is in (make_conversation)."""
    return make_reviewer(User.objects.create_user("reviewer", password="x"), [REVIEWED])


@pytest.fixture
def member() -> User:
    return User.objects.create_user("member", password="x")


@pytest.fixture
def superuser_client(superuser: User) -> Client:
    return _login(superuser)


@pytest.fixture
def staff_client(staff: User) -> Client:
    return _login(staff)


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice")


@pytest.fixture
def bob() -> User:
    return User.objects.create_user("bob")


def make_conversation(owner: User, *, title: str = "Chat", model: str = "openai:gpt-4o", **fields) -> Conversation:
    join_groups(owner, [REVIEWED])
    conversation = Conversation.objects.create(owner=owner, title=title, model=model)
    if fields:
        Conversation.objects.filter(pk=conversation.pk).update(**fields)
        conversation.refresh_from_db()
    return conversation


def add_message(conversation: Conversation, *, role: str = "user", content: str = "hello", **fields) -> Message:
    """A message under `parent`, by default under the conversation's newest one (a one-branch tree)."""
    created_at = fields.pop("created_at", None)
    fields.setdefault("parent", conversation.messages.order_by("-id").first())
    message = Message.objects.create(conversation=conversation, role=role, content=content, **fields)
    if created_at:
        Message.objects.filter(pk=message.pk).update(created_at=created_at)
        message.refresh_from_db()
    return message


def add_exchange(conversation: Conversation, *, question: str = "hi", answer: str = "hello", **reply) -> Message:
    add_message(conversation, content=question)
    reply = {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 20, **reply}
    return add_message(conversation, role="assistant", content=answer, **reply)


def listed(response) -> list:
    return list(response.context["cl"].result_list)


def raw_cells(response, obj) -> dict[str, str]:
    """The changelist row of `obj` as {column header: cell HTML}."""
    cl = response.context["cl"]
    [obj] = [row for row in cl.result_list if row.pk == obj.pk]
    headers = [capfirst(strip_tags(header["text"]).strip()) for header in result_headers(cl)]
    return dict(zip(headers, items_for_result(cl, obj, None), strict=True))


def cells(response, obj) -> dict[str, str]:
    """The changelist row of `obj` as {column header: displayed text}."""
    return {header: html.unescape(strip_tags(cell)).strip() for header, cell in raw_cells(response, obj).items()}


def query_count(client: Client, method: str, url: str, data: dict | None = None) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = getattr(client, method)(url, data or {})
    assert response.status_code == 200
    return len(queries)


def change_url(obj) -> str:
    return reverse(f"admin:chat_{obj._meta.model_name}_change", args=[obj.pk])


# --- Access -----------------------------------------------------------------------------------


def test_anonymous_and_non_staff_users_are_sent_to_the_admin_login(client: Client, member: User, alice: User):
    conversation = make_conversation(alice)
    message = add_message(conversation)
    pages = [CONVERSATIONS, MESSAGES, AUDIT, USAGE, change_url(conversation), change_url(message)]
    for visitor in (client, _login(member)):
        for page in pages:
            response = visitor.get(page)
            assert response.status_code == 302
            assert response.url.startswith(reverse("admin:login"))


def test_staff_without_any_model_permission_can_review(staff_client: Client, alice: User):
    conversation = make_conversation(alice)
    message = add_message(conversation)
    for page in (CONVERSATIONS, MESSAGES, USAGE, change_url(conversation), change_url(message)):
        assert staff_client.get(page).status_code == 200
    assert b"Conversations" in staff_client.get(reverse("admin:index")).content


def test_nobody_can_add_conversations_or_messages(superuser_client: Client, staff_client: Client, alice: User):
    conversation = make_conversation(alice)
    for client in (superuser_client, staff_client):
        for model in ("conversation", "message"):
            add = reverse(f"admin:chat_{model}_add")
            assert client.get(add).status_code == 403
            payload = {"conversation": conversation.pk, "owner": alice.pk, "role": "user", "content": "forged"}
            assert client.post(add, payload).status_code == 403
    assert Conversation.objects.count() == 1
    assert not Message.objects.exists()


def test_nobody_can_change_a_transcript_by_post(superuser_client: Client, staff_client: Client, alice: User):
    conversation = make_conversation(alice, title="Original")
    message = add_message(conversation, content="as said")
    for client in (superuser_client, staff_client):
        assert client.post(change_url(conversation), {"title": "Rewritten", "owner": alice.pk}).status_code == 403
        assert client.post(change_url(message), {"content": "never said", "role": "user"}).status_code == 403
    conversation.refresh_from_db()
    message.refresh_from_db()
    assert (conversation.title, message.content) == ("Original", "as said")


def test_the_transcript_page_offers_no_save_button(staff_client: Client, alice: User):
    page = staff_client.get(change_url(make_conversation(alice))).content.decode()
    assert 'name="_save"' not in page
    assert 'name="_continue"' not in page


def test_staff_cannot_delete_conversations_or_messages(staff_client: Client, alice: User):
    conversation = make_conversation(alice)
    message = add_message(conversation)
    for obj in (conversation, message):
        delete = reverse(f"admin:chat_{obj._meta.model_name}_delete", args=[obj.pk])
        assert staff_client.get(delete).status_code == 403
        assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [conversation.pk], "post": "yes"}
    staff_client.post(CONVERSATIONS, bulk)
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert Message.objects.filter(pk=message.pk).exists()


def test_superuser_can_delete_a_conversation_and_its_audit_trail_survives(
    superuser_client: Client, superuser: User, alice: User
):
    conversation = make_conversation(alice, title="To forget")
    add_message(conversation)
    superuser_client.get(change_url(conversation))
    delete = reverse("admin:chat_conversation_delete", args=[conversation.pk])
    assert superuser_client.post(delete, {"post": "yes"}).status_code == 302
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()
    view = TranscriptView.objects.get()
    assert (view.conversation_id, view.conversation_label, view.viewer) == (
        None,
        f"#{conversation.pk} To forget",
        superuser,
    )


def test_superuser_can_delete_selected_conversations_in_bulk(superuser_client: Client, alice: User):
    doomed, kept = make_conversation(alice), make_conversation(alice)
    add_message(doomed)
    bulk = {"action": "delete_selected", "_selected_action": [doomed.pk], "post": "yes"}
    assert superuser_client.post(CONVERSATIONS, bulk).status_code == 302
    assert list(Conversation.objects.all()) == [kept]


def test_the_default_user_admin_still_works(superuser_client: Client, alice: User):
    assert superuser_client.get(reverse("admin:auth_user_changelist")).status_code == 200
    assert superuser_client.get(reverse("admin:auth_user_change", args=[alice.pk])).status_code == 200


# --- Conversation list ------------------------------------------------------------------------


def test_conversation_list_shows_every_column(staff_client: Client, alice: User):
    last_activity = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    conversation = make_conversation(alice, title="Taxes", model="anthropic:claude-haiku-4-5", updated_at=last_activity)
    add_exchange(conversation, input_tokens=1000, output_tokens=2000)
    add_exchange(conversation, input_tokens=234, output_tokens=5, status="failed", tokens_estimated=True)

    row = cells(staff_client.get(CONVERSATIONS), conversation)

    assert row["Title"] == "Taxes"
    assert row["Owner"] == "alice"
    assert row["Model"] == "anthropic:claude-haiku-4-5"
    assert row["Messages"] == "4"
    assert row["Tokens in"] == "~1,234"
    assert row["Tokens out"] == "~2,005"
    assert row["Last status"] == "Failed"
    assert row["Last activity"] == "March 4, 2026, 5:06 a.m."


def test_conversation_list_counts_zero_for_a_conversation_without_messages(staff_client: Client, alice: User):
    conversation = make_conversation(alice, title="")
    row = cells(staff_client.get(CONVERSATIONS), conversation)
    assert (row["Title"], row["Messages"], row["Tokens in"], row["Last status"]) == (
        f"Conversation {conversation.pk}",
        "0",
        "0",
        "-",
    )


def test_conversation_list_sorts_by_message_count(staff_client: Client, alice: User):
    busy, quiet = make_conversation(alice, title="busy"), make_conversation(alice, title="quiet")
    add_exchange(busy)
    add_message(quiet)
    headers = [header["text"] for header in result_headers(staff_client.get(CONVERSATIONS).context["cl"])]
    column = headers.index("Messages")
    assert listed(staff_client.get(CONVERSATIONS, {"o": f"-{column}"})) == [busy, quiet]
    assert listed(staff_client.get(CONVERSATIONS, {"o": f"{column}"})) == [quiet, busy]


def test_conversation_list_filters_by_owner(staff_client: Client, alice: User, bob: User):
    mine, theirs = make_conversation(alice), make_conversation(bob)
    assert listed(staff_client.get(CONVERSATIONS, {"owner__id__exact": alice.pk})) == [mine]
    assert listed(staff_client.get(CONVERSATIONS, {"owner__id__exact": bob.pk})) == [theirs]


def test_conversation_list_filters_by_provider_and_by_model(staff_client: Client, alice: User):
    mini = make_conversation(alice, model="openai:gpt-4o-mini")
    full = make_conversation(alice, model="openai:gpt-4o")
    claude = make_conversation(alice, model="anthropic:claude-sonnet-4-5")
    page = staff_client.get(CONVERSATIONS).content.decode()
    assert "?provider=anthropic" in page
    assert "?model=openai%3Agpt-4o-mini" in page
    assert set(listed(staff_client.get(CONVERSATIONS, {"provider": "openai"}))) == {mini, full}
    assert listed(staff_client.get(CONVERSATIONS, {"provider": "anthropic"})) == [claude]
    assert listed(staff_client.get(CONVERSATIONS, {"model": "openai:gpt-4o"})) == [full]


def test_conversation_list_filters_by_last_status(staff_client: Client, alice: User):
    failed, complete = make_conversation(alice), make_conversation(alice)
    add_exchange(failed, status="failed")
    add_exchange(complete, status="failed")
    add_exchange(complete)
    assert listed(staff_client.get(CONVERSATIONS, {"last_status": "failed"})) == [failed]
    assert listed(staff_client.get(CONVERSATIONS, {"last_status": "complete"})) == [complete]


def test_conversation_list_filters_by_last_activity_date(staff_client: Client, alice: User):
    today = make_conversation(alice, updated_at=timezone.now())
    make_conversation(alice, updated_at=timezone.now() - timedelta(days=60))
    since = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)  # as the filter's own links
    params = {"updated_at__gte": str(since), "updated_at__lt": str(since + timedelta(days=1))}
    assert listed(staff_client.get(CONVERSATIONS, params)) == [today]


def test_conversation_list_drills_down_by_start_date(staff_client: Client, alice: User):
    old = make_conversation(alice, created_at=datetime(2024, 5, 1, tzinfo=UTC))
    make_conversation(alice, created_at=datetime(2025, 5, 1, tzinfo=UTC))
    page = staff_client.get(CONVERSATIONS).content.decode()
    assert "created_at__year=2024" in page
    assert listed(staff_client.get(CONVERSATIONS, {"created_at__year": 2024})) == [old]


def test_search_finds_conversations_by_title_and_by_message_content(staff_client: Client, alice: User):
    by_title = make_conversation(alice, title="Quarterly Report")
    by_content = make_conversation(alice, title="Misc")
    add_message(by_content, content="please summarise the quarterly numbers")
    add_message(by_content, content="and the quarterly outlook")  # two hits, still one row
    make_conversation(alice, title="Unrelated")
    assert set(listed(staff_client.get(CONVERSATIONS, {"q": "QUARTERLY"}))) == {by_title, by_content}
    assert listed(staff_client.get(CONVERSATIONS, {"q": "outlook"})) == [by_content]


def test_search_words_must_all_match_and_quotes_keep_a_phrase(staff_client: Client, alice: User):
    both = make_conversation(alice, title="Invoice")
    add_message(both, content="overdue since march")
    only_title = make_conversation(alice, title="Invoice draft")
    add_message(only_title, content="march overdue")
    assert set(listed(staff_client.get(CONVERSATIONS, {"q": "invoice overdue"}))) == {both, only_title}
    assert listed(staff_client.get(CONVERSATIONS, {"q": '"overdue since"'})) == [both]


def test_search_still_works_when_too_many_conversations_match_to_list_their_ids(
    staff_client: Client, alice: User, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("chat.admin.selectors.SEARCH_MATERIALISE_LIMIT", 1)
    first, second = make_conversation(alice), make_conversation(alice)
    add_message(first, content="common word")
    add_message(second, content="another common word")
    make_conversation(alice)
    assert set(listed(staff_client.get(CONVERSATIONS, {"q": "common"}))) == {first, second}


# --- Message list -----------------------------------------------------------------------------


def test_message_list_shows_every_column(staff_client: Client, alice: User):
    conversation = make_conversation(alice, title="Support")
    message = add_exchange(
        conversation,
        answer="x" * 100,
        provider="anthropic",
        model="claude-haiku-4-5",
        status="failed",
        error_code="rate_limited",
        input_tokens=12,
        output_tokens=34,
        tokens_estimated=True,
        superseded_at=timezone.now(),
    )

    row = cells(staff_client.get(MESSAGES), message)

    assert row["ID"] == str(message.pk)
    assert row["Conversation"] == "Support"
    assert row["Owner"] == "alice"
    assert (row["Role"], row["Status"]) == ("Assistant", "Failed")
    assert (row["Provider"], row["Model"], row["Error code"]) == ("anthropic", "claude-haiku-4-5", "rate_limited")
    assert row["Tokens in / out"] == "~12 / ~34"
    assert row["Created at"]
    assert row["Content"] == "x" * 79 + "…"
    assert 'alt="True"' in raw_cells(staff_client.get(MESSAGES), message)["Superseded"]


def test_message_list_filters(staff_client: Client, alice: User):
    conversation = make_conversation(alice)
    question = add_message(conversation, content="q", created_at=timezone.now() - timedelta(days=40))
    failed = add_message(
        conversation, role="assistant", status="failed", error_code="timeout", provider="openai", model="gpt-4o"
    )
    old = add_message(
        conversation, role="assistant", provider="anthropic", model="claude", superseded_at=timezone.now()
    )
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    cases = {
        "status": ({"status__exact": "failed"}, [failed]),
        "error code": ({"error_code": "timeout"}, [failed]),
        "provider": ({"provider": "anthropic"}, [old]),
        "model": ({"model": "gpt-4o"}, [failed]),
        "role": ({"role__exact": "user"}, [question]),
        "superseded": ({"superseded": "yes"}, [old]),
        "current": ({"superseded": "no"}, [failed, question]),
        "date": ({"created_at__gte": str(today)}, [old, failed]),
    }
    for name, (params, expected) in cases.items():
        assert listed(staff_client.get(MESSAGES, params)) == expected, name


def test_message_list_filter_choices_leave_out_blank_values(staff_client: Client, alice: User):
    add_message(make_conversation(alice), role="assistant", error_code="timeout")
    add_message(make_conversation(alice), content="no error here")
    page = staff_client.get(MESSAGES).content.decode()
    assert "?error_code=timeout" in page
    assert "?error_code=&amp;" not in page
    assert not page.count('href="?error_code="')


def test_message_list_searches_content(staff_client: Client, alice: User):
    conversation = make_conversation(alice)
    hit = add_message(conversation, content="The Kubernetes cluster is down")
    add_message(conversation, content="nothing to see")
    assert listed(staff_client.get(MESSAGES, {"q": "kubernetes"})) == [hit]


# --- Transcript page --------------------------------------------------------------------------


def test_transcript_page_shows_every_message_in_order_with_every_field(staff_client: Client, alice: User):
    conversation = make_conversation(alice, title="Review me")
    Conversation.objects.filter(pk=conversation.pk).update(system_prompt="Be terse.\nAlways.")
    question = add_message(conversation, content="first question")
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    reply = add_exchange(
        conversation,
        question="second question",
        answer="a reply",
        status="failed",
        provider="anthropic",
        model="claude-haiku-4-5",
        finish_reason="max_tokens",
        error_code="overloaded",
        error_message="Provider said: try later",
        input_tokens=321,
        output_tokens=100,
        tokens_estimated=True,
        time_to_first_token_ms=500,
        duration_ms=2500,
        started_at=started,
        finished_at=started + timedelta(seconds=3),
        superseded_at=started + timedelta(minutes=1),
    )

    page = staff_client.get(change_url(conversation)).content.decode()

    assert page.index("first question") < page.index("second question") < page.index("a reply")
    assert page.index("Be terse.") < page.index("first question")
    section = page[page.index(f'id="message-{reply.pk}"') :]
    for shown in [
        "Assistant",
        "Failed",
        "superseded",
        "anthropic:claude-haiku-4-5",
        "2026-01-02 03:04:05",  # started
        "2026-01-02 03:04:08",  # finished
        "2026-01-02 03:05:05",  # superseded
        reply.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "max_tokens",
        "overloaded",
        "Provider said: try later",
        "in 321 · out 100",
        "(estimated)",
        "500 ms",
        "2500 ms",
        "50.0 tokens/s",
    ]:
        assert shown in section, shown
    assert f'id="message-{question.pk}"' in page
    assert "transcript-superseded" in section
    assert "Transcript (3 messages)" in page


def branched(owner: User) -> tuple[Conversation, dict[str, Message]]:
    """Q1 → A1 → Q2 → A2, A2 regenerated (A2b, the current leaf), Q1 edited (Q1b → A1b)."""
    conversation = make_conversation(owner, title="Branches")
    made = {}
    for name, parent in (
        ("Q1", None),
        ("A1", "Q1"),
        ("Q2", "A1"),
        ("A2", "Q2"),
        ("A2b", "Q2"),
        ("Q1b", None),
        ("A1b", "Q1b"),
    ):
        role = "user" if name.startswith("Q") else "assistant"
        made[name] = add_message(conversation, role=role, content=f"text of {name}", parent=made.get(parent))
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=made["A2b"])
    conversation.refresh_from_db()
    return conversation, made


def test_the_transcript_shows_every_branch_in_reading_order_with_versions_and_the_current_path_marked(
    staff_client: Client, alice: User
):
    conversation, made = branched(alice)

    page = staff_client.get(change_url(conversation)).content.decode()

    order = ["Q1", "A1", "Q2", "A2", "A2b", "Q1b", "A1b"]
    assert [page.index(f"text of {name}<") for name in order] == sorted(
        page.index(f"text of {name}<") for name in order
    )

    def article(name: str) -> str:
        start = page.index(f'id="message-{made[name].pk}"')
        return page[page.rindex("<article", 0, start) : page.index("</article>", start)]

    current = {name for name in order if "transcript-current" in article(name).split(">", 1)[0]}
    assert current == {"Q1", "A1", "Q2", "A2b"}
    assert "version 1 of 2" in article("Q1") and "version 2 of 2" in article("Q1b")
    assert "version 1 of 2" in article("A2") and "version 2 of 2" in article("A2b")
    assert "version" not in article("A1")
    assert f'href="#message-{made["Q2"].pk}"' in article("A2b")
    assert "Transcript (7 messages)" in page


def grown_tree(owner: User, *, messages: int, branches: int) -> Conversation:
    """A line of `messages - branches` messages and `branches` siblings spread along it."""
    conversation = make_conversation(owner, title=f"{messages} messages")
    line = [add_message(conversation, role=("user", "assistant")[n % 2]) for n in range(messages - branches)]
    step = len(line) // branches
    for n in range(branches):
        beside = line[1 + n * step]
        add_message(conversation, role=beside.role, content="another version", parent=beside.parent)
    assert conversation.messages.count() == messages
    assert conversation.messages.filter(parent=None).count() == 1
    return conversation


def test_the_transcript_of_a_500_message_tree_with_50_branches_takes_as_many_queries_as_a_5_message_one(
    staff_client: Client, alice: User
):
    small = grown_tree(alice, messages=5, branches=1)
    large = grown_tree(alice, messages=500, branches=50)
    query_count(staff_client, "get", change_url(small))  # warm caches (content types, sessions)

    assert query_count(staff_client, "get", change_url(large)) == query_count(staff_client, "get", change_url(small))


def test_the_transcript_and_the_markdown_export_show_the_usage_details_that_are_known(
    staff_client: Client, alice: User
):
    conversation = make_conversation(alice)
    detailed = add_exchange(
        conversation,
        input_tokens=321,
        output_tokens=100,
        cached_input_tokens=200,
        cache_write_tokens=50,
        reasoning_tokens=40,
    )
    plain = add_exchange(conversation, question="again", answer="sure", input_tokens=12, output_tokens=30)

    page = staff_client.get(change_url(conversation)).content.decode()
    markdown = export(staff_client, "export_markdown", [conversation]).content.decode()
    exported = json.loads(export(staff_client, "export_json", [conversation]).content)

    section = page[page.index(f'id="message-{detailed.pk}"') : page.index(f'id="message-{plain.pk}"')]
    assert "in 321 · out 100 · cached 200 · cache write 50 · reasoning 40" in section
    assert "in 12 · out 30</dd>" in page
    assert "- Tokens: in 321, out 100, cached 200, cache write 50, reasoning 40" in markdown
    assert "- Tokens: in 12, out 30\n" in markdown
    records = {record["id"]: record for record in exported["conversations"][0]["messages"]}
    assert (records[detailed.pk]["cached_input_tokens"], records[detailed.pk]["reasoning_tokens"]) == (200, 40)
    assert (records[plain.pk]["cache_write_tokens"], records[plain.pk]["reasoning_tokens"]) == (None, None)


def test_a_reply_shows_its_model_reference_once_and_its_reasoning_apart_collapsed(staff_client: Client, alice: User):
    conversation = make_conversation(alice, model="fake:echo-slow")
    add_message(
        conversation,
        role="assistant",
        content="Four.",
        provider="fake",
        model="fake:echo-slow",
        parts=[{"kind": "reasoning", "text": "Two and <b>two</b>."}, {"kind": "text", "text": "Four."}],
    )

    page = staff_client.get(change_url(conversation)).content.decode()
    markdown = export(staff_client, "export_markdown", [conversation]).content.decode()

    assert "echo-slow (fake)" in page and "fake:fake:" not in page
    reasoning = page[page.index('<details class="transcript-reasoning">') : page.index("</details>")]
    assert "Two and &lt;b&gt;two&lt;/b&gt;." in reasoning and " open" not in reasoning.split(">")[0]
    assert page.index("</details>") < page.index("Four.", page.index("</details>"))
    assert "Assistant · Complete · echo-slow (fake)" in markdown and "fake:fake:" not in markdown
    assert "Reasoning:\n\n```text\nTwo and <b>two</b>.\n```\n\nAnswer:\n\n```text\nFour.\n```" in markdown


def test_the_transcript_and_both_exports_show_the_conversations_parameters(staff_client: Client, alice: User):
    conversation = make_conversation(alice, parameters={"temperature": 0.2, "stop": ["<END>"]})
    add_exchange(conversation)

    page = staff_client.get(change_url(conversation)).content.decode()
    markdown = export(staff_client, "export_markdown", [conversation]).content.decode()
    exported = json.loads(export(staff_client, "export_json", [conversation]).content)

    assert "stop &quot;&lt;END&gt;&quot; · temperature 0.2" in page
    assert '- Parameters: stop "\\<END\\>" · temperature 0.2' in markdown  # escaped: no HTML comes of it
    assert exported["conversations"][0]["parameters"] == {"temperature": 0.2, "stop": ["<END>"]}


def test_a_conversation_without_parameters_says_it_uses_the_defaults(staff_client: Client, alice: User):
    conversation = make_conversation(alice)

    assert "- Parameters: defaults" in export(staff_client, "export_markdown", [conversation]).content.decode()


def test_transcript_message_and_list_pages_show_content_as_escaped_text(staff_client: Client, alice: User):
    conversation = make_conversation(alice, title=HOSTILE)
    message = add_message(conversation, content=HOSTILE, error_message=HOSTILE)
    for url in (change_url(conversation), change_url(message), CONVERSATIONS, MESSAGES):
        page = staff_client.get(url).content.decode()
        assert HOSTILE not in page, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, url


def test_transcript_page_uses_the_stylesheet_and_no_inline_style_or_script(staff_client: Client, alice: User):
    conversation = make_conversation(alice)
    add_message(conversation, content="line one\n    indented line two")
    response = staff_client.get(change_url(conversation))
    page = response.content.decode()
    start = page.index('<section class="transcript"')
    transcript = page[start : page.index("</section>", start)]
    assert "admin_transcript.css" in page
    assert "line one\n    indented line two" in transcript
    assert "style=" not in transcript
    assert "<script" not in transcript
    assert "<style" not in page
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]


# --- Exports ----------------------------------------------------------------------------------


def export(client: Client, action: str, conversations: list[Conversation]):
    return client.post(CONVERSATIONS, {"action": action, "_selected_action": [c.pk for c in conversations]})


def test_json_export_holds_every_field_of_every_message_in_order(staff_client: Client, alice: User):
    first = make_conversation(alice, title="First")
    question = add_message(first, content=HOSTILE)
    reply = add_exchange(first, status="cancelled", finish_reason="cancelled", superseded_at=timezone.now())
    second = make_conversation(alice, title="Second")
    make_conversation(alice, title="Not chosen")

    response = export(staff_client, "export_json", [second, first])

    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="transcripts-\d{8}-\d{6}\.json"', response["Content-Disposition"])
    document = json.loads(response.content)
    assert document["exported_by"] == "reviewer"
    assert [c["title"] for c in document["conversations"]] == ["First", "Second"]
    exported = document["conversations"][0]
    assert exported["owner"] == {"id": alice.pk, "username": "alice"}
    assert exported["model"] == "openai:gpt-4o"
    assert [m["id"] for m in exported["messages"]] == list(first.messages.order_by("id").values_list("id", flat=True))
    field_names = {field.attname for field in Message._meta.concrete_fields}
    assert all(field_names <= set(m) for m in exported["messages"])
    assert exported["messages"][0]["content"] == HOSTILE
    assert exported["messages"][0]["id"] == question.pk
    last = exported["messages"][-1]
    assert (last["id"], last["status"], last["superseded"]) == (reply.pk, "cancelled", True)
    assert last["superseded_at"] == reply.superseded_at.isoformat()
    assert (last["input_tokens"], last["output_tokens"], last["conversation_id"]) == (10, 20, first.pk)
    assert exported["messages"][0]["superseded"] is False
    assert document["conversations"][1]["messages"] == []


def test_json_export_keeps_every_branch_with_its_parents_and_the_current_leaf(staff_client: Client, alice: User):
    conversation, made = branched(alice)

    exported = json.loads(export(staff_client, "export_json", [conversation]).content)["conversations"][0]

    assert exported["current_leaf_id"] == made["A2b"].pk
    by_id = {m["id"]: m for m in exported["messages"]}
    assert {m.pk: m.parent_id for m in made.values()} == {pk: m["parent_id"] for pk, m in by_id.items()}
    assert (by_id[made["A2b"].pk]["sibling_index"], by_id[made["A2b"].pk]["sibling_count"]) == (2, 2)
    assert [m["on_current_path"] for m in exported["messages"]] == [True, True, True, False, True, False, False]


def test_markdown_export_writes_the_current_path_then_lists_the_other_branches(staff_client: Client, alice: User):
    conversation, made = branched(alice)

    text = export(staff_client, "export_markdown", [conversation]).content.decode()

    messages, others = text.split("## Other branches")
    assert [line.split(" · ")[0] for line in messages.splitlines() if line.startswith("### ")] == [
        "### 1. User",
        "### 2. Assistant",
        "### 3. User",
        "### 4. Assistant",
    ]
    assert "text of A2b" in messages and "text of A2\n" not in messages
    assert f"### A branch after message {made['Q2'].pk}" in others
    assert "### A branch as a first message" in others
    assert others.index("text of A2\n") < others.index("text of Q1b") < others.index("text of A1b")
    assert "- Messages: 7 (4 on the current path, 3 on other branches)" in text


def test_markdown_export_is_a_readable_transcript(staff_client: Client, alice: User):
    conversation = make_conversation(alice, title="Plans")
    add_message(conversation, content="What next?")
    add_exchange(
        conversation,
        question="And then?",
        answer="Rest.",
        finish_reason="stop",
        input_tokens=7,
        output_tokens=3,
        tokens_estimated=True,
        duration_ms=1000,
        superseded_at=timezone.now(),
    )

    response = export(staff_client, "export_markdown", [conversation])

    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"].endswith('.md"')
    text = response.content.decode()
    assert f"# Conversation {conversation.pk}: Plans" in text
    assert "- Owner: alice" in text
    assert "### 1. User · Complete" in text
    assert "### 3. Assistant · Complete · gpt-4o (openai) · superseded" in text
    assert "- Finish reason: stop" in text
    assert "- Tokens: in 7, out 3 (estimated)" in text
    assert text.index("What next?") < text.index("And then?") < text.index("Rest.")
    assert "```text\nRest.\n```" in text


def test_markdown_export_keeps_hostile_content_inert(staff_client: Client, alice: User):
    conversation = make_conversation(alice, title="[click](javascript:alert(1)) <b>bold</b>")
    breakout = "```\n# Injected heading\n<img src=x onerror=alert(1)>\n````"
    add_message(conversation, content=breakout, role="assistant", error_message="<i>boom</i>\n# also")

    text = export(staff_client, "export_markdown", [conversation]).content.decode()

    assert "\\[click\\](javascript:alert(1)) \\<b\\>bold\\</b\\>" in text
    assert "- Error: \\<i\\>boom\\</i\\> \\# also" in text
    assert f"`````text\n{breakout}\n`````" in text  # a fence longer than any run inside


def test_exports_are_recorded_in_the_audit_trail(staff_client: Client, staff: User, alice: User):
    first, second = make_conversation(alice), make_conversation(alice)
    export(staff_client, "export_json", [first, second])
    export(staff_client, "export_markdown", [first])
    recorded = sorted(TranscriptView.objects.values_list("viewer", "conversation", "via"))
    assert recorded == sorted(
        [(staff.pk, first.pk, "json"), (staff.pk, second.pk, "json"), (staff.pk, first.pk, "markdown")]
    )


# --- Usage summary ----------------------------------------------------------------------------


def test_usage_summary_totals_each_user_over_the_chosen_period(staff_client: Client, alice: User, bob: User):
    inside = datetime(2026, 2, 10, 12, tzinfo=UTC)
    mine, theirs = make_conversation(alice), make_conversation(bob)
    add_message(mine, created_at=inside)
    add_message(mine, role="assistant", input_tokens=100, output_tokens=50, created_at=inside)
    add_message(mine, created_at=inside)
    add_message(
        mine, role="assistant", status="failed", input_tokens=5, created_at=datetime(2026, 2, 28, 23, 59, tzinfo=UTC)
    )
    add_message(mine, role="assistant", status="interrupted", created_at=inside)
    add_message(mine, role="assistant", input_tokens=9999, created_at=datetime(2026, 3, 1, tzinfo=UTC))  # after
    add_message(theirs, role="assistant", output_tokens=7, created_at=datetime(2026, 2, 1, tzinfo=UTC))
    add_message(theirs, output_tokens=9999, created_at=datetime(2026, 1, 31, 23, 59, tzinfo=UTC))  # before

    response = staff_client.get(USAGE, {"start": "2026-02-01", "end": "2026-02-28"})

    summary = response.context["summary"]
    by_user = {row.username: row for row in summary.rows}
    assert list(by_user) == ["alice", "bob"]
    alice_row, bob_row = by_user["alice"], by_user["bob"]
    assert (alice_row.messages, alice_row.assistant_replies, alice_row.failures) == (2, 3, 2)
    assert (alice_row.tokens_in, alice_row.tokens_out) == (105, 50)
    assert (bob_row.messages, bob_row.assistant_replies, bob_row.tokens_in, bob_row.tokens_out) == (0, 1, 0, 7)
    totals = summary.totals
    assert (totals.messages, totals.assistant_replies, totals.tokens_in, totals.tokens_out, totals.failures) == (
        2,
        4,
        105,
        57,
        2,
    )
    page = response.content.decode()
    assert "<td>105</td><td>50</td><td>2</td>" in page
    assert f"?owner__id__exact={alice.pk}" in page


def test_usage_summary_defaults_to_the_last_thirty_days(staff_client: Client, alice: User):
    conversation = make_conversation(alice)
    add_message(conversation)
    add_message(conversation, created_at=timezone.now() - timedelta(days=31))
    summary = staff_client.get(USAGE).context["summary"]
    assert (summary.start, summary.end) == (timezone.localdate() - timedelta(days=29), timezone.localdate())
    assert summary.totals.messages == 1


def test_usage_summary_rejects_a_period_that_ends_before_it_starts(staff_client: Client):
    response = staff_client.get(USAGE, {"start": "2026-02-10", "end": "2026-02-01"})
    assert response.context["summary"] is None
    assert "must start on or before" in response.content.decode()


def test_usage_summary_is_linked_from_the_conversation_list(staff_client: Client):
    assert USAGE in staff_client.get(CONVERSATIONS).content.decode()


# --- Audit trail ------------------------------------------------------------------------------


def test_opening_a_transcript_records_who_and_when(staff_client: Client, staff: User, alice: User):
    conversation = make_conversation(alice, title="Sensitive")
    before = timezone.now()
    staff_client.get(change_url(conversation))
    view = TranscriptView.objects.get()
    assert (view.viewer, view.viewer_username, view.conversation, view.via) == (staff, "reviewer", conversation, "page")
    assert view.conversation_label == f"#{conversation.pk} Sensitive"
    assert before <= view.viewed_at <= timezone.now()


def test_superusers_see_the_audit_trail(superuser_client: Client, staff_client: Client, alice: User):
    conversation = make_conversation(alice, title="Watched")
    staff_client.get(change_url(conversation))

    response = superuser_client.get(AUDIT, {"conversation__id__exact": conversation.pk})

    assert response.status_code == 200
    [view] = listed(response)
    row = cells(response, view)
    assert (row["Viewer username"], row["Conversation"], row["Via"]) == (
        "reviewer",
        f"#{conversation.pk} Watched",
        "Transcript page",
    )
    page = superuser_client.get(change_url(conversation)).content.decode()
    assert f"{AUDIT}?conversation__id__exact={conversation.pk}" in page


def test_staff_who_are_not_superusers_cannot_see_the_audit_trail(staff_client: Client, alice: User):
    conversation = make_conversation(alice)
    staff_client.get(change_url(conversation))
    view = TranscriptView.objects.get()
    assert staff_client.get(AUDIT).status_code == 403
    assert staff_client.get(change_url(view)).status_code == 403
    assert AUDIT not in staff_client.get(change_url(conversation)).content.decode()
    assert AUDIT not in staff_client.get(reverse("admin:index")).content.decode()


def test_nobody_can_alter_or_delete_the_audit_trail(superuser_client: Client, alice: User):
    superuser_client.get(change_url(make_conversation(alice)))
    view = TranscriptView.objects.get()
    delete = reverse("admin:chat_transcriptview_delete", args=[view.pk])
    assert superuser_client.post(delete, {"post": "yes"}).status_code == 403
    assert superuser_client.post(change_url(view), {"viewer_username": "someone"}).status_code == 403
    assert superuser_client.get(reverse("admin:chat_transcriptview_add")).status_code == 403
    assert TranscriptView.objects.get().viewer_username == "root"


# --- Query counts do not grow with rows -------------------------------------------------------


def _populate(owner: User, conversations: int, messages_each: int) -> list[Conversation]:
    made = []
    for number in range(conversations):
        conversation = make_conversation(owner, title=f"needle {number}", model=f"openai:model-{number % 4}")
        for _ in range(messages_each // 2):
            add_exchange(conversation, answer="needle", error_code=f"code-{number % 3}", model=f"m{number % 5}")
        made.append(conversation)
    return made


def _list_pages_query_counts(client: Client, conversation: Conversation) -> list[int]:
    pages = [
        (CONVERSATIONS, {}),
        (CONVERSATIONS, {"q": "needle"}),
        (CONVERSATIONS, {"last_status": "complete", "provider": "openai"}),
        (MESSAGES, {}),
        (MESSAGES, {"q": "needle"}),
        (change_url(conversation), {}),
        (USAGE, {}),
    ]
    return [query_count(client, "get", url, params) for url, params in pages]


def test_list_transcript_and_usage_pages_use_constant_queries(superuser_client: Client):
    owners = [User.objects.create_user(f"user{n}") for n in range(30)]
    few = _populate(owners[0], conversations=3, messages_each=2)
    _list_pages_query_counts(superuser_client, few[0])  # warm caches (content types, sessions)
    small = _list_pages_query_counts(superuser_client, few[0])

    for owner in owners[1:]:
        _populate(owner, conversations=1, messages_each=2)
    for _ in range(14):
        add_exchange(few[0])
    large = _list_pages_query_counts(superuser_client, few[0])

    assert Conversation.objects.count() == 32
    assert few[0].messages.count() == 30
    assert large == small


def test_exports_use_constant_queries(staff_client: Client, alice: User):
    few = _populate(alice, conversations=3, messages_each=2)
    many = few + _populate(alice, conversations=27, messages_each=10)

    def count(action: str, chosen: list[Conversation]) -> int:
        data = {"action": action, "_selected_action": [c.pk for c in chosen]}
        return query_count(staff_client, "post", CONVERSATIONS, data)

    for action in ("export_json", "export_markdown"):
        count(action, few)
        assert count(action, many) == count(action, few), action


def test_usage_summary_groups_in_the_database(staff_client: Client):
    day = datetime(2026, 2, 1, 12, tzinfo=UTC)
    params = {"start": "2026-02-01", "end": "2026-02-01"}
    user = User.objects.create_user("first")
    add_message(make_conversation(user), created_at=day)
    staff_client.get(USAGE, params)
    few = query_count(staff_client, "get", USAGE, params)
    for number in range(30):
        add_message(make_conversation(User.objects.create_user(f"u{number}")), created_at=day)
    staff_client.get(USAGE, params)  # the day changed: it is rolled up again, once
    assert query_count(staff_client, "get", USAGE, params) == few
    assert len(staff_client.get(USAGE, params).context["summary"].rows) == 31
