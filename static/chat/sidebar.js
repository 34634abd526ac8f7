// The sidebar: the user's conversations, newest first, kept live by `conversation` frames.

import { api, urlFor } from "./api.js";

export class Sidebar {
  constructor({ urls, currentId, onDeleted }) {
    this.urls = urls;
    this.currentId = currentId;
    this.onDeleted = onDeleted;
    this.list = document.getElementById("conversation-list");
    // The sidebar shows one source at a time: the chat's conversations, or the API's (its filter links).
    this.source = this.list.dataset.source;
    this.empty = document.getElementById("empty-list");
    this.template = document.getElementById("conversation-item-template");
    this.app = document.getElementById("app");
    this.toggle = document.getElementById("sidebar-toggle");
    this.renameDialog = document.getElementById("rename-dialog");
    this.deleteDialog = document.getElementById("delete-dialog");
    this.bind();
  }

  bind() {
    this.list.addEventListener("click", (event) => {
      const item = event.target.closest("li.conv");
      if (!item) return;
      if (event.target.closest(".conv-rename")) this.rename(item);
      if (event.target.closest(".conv-delete")) this.confirmDelete(item);
    });
    this.toggle.addEventListener("click", () => this.setOpen(!this.app.classList.contains("sidebar-open")));
    document.getElementById("sidebar-close").addEventListener("click", () => this.setOpen(false));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.app.classList.contains("sidebar-open")) this.setOpen(false);
    });
    for (const dialog of [this.renameDialog, this.deleteDialog]) {
      dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close("cancel"));
    }
    for (const item of this.list.children) this.label(item);
  }

  setOpen(open) {
    this.app.classList.toggle("sidebar-open", open);
    this.toggle.setAttribute("aria-expanded", String(open));
    if (open) this.list.querySelector("a")?.focus();
    else this.toggle.focus();
  }

  item(id) {
    return this.list.querySelector(`li.conv[data-id="${Number(id)}"]`);
  }

  // Buttons say which conversation they act on.
  label(item) {
    const title = item.querySelector(".conv-title").textContent;
    item.querySelector(".conv-rename").setAttribute("aria-label", `Rename “${title}”`);
    item.querySelector(".conv-delete").setAttribute("aria-label", `Delete “${title}”`);
  }

  /** Add or update a conversation from a `conversation` frame or an API answer. */
  upsert(conversation) {
    if (this.source && conversation.source && conversation.source !== this.source) return;
    let item = this.item(conversation.id);
    const isNew = !item;
    if (isNew) {
      item = this.template.content.firstElementChild.cloneNode(true);
      item.dataset.id = conversation.id;
      item.querySelector("a").href = urlFor(this.urls.conversation_page, conversation.id);
      if (conversation.id === this.currentId) item.setAttribute("aria-current", "page");
    }
    item.querySelector(".conv-title").textContent = conversation.title || "New chat";
    item.classList.toggle("running", Boolean(conversation.running));
    this.label(item);
    const moved = item.dataset.updated !== conversation.updated_at;
    item.dataset.updated = conversation.updated_at;
    if (isNew || moved) this.place(item);
    this.empty.hidden = true;
  }

  // Newest first: an item goes before the first one updated earlier than it.
  place(item) {
    const updated = item.dataset.updated ?? "";
    const next = [...this.list.children].find((other) => other !== item && (other.dataset.updated ?? "") < updated);
    if (next) this.list.insertBefore(item, next);
    else if (item.parentNode !== this.list) this.list.append(item);
  }

  setCurrent(id) {
    this.currentId = id;
    for (const item of this.list.children) item.toggleAttribute("aria-current", Number(item.dataset.id) === id);
    this.item(id)?.setAttribute("aria-current", "page");
  }

  remove(id) {
    this.item(id)?.remove();
    this.empty.hidden = this.list.children.length > 0;
  }

  /** Replace the whole list (after a reconnect: something may have changed meanwhile). */
  async refresh() {
    const data = await api("GET", this.urls.conversations);
    const ids = new Set(data.conversations.map((c) => c.id));
    for (const item of [...this.list.children]) if (!ids.has(Number(item.dataset.id))) item.remove();
    for (const conversation of data.conversations) this.upsert(conversation);
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
