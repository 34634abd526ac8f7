// One message on the page: its data (as the protocol sends it) and its DOM. Text is applied as
// frames arrive; the DOM is redrawn at most once per animation frame (scheduleRender).

import { MarkdownView } from "./markdown.js";

const ACTIVE = new Set(["pending", "streaming"]);
const STATE_LABELS = {
  cancelled: "Stopped. The text so far is kept.",
  interrupted: "Interrupted: the reply was cut off. The text so far is kept.",
};

// --- Rendering at most once per animation frame ---------------------------------------------

const dirty = new Set();
let scheduled = false;
let hooks = { before: () => null, after: () => {} };

/** `before()` runs ahead of each batch of redraws and its result is passed to `after()`. */
export function setRenderHooks(before, after) {
  hooks = { before, after };
}

export function scheduleRender(view) {
  dirty.add(view);
  if (scheduled) return;
  scheduled = true;
  // Hidden tabs get no animation frames; they still keep up, less often.
  if (document.visibilityState === "hidden") setTimeout(flush, 250);
  else requestAnimationFrame(flush);
}

function flush() {
  scheduled = false;
  const views = [...dirty];
  dirty.clear();
  const state = hooks.before();
  for (const view of views) view.render();
  hooks.after(state);
}

// --- Formatting ------------------------------------------------------------------------------

