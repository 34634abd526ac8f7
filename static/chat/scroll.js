// Scrolling the message list like the best chats do.
//
// The list sticks to the bottom while a reply streams, until the reader scrolls up; from then on it
// stays where they put it and a "Jump to latest" button counts the lines written below. The reader's
// own new message is always brought into view (and sticks again). Opening a conversation lands on its
// latest message. Whether we stick is decided by the reader's scrolling only (scroll events), never
// by measuring after the content grew: a message added between two redraws cannot unstick the list.
// When a message changes height while the reader is elsewhere (a code block highlighted, the final
// render), the browser's scroll anchoring keeps what they read in place (CSS `overflow-anchor`).

const t = (s) => (window.gettext ? window.gettext(s) : s);
const STICK_PX = 48; // this close to the bottom counts as "at the bottom"

export class Scroller {
  constructor(list, jumpButton) {
    this.list = list;
    this.button = jumpButton;
    this.label = jumpButton.querySelector(".jump-label");
    this.stuck = true;
    this.lastTop = 0;
    this.heightWhenLeft = 0; // scrollHeight when the reader scrolled up: what grew since is new
    this.list.addEventListener("scroll", () => this.onScroll(), { passive: true });
    this.button.addEventListener("click", () => this.toLatest({ focus: true }));
    // A message that grows or changes height on its own (highlighting, a late font) keeps the
    // bottom in view while we stick.
    this.resizes = new ResizeObserver(() => this.settle());
    new MutationObserver((changes) => {
      for (const change of changes) for (const node of change.addedNodes) if (node.nodeType === 1) this.resizes.observe(node);
    }).observe(list, { childList: true });
    for (const child of list.children) this.resizes.observe(child);
  }

  get distance() {
    return this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight;
  }

  onScroll() {
    // Our own scrolls only ever go down to the bottom: moving up is the reader leaving it.
    const top = this.list.scrollTop;
    const movedUp = top < this.lastTop;
    this.lastTop = top;
    const atBottom = this.distance < STICK_PX;
    if (atBottom && !this.stuck) this.stuck = true;
    else if (!atBottom && movedUp && this.stuck) {
      this.stuck = false;
      this.heightWhenLeft = this.list.scrollHeight;
    }
    this.showButton();
  }

  /** After a redraw: follow the bottom while we stick, else tell how much was written below. */
  settle() {
    if (this.stuck) this.scrollTo(this.list.scrollHeight);
    else this.showButton();
  }

  /** The reader's own message, just sent: bring it (and what follows) into view and stick again. */
  revealOwn() {
    this.stuck = true;
    this.settle();
  }

  /** Land on the latest message (a conversation opens there; the button brings the reader back). */
  toLatest({ focus = false } = {}) {
    this.stuck = true;
    this.scrollTo(this.list.scrollHeight);
    this.showButton();
    // The button hides: its focus goes to the message box, or on a touch screen to the list (the box
    // would pop the keyboard up).
    if (!focus) return;
    const touch = window.matchMedia("(pointer: coarse)").matches;
    (touch ? this.list : document.getElementById("composer-input"))?.focus({ preventScroll: true });
  }

  scrollTo(top) {
    this.list.scrollTop = top;
    this.lastTop = this.list.scrollTop;
  }

  newLines() {
    const lineHeight = parseFloat(getComputedStyle(this.list).lineHeight) || 24;
    return Math.max(0, Math.round((this.list.scrollHeight - this.heightWhenLeft) / lineHeight));
  }

  showButton() {
    const show = !this.stuck && this.distance >= STICK_PX;
    this.button.hidden = !show;
    if (!show) return;
    const lines = this.newLines();
    this.button.dataset.newLines = String(lines);
    const text = lines > 0 ? interpolate(t("Jump to latest (%s new lines)"), lines) : t("Jump to latest");
    if (this.label.textContent !== text) this.label.textContent = text;
  }
}

const interpolate = (format, value) => (window.interpolate ? window.interpolate(format, [value]) : format.replace("%s", value));
