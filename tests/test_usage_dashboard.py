"""The usage dashboard in the admin: tokens and cost by user, group, model and day for a period, top
users, failure rates and median time to first token per model, server-side SVG charts and a CSV export,
in a number of queries that does not grow with users or days."""

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chat.admin.selectors import usage_summary_for_period
from chat.models import Conversation, Message, UsageRollup, UsageRollupDay

pytestmark = [pytest.mark.django_db, pytest.mark.cluster]

User = get_user_model()
DASHBOARD = reverse("admin:chat_conversation_usage")
DAY = datetime(2026, 3, 10, 12, tzinfo=UTC)
PERIOD = {"start": "2026-03-09", "end": "2026-03-11"}


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", password="pw"))
    return client


def superuser() -> User:
    """A superuser reviews everyone: the dashboard counts every user for them."""
    return User.objects.filter(is_superuser=True).first() or User.objects.create_superuser("root", password="pw")


def reply(owner, *, model: str = "openai:gpt-a", day: datetime = DAY, **fields) -> Message:
    conversation = Conversation.objects.create(owner=owner, model=model)
    Message.objects.create(conversation=conversation, role="user", content="q", created_at=day)
    provider = model.partition(":")[0]
    message = Message.objects.create(
        conversation=conversation, role="assistant", provider=provider, model=model, content="a", **fields
    )
    Message.objects.filter(conversation=conversation).update(created_at=day)
    return message


@pytest.fixture
def seeded():
    """alice (Support) and bob (Support, Sales) over two days and two models; carol in no group."""
    alice, bob, carol = (User.objects.create_user(name) for name in ("alice", "bob", "carol"))
    support, sales = Group.objects.create(name="Support"), Group.objects.create(name="Sales")
    alice.groups.add(support)
    bob.groups.add(support, sales)
    usage = {"input_tokens": 100, "output_tokens": 10}
    reply(alice, cost=Decimal("0.5"), time_to_first_token_ms=100, **usage)
    reply(alice, cost=Decimal("0.25"), time_to_first_token_ms=300, day=DAY + timedelta(days=1), **usage)
    reply(bob, model="anthropic:claude-b", cost=Decimal("2"), time_to_first_token_ms=1000, **usage)
    reply(bob, model="anthropic:claude-b", status="failed", time_to_first_token_ms=None, input_tokens=5)
    reply(carol, time_to_first_token_ms=200, **usage)  # no price: no cost
    reply(carol, day=DAY - timedelta(days=30), cost=Decimal("99"), **usage)  # before the period
    return alice, bob, carol


def test_the_dashboard_totals_tokens_and_cost_by_user_group_model_and_day(seeded):
    summary = usage_summary_for_period(start=date(2026, 3, 9), end=date(2026, 3, 11), reviewer=superuser())
    by_user = {row.username: row for row in summary.rows}
    assert [(row.tokens_in, row.tokens_out, row.cost, row.groups) for row in by_user.values()] == [
        (200, 20, Decimal("0.75"), ("Support",)),
        (105, 10, Decimal("2"), ("Sales", "Support")),
        (100, 10, Decimal("0"), ()),
    ]
    assert summary.totals.cost == Decimal("2.75") and summary.totals.tokens_in == 405
    groups = {row.name: (row.members, row.cost, row.tokens_in) for row in summary.by_group}
    assert groups == {"Sales": (1, Decimal("2"), 105), "Support": (2, Decimal("2.75"), 305)}
    days = [(row.day, row.assistant_replies, row.cost) for row in summary.by_day]
    assert days == [
        (date(2026, 3, 9), 0, Decimal("0")),
        (date(2026, 3, 10), 4, Decimal("2.5")),
        (date(2026, 3, 11), 1, Decimal("0.25")),
    ]
    assert [row.username for row in summary.top_users] == ["bob", "alice", "carol"]


def test_each_model_has_its_failure_rate_and_median_time_to_first_token(seeded):
    summary = usage_summary_for_period(start=date(2026, 3, 9), end=date(2026, 3, 11), reviewer=superuser())
    models = {row.model: row for row in summary.by_model}
    claude, gpt = models["anthropic:claude-b"], models["openai:gpt-a"]
    assert (claude.assistant_replies, claude.failures, claude.failure_rate, claude.median_ttft_ms) == (2, 1, 0.5, 1000)
    # 100, 200 and 300 ms: the middle one (the 30-day-old reply is outside the period).
    assert (gpt.assistant_replies, gpt.failure_rate, gpt.median_ttft_ms) == (3, 0.0, 200)


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two(seeded):
    alice = seeded[0]
    reply(alice, time_to_first_token_ms=500)
    models = {
        row.model: row
        for row in usage_summary_for_period(
            start=date(2026, 3, 9), end=date(2026, 3, 11), reviewer=superuser()
        ).by_model
    }
    assert models["openai:gpt-a"].median_ttft_ms == 250