const seconds = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`);

function metric(name, text, live) {
  const span = document.createElement("span");
  span.dataset.metric = name;
  span.textContent = text;
  if (live) span.classList.add("live");
  return span;
}

function button(label, onClick, className = "") {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  if (className) element.className = className;
  element.addEventListener("click", onClick);
  return element;
}

// --- The message ---------------------------------------------------------------------------

export class MessageView {
  /** `actions`: {regenerate, retry, continue, edit, copy}(view), called from the message's buttons. */
  constructor(payload, actions) {
    this.actions = actions;
    this.data = { ...payload, content: payload.content ?? "" };
    this.length = payload.length ?? [...this.data.content].length;
    this.seenAt = performance.now();
    this.firstTokenAt = this.data.content ? this.seenAt : null;
    this.editing = false;
    this.chromeKey = null;
    this.build();
    this.contentDirty = true;
    this.render();
  }

  get id() {
    return this.data.id;
  }

  get role() {
    return this.data.role;
  }

  get active() {
    return ACTIVE.has(this.data.status);
  }

  build() {
    const article = document.createElement("article");
    article.className = `msg ${this.role}`;
    article.dataset.id = this.id;
    const label = document.createElement("h2");
    label.className = "visually-hidden";
    label.textContent = this.role === "user" ? "You said:" : "Assistant replied:";
    this.body = document.createElement("div");
    this.body.className = "msg-body";
    this.state = document.createElement("p");
    this.state.className = "msg-state";
    this.error = document.createElement("div");
    this.error.className = "msg-error";
    this.error.setAttribute("role", "alert");
    this.meta = document.createElement("footer");
    this.meta.className = "msg-meta";
    this.meta.setAttribute("aria-label", "Reply statistics");
    this.buttons = document.createElement("div");
    this.buttons.className = "msg-actions";
    article.append(label, this.body, this.state, this.error, this.meta, this.buttons);
    if (this.role === "assistant") {
      this.markdown = new MarkdownView(this.body);
      this.body.setAttribute("aria-live", "polite");
      this.cursor = document.createElement("span");
      this.cursor.className = "cursor";
      this.cursor.setAttribute("aria-hidden", "true");
    }
    this.el = article;
  }

  /** Take the metadata of a payload (message, done or snapshot frame); content only via setContent. */
  update(payload) {
    const { content, length, ...rest } = payload;
    Object.assign(this.data, rest);
    this.chromeKey = null;
    scheduleRender(this);
  }

  /** Replace the whole text (a snapshot or the page's history). */
  setContent(content, length) {
    this.data.content = content;
    this.length = length ?? [...content].length;
    if (content && this.firstTokenAt === null) this.firstTokenAt = performance.now();
    this.markdown?.reset();
    this.contentDirty = true;
    scheduleRender(this);
  }

  /**
   * Apply a delta frame: append what is new, drop what is already here. Returns false on a gap
   * (the frame starts after the end of our text): the caller asks for a snapshot.
   */
  applyDelta(frame) {
    if (frame.offset > this.length) return false;
    const points = [...frame.text];
    const overlap = this.length - frame.offset;
    if (overlap < points.length) {
      this.data.content += overlap > 0 ? points.slice(overlap).join("") : frame.text;
      this.length += points.length - overlap;
      this.contentDirty = true;
      if (this.firstTokenAt === null) {
        this.firstTokenAt = performance.now();
        this.sawFirstToken = true; // we watched it arrive, so the wait is ours to report
      }
    }
    this.data.seq = Math.max(this.data.seq ?? 0, frame.seq);
    if (this.data.status === "pending") this.data.status = "streaming";
    scheduleRender(this);
    return true;
  }

  /** Where the chrome (buttons) depends on the message's place: the last reply, the last question. */
  setPlace({ lastReply, lastQuestion, busy }) {
    const place = `${lastReply}|${lastQuestion}|${busy}`;
    if (place === this.place) return;
    this.place = place;
    this.placeInfo = { lastReply, lastQuestion, busy };
    this.chromeKey = null;
    scheduleRender(this);
  }

  render() {
    this.el.dataset.status = this.data.status;
    if (this.role === "user") this.renderUserBody();
    else this.renderReplyBody();
    this.renderMeta();
    this.renderChrome();
  }

  renderUserBody() {
    if (this.editing || !this.contentDirty) return;
    this.body.textContent = this.data.content;
    this.contentDirty = false;
  }

  renderReplyBody() {
    const active = this.active;
    this.body.setAttribute("aria-busy", String(active));
    if (active) {
      if (this.contentDirty || !this.cursor.isConnected) this.markdown.renderStreaming(this.data.content, this.cursor);
    } else if (this.contentDirty || !this.markdown.final) {
      this.cursor.remove();
      this.markdown.renderFinal(this.data.content);
    }
    this.contentDirty = false;
  }

  renderMeta() {
    if (this.role !== "assistant") return;
    const d = this.data;
    const parts = [];
    if (d.model) parts.push(metric("model", d.model));
    if (this.active) {
      const now = performance.now();
      if (this.firstTokenAt !== null) {
        const tokens = Math.ceil(this.data.content.length / 4);
        const elapsed = (now - this.firstTokenAt) / 1000;
        if (this.sawFirstToken) parts.push(metric("ttft", `first token ${seconds(this.firstTokenAt - this.seenAt)}`, true));
        if (elapsed > 0.2) parts.push(metric("tps", `≈${(tokens / elapsed).toFixed(1)} tok/s`, true));
        parts.push(metric("tokens", `≈${tokens} tokens so far`, true));
      } else {
        parts.push(metric("waiting", "waiting for the first token…", true));
      }
    } else {
      if (d.time_to_first_token_ms != null) parts.push(metric("ttft", `first token ${seconds(d.time_to_first_token_ms)}`));
      if (d.tokens_per_second != null) parts.push(metric("tps", `${d.tokens_per_second} tok/s`));
      const usage = d.usage ?? {};
      if (usage.output_tokens != null) {
        const estimated = usage.estimated ? " (estimated)" : "";
        parts.push(metric("tokens", `${usage.input_tokens ?? "?"} in · ${usage.output_tokens} out tokens${estimated}`));
      }
      if (d.duration_ms != null) parts.push(metric("duration", `${seconds(d.duration_ms)} total`));
    }
    this.meta.replaceChildren(...parts);
  }

  renderChrome() {
    const key = `${this.data.status}|${this.place}|${this.editing}|${this.data.error?.message}`;
    if (key === this.chromeKey) return;
    this.chromeKey = key;
    const { lastReply = false, lastQuestion = false, busy = false } = this.placeInfo ?? {};
    const status = this.data.status;
    const label = STATE_LABELS[status];
    this.state.hidden = !label;
    this.state.textContent = label ?? "";
    this.renderError(lastReply && !busy);
    const buttons = [];
    if (this.role === "assistant" && !this.active) {
      if (this.data.content) buttons.push(button("Copy", () => this.actions.copy(this), "copy-message"));
      if (lastReply && !busy && this.data.content && (status === "cancelled" || status === "interrupted")) {
        buttons.push(button("Continue", () => this.actions.continue(this), "continue"));
      }
      if (lastReply && !busy && status !== "failed") buttons.push(button("Regenerate", () => this.actions.regenerate(this), "regenerate"));
    }
    if (this.role === "user" && lastQuestion && !busy && !this.editing) {
      buttons.push(button("Edit", () => this.actions.edit(this), "edit"));
    }
    this.buttons.replaceChildren(...buttons);
    this.buttons.hidden = buttons.length === 0;
  }

  renderError(canRetry) {
    const error = this.data.status === "failed" ? this.data.error ?? { message: "The reply failed." } : null;
    this.error.hidden = !error;
    if (!error) return this.error.replaceChildren();
    const text = document.createElement("span");
    text.className = "msg-error-text";
    const strong = document.createElement("strong");
    strong.textContent = "Reply failed: ";
    text.append(strong, error.message || "unknown error");
    if (error.code) text.append(` (${error.code})`);
    const parts = [text];
    if (canRetry) parts.push(button("Retry", () => this.actions.retry(this), "retry primary small"));
    this.error.replaceChildren(...parts);
  }

  /** Swap the text for an editor; `submit(text)` sends it, Escape or Cancel gives up. */
  startEdit(submit) {
    this.editing = true;
    const form = document.createElement("form");
    form.className = "msg-edit";
    const label = document.createElement("label");
    label.className = "visually-hidden";
    label.textContent = "Edit your message";
    const input = document.createElement("textarea");
    input.value = this.data.content;
    input.id = `edit-${this.id}`;
    label.htmlFor = input.id;
    const error = document.createElement("p");
    error.className = "composer-error";
    error.setAttribute("role", "alert");
    error.hidden = true;
    const row = document.createElement("div");
    row.className = "dialog-buttons";
    const cancel = button("Cancel", () => this.stopEdit(), "secondary");
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "primary";
    save.textContent = "Save and send";
    row.append(cancel, save);
    form.append(label, input, error, row);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (input.value.trim()) submit(input.value);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.stopEdit();
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) form.requestSubmit();
    });
    this.editForm = { form, input, error, save };
    this.body.replaceChildren(form);
    this.chromeKey = null;
    this.render();
    input.focus();
  }

  editFailed(message) {
    if (!this.editForm) return;
    this.editForm.error.hidden = false;
    this.editForm.error.textContent = message;
    this.editForm.save.disabled = false;
  }

  stopEdit() {
    this.editing = false;
    this.editForm = null;
    this.contentDirty = true;
    this.chromeKey = null;
    this.render();
    this.buttons.querySelector("button.edit")?.focus();
  }
}
