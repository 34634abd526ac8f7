"""Conversations and their messages: the database is the truth, the channel layer only carries frames."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Manager, Q
from django.utils.translation import gettext_lazy as _


class ApiKey(models.Model):
    """A user's key to the OpenAI-compatible API (/v1/). Only its SHA-256 is stored: the key itself is
    shown once, when it is made (chat.services.api_keys)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    # The key's first characters (`sc-` and a few more), so its owner recognises it: not enough to use it.
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True, help_text=_("SHA-256 of the key, hex."))
    # Empty: every model the server offers; else only these `provider:model` references.
    allowed_models = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="api_key_user_recent")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class VisibleConversations(models.Manager):
    """The conversations their owners see: one its owner deleted while it was held (chat.services.retention)
    is kept for the hold, and gone for everyone but review."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(deleted_by_owner_at__isnull=True)


class Conversation(models.Model):
    class Source(models.TextChoices):
        CHAT = "chat", _("Chat")
        API = "api", _("API")

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    # Where its messages came from: the chat, or calls to /v1/ with an API key (named here too, so
    # review still says which key once the key is deleted).
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.CHAT)
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations", db_index=False
    )
    api_key_name = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, help_text=_("Model reference, 'provider:model'."))
    system_prompt = models.TextField(blank=True)
    # Generation parameters set for this conversation (temperature, top_p, max_output_tokens, stop,
    # reasoning_effort, thinking_budget, repetition_penalty), only those set: chat.services.parameters.
    parameters = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The end of the branch the owner is on: the prompt, and what clients show, is the path from the
    # root to this message (chat/tree.py). Null only while the conversation has no message.
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    # PostgreSQL's search index of the title, written by chat/services/search_index.py (GIN-indexed by
    # migration 0020); null on SQLite, whose FTS5 table chat_conversation_fts holds it instead.
    search_vector = SearchVectorField(null=True, editable=False)
    # The owner named it: a title written by a model (CHAT_TITLE_MODEL) never replaces theirs.
    title_by_user = models.BooleanField(default=False)
    pinned_at = models.DateTimeField(null=True, blank=True)  # pinned ones head the sidebar
    archived_at = models.DateTimeField(null=True, blank=True)  # out of the sidebar, still in search
    # Where an imported conversation came from (its export's id): importing it again creates nothing.
    imported_from = models.CharField(max_length=200, blank=True)
    # Its owner deleted it while a legal hold stood: kept, out of every owner's view (review: a record only).
    deleted_by_owner_at = models.DateTimeField(null=True, blank=True, editable=False)

    all_objects = Manager()  # review and retention see every conversation
    objects = VisibleConversations()

    class Meta:
        default_manager_name = "objects"
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        indexes = [
            models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent"),
            # The calls of one key, newest first: where a growing conversation is looked for (de-duplication).
            models.Index(fields=["api_key", "-updated_at"], name="conversation_api_key_recent"),
            models.Index(fields=["source", "-updated_at"], name="conversation_source_recent"),
        ]
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "imported_from"],
                condition=~Q(imported_from=""),
                name="one_import_per_source_and_owner",
            )
        ]

    def __str__(self) -> str:
        if self.deleted_by_owner_at:  # kept for a legal hold: review sees a record, not even the title
            return f"Conversation {self.pk} (deleted by its owner)"
        return self.title or f"Conversation {self.pk}"

    @property
    def parameter_summary(self) -> str:
        """The parameters set, as staff read them: `stop "END" · temperature 0.2`, by name (PostgreSQL's
        jsonb keeps no key order); empty when none is."""
        shown = []
        for name, value in sorted(self.parameters.items()):
            text = ", ".join(f'"{item}"' for item in value) if isinstance(value, list) else str(value)
            shown.append(f"{name} {text}")
        return " · ".join(shown)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("User")
        ASSISTANT = "assistant", _("Assistant")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        STREAMING = "streaming", _("Streaming")
        COMPLETE = "complete", _("Complete")
        CANCELLED = "cancelled", _("Cancelled")
        FAILED = "failed", _("Failed")
        INTERRUPTED = "interrupted", _("Interrupted")

    ACTIVE_STATUSES = (Status.PENDING, Status.STREAMING)

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # The message this one follows (null for a first message). Siblings (children of one parent) are the
    # edits of a user message, or the regenerations of a reply; a reply whose parent is a reply continues it.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    role = models.CharField(max_length=16, choices=Role.choices)
    # The answer text: every `text` part, joined. What prompts, search and protocol-1 clients read.
    content = models.TextField(blank=True)
    # A reply with more than its answer (a thinking model's reasoning): every part in order, each
    # {"kind", "text"} (docs/protocol.md). Empty for a reply that is only text: `content` is all of it.
    # A part may also hold what its provider needs back on the next turn and clients never see
    # (PROVIDER_KEYS: an Anthropic thinking block's `signature`); a block with no text to show (a
    # `redacted` thinking block, or a signed one whose text was omitted) is a part with empty text.
    parts = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    # The id the client chose for a send: the same id twice creates one message.
    client_id = models.CharField(max_length=64, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=200, blank=True)
    finish_reason = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Parts of the counts above, as the provider reported them (null: not reported). Of the input: read
    # from the provider's prompt cache, and written to it; of the output: the model's reasoning.
    cached_input_tokens = models.PositiveIntegerField(null=True, blank=True)
    cache_write_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    tokens_estimated = models.BooleanField(default=False, help_text=_("Token counts estimated, not reported."))
    # What the reply cost, from its token counts at the price of its model when it started (chat/costs.py);
    # null: no price known. Estimated when its token counts are (a reply that ended early, or unreported).
    cost = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    cost_estimated = models.BooleanField(default=False)
    # From the moment the worker first asked the provider (retries included) to the first token.
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    # From the send (the reply's creation) to the first token: the wait for a worker included.
    send_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # Last frame sequence number covered by `content` (checkpoints keep it in step).
    seq = models.PositiveIntegerField(default=0)
    # Set by a stop request; the worker also reads it at each checkpoint, should the live signal be lost.
    cancel_requested = models.BooleanField(default=False)
    # A running generation renews this lease; a reply whose lease ran out lost its worker.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Who holds the lease: the worker id and a token of this claim. Every write of a running reply is
    # fenced by it, so a worker that lost its lease (the reaper cleared it) can never overwrite the reply.
    lease_holder = models.CharField(max_length=200, blank=True)
    # A reply of a background-mode model (OPENAI_BACKGROUND_MODELS): the response the provider keeps, and
    # the cursor (the provider's event number) of the last event whose text `parts` and `seq` hold, so that
    # another worker can take the reply up from there should its worker die (chat.engine.resume).
    upstream_response_id = models.CharField(max_length=200, blank=True)
    upstream_cursor = models.IntegerField(null=True, blank=True)
    # How many times another worker took the reply up, and when it was last handed over (it waits again).
    resumes = models.PositiveSmallIntegerField(default=0)
    resumed_at = models.DateTimeField(null=True, blank=True)
    # Set when the reply was told `queued` (no worker had a free slot): it really waits for a worker.
    queued_at = models.DateTimeField(null=True, blank=True)
    # Set when the job was sent again because the job queue was new (Redis restarted): at most once.
    requeued_at = models.DateTimeField(null=True, blank=True)
    # Before conversations were trees (migration 0007), regenerate and edit marked the message they
    # replaced; the migration made it a sibling of its successor. Kept for review; nothing sets it now.
    superseded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # PostgreSQL's search index of the answer and, apart, of the reasoning (searched only when asked),
    # written by chat/services/search_index.py; null on SQLite, whose FTS5 table chat_message_fts holds them.
    search_vector = SearchVectorField(null=True, editable=False)
    search_reasoning = SearchVectorField(null=True, editable=False)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["id"]
        indexes = [
            models.Index(fields=["conversation", "id"], name="message_conversation_order"),
            models.Index(fields=["status", "created_at"], name="message_status"),
            models.Index(fields=["provider", "model"], name="message_provider_model"),
            models.Index(fields=["error_code"], name="message_error_code"),
            models.Index(fields=["created_at"], name="message_created"),
            # What changed since the usage dashboard rolled a day up (chat/admin/selectors.py).
            models.Index(fields=["updated_at"], name="message_updated"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status__in=["pending", "streaming"]),
                name="one_active_generation_per_conversation",
            ),
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=~Q(client_id=""),
                name="unique_client_id_per_conversation",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    def part_list(self) -> list[dict[str, Any]]:
        """Every part clients see, in order, `{"kind", "text"}` and `duration_ms` where known; a text-only
        reply is one text part (none while empty). Provider data and blocks without text are left out."""
        if self.parts:
            return [
                {key: value for key, value in part.items() if key not in PROVIDER_KEYS}
                for part in self.parts
                if part["text"]
            ]
        return [{"kind": "text", "text": self.content}] if self.content else []

    @property
    def model_reference(self) -> str:
        """'provider:model', however the row has it: replies store the conversation's whole reference."""
        if not self.provider or self.model.startswith(f"{self.provider}:"):
            return self.model
        return f"{self.provider}:{self.model}" if self.model else self.provider

    @property
    def reasoning(self) -> str:
        """The reasoning parts' text, joined (empty for most replies)."""
        return "".join(part["text"] for part in self.parts if part["kind"] == "reasoning")

    @property
    def token_details(self) -> list[tuple[str, int]]:
        """The parts of the token counts the provider reported, labelled for review: cached, cache
        write, reasoning (those unknown left out)."""
        details = [
            ("cached", self.cached_input_tokens),
            ("cache write", self.cache_write_tokens),
            ("reasoning", self.reasoning_tokens),
        ]
        return [(label, count) for label, count in details if count is not None]

    @property
    def tokens_per_second(self) -> float | None:
        if not self.output_tokens or not self.duration_ms:
            return None
        generating_ms = self.duration_ms - (self.time_to_first_token_ms or 0)
        return round(self.output_tokens / (max(generating_ms, 1) / 1000), 1)


