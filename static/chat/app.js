// The chat page: follows one conversation over the WebSocket protocol (docs/protocol.md).
//
// Resume and gaps, in short: a reply is a list of parts (its reasoning, then its answer text), each
// the concatenation of the delta frames for it, placed by their code-point `offset` in that part. A
// delta that starts at the part's length is appended; one that starts earlier has its overlap
// dropped; one that starts later (or opens a part past the next) means we missed frames, so we
// subscribe again and the server answers with a snapshot that replaces every part. `done` carries
// each part's final length: a mismatch also asks for a snapshot. After a reconnect we subscribe
// with `after: {message, seq}` and receive only the missing tail of the last part (or a snapshot).
// A page (re)load starts from the saved history and subscribes, and the snapshot brings a running
// reply up to date.
//
// Branches: a conversation is a tree and the page shows its current path (every tab the same one).
// A new message ends the path under its `parent`; a `path` frame (after a switch, here or in another
// tab, and on every (re)connect) replaces it. A reply may run on a branch we do not show: we note its
// id (`activeReplyId`) so its frames are not mistaken for lost history, and Stop still reaches it.

import { api, urlFor } from "./api.js";
import { AttachmentTray } from "./attachments.js";
import { Connection } from "./connection.js";
import { FeedbackControls } from "./feedback.js";
import { MessageView, setRenderHooks } from "./messages.js";
import { Imports } from "./imports.js";
import { ParameterSettings } from "./parameters.js";
import { Shortcuts } from "./keys.js";
import { Scroller } from "./scroll.js";
import { revealFoundMessage, Search } from "./search.js";
import { Shares } from "./shares.js";
import { Sidebar } from "./sidebar.js";

const t = (s) => (window.gettext ? window.gettext(s) : s);
// A translated text with %(name)s placeholders filled in.
const tf = (s, values) => t(s).replace(/%\((\w+)\)s/g, (_, name) => values[name]);

