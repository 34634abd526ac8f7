// Import: the file goes up as the request body of POST /api/imports; the import runs in the
// background and this polls GET /api/imports/<id> for the progress bar until it ends.

import { api, csrfToken, urlFor } from "./api.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 500;
const STATUS_TEXT = { queued: "Waiting to start…", running: "Checking the file…", saving: "Saving the conversations…" };

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
      this.status.textContent = "Choose a file first.";
      return;
    }
    $("import-start").disabled = true;
    this.progress.hidden = false;
    this.progress.removeAttribute("value");
    this.status.textContent = "Uploading…";
    try {
      const response = await fetch(`${this.urls.imports}?${new URLSearchParams({ filename: file.name })}`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), "Content-Type": "application/octet-stream", Accept: "application/json" },
        body: file,
      });
      const job = await response.json();
      if (!response.ok) throw new Error(job.error?.message || `The server answered ${response.status}.`);
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
      this.status.textContent = `Nothing was imported. ${job.error.message}`;
      return;
    }
    const skipped = job.skipped ? ` (${job.skipped} already imported before)` : "";
    this.status.textContent = `Imported ${job.created} conversation${job.created === 1 ? "" : "s"}${skipped}.`;
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