PROVIDER_KEYS = ("signature", "redacted")  # kept in a reply's parts for its provider, never sent to clients

ReplyPart = tuple[str, str] | Mapping[str, str]  # (kind, text), or {"kind", "text"} with provider data


def answer_text(parts: Iterable[tuple[str, str]]) -> str:
    """A reply's answer: the text of its `(kind, text)` parts of kind `text`, joined."""
    return "".join(text for kind, text in parts if kind == "text")


def stored_parts(parts: Sequence[ReplyPart], part_ms: Sequence[int] | None = None) -> dict[str, Any]:
    """A reply's parts as its fields: `content` is the answer text (its text parts); `parts` lists them
    all, with how long each shown part took (`part_ms`, if known), only when some are not plain text."""
    stored = [dict(part) if isinstance(part, Mapping) else {"kind": part[0], "text": part[1]} for part in parts]
    content = answer_text((part["kind"], part["text"]) for part in stored)
    if all(part.keys() == {"kind", "text"} and part["kind"] == "text" for part in stored):
        return {"content": content, "parts": []}
    for part, ms in zip((part for part in stored if part["text"]), part_ms or [], strict=False):
        part["duration_ms"] = ms
    return {"content": content, "parts": stored}


class TranscriptView(models.Model):
    """Audit trail: a staff member opened or exported a transcript in the admin."""

    class Via(models.TextChoices):
        PAGE = "page", _("Transcript page")
        JSON = "json", _("JSON export")
        MARKDOWN = "markdown", _("Markdown export")
        ATTACHMENT = "attachment", _("Attachment")

    # SET_NULL plus the snapshots below: the record outlives a deleted user or conversation.
    viewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, db_index=False, related_name="+"
    )
    viewer_username = models.CharField(max_length=150)
    conversation = models.ForeignKey(
        Conversation, null=True, on_delete=models.SET_NULL, db_index=False, related_name="transcript_views"
    )
    conversation_label = models.CharField(max_length=250)
    via = models.CharField(max_length=16, choices=Via.choices, default=Via.PAGE)
    viewed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("transcript view")
        verbose_name_plural = _("transcript views")
        ordering = ["-viewed_at", "-id"]
        indexes = [
            models.Index(fields=["-viewed_at"], name="transcript_view_recent"),
            models.Index(fields=["conversation", "-viewed_at"], name="transcript_view_conversation"),
            models.Index(fields=["viewer", "-viewed_at"], name="transcript_view_viewer"),
        ]

    def __str__(self) -> str:
        return f"{self.viewer_username} viewed {self.conversation_label} ({self.via})"


