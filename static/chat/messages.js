// One message on the page: its data (as the protocol sends it) and its DOM. Text is applied as
// frames arrive; the DOM is redrawn at most once per animation frame (scheduleRender).
//
// A reply is a list of parts (protocol 2, docs/protocol.md): a thinking model's `reasoning`, then the
// answer `text`. Each part keeps its own text and code-point length, and every delta is placed by
// its `part` and `offset` within that part. The reasoning is shown in a collapsed "Thinking" block
// above the answer; the answer (every text part, joined) is `data.content`, as in protocol 1.
//
// A message with siblings (its edits, or its regenerations) shows "‹ 2/3 ›": each arrow asks for the
// branch through the sibling next to it. Every user message can be edited and every reply regenerated
// (with the model picked beside the button); the server answers with the new branch.

import { renderFiles } from "./attachments.js";
import { MarkdownView } from "./markdown.js";

const t = (s) => (window.gettext ? window.gettext(s) : s);
// A translated text with %(name)s placeholders filled in.
const tf = (s, values) => t(s).replace(/%\((\w+)\)s/g, (_, name) => values[name]);

const ACTIVE = new Set(["pending", "streaming"]);
const TICK_MS = 500; // how often the "Thinking… N s" counter is brought up to date

const codePoints = (text) => [...text].length;
const answerOf = (parts) => parts.filter((part) => part.kind === "text").map((part) => part.text).join("");
const reasoningOf = (parts) => parts.filter((part) => part.kind === "reasoning").map((part) => part.text).join("\n\n");

