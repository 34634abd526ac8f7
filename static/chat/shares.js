// Share links: the header's Share button makes a link to the current branch (a snapshot), and the
// sidebar's "Shared links" lists the user's links, each revocable (docs/protocol.md, HTTP API).

import { api, urlFor } from "./api.js";

const t = (s) => (window.gettext ? window.gettext(s) : s);
// A translated text with %(name)s placeholders filled in.
const tf = (s, values) => t(s).replace(/%\((\w+)\)s/g, (_, name) => values[name]);

const $ = (id) => document.getElementById(id);

export class Shares {
  constructor({ urls, conversationId }) {
    this.urls = urls;
    this.conversationId = conversationId;
    this.dialog = $("share-dialog");
    this.listDialog = $("shares-dialog");
    $("share-button").addEventListener("click", () => this.openShare());
    $("share-create").addEventListener("click", () => this.create());
    $("share-copy").addEventListener("click", () => this.copy());
    $("shares-open").addEventListener("click", () => this.openList());
    $("shares-list").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-share]");
      if (button) this.revoke(Number(button.dataset.share), button);
    });
    for (const dialog of [this.dialog, this.listDialog]) {
      dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
    }
  }

  /** The conversation the page shows (none until a new chat's first message). */
  setConversation(id) {
    this.conversationId = id;
    $("share-button").hidden = !id;
  }

  openShare() {
    $("share-result").hidden = true;
    $("share-copy").hidden = true;
    $("share-create").hidden = false;
    $("share-status").textContent = "";
    this.dialog.showModal();
  }

  async create() {
    const days = $("share-expiry").value;
    try {
      const share = await api("POST", `${urlFor(this.urls.conversation_api, this.conversationId)}/share`, days ? { expires_in_days: Number(days) } : {});
      $("share-url").value = share.url;
      $("share-result").hidden = false;
      $("share-copy").hidden = false;
      $("share-create").hidden = true;
      $("share-status").textContent = share.expires_at ? tf("The link works until %(date)s.", { date: new Date(share.expires_at).toLocaleString() }) : t("The link works until you revoke it.");
      $("share-url").select();
    } catch (error) {
      $("share-status").textContent = error.message;
    }
  }

  async copy() {
    try {
      await navigator.clipboard.writeText($("share-url").value);
      $("share-status").textContent = t("Link copied.");
    } catch {
      $("share-url").select();
      $("share-status").textContent = t("Copying is not allowed here: the link is selected, copy it yourself.");
    }
  }

  async openList() {
    this.listDialog.showModal();
    const list = $("shares-list");
    list.replaceChildren();
    try {
      const { shares } = await api("GET", this.urls.shares);
      for (const share of shares) list.append(this.item(share));
      $("shares-empty").hidden = shares.length > 0;
    } catch (error) {
      $("shares-empty").hidden = false;
      $("shares-empty").textContent = error.message;
    }
  }

  item(share) {
    const li = document.createElement("li");
    const title = document.createElement("a");
    title.href = share.url;
    title.target = "_blank";
    title.rel = "noopener noreferrer";
    title.textContent = share.title || t("New chat");
    const state = document.createElement("span");
    state.className = "muted";
    const expired = share.expires_at && new Date(share.expires_at) < new Date();
    state.textContent = share.revoked_at ? t("revoked") : expired ? t("expired") : share.expires_at ? tf("until %(date)s", { date: new Date(share.expires_at).toLocaleDateString() }) : t("no expiry");
    li.append(title, " ", state);
    if (!share.revoked_at && !expired) {
      const revoke = document.createElement("button");
      revoke.type = "button";
      revoke.className = "link danger-link";
      revoke.dataset.share = share.id;
      revoke.textContent = t("Revoke");
      revoke.setAttribute("aria-label", tf("Revoke the link to “%(title)s”", { title: title.textContent }));
      li.append(" ", revoke);
    }
    return li;
  }

  async revoke(id, button) {
    try {
      await api("DELETE", urlFor(this.urls.share_api, id));
      button.closest("li").querySelector(".muted").textContent = t("revoked");
      button.remove();
    } catch (error) {
      $("shares-empty").hidden = false;
      $("shares-empty").textContent = error.message;
    }
  }
}