def test_the_page_shows_the_tables_and_svg_charts_with_names_escaped(admin_client, seeded):
    User.objects.filter(username="carol").update(username="<script>x</script>")
    response = admin_client.get(DASHBOARD, PERIOD)
    page = response.content.decode()
    assert response.status_code == 200
    assert page.count('<svg class="usage-chart"') == 4 and "<script>x" not in page and "&lt;script&gt;x" in page
    assert '<th scope="row">anthropic:claude-b</th>' in page and "50 %" in page and "1000 ms" in page
    assert "2.7500" in page  # the total cost
    assert "Content-Security-Policy" in response.headers and "unsafe-inline" not in response["Content-Security-Policy"]


def test_the_csv_export_has_a_row_per_day_user_and_model(admin_client, seeded):
    response = admin_client.get(DASHBOARD, {**PERIOD, "format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="usage-2026-03-09-2026-03-11.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    bob = [row for row in rows if row["user"] == "bob" and row["model"]]
    assert bob == [
        {
            "day": "2026-03-10",
            "user": "bob",
            "groups": "Sales;Support",
            "model": "anthropic:claude-b",
            "messages": "0",
            "replies": "2",
            "tokens_in": "105",
            "tokens_out": "10",
            "cost": "2.00000000",
            "failures": "1",
        }
    ]


def test_a_name_a_spreadsheet_would_run_is_defused_in_the_csv(admin_client):
    reply(User.objects.create_user("=HYPERLINK(1)"))
    rows = list(csv.reader(io.StringIO(admin_client.get(DASHBOARD, {**PERIOD, "format": "csv"}).content.decode())))
    assert {row[1] for row in rows[1:]} == {"'=HYPERLINK(1)"}


def populate(users: int, days: int) -> None:
    support = Group.objects.get_or_create(name="Support")[0]
    for number in range(users):
        owner = User.objects.create_user(f"user-{users}-{number}")
        owner.groups.add(support)
        for offset in range(days):
            reply(owner, day=DAY + timedelta(days=offset - 1), cost=Decimal("0.1"), time_to_first_token_ms=100)


@pytest.mark.parametrize("users, days", [(1, 1), (20, 3)])
def test_the_dashboard_runs_seven_queries_however_many_users_and_days(users, days, django_assert_num_queries):
    populate(users, days)
    root = superuser()
    usage_summary_for_period(
        start=date(2026, 3, 9), end=date(2026, 3, 11), reviewer=root
    )  # rolls the closed days up, once
    with django_assert_num_queries(7):  # five for the figures, one for the files users store, one for feedback
        summary = usage_summary_for_period(start=date(2026, 3, 9), end=date(2026, 3, 11), reviewer=root)
    assert len(summary.rows) == users and summary.totals.assistant_replies == users * days


def test_the_page_runs_as_many_queries_for_one_user_as_for_many(admin_client):
    populate(1, 1)
    admin_client.get(DASHBOARD, PERIOD)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(DASHBOARD, PERIOD)
    populate(25, 3)
    admin_client.get(DASHBOARD, PERIOD)
    with CaptureQueriesContext(connection) as many:
        admin_client.get(DASHBOARD, PERIOD)
    assert len(many) == len(few)


# --- rollups of closed days ----------------------------------------------------------------------


def test_closed_days_are_rolled_up_once_and_give_the_same_figures_as_the_messages(seeded):
    period = {"start": date(2026, 3, 9), "end": date(2026, 3, 11)}
    first = usage_summary_for_period(**period, reviewer=superuser())
    assert UsageRollupDay.objects.count() == 3 and UsageRollup.objects.exists()
    rolled_at = set(UsageRollupDay.objects.values_list("rolled_at", flat=True))
    again = usage_summary_for_period(**period, reviewer=superuser())
    assert set(UsageRollupDay.objects.values_list("rolled_at", flat=True)) == rolled_at
    assert (again.rows, again.by_model, again.by_day, again.by_group) == (
        first.rows,
        first.by_model,
        first.by_day,
        first.by_group,
    )


def test_a_message_changed_on_a_rolled_up_day_rolls_that_day_up_again(seeded):
    alice = seeded[0]
    period = {"start": date(2026, 3, 9), "end": date(2026, 3, 11)}
    before = usage_summary_for_period(**period, reviewer=superuser()).totals
    reply(alice, cost=Decimal("1"), input_tokens=7)
    after = usage_summary_for_period(**period, reviewer=superuser()).totals
    assert (after.cost - before.cost, after.tokens_in - before.tokens_in) == (Decimal("1"), 7)


def test_the_last_days_are_read_from_the_messages_and_agree_with_a_rollup(seeded):
    alice = seeded[0]
    today = timezone.localdate()
    now = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    reply(alice, day=now, cost=Decimal("0.5"), time_to_first_token_ms=120)
    summary = usage_summary_for_period(start=today - timedelta(days=1), end=today, reviewer=superuser())
    assert not UsageRollupDay.objects.filter(day__gte=today - timedelta(days=1)).exists()
    assert summary.totals.cost == Decimal("0.5") and summary.by_model[0].median_ttft_ms == 120
