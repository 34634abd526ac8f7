// Search (Ctrl+K / Cmd+K, or the box in the sidebar): GET /api/search as you type; each result opens
// its conversation on the matching message's branch (a `switch` first) and scrolls to it.
//
// Snippets arrive as segments {text, mark} (docs/protocol.md): each becomes a text node, or a text
// node inside <mark>. No user or model text is ever parsed as HTML here.

import { api, urlFor } from "./api.js";

const t = (s) => (window.gettext ? window.gettext(s) : s);
const tn = (one, many, n) => (window.ngettext ? window.ngettext(one, many, n) : n === 1 ? one : many);

const DEBOUNCE_MS = 200;

/** Fills `element` with the segments: text nodes, matches wrapped in <mark>. */
export function appendSegments(element, segments) {
  for (const { text, mark } of segments) {
    if (mark) {
      const highlighted = document.createElement("mark");
      highlighted.textContent = text;
      element.append(highlighted);
    } else {
      element.append(document.createTextNode(text));
    }
  }
}

export class Search {
  constructor({ urls, openSidebar }) {
    this.urls = urls;
    this.openSidebar = openSidebar;
    this.input = document.getElementById("search-input");
    this.reasoning = document.getElementById("search-reasoning");
    this.results = document.getElementById("search-results");
    this.status = document.getElementById("search-status");
    this.list = document.getElementById("conversation-list");
    this.timer = null;
    this.asked = 0; // answers to older queries that arrive late are dropped
    this.bind();
  }

  bind() {
    this.input.addEventListener("input", () => this.schedule());
    this.reasoning.addEventListener("change", () => this.schedule());
    this.input.closest("form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.results.querySelector("a")?.click();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.clear();
      if (event.key === "ArrowDown") {
        event.preventDefault();
        this.results.querySelector("a")?.focus();
      }
    });
    this.results.addEventListener("keydown", (event) => this.moveFocus(event));
    this.results.addEventListener("click", (event) => {
      const link = event.target.closest("a.search-hit");
      if (link) {
        event.preventDefault();
        this.open(link);
      }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key.toLowerCase() === "k" && (event.ctrlKey || event.metaKey) && !event.altKey) {
        event.preventDefault();
        this.focus();
      }
    });
  }

  focus() {
    this.openSidebar();
    this.input.focus();
    this.input.select();
  }

  clear() {
    this.input.value = "";
    this.show(null);
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.run(), DEBOUNCE_MS);
  }

  async run() {
    const query = this.input.value.trim();
    const asked = ++this.asked;
    if (!query) return this.show(null);
    const params = new URLSearchParams({ q: query });
    if (this.reasoning.checked) params.set("reasoning", "1");
    try {
      const data = await api("GET", `${this.urls.search}?${params}`);
      if (asked === this.asked) this.show(data.results);
    } catch (error) {
      if (asked === this.asked) this.status.textContent = error.message;
    }
  }

  /** Show the results (null: no search, the conversation list again). */
  show(results) {
    this.results.replaceChildren();
    this.results.hidden = results === null;
    this.list.hidden = results !== null;
    document.getElementById("empty-list").hidden = results !== null || this.list.querySelector("li.conv") !== null;
    if (results === null) {
      this.status.textContent = "";
      return;
    }
    for (const result of results) this.results.append(this.item(result));
    this.status.textContent = results.length ? tn("%(count)s result", "%(count)s results", results.length).replace("%(count)s", results.length) : t("No matches.");
  }

  item(result) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.className = "search-hit";
    const page = urlFor(this.urls.conversation_page, result.conversation);
    link.href = result.message ? `${page}?m=${result.message}` : page;
    link.dataset.conversation = result.conversation;
    if (result.message) link.dataset.message = result.message;
    const title = document.createElement("span");
    title.className = "hit-title";
    if (result.title_snippet.length) appendSegments(title, result.title_snippet);
    else title.textContent = result.title || t("New chat");
    link.append(title);
    if (result.snippet.length) {
      const snippet = document.createElement("span");
      snippet.className = "hit-snippet";
      appendSegments(snippet, result.snippet);
      link.append(snippet);
    }
    li.append(link);
    return li;
  }

  moveFocus(event) {
    const links = [...this.results.querySelectorAll("a")];
    const index = links.indexOf(document.activeElement);
    if (event.key === "ArrowDown" && index < links.length - 1) links[index + 1].focus();
    else if (event.key === "ArrowUp") (index > 0 ? links[index - 1] : this.input).focus();
    else return;
    event.preventDefault();
  }

  /** Switch the conversation to the message's branch, then open it there. */
  async open(link) {
    const { conversation, message } = link.dataset;
    try {
      if (message) await api("POST", `${urlFor(this.urls.conversation_api, conversation)}/switch`, { message: Number(message) });
      window.location.assign(link.href);
    } catch (error) {
      this.status.textContent = error.message;
    }
  }
}

/** After a search opened this page (`?m=<id>`): bring the message into view and mark it; true when
 * it was found. */
export function revealFoundMessage(container) {
  const params = new URLSearchParams(window.location.search);
  const id = Number(params.get("m"));
  if (!id) return false;
  const article = container.querySelector(`article.msg[data-id="${id}"]`);
  if (article) {
    article.classList.add("found");
    article.setAttribute("tabindex", "-1");
    article.scrollIntoView({ block: "center" });
    article.focus({ preventScroll: true });
  }
  params.delete("m");
  const rest = params.toString();
  window.history.replaceState(null, "", window.location.pathname + (rest ? `?${rest}` : "") + window.location.hash);
  return Boolean(article);
}
