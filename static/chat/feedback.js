// Feedback on a reply: thumbs up or down, and an optional comment, sent as a `feedback` frame
// (docs/protocol.md). The server's `feedback` frame, to every tab of the user, is what shows: a
// click only asks. Pressing the chosen thumb again removes the rating.

const t = (s) => (window.gettext ? window.gettext(s) : s);

const COMMENT_MAX = 2000; // CHAT_FEEDBACK_COMMENT_MAX_CHARS' default; the server has the last word

export class FeedbackControls {
  /** `send(rating, comment)`: rating "up", "down" or null (remove); returns false when not connected. */
  constructor({ send }) {
    this.send = send;
    this.feedback = null;
    this.element = document.createElement("span");
    this.element.className = "msg-feedback";
    this.element.setAttribute("role", "group");
    this.element.setAttribute("aria-label", t("Rate this reply"));
    this.up = this.thumb("up", "👍", t("Good reply"));
    this.down = this.thumb("down", "👎", t("Bad reply"));
    this.comment = this.commentForm();
    this.element.append(this.up, this.down, this.comment);
  }

  thumb(rating, symbol, label) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `icon feedback-${rating}`;
    button.textContent = symbol;
    button.setAttribute("aria-label", label);
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", () => {
      const same = this.feedback?.rating === rating;
      this.send(same ? null : rating, same ? "" : this.input.value);
      if (!same) this.comment.hidden = false;
    });
    return button;
  }

  /** The comment box: a group, not a <form>, so the reply's content holds no form (tests/test_xss.py). */
  commentForm() {
    const box = document.createElement("div");
    box.className = "feedback-comment";
    box.hidden = true;
    const label = document.createElement("label");
    label.textContent = t("Comment (optional)");
    this.input = document.createElement("textarea");
    this.input.rows = 2;
    this.input.maxLength = COMMENT_MAX;
    label.append(this.input);
    const save = document.createElement("button");
    save.type = "button";
    save.className = "secondary small";
    save.textContent = t("Save comment");
    save.addEventListener("click", () => {
      if (this.feedback) this.send(this.feedback.rating, this.input.value);
    });
    box.append(label, save);
    return box;
  }

  /** Show the feedback as the server has it (null: none). */
  update(feedback) {
    this.feedback = feedback ?? null;
    const rating = this.feedback?.rating ?? null;
    this.up.setAttribute("aria-pressed", String(rating === "up"));
    this.down.setAttribute("aria-pressed", String(rating === "down"));
    if (!rating) this.comment.hidden = true;
    if (document.activeElement !== this.input) this.input.value = this.feedback?.comment ?? "";
    if (this.feedback?.comment) this.comment.hidden = false;
  }
}
