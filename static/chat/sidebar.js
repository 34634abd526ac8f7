// The sidebar: the user's conversations, newest first, kept live by `conversation` frames.

import { api, urlFor } from "./api.js";

const t = (s) => (window.gettext ? window.gettext(s) : s);
// A translated text with %(name)s placeholders filled in.
const tf = (s, values) => t(s).replace(/%\((\w+)\)s/g, (_, name) => values[name]);

const ARCHIVED_PAGE = 200;
const PAGE = 50;
const DAY_MS = 24 * 60 * 60 * 1000;

/** The sidebar group of a conversation: pinned ones on top, the rest by their last activity. */
function groupOf(item, today) {
  if (item.dataset.pinned) return t("Pinned");
  const updated = new Date(item.dataset.updated);
  if (updated >= today) return t("Today");
  if (updated >= new Date(today - DAY_MS)) return t("Yesterday");
  if (updated >= new Date(today - 7 * DAY_MS)) return t("Previous 7 days");
  return t("Older");
}

// Newest first, pinned ones before all: the key sorts as text, the greatest first.
const orderKey = (item) => (item.dataset.pinned ? `1${item.dataset.pinned}` : `0${item.dataset.updated ?? ""}`);

export class Sidebar {
  constructor({ urls, currentId, onDeleted, next }) {
    this.urls = urls;
    this.currentId = currentId;
    this.onDeleted = onDeleted;
    this.next = next; // the cursor of the next page, null once every conversation is listed
    this.list = document.getElementById("conversation-list");
    // The sidebar shows one source at a time: the chat's conversations, or the API's (its filter links).
    this.source = this.list.dataset.source;
    this.archived = document.getElementById("archived-list");
    this.archivedToggle = document.getElementById("archived-toggle");
    this.more = document.getElementById("list-more");
    this.empty = document.getElementById("empty-list");
    this.template = document.getElementById("conversation-item-template");
    this.app = document.getElementById("app");
    this.toggle = document.getElementById("sidebar-toggle");
    this.backdrop = document.getElementById("sidebar-backdrop");
    this.renameDialog = document.getElementById("rename-dialog");
    this.deleteDialog = document.getElementById("delete-dialog");
    this.bind();
    this.regroup();
  }