/** The parts of a payload that has their text (message, accepted, snapshot, history; not `done`). */
export function partsOf(payload) {
  if (Array.isArray(payload.parts)) {
    return payload.parts.map(({ kind, text = "", length, duration_ms = null }) => ({
      kind,
      text,
      length: length ?? codePoints(text),
      durationMs: duration_ms,
    }));
  }
  // A protocol-1 payload: its content is the whole reply.
  const content = payload.content ?? "";
  return content ? [{ kind: "text", text: content, length: payload.length ?? codePoints(content) }] : [];
}
const STATE_LABELS = {
  cancelled: t("Stopped. The text so far is kept."),
  interrupted: t("Interrupted: the reply was cut off. The text so far is kept."),
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
  /** `actions`: {regenerate(view, model), retry, continue, edit, copy}(view), called from the message's
   * buttons; `switchTo(messageId)` from the sibling arrows; `models()` lists the models to pick from. */
  constructor(payload, actions) {
    this.actions = actions;
    const { content, length, parts, ...rest } = payload;
    this.data = { ...rest, content: "" };
    this.parts = [];
    this.seenAt = performance.now();
    this.firstTokenAt = null;
    // When the reply began streaming, by the server's clock (`elapsed_ms`), for a tab that joined late.
    this.serverStart = null;
    // When we saw the reasoning begin and end; null when we did not see it (a reload): no duration then.
    this.thoughtStart = null;
    this.thoughtEnd = null;
    this.ticker = null;
    this.editing = false;
    this.chromeKey = null;
    this.build();
    this.replaceParts(payload);
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

  /** The answer's length in code points (every text part). */
  get length() {
    return codePoints(this.data.content);
  }

  get hasReasoning() {
    return this.parts.some((part) => part.kind === "reasoning");
  }

  /** The reasoning is being written: the reply runs and its last part is reasoning. */
  get thinking() {
    return this.active && this.parts.at(-1)?.kind === "reasoning";
  }

  build() {
    const article = document.createElement("article");
    article.className = `msg ${this.role}`;
    article.dataset.id = this.id;
    const label = document.createElement("h2");
    label.className = "visually-hidden";
    label.textContent = this.role === "user" ? t("You said:") : t("Assistant replied:");
    this.body = document.createElement("div");
    this.body.className = "msg-body";
    this.state = document.createElement("p");
    this.state.className = "msg-state";
    this.error = document.createElement("div");
    this.error.className = "msg-error";
    this.error.setAttribute("role", "alert");
    this.meta = document.createElement("footer");
    this.meta.className = "msg-meta";
    if (this.role === "assistant") {
      // A footer in an article has no role of its own: a named group may carry the label.
      this.meta.setAttribute("role", "group");
      this.meta.setAttribute("aria-label", t("Reply statistics"));
    }
    this.buttons = document.createElement("div");
    this.buttons.className = "msg-actions";
    article.append(label);
    if (this.role === "assistant") {
      // Built once and never replaced, so whether the reader opened it survives every update.
      this.thoughts = document.createElement("details");
      this.thoughts.className = "msg-thinking";
      this.thoughts.hidden = true;
      const summary = document.createElement("summary");
      this.thoughtsLabel = document.createElement("span");
      this.thoughtsLabel.className = "thinking-label";
      summary.append(this.thoughtsLabel);
      this.thoughtsBody = document.createElement("div");
      this.thoughtsBody.className = "thinking-body";
      this.thoughts.append(summary, this.thoughtsBody);
      this.reasoningMarkdown = new MarkdownView(this.thoughtsBody);
      article.append(this.thoughts);
    }
    article.append(this.body);
    if (this.role === "user") {
      this.files = document.createElement("div");
      this.files.className = "msg-files";
      this.files.hidden = true;
      article.append(this.files);
    }
    article.append(this.state, this.error, this.meta, this.buttons);
    if (this.role === "assistant") {
      this.markdown = new MarkdownView(this.body);
      this.body.setAttribute("aria-live", "polite");
      this.cursor = document.createElement("span");
      this.cursor.className = "cursor";
      this.cursor.setAttribute("aria-hidden", "true");
    }
    this.el = article;
  }

  /** Take the metadata of a payload (message, done or snapshot frame); text only via replaceParts. */
  update(payload) {
    const { content, length, parts, ...rest } = payload;
    if (Array.isArray(parts)) {
      this.noteUnseenAnswer(parts);
      // `done` says how long each part took (the server's clock, the same in every tab).
      parts.forEach((part, i) => {
        if (this.parts[i]?.kind === part.kind && part.duration_ms != null) this.parts[i].durationMs = part.duration_ms;
      });
    }
    Object.assign(this.data, rest);
    this.noteElapsed(payload);
    this.endThought();
    this.chromeKey = null;
    scheduleRender(this);
  }

  /** A payload of a running reply says how long it has streamed (the server's clock): the live speed
   * of a reply we did not watch from its first token is measured from that, not from our joining. */
  noteElapsed(payload) {
    if (payload.elapsed_ms == null || this.sawFirstToken) return;
    this.serverStart = performance.now() - payload.elapsed_ms;
  }

  /** Replace every part with the payload's (a snapshot or the page's history). */
  replaceParts(payload) {
    const parts = partsOf(payload);
    this.noteUnseenAnswer(parts);
    const reasoning = reasoningOf(parts);
    const content = answerOf(parts);
    if (reasoning !== reasoningOf(this.parts)) {
      this.resetReasoning = true;
      this.reasoningDirty = true;
    }
    if (content !== this.data.content) {
      this.resetContent = true;
      this.contentDirty = true;
    }
    this.parts = parts;
    this.data.content = content;
    if (parts.length && this.firstTokenAt === null) this.firstTokenAt = performance.now();
    this.noteElapsed(payload);
    this.endThought();
    scheduleRender(this);
  }

  /**
   * Apply a delta frame to its part: append what is new, drop what is already here. Returns false
   * when the frame does not fit what we have (a gap: it starts after the end of its part, or opens a
   * part past the next one): the caller asks for a snapshot.
   */
  applyDelta(frame) {
    // A protocol-1 delta has no part: it extends the reply's only (text) part.
    const kind = frame.kind ?? "text";
    const index = frame.part ?? Math.max(0, this.parts.findIndex((part) => part.kind === "text"));
    const opens = index === this.parts.length;
    if (index > this.parts.length || (opens && frame.offset !== 0)) return false;
    const part = opens ? { kind, text: "", length: 0 } : this.parts[index];
    if (part.kind !== kind || frame.offset > part.length) return false;
    const points = [...frame.text];
    const overlap = part.length - frame.offset;
    if (overlap < points.length) {
      // Only the last part grows: new text for an earlier one means we hold a wrong picture.
      if (index < this.parts.length - 1) return false;
      if (opens) {
        this.parts.push(part);
        if (kind === "reasoning" && this.thoughtStart === null && !this.hasReasoningBefore(index)) {
          this.thoughtStart = performance.now(); // we watched it begin, so its duration is ours to tell
        }
      }
      part.text += overlap > 0 ? points.slice(overlap).join("") : frame.text;
      part.length += points.length - overlap;
      if (kind === "text") {
        this.data.content = answerOf(this.parts);
        this.contentDirty = true;
        this.endThought();
      } else {
        this.reasoningDirty = true;
      }
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

  hasReasoningBefore(index) {
    return this.parts.slice(0, index).some((part) => part.kind === "reasoning");
  }

  /** Whether we have every part at the length the final payload (`done`) gives; if not, resubscribe. */
  matchesFinal(payload) {
    if (payload.length != null && payload.length !== this.length) return false;
    if (!Array.isArray(payload.parts)) return true;
    return (
      payload.parts.length === this.parts.length &&
      payload.parts.every((part, i) => part.kind === this.parts[i].kind && part.length === this.parts[i].length)
    );
  }

  /** Whether we already have all of the payload's text (a running reply may be ahead of the history). */
  covers(payload) {
    const parts = partsOf(payload);
    return (
      parts.length <= this.parts.length &&
      parts.every((part, i) => part.kind === this.parts[i].kind && part.length <= this.parts[i].length)
    );
  }

  /** `parts` (of a snapshot or `done`) show an answer we did not see begin: how long the thinking took is unknown. */
  noteUnseenAnswer(parts) {
    const hasText = (list) => list.some((part) => part.kind === "text");
    if (this.thoughtEnd === null && hasText(parts) && !hasText(this.parts)) this.thoughtStart = null;
  }

  /** The thinking is over (the answer began, or the reply ended): stop the clock if it runs. */
  endThought() {
    if (this.thoughtStart !== null && this.thoughtEnd === null && !this.thinking) this.thoughtEnd = performance.now();
  }

  /** Where the chrome (buttons) depends on the message's place: the last reply (Continue), and
   * whether a reply runs (no new one may start). */
  setPlace({ lastReply, busy }) {
    const place = `${lastReply}|${busy}`;
    if (place === this.place) return;
    this.place = place;
    this.placeInfo = { lastReply, busy };
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
    if (this.data.attachments !== this.shownFiles) {
      this.shownFiles = this.data.attachments;
      renderFiles(this.files, this.data.attachments);
    }
    if (this.editing || !this.contentDirty) return;
    this.body.textContent = this.data.content;
    this.contentDirty = false;
  }

  renderReplyBody() {
    const active = this.active;
    this.renderThoughts();
    this.body.setAttribute("aria-busy", String(active));
    // Reset here rather than when the text was replaced: the scroll position is measured first.
    if (this.resetContent) this.markdown.reset();
    this.resetContent = false;
    if (active) {
      if (this.contentDirty || !this.cursor.isConnected) this.markdown.renderStreaming(this.data.content, this.cursor);
    } else if (this.contentDirty || !this.markdown.final) {
      this.cursor.remove();
      this.markdown.renderFinal(this.data.content);
    }
    this.contentDirty = false;
  }

  /** The "Thinking" block: its text through the same sanitising markdown as the answer, and its label. */
  renderThoughts() {
    const shown = this.hasReasoning;
    this.thoughts.hidden = !shown;
    if (this.resetReasoning) this.reasoningMarkdown.reset();
    this.resetReasoning = false;
    if (shown) {
      const reasoning = reasoningOf(this.parts);
      if (this.thinking) {
        if (this.reasoningDirty) this.reasoningMarkdown.renderStreaming(reasoning, null);
      } else if (this.reasoningDirty || !this.reasoningMarkdown.final) {
        this.reasoningMarkdown.renderFinal(reasoning);
      }
    }
    this.reasoningDirty = false;
    this.endThought();
    this.renderThoughtsLabel();
    const ticking = shown && this.thinking && this.thoughtStart !== null;
    if (ticking && !this.ticker) this.ticker = setInterval(() => this.tick(), TICK_MS);
    if (!ticking) this.stopTicker();
  }

  /** How long the reasoning took by the server's record (a finished or checkpointed reply), else null. */
  recordedThoughtMs() {
    const reasoning = this.parts.filter((part) => part.kind === "reasoning");
    if (!reasoning.length || reasoning.some((part) => part.durationMs == null)) return null;
    return reasoning.reduce((sum, part) => sum + part.durationMs, 0);
  }

  renderThoughtsLabel() {
    let label = t("Thoughts");
    const recorded = this.thinking ? null : this.recordedThoughtMs();
    if (this.thinking) {
      label = this.thoughtStart === null ? t("Thinking…") : tf("Thinking… %(seconds)s s", { seconds: Math.floor((performance.now() - this.thoughtStart) / 1000) });
    } else if (recorded !== null || (this.thoughtStart !== null && this.thoughtEnd !== null)) {
      const took = (recorded ?? this.thoughtEnd - this.thoughtStart) / 1000;
      label = took < 0.5 ? t("Thought for <1 s") : tf("Thought for %(seconds)s s", { seconds: Math.round(took) });
    }
    this.thoughts.dataset.state = this.thinking ? "thinking" : "done";
    if (this.thoughtsLabel.textContent !== label) this.thoughtsLabel.textContent = label;
  }

  tick() {
    if (!this.el.isConnected || !this.thinking) {
      // Gone from the page, or its last frame came while hidden: a redraw settles the label.
      this.stopTicker();
      if (this.el.isConnected) scheduleRender(this);
      return;
    }
    this.renderThoughtsLabel();
  }

  stopTicker() {
    clearInterval(this.ticker);
    this.ticker = null;
  }

  renderMeta() {
    if (this.role !== "assistant") return;
    const d = this.data;
    const parts = [];
    if (d.model) parts.push(metric("model", d.model));
    if (this.active) {
      const now = performance.now();
      if (this.firstTokenAt !== null) {
        const tokens = Math.ceil(this.parts.reduce((sum, part) => sum + part.text.length, 0) / 4);
        const since = this.sawFirstToken || this.serverStart === null ? this.firstTokenAt : this.serverStart;
        const elapsed = (now - since) / 1000;
        if (this.sawFirstToken) parts.push(metric("ttft", tf("first token %(time)s", { time: seconds(this.firstTokenAt - this.seenAt) }), true));
        if (elapsed > 0.2) parts.push(metric("tps", `≈${(tokens / elapsed).toFixed(1)} tok/s`, true));
        parts.push(metric("tokens", tf("≈%(tokens)s tokens so far", { tokens }), true));
      } else {
        parts.push(metric("waiting", t("waiting for the first token…"), true));
      }
    } else {
      if (d.time_to_first_token_ms != null) parts.push(metric("ttft", tf("first token %(time)s", { time: seconds(d.time_to_first_token_ms) })));
      if (d.tokens_per_second != null) parts.push(metric("tps", `${d.tokens_per_second} tok/s`));
      const usage = d.usage ?? {};
      if (usage.output_tokens != null) {
        const estimated = usage.estimated ? t(" (estimated)") : "";
        parts.push(metric("tokens", tf("%(input)s in · %(output)s out tokens%(estimated)s", { input: usage.input_tokens ?? "?", output: usage.output_tokens, estimated })));
      }
      if (d.duration_ms != null) parts.push(metric("duration", tf("%(time)s total", { time: seconds(d.duration_ms) })));
    }
    this.meta.replaceChildren(...parts);
  }

  renderChrome() {
    const siblings = this.data.siblings ?? [this.id];
    const key = `${this.data.status}|${this.place}|${this.editing}|${this.data.error?.message}|${siblings}|${this.data.model}`;
    if (key === this.chromeKey) return;
    this.chromeKey = key;
    const { lastReply = false, busy = false } = this.placeInfo ?? {};
    const status = this.data.status;
    const label = STATE_LABELS[status];
    this.state.hidden = !label;
    this.state.textContent = label ?? "";
    this.renderError(!busy);
    const buttons = [];
    if (this.role === "assistant" && !this.active) {
      if (this.data.content) buttons.push(button(t("Copy"), () => this.actions.copy(this), "copy-message"));
      // A reply stopped while still reasoning has no answer text yet, and can be continued too.
      const kept = this.data.content || this.parts.some((part) => part.text);
      if (lastReply && !busy && kept && (status === "cancelled" || status === "interrupted")) {
        buttons.push(button(t("Continue"), () => this.actions.continue(this), "continue"));
      }
      if (!busy && status !== "failed") buttons.push(...this.regenerateControls());
      if (this.data.content) buttons.push(this.actions.feedback(this));
    }
    if (this.role === "user" && !busy && !this.editing) {
      buttons.push(button(t("Edit"), () => this.actions.edit(this), "edit"));
    }
    const branches = this.branchNavigation(siblings);
    if (branches) buttons.unshift(branches);
    this.buttons.replaceChildren(...buttons);
    this.buttons.hidden = buttons.length === 0;
  }

  /** "‹ 2/3 ›" when the message has siblings: each arrow shows the branch through the sibling next to it. */
  branchNavigation(siblings) {
    if (siblings.length < 2) return null;
    const index = siblings.indexOf(this.id);
    const nav = document.createElement("span");
    nav.className = "msg-branches";
    nav.setAttribute("role", "group");
    nav.setAttribute("aria-label", t("Versions of this message"));
    const previous = button("‹", () => this.actions.switchTo(siblings[index - 1]), "branch-previous");
    previous.setAttribute("aria-label", t("Previous version"));
    previous.disabled = index <= 0;
    const next = button("›", () => this.actions.switchTo(siblings[index + 1]), "branch-next");
    next.setAttribute("aria-label", t("Next version"));
    next.disabled = index >= siblings.length - 1;
    const position = document.createElement("span");
    position.className = "branch-position";
    position.textContent = `${index + 1}/${siblings.length}`;
    nav.append(previous, position, next);
    return nav;
  }

  /** The Regenerate button and the model it regenerates with (the reply's own, unless another is picked). */
  regenerateControls() {
    const picker = document.createElement("select");
    picker.className = "regenerate-model";
    picker.setAttribute("aria-label", t("Model for the new reply"));
    for (const { value, label } of this.actions.models()) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = label;
      option.selected = value === this.data.model;
      picker.append(option);
    }
    const regenerate = button(t("Regenerate"), () => this.actions.regenerate(this, picker.value || null), "regenerate");
    return picker.options.length > 1 ? [regenerate, picker] : [regenerate];
  }

  renderError(canRetry) {
    const error = this.data.status === "failed" ? this.data.error ?? { message: t("The reply failed.") } : null;
    this.error.hidden = !error;
    if (!error) return this.error.replaceChildren();
    const text = document.createElement("span");
    text.className = "msg-error-text";
    const strong = document.createElement("strong");
    strong.textContent = t("Reply failed: ");
    text.append(strong, error.message || t("unknown error"));
    if (error.code) text.append(` (${error.code})`);
    const parts = [text];
    if (canRetry) parts.push(button(t("Retry"), () => this.actions.retry(this), "retry primary small"));
    this.error.replaceChildren(...parts);
  }

  /** Swap the text for an editor; `submit(text)` sends it, Escape or Cancel gives up. */
  startEdit(submit) {
    this.editing = true;
    const form = document.createElement("form");
    form.className = "msg-edit";
    const label = document.createElement("label");
    label.className = "visually-hidden";
    label.textContent = t("Edit your message");
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
    const cancel = button(t("Cancel"), () => this.stopEdit(), "secondary");
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "primary";
    save.textContent = t("Save and send");
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
