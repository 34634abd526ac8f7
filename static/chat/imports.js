// Import: the file goes up as the request body of POST /api/imports; the import runs in the
// background and this polls GET /api/imports/<id> for the progress bar until it ends.

import { api, csrfToken, urlFor } from "./api.js";

const t = (s) => (window.gettext ? window.gettext(s) : s);
// A translated text with %(name)s placeholders filled in.
const tf = (s, values) => t(s).replace(/%\((\w+)\)s/g, (_, name) => values[name]);
const tn = (one, many, n) => (window.ngettext ? window.ngettext(one, many, n) : n === 1 ? one : many);

const $ = (id) => document.getElementById(id);
const POLL_MS = 500;
const STATUS_TEXT = { queued: t("Waiting to start…"), running: t("Checking the file…"), saving: t("Saving the conversations…") };

export class Imports {
  constructor({ urls, onImported }) {
    this.urls = urls;
    this.onImported = onImported;
    this.dialog = $("import-dialog");
    this.progress = $("import-progress");
    this.status = $("import-status");
    $("import-open").addEventListener("click", () => this.dialog.showModal());
    $("import-start").addEventListener("click", () => this.start());
    this.dialog.querySelector("[data-close]").addEventListener("click", () => this.dialog.close());
  }

  async start() {
    const file = $("import-file").files[0];
    if (!file) {
      this.status.textContent = t("Choose a file first.");
      return;
    }
    $("import-start").disabled = true;
    this.progress.hidden = false;
    this.progress.removeAttribute("value");
    this.status.textContent = t("Uploading…");
    try {
      const response = await fetch(`${this.urls.imports}?${new URLSearchParams({ filename: file.name })}`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), "Content-Type": "application/octet-stream", Accept: "application/json" },
        body: file,
      });
      const job = await response.json();
      if (!response.ok) throw new Error(job.error?.message || tf("The server answered %(status)s.", { status: response.status }));
      await this.follow(job);
    } catch (error) {
      this.status.textContent = error.message;
      this.progress.hidden = true;
    }
    $("import-start").disabled = false;
  }

  async follow(job) {
    while (!["done", "failed"].includes(job.status)) {
      this.show(job);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      job = await api("GET", urlFor(this.urls.import_job, job.id));
    }
    this.progress.hidden = job.status === "failed";
    this.progress.max = 1;
    this.progress.value = 1;
    if (job.status === "failed") {
      this.status.textContent = tf("Nothing was imported. %(reason)s", { reason: job.error.message });
      return;
    }
    const skipped = job.skipped ? tf(" (%(count)s already imported before)", { count: job.skipped }) : "";
    this.status.textContent = tn("Imported %(count)s conversation%(skipped)s.", "Imported %(count)s conversations%(skipped)s.", job.created).replace("%(count)s", job.created).replace("%(skipped)s", skipped);
    this.onImported();
  }

  show(job) {
    this.status.textContent = STATUS_TEXT[job.status] ?? job.status;
    if (job.total) {
      this.progress.max = job.total;
      this.progress.value = job.done;
    }
  }
}