  bind() {
    for (const list of [this.list, this.archived]) {
      list.addEventListener("click", (event) => {
        const item = event.target.closest("li.conv");
        if (!item) return;
        if (event.target.closest(".conv-rename")) this.rename(item);
        if (event.target.closest(".conv-delete")) this.confirmDelete(item);
        if (event.target.closest(".conv-pin")) this.update(item, { pinned: !item.dataset.pinned });
        if (event.target.closest(".conv-archive")) this.update(item, { archived: !item.dataset.archived });
      });
    }
    this.archivedToggle.addEventListener("click", () => this.showArchived(this.archived.hidden));
    this.toggle.addEventListener("click", () => this.setOpen(!this.app.classList.contains("sidebar-open")));
    document.getElementById("sidebar-close").addEventListener("click", () => this.setOpen(false));
    // On a phone the open drawer dims the chat behind it; a tap there closes it.
    this.backdrop.addEventListener("click", () => this.setOpen(false));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.app.classList.contains("sidebar-open")) this.setOpen(false);
    });
    for (const dialog of [this.renameDialog, this.deleteDialog]) {
      dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close("cancel"));
    }
    for (const item of this.items()) this.label(item);
    // Load the next page when the end of the list scrolls into view.
    new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) this.loadMore();
    }).observe(this.more);
  }

  items(list = this.list) {
    return [...list.querySelectorAll("li.conv")];
  }

  setOpen(open) {
    this.app.classList.toggle("sidebar-open", open);
    this.toggle.setAttribute("aria-expanded", String(open));
    this.backdrop.hidden = !open;
    if (open) this.list.querySelector("a")?.focus();
    else this.toggle.focus();
  }

  /** Show the sidebar (on a narrow screen it is hidden until asked for) without moving the focus. */
  reveal() {
    this.app.classList.add("sidebar-open");
    this.toggle.setAttribute("aria-expanded", "true");
    this.backdrop.hidden = false;
  }

  /** The conversation links in the list, in order (for the previous / next shortcuts). */
  links() {
    return this.items().map((item) => item.querySelector("a.conv-link") ?? item.querySelector("a"));
  }

  item(id, list = this.list) {
    return list.querySelector(`li.conv[data-id="${Number(id)}"]`);
  }

  // Buttons say which conversation they act on, and what they would do.
  label(item) {
    const title = item.querySelector(".conv-title").textContent;
    const pinned = Boolean(item.dataset.pinned);
    const pin = item.querySelector(".conv-pin");
    pin.setAttribute("aria-label", pinned ? tf("Unpin “%(title)s”", { title }) : tf("Pin “%(title)s”", { title }));
    pin.setAttribute("aria-pressed", String(pinned));
    pin.firstElementChild.textContent = pinned ? "★" : "☆";
    pin.hidden = Boolean(item.dataset.archived);
    item.querySelector(".conv-archive").setAttribute("aria-label", item.dataset.archived ? tf("Unarchive “%(title)s”", { title }) : tf("Archive “%(title)s”", { title }));
    item.querySelector(".conv-rename").setAttribute("aria-label", tf("Rename “%(title)s”", { title }));
    item.querySelector(".conv-delete").setAttribute("aria-label", tf("Delete “%(title)s”", { title }));
  }

  build(conversation) {
    const item = this.template.content.firstElementChild.cloneNode(true);
    item.dataset.id = conversation.id;
    item.querySelector("a").href = urlFor(this.urls.conversation_page, conversation.id);
    if (conversation.id === this.currentId) item.setAttribute("aria-current", "page");
    return item;
  }

  fill(item, conversation) {
    item.querySelector(".conv-title").textContent = conversation.title || "New chat";
    item.classList.toggle("running", Boolean(conversation.running));
    item.dataset.pinned = conversation.pinned_at ?? "";
    item.dataset.archived = conversation.archived_at ?? "";
    item.dataset.updated = conversation.updated_at;
    this.label(item);
  }

  /** Add or update a conversation from a `conversation` frame or an API answer. */
  upsert(conversation) {
    if (this.source && conversation.source && conversation.source !== this.source) return;
    const archivedItem = this.item(conversation.id, this.archived);
    if (conversation.archived_at) {
      this.item(conversation.id)?.remove();
      if (archivedItem) this.fill(archivedItem, conversation);
    } else {
      archivedItem?.remove();
      const item = this.item(conversation.id) ?? this.build(conversation);
      const before = orderKey(item);
      this.fill(item, conversation);
      if (!item.parentNode || orderKey(item) !== before) this.place(item);
    }
    this.regroup();
  }

  place(item) {
    const key = orderKey(item);
    const next = this.items().find((other) => other !== item && orderKey(other) < key);
    if (next) this.list.insertBefore(item, next);
    else this.list.append(item);
  }

  /** The groups: Pinned, Today, Yesterday, Previous 7 days, Older. The first item of each carries its
   * name (drawn above it by the stylesheet), so the list stays a list of conversations only. */
  regroup() {
    const now = new Date();
    const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
    let last = null;
    for (const item of this.items()) {
      const group = groupOf(item, today);
      item.classList.toggle("group-start", group !== last);
      if (group !== last) item.dataset.group = group;
      else delete item.dataset.group;
      last = group;
    }
    this.empty.hidden = this.items().length > 0 || !this.archived.hidden;
  }

  setCurrent(id) {
    this.currentId = id;
    for (const item of this.items()) item.toggleAttribute("aria-current", Number(item.dataset.id) === id);
    this.item(id)?.setAttribute("aria-current", "page");
  }

  remove(id) {
    this.item(id)?.remove();
    this.item(id, this.archived)?.remove();
    this.regroup();
  }

  async loadMore() {
    if (!this.next || this.loading) return;
    this.loading = true;
    try {
      const data = await api("GET", `${this.urls.conversations}?${new URLSearchParams({ limit: PAGE, before: this.next, ...(this.source ? { source: this.source } : {}) })}`);
      for (const conversation of data.conversations) this.upsert(conversation);
      this.next = data.next;
    } catch (error) {
      alertUser(error.message);
    }
    this.loading = false;
    this.more.hidden = !this.next;
  }

  /** Bring the list up to date (after a reconnect: something may have changed meanwhile). */
  async refresh() {
    const loaded = this.items().filter((item) => !item.dataset.pinned).length;
    const data = await api("GET", `${this.urls.conversations}?limit=${Math.min(200, Math.max(PAGE, loaded))}`);
    const ids = new Set(data.conversations.map((c) => c.id));
    // Only a complete answer says which conversations are gone.
    if (data.next === null) for (const item of this.items()) if (!ids.has(Number(item.dataset.id))) item.remove();
    for (const conversation of data.conversations) this.upsert(conversation);
    if (data.next === null) this.next = null;
    this.more.hidden = !this.next;
  }

  /** The Archived view (in place of the list) or the list again. */
  async showArchived(show) {
    this.archived.hidden = !show;
    this.list.hidden = show;
    this.more.hidden = show || !this.next;
    this.archivedToggle.setAttribute("aria-pressed", String(show));
    this.archivedToggle.textContent = show ? t("All conversations") : t("Archived");
    this.archived.replaceChildren();
    this.regroup();
    if (!show) return;
    try {
      // Every archived conversation, a page at a time (the view lists them all, oldest activity last).
      let before = null;
      do {
        const query = { archived: 1, limit: ARCHIVED_PAGE, ...(before ? { before } : {}), ...(this.source ? { source: this.source } : {}) };
        const data = await api("GET", `${this.urls.conversations}?${new URLSearchParams(query)}`);
        if (this.archived.hidden) return; // left the view meanwhile
        for (const conversation of data.conversations) {
          const item = this.build(conversation);
          this.fill(item, conversation);
          this.archived.append(item);
        }
        before = data.next;
      } while (before);
      if (!this.archived.children.length) {
        const empty = document.createElement("li");
        empty.className = "empty-list";
        empty.textContent = t("No archived conversations.");
        this.archived.append(empty);
      }
    } catch (error) {
      alertUser(error.message);
    }
  }

  async update(item, changes) {
    try {
      this.upsert(await api("PATCH", urlFor(this.urls.conversation_api, Number(item.dataset.id)), changes));
    } catch (error) {
      alertUser(error.message);
    }
  }

  rename(item) {
    const id = Number(item.dataset.id);
    const input = this.renameDialog.querySelector("#rename-input");
    input.value = item.querySelector(".conv-title").textContent;
    this.renameDialog.returnValue = "";
    this.renameDialog.showModal();
    input.select();
    this.renameDialog.addEventListener(
      "close",
      async () => {
        if (this.renameDialog.returnValue !== "ok" || !input.value.trim()) return item.querySelector(".conv-rename").focus();
        try {
          this.upsert(await api("PATCH", urlFor(this.urls.conversation_api, id), { title: input.value }));
        } catch (error) {
          alertUser(error.message);
        }
        item.querySelector(".conv-rename").focus();
      },
      { once: true },
    );
  }

  confirmDelete(item) {
    const id = Number(item.dataset.id);
    this.deleteDialog.querySelector("#delete-title").textContent = item.querySelector(".conv-title").textContent;
    this.deleteDialog.returnValue = "";
    this.deleteDialog.showModal();
    this.deleteDialog.addEventListener(
      "close",
      async () => {
        if (this.deleteDialog.returnValue !== "ok") return item.querySelector(".conv-delete").focus();
        try {
          await api("DELETE", urlFor(this.urls.conversation_api, id));
          this.remove(id);
          this.onDeleted(id);
        } catch (error) {
          alertUser(error.message);
        }
      },
      { once: true },
    );
  }
}

function alertUser(message) {
  const announcer = document.getElementById("announcer");
  announcer.textContent = message;
}
