// Keyboard shortcuts (the list `?` opens is in templates/chat/chat.html and the README):
//   ?  this list · Ctrl+Shift+O new chat · Shift+Esc focus the message box · Ctrl+K search (search.js)
//   Esc stop the reply · Alt+R regenerate · Alt+C copy the last reply · Alt+↑ / Alt+↓ previous / next
//   conversation · ↑ in an empty message box: edit your last message.
// Alt shortcuts match the key's position (`event.code`): on a Mac, Option+R types "®" as its `key`.

const isTyping = (target) => target.closest?.("input, textarea, select, [contenteditable='true']");

export class Shortcuts {
  /** `chat`: the page (its stop, regenerate, copy and edit actions); `sidebar`: the conversation list. */
  constructor({ chat, sidebar }) {
    this.chat = chat;
    this.sidebar = sidebar;
    this.dialog = document.getElementById("shortcuts-dialog");
    this.dialog.querySelector("[data-close]").addEventListener("click", () => this.dialog.close());
    document.addEventListener("keydown", (event) => this.onKey(event));
  }

  onKey(event) {
    if (event.defaultPrevented || event.isComposing) return;
    const action = this.actionFor(event);
    if (!action) return;
    event.preventDefault();
    action();
  }

  actionFor(event) {
    const chat = this.chat;
    const { key, code, altKey, ctrlKey, metaKey, shiftKey } = event;
    const modal = document.querySelector("dialog[open]");
    if (modal) return null; // a dialog has the keyboard (Escape closes it)
    if ((ctrlKey || metaKey) && shiftKey && !altKey && code === "KeyO") return () => chat.newChat();
    if (altKey && !ctrlKey && !metaKey) {
      if (code === "KeyR") return () => chat.regenerateLast();
      if (code === "KeyC") return () => chat.copyLast();
      if (code === "ArrowUp") return () => this.goTo(-1);
      if (code === "ArrowDown") return () => this.goTo(1);
      return null;
    }
    if (ctrlKey || metaKey || altKey) return null;
    if (key === "Escape" && shiftKey) return () => chat.focusComposer();
    if (key === "Escape") {
      // Escape first closes what is open (the phone drawer, an edit, the search), then stops a running reply.
      if (document.getElementById("app").classList.contains("sidebar-open")) return null;
      if (event.target.closest?.(".msg-edit, #search-form")) return null; // they have their own Escape
      return chat.running ? () => chat.stop() : null;
    }
    if (key === "?" && !isTyping(event.target)) return () => this.dialog.showModal();
    if (key === "ArrowUp" && event.target === chat.el.input && !chat.el.input.value) {
      return chat.canEditLast() ? () => chat.editLast() : null;
    }
    return null;
  }

  /** Open the conversation above or below the current one in the list. */
  goTo(step) {
    const links = this.sidebar.links();
    const current = links.findIndex((link) => link.closest("li.conv")?.getAttribute("aria-current") === "page");
    const target = current < 0 ? links[step > 0 ? 0 : links.length - 1] : links[current + step];
    if (target) location.assign(target.href);
  }
}