class DailyUsage(models.Model):
    """Tokens each user spent each UTC day: the daily budget's ledger. It outlives deleted
    conversations, so deleting history never gives a user their budget back."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_usage")
    day = models.DateField()
    tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=0)  # replies and titles, in CHAT_CURRENCY

    class Meta:
        verbose_name = _("daily usage")
        verbose_name_plural = _("daily usage")
        constraints = [models.UniqueConstraint(fields=["user", "day"], name="one_usage_row_per_user_and_day")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.day}: {self.tokens} tokens"


class ShareLink(models.Model):
    """A read-only link to a snapshot of a conversation's current path, as it was when shared.

    The snapshot holds only what the shared page shows (roles, parts, models), never ids; the token is
    the link's only key. Revoked or expired, the link answers like one that never existed."""

    token = models.CharField(max_length=64, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="share_links")
    # Deleting the conversation deletes its links: the owner took it back.
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="share_links")
    title = models.CharField(max_length=200, blank=True)
    snapshot = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("share link")
        verbose_name_plural = _("share links")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="share_owner_recent")]

    def __str__(self) -> str:
        return f"Share of {self.title or 'a conversation'} ({self.pk})"


class ImportJob(models.Model):
    """A file a user uploaded to import (our export ZIP, or ChatGPT's conversations.json), and how far
    the background import of it got: the page polls it for the progress bar."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")  # reading and checking the file
        SAVING = "saving", _("Saving")  # writing it, in one transaction
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    class Kind(models.TextChoices):
        STREAMCHAT = "streamchat", _("streamchat export (ZIP)")
        CHATGPT = "chatgpt", _("ChatGPT conversations.json")

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="import_jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices, blank=True)  # known once the file is read
    filename = models.CharField(max_length=255, blank=True)
    # The uploaded bytes (at most CHAT_IMPORT_MAX_BYTES), dropped once the job has ended.
    payload = models.BinaryField(blank=True, default=b"")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)  # conversations in the file
    done = models.PositiveIntegerField(default=0)  # conversations checked so far
    created = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)  # already imported before
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("import job")
        verbose_name_plural = _("import jobs")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Import {self.pk} ({self.kind}, {self.status})"


# --- Attachments ---


class Attachment(models.Model):
    """A file a user uploaded into a conversation: pending (no message) until a `send` or `edit` names it.

    The bytes live in the `attachments` storage (settings.STORAGES) under `storage_name`, with a
    thumbnail beside them for an image; the row keeps what prompts and pages need without reading them."""

    class Kind(models.TextChoices):
        IMAGE = "image", "Image"
        PDF = "pdf", "PDF"
        TEXT = "text", "Text"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    mime = models.CharField(max_length=100)  # from the content, never from the name
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    name = models.CharField(max_length=255)  # the uploaded name, sanitised: shown, never used as a path
    storage_name = models.CharField(max_length=300)
    thumbnail_name = models.CharField(max_length=300, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    # A PDF's text, extracted once at upload (a text file's own text is read from storage when needed).
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["owner", "message"], name="attachment_owner_message"),
            models.Index(fields=["message", "id"], name="attachment_message_order"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.size} bytes)"

    @property
    def is_image(self) -> bool:
        return self.kind == self.Kind.IMAGE


# --- teams: groups' model access and limits, prices ---


class GroupPolicy(models.Model):
    """What a group's members may use: models, and limits. A user's effective limits are the most
    generous of their groups' (chat/teams.py); a field left empty means the global default."""

    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE, related_name="policy")
    # Empty: every model the server offers; else only these `provider:model` references.
    allowed_models = models.JSONField(default=list, blank=True)
    messages_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="0: no limit.")
    max_running = models.PositiveIntegerField(null=True, blank=True, help_text="Replies at once; 0: no limit.")
    daily_token_budget = models.PositiveBigIntegerField(null=True, blank=True, help_text="0: no limit.")
    # Money budgets of each member (their own spend), in CHAT_CURRENCY; 0: no limit.
    daily_cost_budget = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    monthly_cost_budget = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    # Money budgets of the whole group (every member's spend together); empty: none.
    group_daily_cost_budget = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    group_monthly_cost_budget = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)

    class Meta:
        verbose_name = "group policy"
        verbose_name_plural = "group policies"

    def __str__(self) -> str:
        return f"Policy of {self.group_id}"


