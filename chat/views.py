"""Pages: the chat UI (a template plus static JS that speaks the WebSocket protocol) and sign-up."""

import secrets
from collections.abc import Mapping
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views import csrf
from django.views.decorators.http import require_POST

from chat import api, events, limits, review, selectors, services, sso, teams
from chat.errors import ChatError
from chat.live import live_log
from chat.models import Conversation, Feedback, Message, ShareLink
from chat.providers import registry
from chat.tree import Tree


def _sidebar_source(request: HttpRequest, conversation: Conversation | None) -> str:
    """Which conversations the sidebar lists: `?source=api` or the open conversation's own, else the chat's."""
    asked = request.GET.get("source")
    if asked in Conversation.Source.values:
        return asked
    return conversation.source if conversation is not None else Conversation.Source.CHAT


def _history_payload(message: Message, *, tree: Tree, feedback: Mapping[int, Feedback]) -> dict[str, Any]:
    """A message as the page first shows it: a running reply with its text so far (from the live log,
    newer than its last checkpoint), so a reload never paints less than the page showed before; a
    finished reply with its owner's feedback."""
    if message.is_active:
        state = async_to_sync(live_log().state)(message.pk)
        if state is not None:
            return events.live_message_payload(message, parts=state.parts, seq=state.seq, tree=tree)
    return events.message_payload(message, tree=tree, feedback=feedback)


def _chat_context(request: HttpRequest, conversation: Conversation | None) -> dict[str, Any]:
    """Everything the chat template and its script need; the script reads `page_data` as JSON."""
    default_model = services.default_model_for(user_id=request.user.pk)
    messages = []
    if conversation is not None:
        path = selectors.path_for(conversation=conversation)
        feedback = selectors.feedback_for(user_id=conversation.owner_id, messages=path.messages)
        messages = [_history_payload(m, tree=path.tree, feedback=feedback) for m in path.messages]
    source = _sidebar_source(request, conversation)
    sidebar = selectors.conversation_sidebar_for(user=request.user, source=source)
    page_data = {
        "conversation": events.conversation_payload(conversation, running=False) if conversation else None,
        "sidebar_next": sidebar.next,
        "messages": messages,
        "default_model": default_model,
        # Each model's parameters, so the settings show the fields the chosen model accepts.
        "models": [
            events.model_payload(model, rules) for model, rules in services.parameters_by_model(user_id=request.user.pk)
        ],
        "urls": {
            "websocket": "/ws/chat/",
            "home": reverse("chat:home"),
            "conversations": reverse("chat:api-conversations"),
            # The script puts a conversation id where the zero is.
            "conversation_page": reverse("chat:conversation", args=[0]),
            "conversation_api": reverse("chat:api-conversation", args=[0]),
            "search": reverse("chat:api-search"),
            "shares": reverse("chat:api-shares"),
            "imports": reverse("chat:api-imports"),
            "import_job": reverse("chat:api-import", args=[0]),
            "share_api": reverse("chat:api-share", args=[0]),
            "conversation_attachments": reverse("chat:api-conversation-attachments", args=[0]),
            "attachment_api": reverse("chat:api-attachment", args=[0]),
        },
    }
    return {
        "budget": limits.budget_status_for(user_id=request.user.pk),
        "sidebar": sidebar,
        "source": source,
        "conversation": conversation,
        "models": teams.models_allowed(user_id=request.user.pk, offered=registry.available_models()),
        "selected_model": conversation.model if conversation else default_model,
        "page_data": page_data,
    }


def web_app_manifest(request: HttpRequest) -> HttpResponse:
    """The web app manifest, so a phone can add the chat to its home screen. No service worker: no
    conversation is ever cached for offline use. Public: browsers fetch it without cookies."""
    icons = [
        {"src": static("chat/icons/icon-192.png"), "sizes": "192x192", "type": "image/png", "purpose": "any"},
        {"src": static("chat/icons/icon-512.png"), "sizes": "512x512", "type": "image/png", "purpose": "any"},
        {
            "src": static("chat/icons/icon-maskable-512.png"),
            "sizes": "512x512",
            "type": "image/png",
            "purpose": "maskable",
        },
    ]
    manifest = {
        "name": _("Streamchat"),
        "short_name": _("Chat"),
        "description": _("Chat with language models; replies stream in as they are written."),
        "id": reverse("chat:home"),
        "start_url": reverse("chat:home"),
        "scope": reverse("chat:home"),
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#2563eb",
        "icons": icons,
    }
    return JsonResponse(manifest, content_type="application/manifest+json")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """A new, empty chat: the conversation is created when its first message is sent."""
    return render(request, "chat/chat.html", _chat_context(request, None))


