// Attachments: the composer's tray (file button, drag-and-drop, paste; a progress bar per file; remove
// before sending) and the files shown on a message (thumbnails with a lightbox, other files as downloads).
// The tray is the server's list of files uploaded but not sent, so it survives a reload.
import { api, csrfToken, urlFor } from "./api.js";

const t = (s) => (window.gettext ? window.gettext(s) : s);
// A translated text with %(name)s placeholders filled in.
const tf = (s, values) => t(s).replace(/%\((\w+)\)s/g, (_, name) => values[name]);

/** The conversation's attachments URL: its pattern has the placeholder 0 before `/attachments`. */
function uploadsUrl(pattern, id) {
  return pattern.replace(/\/0\/attachments$/, `/${id}/attachments`);
}

/** 1234567 → "1.2 MB". */
export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** One file as a message or the tray shows it: a thumbnail (opens the lightbox) or a download link. */
export function fileChip(file, { onRemove = null } = {}) {
  const chip = document.createElement("div");
  chip.className = `file-chip file-${file.kind}`;
  chip.dataset.attachment = file.id;
  if (file.thumbnail_url) {
    const open = document.createElement("button");
    open.type = "button";
    open.className = "file-thumbnail";
    open.setAttribute("aria-label", tf("Show image %(name)s", { name: file.name }));
    const image = document.createElement("img");
    image.src = file.thumbnail_url;
    image.alt = file.name;
    open.append(image);
    open.addEventListener("click", () => showLightbox(file));
    chip.append(open);
  }
  const link = document.createElement("a");
  link.className = "file-name";
  link.href = file.url;
  link.setAttribute("download", "");
  link.textContent = file.name; // text, never markup
  const size = document.createElement("span");
  size.className = "file-size";
  size.textContent = formatSize(file.size);
  chip.append(link, size);
  if (onRemove) {
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "file-remove";
    remove.setAttribute("aria-label", tf("Remove %(name)s", { name: file.name }));
    remove.textContent = "×";
    remove.addEventListener("click", onRemove);
    chip.append(remove);
  }
  return chip;
}

/** A message's files, below its text. */
export function renderFiles(container, files) {
  container.replaceChildren(...(files || []).map((file) => fileChip(file)));
  container.hidden = !files?.length;
}

let lightbox = null;

function showLightbox(file) {
  if (!lightbox) {
    lightbox = document.createElement("dialog");
    lightbox.className = "lightbox";
    lightbox.setAttribute("aria-label", t("Image"));
    const image = document.createElement("img");
    const close = document.createElement("button");
    close.type = "button";
    close.className = "secondary lightbox-close";
    close.textContent = t("Close");
    close.addEventListener("click", () => lightbox.close());
    lightbox.addEventListener("click", (event) => {
      if (event.target === lightbox) lightbox.close();
    });
    lightbox.append(image, close);
    document.body.append(lightbox);
  }
  const image = lightbox.querySelector("img");
  image.src = `${file.url}?inline=1`;
  image.alt = file.name;
  lightbox.showModal();
}

/** The composer's files: uploaded at once (one request each, with its progress), sent with the message. */
export class AttachmentTray {
  constructor({ urls, tray, button, input, dropZone, composer, ensureConversation, onChange, showError }) {
    this.urls = urls;
    this.tray = tray;
    this.input = input;
    this.ensureConversation = ensureConversation;
    this.onChange = onChange;
    this.showError = showError;
    this.items = []; // {file (payload) | null, name, progress element, element, request}
    button.addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      this.add([...input.files]);
      input.value = "";
    });
    dropZone.addEventListener("dragover", (event) => {
      if (![...event.dataTransfer.types].includes("Files")) return;
      event.preventDefault();
      composer.classList.add("dropping");
    });
    dropZone.addEventListener("dragleave", () => composer.classList.remove("dropping"));
    dropZone.addEventListener("drop", (event) => {
      composer.classList.remove("dropping");
      if (!event.dataTransfer.files.length) return;
      event.preventDefault();
      this.add([...event.dataTransfer.files]);
    });
    composer.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files || [])];
      if (!files.length) return;
      event.preventDefault();
      this.add(files);
    });
  }

  /** Ids of the uploaded files, in order. */
  ids() {
    return this.items.filter((item) => item.file).map((item) => item.file.id);
  }

  get uploading() {
    return this.items.some((item) => !item.file);
  }

  /** The files uploaded into this conversation and not sent yet (after a reload). */
  async restore(conversationId) {
    if (!conversationId) return;
    const { attachments } = await api("GET", uploadsUrl(this.urls.conversation_attachments, conversationId));
    for (const file of attachments) this.items.push(this.uploadedItem(file));
    this.redraw();
  }

  /** Forget the files a message just took (they show on it now). */
  sent(ids) {
    this.items = this.items.filter((item) => !item.file || !ids.includes(item.file.id));
    this.redraw();
  }

  async add(files) {
    const conversationId = await this.ensureConversation();
    if (!conversationId) return;
    for (const file of files) this.upload(conversationId, file);
  }

  uploadedItem(file, item = {}) {
    Object.assign(item, { file, name: file.name, request: null });
    item.element = fileChip(file, { onRemove: () => this.remove(item) });
    return item;
  }

  upload(conversationId, file) {
    const item = { file: null, name: file.name };
    const element = document.createElement("div");
    element.className = "file-chip file-uploading";
    const name = document.createElement("span");
    name.className = "file-name";
    name.textContent = file.name;
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    progress.setAttribute("aria-label", tf("Uploading %(name)s", { name: file.name }));
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "file-remove";
    cancel.setAttribute("aria-label", tf("Cancel upload of %(name)s", { name: file.name }));
    cancel.textContent = "×";
    cancel.addEventListener("click", () => this.remove(item));
    element.append(name, progress, cancel);
    item.element = element;
    this.items.push(item);
    this.redraw();
    // XHR, not fetch: only XHR reports upload progress.
    const request = new XMLHttpRequest();
    item.request = request;
    request.open("POST", uploadsUrl(this.urls.conversation_attachments, conversationId));
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) progress.value = Math.round((event.loaded / event.total) * 100);
    });
    request.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = null;
      }
      if (request.status === 201 && body && !this.items.includes(item)) {
        api("DELETE", urlFor(this.urls.attachment_api, body.id)).catch(() => {}); // removed meanwhile
      } else if (request.status === 201 && body) {
        this.uploadedItem(body, item);
      } else {
        this.items = this.items.filter((other) => other !== item);
        this.showError(body?.error?.message || tf("The upload failed: %(name)s", { name: file.name }));
      }
      this.redraw();
    });
    request.addEventListener("error", () => {
      this.items = this.items.filter((other) => other !== item);
      this.showError(tf("The upload failed: %(name)s", { name: file.name }));
      this.redraw();
    });
    const form = new FormData();
    form.append("file", file, file.name);
    request.send(form);
  }

  async remove(item) {
    this.items = this.items.filter((other) => other !== item);
    this.redraw();
    if (item.request && !item.file) item.request.abort();
    if (item.file) await api("DELETE", urlFor(this.urls.attachment_api, item.file.id)).catch(() => {});
  }

  redraw() {
    this.tray.replaceChildren(...this.items.map((item) => item.element));
    this.tray.hidden = this.items.length === 0;
    this.onChange();
  }
}