class ModelPrice(models.Model):
    """A model's price per million tokens from `effective_from` on: a reply is costed at the price of
    the moment it started, so a new price never changes the cost of old replies."""

    model = models.CharField(max_length=200, help_text="Model reference, 'provider:model'.")
    effective_from = models.DateTimeField()
    input_per_million = models.DecimalField(max_digits=12, decimal_places=4)
    output_per_million = models.DecimalField(max_digits=12, decimal_places=4)
    # Empty: the input price (cached read, cache write) or the output price (reasoning).
    cached_read_per_million = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    cache_write_per_million = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    reasoning_per_million = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [models.UniqueConstraint(fields=["model", "effective_from"], name="one_price_per_model_moment")]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"


# --- review scopes and retention (issue 18, items 4-5) ---


class ReviewScope(models.Model):
    """A grant to review transcripts: `reviewer` may read the conversations of `group`'s members."""

    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="review_scopes")
    group = models.ForeignKey("auth.Group", on_delete=models.CASCADE, related_name="review_scopes")
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("review scope")
        verbose_name_plural = _("review scopes")
        constraints = [models.UniqueConstraint(fields=["reviewer", "group"], name="one_review_scope_per_group")]

    def __str__(self) -> str:
        return f"{self.reviewer} reviews {self.group}"


