// A shared page: the snapshot's messages, rendered by the chat's own pipeline (markdown.js: marked,
// DOMPurify, highlight.js) for replies and as plain text for user messages, exactly like the chat.

import { MarkdownView } from "./markdown.js";

const t = (s) => (window.gettext ? window.gettext(s) : s);

const data = JSON.parse(document.getElementById("share-data").textContent);
const container = document.getElementById("messages");

const textOf = (parts, kind) => parts.filter((part) => part.kind === kind).map((part) => part.text).join(kind === "text" ? "" : "\n\n");

for (const message of data.messages) {
  const article = document.createElement("article");
  article.className = `msg ${message.role}`;
  const label = document.createElement("h2");
  label.className = "visually-hidden";
  label.textContent = message.role === "user" ? t("They said:") : t("Assistant replied:");
  article.append(label);
  const reasoning = textOf(message.parts, "reasoning");
  if (message.role !== "user" && reasoning) {
    const details = document.createElement("details");
    details.className = "msg-thinking";
    const summary = document.createElement("summary");
    summary.textContent = t("Thinking");
    const body = document.createElement("div");
    body.className = "thinking-body";
    details.append(summary, body);
    new MarkdownView(body).renderFinal(reasoning);
    article.append(details);
  }
  const body = document.createElement("div");
  body.className = "msg-body";
  if (message.role === "user") body.textContent = textOf(message.parts, "text");
  else new MarkdownView(body).renderFinal(textOf(message.parts, "text"));
  article.append(body);
  container.append(article);
}

container.addEventListener("click", async (event) => {
  const button = event.target.closest(".copy-code");
  if (!button) return;
  try {
    await navigator.clipboard.writeText(button.parentElement.querySelector("code").textContent);
    button.textContent = t("Copied");
  } catch {
    button.textContent = t("Select the text to copy");
  }
});