@login_required
def conversation_page(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        conversation = selectors.conversation_get_for(user=request.user, conversation_id=pk)
    except ChatError:
        raise Http404("No such conversation.") from None
    return render(request, "chat/chat.html", _chat_context(request, conversation))


@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """The user's API keys: create one (shown once, on this answer only), list them, revoke one."""
    context: dict[str, Any] = {"created": None, "error": None, "form": {"allowed_models": []}}
    status = 200
    if request.method == "POST":
        try:
            if request.POST.get("action") == "revoke":
                key = selectors.api_key_get_for(user=request.user, key_id=request.POST.get("key"))
                services.api_key_revoke(api_key=key)
                return redirect("chat:api-keys")
            context["form"] = {**request.POST.dict(), "allowed_models": request.POST.getlist("allowed_models")}
            if _form_sent_before(request):
                context["form"] = {"allowed_models": []}
                context["error"] = SENT_TWICE
            else:
                context["created"] = services.api_key_create(
                    user=request.user,
                    name=request.POST.get("name"),
                    expires_in_days=_days(request.POST.get("expires_in_days", "")),
                    allowed_models=request.POST.getlist("allowed_models"),
                )
                _remember_form(request)
                context["form"] = {"allowed_models": []}
        except ChatError as error:
            context["error"], status = error.message, 400
    context |= {
        # Each form carries its own nonce: sent again (a reload of the answer), it makes no second key.
        "form_nonce": secrets.token_urlsafe(16),
        "keys": selectors.api_keys_for(user=request.user),
        "models": teams.models_allowed(user_id=request.user.pk, offered=registry.available_models()),
        "base_url": request.build_absolute_uri("/v1"),
    }
    response = render(request, "chat/api_keys.html", context, status=status)
    response["Cache-Control"] = "no-store"  # the page may show a new key: no cache may keep it
    return response


SENT_TWICE = _(
    "This form was already sent: the key it made is in the list below, and its secret was shown only "
    "then. If you did not copy it, revoke that key and create another."
)
SENT_FORMS_KEPT = 20


def _form_sent_before(request: HttpRequest) -> bool:
    """The create form's nonce was used already (the page that showed a new key, reloaded)."""
    nonce = request.POST.get("nonce", "")
    return bool(nonce) and nonce in request.session.get("api_key_forms", [])


def _remember_form(request: HttpRequest) -> None:
    """Keep the nonces of the last forms that made a key (no secret: just which forms were sent)."""
    if nonce := request.POST.get("nonce", ""):
        request.session["api_key_forms"] = [*request.session.get("api_key_forms", []), nonce][-SENT_FORMS_KEPT:]


@login_required
def account_settings(request: HttpRequest) -> HttpResponse:
    """The user's settings: whether their transcripts can be reviewed, by which groups, and how long they are kept."""
    context = {
        "review": review.review_exposure_for(user=request.user),
        "keep_days": services.retention_days_for(user=request.user),
    }
    return render(request, "chat/settings.html", context)


def _days(value: str) -> object:
    """The expiry field: empty is none; a number of days; anything else is passed on to be refused."""
    value = value.strip()
    if not value:
        return None
    return int(value) if value.isdigit() else value


def _shared(token: str) -> ShareLink:
    share = selectors.share_get_public(token=token)
    if share is None:  # unknown, revoked and expired links are one and the same 404
        raise Http404("No such shared conversation.")
    return share


def _private(response: HttpResponse) -> HttpResponse:
    """A shared page stays out of search engines and caches, and its URL (the key) out of the Referer
    header of links to other sites ("same-origin", not "no-referrer": a form posted with no referrer
    sends `Origin: null`, which Django's CSRF check refuses)."""
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "same-origin"
    response["Cache-Control"] = "no-store"
    return response


def share_page(request: HttpRequest, token: str) -> HttpResponse:
    """The read-only snapshot behind a share link: no login, no sidebar, no ids of anything."""
    share = _shared(token)
    page_data = {"title": share.title, "messages": share.snapshot}
    context = {"share": share, "page_data": page_data, "token": token}
    return _private(render(request, "chat/share.html", context))


@require_POST
def share_continue(request: HttpRequest, token: str) -> HttpResponse:
    """Copy the snapshot into a new conversation of the viewer's (after they log in) and open it."""
    share = _shared(token)
    if not request.user.is_authenticated:
        return _private(redirect_to_login(reverse("chat:share", args=[token])))
    try:
        conversation = services.share_copy(share=share, owner=request.user)
    except ChatError as error:  # e.g. this server offers no model to chat with
        return _private(HttpResponseBadRequest(error.message, content_type="text/plain; charset=utf-8"))
    return redirect("chat:conversation", conversation.pk)


class LoginView(auth_views.LoginView):
    """Django's login, which also tells the template whether sign-up is open."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "signup_enabled": settings.CHAT_SIGNUP_ENABLED and settings.CHAT_PASSWORD_LOGIN,
            "password_login": settings.CHAT_PASSWORD_LOGIN,
            "sso_name": settings.CHAT_OIDC_NAME if sso.sso_enabled() else None,
            "sso_failed": self.request.GET.get("sso") == "failed",
        }

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.CHAT_PASSWORD_LOGIN:
            raise Http404("Password login is off on this server: sign in with single sign-on.")
        return super().post(request, *args, **kwargs)


def signup(request: HttpRequest) -> HttpResponse:
    """Create an account and log in; a 404 when CHAT_SIGNUP_ENABLED is off."""
    if not (settings.CHAT_SIGNUP_ENABLED and settings.CHAT_PASSWORD_LOGIN):
        raise Http404("Sign-up is closed on this server.")
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="chat.sso.PasswordBackend")
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "registration/signup.html", {"form": form})


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: on the API, its JSON error (`csrf_failed`, 403); elsewhere Django's page."""
    if api.is_api_request(request):
        message = f"{reason} Send the csrftoken cookie's value in an X-CSRFToken header."
        return api.error_response(ChatError("csrf_failed", message))
    return csrf.csrf_failure(request, reason)