class GroupRetention(models.Model):
    """How long a group's members' conversations are kept after their last activity (empty: forever)."""

    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE, related_name="retention")
    keep_days = models.PositiveIntegerField(
        _("keep for (days)"), null=True, blank=True, help_text=_("Empty: kept forever.")
    )

    class Meta:
        verbose_name = _("retention")
        verbose_name_plural = _("retention")

    def __str__(self) -> str:
        return f"{self.group}: {self.keep_days or 'forever'}"


class LegalHold(models.Model):
    """Suspends every deletion of a user's conversations, or of one conversation. PROTECT: a held user or
    conversation cannot be deleted at all while the hold stands (deleting the hold lifts it)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="legal_holds"
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.PROTECT, related_name="legal_holds"
    )
    reason = models.CharField(_("reason"), max_length=200)
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    placed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("legal hold")
        verbose_name_plural = _("legal holds")
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, conversation__isnull=True)
                | Q(user__isnull=True, conversation__isnull=False),
                name="legal_hold_on_a_user_or_a_conversation",
            )
        ]

    def __str__(self) -> str:
        return f"Hold on {self.user or self.conversation}: {self.reason}"


class PurgeRecord(models.Model):
    """One purge of expired conversations: what was deleted, as counts (never content)."""

    class Via(models.TextChoices):
        WORKER = "worker", _("worker maintenance")
        COMMAND = "command", _("purge_expired command")

    via = models.CharField(max_length=16, choices=Via.choices)
    purged_at = models.DateTimeField()
    conversations = models.PositiveIntegerField(default=0)
    messages = models.PositiveIntegerField(default=0)
    shares = models.PositiveIntegerField(default=0)
    # Counts from the purge hooks of other features (attachments, files), by name.
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-purged_at", "-id"]
        verbose_name = _("purge record")
        verbose_name_plural = _("purge records")

    def __str__(self) -> str:
        return f"Purge {self.purged_at:%Y-%m-%d %H:%M}: {self.conversations} conversations"


# --- single sign-on (issue 18, item 6) ---


class OidcIdentity(models.Model):
    """The OpenID Connect subject an account signs in as (chat/sso.py): an account is matched by its
    provider's stable `sub`, never by a username or email that a local account might share."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identities")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("single sign-on identity")
        verbose_name_plural = _("single sign-on identities")
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="one_account_per_oidc_subject")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class UsageRollup(models.Model):
    """The usage dashboard's figures of one closed day (in the server's time zone), one user and one model
    (empty: the user's own messages), summed from the messages once (chat/admin/selectors.py), so a long
    period reads a few rows a day, not every message. Rolled up again if a message of that day changes."""

    day = models.DateField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    model = models.CharField(max_length=200, blank=True)
    messages = models.PositiveIntegerField(default=0)
    assistant_replies = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "user", "model"], name="one_rollup_per_day_user_model")]

    def __str__(self) -> str:
        return f"{self.day} {self.user_id} {self.model}"


class UsageRollupTtft(models.Model):
    """How many of a model's replies of one closed day had their first token after `bucket_ms` (10 ms steps):
    the histogram the median time to first token is read from."""

    day = models.DateField()
    model = models.CharField(max_length=200)
    bucket_ms = models.PositiveIntegerField()
    replies = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "model", "bucket_ms"], name="one_ttft_bucket_per_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.model} {self.bucket_ms} ms: {self.replies}"


class UsageRollupDay(models.Model):
    """A day the usage dashboard has rolled up, and when (a message updated since rolls it up again)."""

    day = models.DateField(unique=True)
    rolled_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.day} rolled up at {self.rolled_at}"


# --- Feedback ---


class Feedback(models.Model):
    """A person's thumbs up or down on a reply, with an optional comment: one per user and reply."""

    class Rating(models.TextChoices):
        UP = "up", _("Thumbs up")
        DOWN = "down", _("Thumbs down")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="feedback")
    rating = models.CharField(max_length=8, choices=Rating.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("feedback")
        verbose_name_plural = _("feedback")
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="one_feedback_per_user_and_message")]

    def __str__(self) -> str:
        return f"{self.get_rating_display()} on message {self.message_id}"