const $ = (id) => document.getElementById(id);
// A phone or tablet: its keyboard's Enter key adds a line, the Send button sends.
const touchKeyboard = () => window.matchMedia("(pointer: coarse)").matches;
const newClientId = () =>
  crypto.randomUUID ? crypto.randomUUID() : [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
const CONNECTION_TEXT = { connecting: t("Connecting…"), online: t("Connected"), reconnecting: t("Reconnecting…"), offline: t("Offline") };
const DONE_TEXT = { complete: t("Reply finished."), cancelled: t("Reply stopped."), interrupted: t("Reply interrupted."), failed: t("Reply failed.") };

const QUIET_CHECK_MS = 5000;
const QUIET_REPLY_MS = 15000;

class Chat {
  constructor(page) {
    this.urls = page.urls;
    this.conversation = page.conversation;
    this.views = [];
    this.byId = new Map();
    this.pending = new Map(); // client_id → {kind, frame, content, view}: sent, not yet accepted or refused
    this.awaitingSnapshot = false;
    this.activeReplyId = null; // the conversation's running reply, shown or on another branch
    this.resyncing = false;
    this.resyncAgain = false;
    this.connectedBefore = false;
    // A running reply that goes quiet may have lost its `done` frame: ask for a snapshot.
    this.lastFrameAt = performance.now();
    setInterval(() => this.checkQuietReply(), QUIET_CHECK_MS);
    this.el = {
      messages: $("messages"),
      empty: $("empty-chat"),
      title: $("conversation-title"),
      connection: $("connection"),
      form: $("composer"),
      input: $("composer-input"),
      send: $("send-button"),
      stop: $("stop-button"),
      error: $("composer-error"),
      model: $("model-select"),
      prompt: $("system-prompt"),
      promptSave: $("system-prompt-save"),
      promptStatus: $("system-prompt-status"),
      parametersForm: $("parameters-form"),
      parametersReset: $("parameters-reset"),
      announcer: $("announcer"),
      status: $("composer-status"),
      hint: $("composer-hint"),
    };
    this.scroller = new Scroller(this.el.messages, $("jump-latest"));
    this.parameters = new ParameterSettings({ models: page.models, fields: $("parameters-fields"), status: $("parameters-status") });
    this.parameters.show(this.el.model.value, this.conversation?.parameters);
    this.messageActions = {
      regenerate: (view, model) => this.startAction("regenerate", { message: view.id, ...(model ? { model } : {}) }),
      retry: (view) => this.startAction("retry", { message: view.id }),
      continue: () => this.startAction("continue"),
      edit: (view) => view.startEdit((content) => this.startAction("edit", { content, message: view.id }, view)),
      copy: (view) => this.copy(view.data.content),
      feedback: (view) => this.feedbackControls(view),
      switchTo: (messageId) => this.switchTo(messageId),
      models: () => [...this.el.model.options].filter((option) => option.value).map((option) => ({ value: option.value, label: option.textContent })),
    };
    this.sidebar = new Sidebar({
      urls: this.urls,
      currentId: this.conversation?.id,
      next: page.sidebar_next,
      onDeleted: (id) => this.conversationDeleted(id),
    });
    this.connection = new Connection(this.urls.websocket, {
      onFrame: (frame) => this.onFrame(frame),
      onState: (state, detail) => this.showConnection(state, detail),
    });
    this.imports = new Imports({ urls: this.urls, onImported: () => this.sidebar.refresh() });
    this.shares = new Shares({ urls: this.urls, conversationId: this.conversation?.id });
    this.search = new Search({ urls: this.urls, openSidebar: () => this.sidebar.reveal() });
    this.tray = new AttachmentTray({
      urls: this.urls,
      tray: $("composer-files"),
      button: $("attach-button"),
      input: $("attach-input"),
      dropZone: this.el.form,
      composer: this.el.form,
      ensureConversation: async () => (this.conversation || (await this.createConversation()) ? this.conversation.id : null),
      onChange: () => this.updateComposer(),
      showError: (message) => this.showError(message),
    });
    this.tray.restore(this.conversation?.id).catch(() => {});
    this.shortcuts = new Shortcuts({ chat: this, sidebar: this.sidebar });
    this.bind();
    this.replaceAll(page.messages);
    // A conversation opens at its latest message, unless a search result asked for another one.
    if (!revealFoundMessage(this.el.messages)) {
      this.scroller.toLatest();
      // A keyboard user starts typing at once; a phone would pop its keyboard up over the chat.
      if (!touchKeyboard()) this.focusComposer();
    }
    this.connection.start();
  }

  // --- Page wiring -------------------------------------------------------------------------

  bind() {
    const { form, input, stop, messages, model, promptSave } = this.el;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !touchKeyboard()) {
        event.preventDefault();
        this.send();
      }
    });
    if (touchKeyboard()) this.el.hint.textContent = this.el.hint.dataset.touch;
    input.addEventListener("input", () => this.fitComposer());
    stop.addEventListener("click", () => this.stop());
    messages.addEventListener("click", (event) => {
      const copy = event.target.closest(".copy-code");
      if (copy) this.copy(copy.parentElement.querySelector("code").textContent, copy);
    });
    model.addEventListener("change", () => {
      this.parameters.show(model.value, this.conversation?.parameters);
      this.saveSettings({ model: model.value });
    });
    this.el.parametersForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.saveParameters(this.parameters.values());
    });
    this.el.parametersReset.addEventListener("click", () => {
      const cleared = this.parameters.values() ?? {};
      for (const name of Object.keys(cleared)) cleared[name] = null;
      this.saveParameters(cleared);
    });
    promptSave.addEventListener("click", () => this.saveSettings({ system_prompt: this.el.prompt.value }));
    // Follow the newest text while the reader stays at the bottom (scroll.js).
    setRenderHooks(
      () => null,
      () => this.scroller.settle(),
    );
  }

  fitComposer() {
    const input = this.el.input;
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight + 2, window.innerHeight * 0.4)}px`;
  }

  showConnection(state, detail) {
    const el = this.el.connection;
    el.dataset.state = state;
    let text = CONNECTION_TEXT[state];
    if (state === "reconnecting" && typeof detail === "number") text = tf("Reconnecting in %(seconds)s s…", { seconds: Math.ceil(detail / 1000) });
    if (state === "offline" && detail) text = detail;
    el.textContent = text;
    this.updateComposer();
  }

  announce(text) {
    this.el.announcer.textContent = text;
  }

  showError(message) {
    this.el.error.textContent = message;
    this.el.error.hidden = false;
  }

  hideError() {
    this.el.error.hidden = true;
  }

  /** A short, polite note under the composer (why Enter did nothing, say); empty clears it. */
  showStatus(text) {
    this.el.status.textContent = text;
  }

  async copy(text, button) {
    try {
      await navigator.clipboard.writeText(text);
      this.announce(t("Copied to the clipboard."));
      if (button) {
        button.textContent = t("Copied");
        setTimeout(() => (button.textContent = t("Copy")), 1500);
      }
    } catch {
      this.announce(t("Copying is not allowed here: select the text instead."));
    }
  }

  // --- State of the conversation --------------------------------------------------------------

  get running() {
    return this.activeReplyId !== null || this.views.some((view) => view.role === "assistant" && view.active);
  }

  get busy() {
    return this.running || this.creating || this.pending.size > 0;
  }

  updateComposer() {
    const running = this.running;
    if (!this.busy) this.showStatus("");
    this.el.send.hidden = running;
    this.el.stop.hidden = !running;
    this.el.send.disabled = this.busy || !this.el.model.value || Boolean(this.tray?.uploading);
    this.el.form.setAttribute("aria-busy", String(this.busy));
  }

  /** Tell each message where it stands: its buttons depend on it. */
  refreshPlaces() {
    const busy = this.busy;
    const last = this.views.at(-1);
    for (const view of this.views) {
      view.setPlace({ lastReply: view === last && view.role === "assistant", busy });
    }
    this.el.empty.hidden = this.views.length > 0;
    this.updateComposer();
  }

  appendView(payload) {
    const view = new MessageView(payload, this.messageActions);
    this.views.push(view);
    this.byId.set(view.id, view);
    this.el.messages.append(view.el);
    return view;
  }

  removeFrom(index) {
    for (const view of this.views.splice(index)) {
      view.el.remove();
      this.byId.delete(view.id);
    }
  }

  /** Show this history, keeping the views (and any newer live text) of messages already shown. */
  replaceAll(payloads) {
    const old = this.byId;
    this.views = payloads.map((payload) => {
      const view = old.get(payload.id);
      if (!view) return new MessageView(payload, this.messageActions);
      old.delete(payload.id);
      const ahead = view.active && view.covers(payload);
      if (!ahead) view.replaceParts(payload); // a no-op when nothing changed
      view.update(ahead ? { ...payload, seq: view.data.seq } : payload);
      return view;
    });
    for (const view of old.values()) view.el.remove();
    this.byId = new Map(this.views.map((view) => [view.id, view]));
    this.el.messages.append(...this.views.map((view) => view.el));
    this.refreshPlaces();
  }

  /** Note whether this reply runs: it may be on a branch we do not show. */
  trackActive(payload) {
    if (payload.role !== "assistant") return;
    if (payload.status === "pending" || payload.status === "streaming") this.activeReplyId = payload.id;
    else if (this.activeReplyId === payload.id) this.activeReplyId = null;
  }

  /** A new or changed message from a `message` or `accepted` frame: a new one ends the path, under its parent. */
  receiveMessage(payload) {
    this.trackActive(payload);
    const known = this.byId.get(payload.id);
    if (known) {
      known.update(payload);
      if (!known.parts.length && payload.parts?.length) known.replaceParts(payload);
      return this.refreshPlaces();
    }
    const parentIndex = payload.parent == null ? -1 : this.views.findIndex((view) => view.id === payload.parent);
    // Its parent is not on the path we show (we missed a switch): read the path again.
    if (payload.parent != null && parentIndex < 0) return this.resync();
    this.removeFrom(parentIndex + 1);
    this.appendView(payload);
    this.refreshPlaces();
  }

  /** Read the conversation's history again, then subscribe for a snapshot of its latest reply. */
  async resync() {
    if (!this.conversation) return;
    if (this.resyncing) {
      this.resyncAgain = true;
      return;
    }
    this.resyncing = true;
    try {
      const data = await api("GET", urlFor(this.urls.conversation_api, this.conversation.id));
      this.replaceAll(data.messages);
      this.on_conversation({ conversation: data.conversation });
    } catch (error) {
      if (error.code === "not_found") return this.conversationDeleted(this.conversation.id);
      this.showError(error.message);
    } finally {
      this.resyncing = false;
    }
    if (this.resyncAgain) {
      this.resyncAgain = false;
      return this.resync();
    }
    this.subscribe(false);
  }

  subscribe(resume, withPath = false) {
    if (!this.conversation) return;
    const frame = { type: "subscribe", conversation: this.conversation.id };
    if (withPath) frame.path = true;
    const last = this.views.at(-1);
    if (resume && last?.role === "assistant" && last.active && last.data.seq > 0) {
      frame.after = { message: last.id, seq: last.data.seq };
    }
    this.awaitingSnapshot = !frame.after;
    this.connection.send(frame);
  }

  checkQuietReply() {
    const last = this.views.at(-1);
    const quiet = performance.now() - this.lastFrameAt > QUIET_REPLY_MS;
    if (quiet && last?.role === "assistant" && last.active) {
      this.lastFrameAt = performance.now();
      this.requestSnapshot();
    }
  }

  requestSnapshot() {
    if (this.awaitingSnapshot) return;
    this.subscribe(false);
  }

  // --- Frames from the server -----------------------------------------------------------------

  onFrame(frame) {
    if (this.isCurrent(frame)) this.lastFrameAt = performance.now();
    const handler = this[`on_${frame.type}`];
    if (handler) handler.call(this, frame);
  }

  isCurrent(frame) {
    return this.conversation && frame.conversation === this.conversation.id;
  }

  on_hello() {
    this.subscribe(this.connectedBefore, true);
    for (const { frame } of this.pending.values()) this.connection.send(frame); // same client_id: never twice
    if (this.connectedBefore) this.sidebar.refresh().catch(() => {});
    this.connectedBefore = true;
  }

  on_accepted(frame) {
    const action = this.pending.get(frame.client_id);
    if (!action) return;
    this.pending.delete(frame.client_id);
    if (action.kind === "send" && this.el.input.value === action.content) {
      this.el.input.value = "";
      this.fitComposer();
    }
    if (action.kind === "send" && action.frame.attachments) this.tray.sent(action.frame.attachments);
    if (!this.isCurrent(frame)) return;
    if (frame.user_message) this.receiveMessage(frame.user_message);
    this.receiveMessage(frame.message);
    this.scroller.revealOwn(); // what the reader just asked for, and the reply under it
  }

  on_message(frame) {
    if (this.isCurrent(frame)) this.receiveMessage(frame.message);
  }

  on_start(frame) {
    const view = this.isCurrent(frame) && this.byId.get(frame.message);
    if (view && view.data.status === "pending") view.update({ status: "streaming", model: frame.model });
  }

  /** A frame about a reply we do not show: fine if it runs on another branch, else we lost track. */
  offPath(messageId) {
    if (messageId !== this.activeReplyId) this.resync();
  }

  on_delta(frame) {
    if (!this.isCurrent(frame)) return;
    const view = this.byId.get(frame.message);
    if (!view) return this.offPath(frame.message);
    if (!view.applyDelta(frame)) this.requestSnapshot();
  }

  on_done(frame) {
    if (!this.isCurrent(frame)) return;
    const payload = frame.message;
    const view = this.byId.get(payload.id);
    const wasActive = payload.id === this.activeReplyId;
    this.trackActive(payload);
    if (!view) {
      if (wasActive) return this.refreshPlaces(); // it ran on another branch
      return this.resync();
    }
    view.update(payload);
    if (!view.matchesFinal(payload)) this.requestSnapshot();
    this.refreshPlaces();
    const failure = payload.status === "failed" && payload.error ? ` ${payload.error.message}` : "";
    this.announce((DONE_TEXT[payload.status] ?? "") + failure);
  }

  on_snapshot(frame) {
    if (!this.isCurrent(frame)) return;
    this.awaitingSnapshot = false;
    const payload = frame.message;
    if (!payload) return;
    this.trackActive(payload);
    const view = this.byId.get(payload.id);
    if (!view) {
      if (payload.id === this.activeReplyId) return this.refreshPlaces(); // running on another branch
      return this.resync();
    }
    view.replaceParts(payload);
    view.update(payload);
    this.refreshPlaces();
  }

  on_path(frame) {
    if (!this.isCurrent(frame)) return;
    for (const payload of frame.messages) this.trackActive(payload);
    this.replaceAll(frame.messages);
  }

  on_conversation({ conversation }) {
    this.sidebar.upsert(conversation);
    if (!this.isCurrent({ conversation: conversation.id })) return;
    Object.assign(this.conversation, conversation);
    const title = conversation.title || t("New chat");
    this.el.title.textContent = title;
    document.title = `${title} · ${t("Chat")}`;
    if (document.activeElement !== this.el.model && conversation.model) this.el.model.value = conversation.model;
    if (!this.el.parametersForm.contains(document.activeElement)) this.parameters.refresh(this.el.model.value, conversation.parameters);
  }

  on_conversation_deleted(frame) {
    this.sidebar.remove(frame.conversation);
    this.conversationDeleted(frame.conversation);
  }

  on_error(frame) {
    const action = frame.ref && this.pending.get(frame.ref);
    if (action) {
      this.pending.delete(frame.ref);
      if (action.view) action.view.editFailed(frame.message);
      else this.showError(frame.message);
      this.refreshPlaces();
      return;
    }
    if (frame.code === "not_running") return;
    this.showError(frame.message);
  }

  // --- What the person does -------------------------------------------------------------------

  async send() {
    const content = this.el.input.value;
    const attachments = this.tray.ids();
    if (!content.trim() && !attachments.length) return;
    if (this.busy) {
      this.showStatus(
        this.running ? t("A reply is being written: wait for it to finish, or press Esc to stop it.") : t("Sending… one moment."),
      );
      return;
    }
    if (this.tray.uploading) {
      this.showStatus(t("Files are still uploading: send once they are done."));
      return;
    }
    if (!this.conversation && !(await this.createConversation())) return;
    this.startAction("send", attachments.length ? { content, attachments } : { content });
  }

  /** Start a send, edit, regenerate, retry or continue. Sent again after a reconnect until answered. */
  startAction(kind, fields = {}, view = null) {
    const clientId = newClientId();
    const frame = { type: kind, conversation: this.conversation.id, client_id: clientId, ...fields };
    this.pending.set(clientId, { kind, frame, content: fields.content, view });
    this.hideError();
    this.connection.send(frame);
    this.refreshPlaces();
    // The button pressed (Regenerate, Continue, Retry) is gone with the new reply: keep the focus.
    if (kind !== "edit" && kind !== "send") this.keepFocus();
  }

  /** A reply's thumbs and comment, made once per message view and kept up to date by `feedback` frames. */
  feedbackControls(view) {
    view.feedback ??= new FeedbackControls({
      send: (rating, comment) => {
        const frame = { type: "feedback", conversation: this.conversation.id, message: view.id, rating, comment };
        const sent = this.connection.send(frame);
        if (!sent) this.showError(t("Not connected: rate the reply again once the connection is back."));
        return sent;
      },
    });
    view.feedback.update(view.data.feedback);
    return view.feedback.element;
  }

  on_feedback(frame) {
    const view = this.byId.get(frame.message);
    if (!view) return;
    view.data.feedback = frame.feedback;
    view.feedback?.update(frame.feedback);
    this.announce(frame.feedback ? t("Feedback saved.") : t("Rating removed."));
  }

  /** Show the branch through this message (a sibling's "‹ ›"); the `path` frame that answers redraws. */
  switchTo(messageId) {
    if (!this.connection.send({ type: "switch", conversation: this.conversation.id, message: messageId })) {
      this.showError(t("Not connected: another version can be shown once the connection is back."));
    }
  }

  stop() {
    if (!this.conversation) return;
    if (!this.connection.send({ type: "cancel", conversation: this.conversation.id })) {
      this.showError(t("Not connected: the reply cannot be stopped until the connection is back."));
    }
    this.keepFocus(); // the Stop button hides: the focus must not fall to the page
  }

  /** Where the focus goes when the button that had it disappears: the message box, or on a touch
   * screen the message list (focusing the box there would pop the keyboard up). */
  keepFocus() {
    if (touchKeyboard()) this.el.messages.focus({ preventScroll: true });
    else this.focusComposer();
  }

  // --- Shortcuts (keys.js) ----------------------------------------------------------------------

  focusComposer() {
    this.el.input.focus({ preventScroll: true });
  }

  newChat() {
    location.assign(this.urls.home);
  }

  lastReply() {
    return this.views.findLast((view) => view.role === "assistant");
  }

  regenerateLast() {
    const reply = this.lastReply();
    if (!reply || this.busy || reply.active) return this.showStatus(t("There is no reply to regenerate now."));
    this.startAction("regenerate", { message: reply.id });
  }

  copyLast() {
    const reply = this.lastReply();
    if (reply?.data.content) this.copy(reply.data.content);
    else this.announce(t("There is no reply to copy yet."));
  }

  canEditLast() {
    return !this.busy && this.views.some((view) => view.role === "user");
  }

  editLast() {
    const message = this.views.findLast((view) => view.role === "user");
    if (message) this.messageActions.edit(message);
  }

  async createConversation() {
    this.creating = true;
    this.updateComposer();
    try {
      const conversation = await api("POST", this.urls.conversations, {
        model: this.el.model.value,
        system_prompt: this.el.prompt.value,
        parameters: this.parameters.values() ?? {},
      });
      this.conversation = conversation;
      history.replaceState(null, "", urlFor(this.urls.conversation_page, conversation.id));
      this.sidebar.setCurrent(conversation.id);
      this.shares.setConversation(conversation.id);
      this.on_conversation({ conversation });
      this.subscribe(false);
      return true;
    } catch (error) {
      this.showError(error.message);
      return false;
    } finally {
      this.creating = false;
      this.updateComposer();
    }
  }

  async saveSettings(fields) {
    const status = this.el.promptStatus;
    if (!this.conversation) {
      status.textContent = t("Used for this new chat.");
      return;
    }
    try {
      this.on_conversation({ conversation: await api("PATCH", urlFor(this.urls.conversation_api, this.conversation.id), fields) });
      status.textContent = t("Saved.");
      this.announce("model" in fields ? t("Model changed.") : t("System prompt saved."));
    } catch (error) {
      this.showError(error.message);
    }
  }

  async saveParameters(parameters) {
    if (parameters === null) return; // a field is invalid: `values` said which
    const status = this.parameters.status;
    if (!this.conversation) {
      this.parameters.show(this.el.model.value, parameters);
      status.textContent = t("Used for this new chat.");
      return;
    }
    try {
      const url = urlFor(this.urls.conversation_api, this.conversation.id);
      const conversation = await api("PATCH", url, { parameters });
      this.parameters.show(this.el.model.value, conversation.parameters);
      this.on_conversation({ conversation });
      status.textContent = t("Saved.");
      this.announce(t("Parameters saved."));
    } catch (error) {
      if (error.code === "invalid_parameter") this.parameters.invalid(error.field, error.message);
      else this.showError(error.message);
    }
  }

  conversationDeleted(id) {
    if (this.conversation?.id === id) location.assign(this.urls.home);
  }
}

const page = JSON.parse(document.getElementById("page-data").textContent);
new Chat(page);
