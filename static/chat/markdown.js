// Markdown for untrusted model output: marked parses, DOMPurify sanitises, highlight.js colours code,
// KaTeX turns LaTeX math ($…$, $$…$$, \(…\), \[…\]) into MathML (no inline styles, no fonts from
// elsewhere: the CSP stays as it is). Math inside code is code: marked tokenises code first.
//
// Streaming: the text is cut into blocks at blank lines and code fences (outside fences). Completed
// blocks are parsed, sanitised and highlighted once and never touched again; only the open block at
// the end is re-parsed when new text arrives, at most once per animation frame (see render.js).
// When the reply ends, only what follows the completed blocks is parsed (highlighted, with its copy
// buttons): a long reply's last frame costs one block, not the whole text. (So a list interrupted by
// a blank line is drawn as two lists, as it was while it streamed.) A reply shown whole at once (the
// history, a snapshot) is parsed in one go.
const t = (s) => (window.gettext ? window.gettext(s) : s);
// A translated text with %(name)s placeholders filled in.
const tf = (s, values) => t(s).replace(/%\((\w+)\)s/g, (_, name) => values[name]);

const { marked, DOMPurify, hljs, katex } = window;

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]);

/** MathML for a TeX string; a formula KaTeX cannot read is shown as its source, as text. */
function renderMath(tex, displayMode) {
  try {
    return katex.renderToString(tex, { displayMode, output: "mathml", throwOnError: false, strict: "ignore", trust: false, maxExpand: 500 });
  } catch {
    return `<code>${escapeHtml(tex)}</code>`;
  }
}

// An inline `$…$` opens on a non-space and closes on a non-space not followed by a digit, so
// "costs $5 and $10" stays text; `\(…\)` always counts.
const INLINE_MATH = /^(?:\$\$([^$]+?)\$\$|\$(?!\s)((?:\\.|[^\\$\n])+?)(?<!\s)\$(?!\d)|\\\((.+?)\\\))/;
const BLOCK_MATH = /^ {0,3}(?:\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\])[ \t]*(?:\n|$)/;

const mathExtensions = [
  {
    name: "blockMath",
    level: "block",
    start: (src) => src.match(/\$\$|\\\[/)?.index,
    tokenizer(src) {
      const match = BLOCK_MATH.exec(src);
      if (match) return { type: "blockMath", raw: match[0], tex: (match[1] ?? match[2]).trim() };
    },
    renderer: (token) => `<div class="math-block">${renderMath(token.tex, true)}</div>\n`,
  },
  {
    name: "inlineMath",
    level: "inline",
    start: (src) => src.match(/\$|\\\(/)?.index,
    tokenizer(src) {
      const match = INLINE_MATH.exec(src);
      if (match) return { type: "inlineMath", raw: match[0], tex: (match[1] ?? match[2] ?? match[3]).trim(), display: match[1] !== undefined };
    },
    renderer: (token) => renderMath(token.tex, token.display),
  },
];

// Raw HTML in the model's markdown is shown as text, never as markup.
marked.use({
  gfm: true,
  extensions: mathExtensions,
  renderer: {
    html({ text }) {
      return escapeHtml(text);
    },
  },
});

const PURIFY_CONFIG = {
  // Images, media, forms and embeds could load remote content or trick the reader: none from a model.
  // MathML (KaTeX's output) is allowed: DOMPurify's MathML list, plus the TeX source KaTeX keeps in
  // <semantics>/<annotation> (plain text) so a screen reader or a copy gets the formula.
  FORBID_TAGS: ["style", "img", "picture", "source", "video", "audio", "iframe", "object", "embed", "svg",
    "form", "input", "button", "select", "textarea", "link", "meta", "base", "maction", "annotation-xml"],
  ADD_TAGS: ["semantics", "annotation"],
  // ALLOWED_URI_REGEXP below applies to every attribute not listed as URI-safe: these MathML layout
  // attributes (and a list's `start`) hold words and lengths, never URLs.
  ADD_URI_SAFE_ATTR: ["start", "display", "encoding", "mathvariant", "stretchy", "fence", "separator", "lspace",
    "rspace", "width", "height", "depth", "minsize", "maxsize", "accent", "accentunder", "columnalign", "rowalign",
    "rowspacing", "columnspacing", "columnlines", "rowlines", "linethickness", "scriptlevel", "displaystyle",
    "movablelimits", "largeop", "symmetric", "notation", "voffset", "mathcolor", "mathbackground", "mathsize"],
  // No inline styles (the CSP forbids them anyway), no ids or names that could clobber the page's own.
  FORBID_ATTR: ["style", "id", "name", "srcset", "action", "formaction"],
  ALLOW_DATA_ATTR: false,
  // Only web and mail links: javascript:, data:, vbscript: and relative URLs are dropped.
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("rel", "noopener noreferrer nofollow");
    node.setAttribute("target", "_blank");
  }
});

hljs.configure({ ignoreUnescapedHTML: true });

/** Sanitised HTML for a markdown string. */
export function toSafeHtml(markdown) {
  return DOMPurify.sanitize(marked.parse(markdown), PURIFY_CONFIG);
}

function fillBlock(element, markdown, { highlight }) {
  element.innerHTML = toSafeHtml(markdown);
  for (const pre of element.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    if (!code) continue;
    const language = [...code.classList].find((c) => c.startsWith("language-"))?.slice(9);
    if (highlight && language && hljs.getLanguage(language)) hljs.highlightElement(code);
    // A long line scrolls sideways: the keyboard must reach it too (axe: scrollable-region-focusable).
    pre.tabIndex = 0;
    const wrapper = document.createElement("div");
    wrapper.className = "code-block";
    pre.replaceWith(wrapper);
    wrapper.append(pre);
    if (highlight) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = t("Copy");
      button.setAttribute("aria-label", language ? tf("Copy %(language)s code", { language }) : t("Copy code"));
      wrapper.prepend(button);
    }
  }
}

const FENCE = /^ {0,3}(`{3,}|~{3,})/;
// A display formula on lines of its own ("$$" or "\[" alone on a line) is one block, like a fence:
// a blank line inside it must not cut it in two while it streams.
const MATH_OPEN = /^ {0,3}(\$\$|\\\[)\s*$/;
const MATH_CLOSE = { $$: /^\s*\$\$\s*$/, "\\[": /^\s*\\\]\s*$/ };

/** Renders one message's markdown into `container`, incrementally while it streams. */
export class MarkdownView {
  constructor(container) {
    this.container = container;
    this.container.classList.add("markdown");
    this.reset();
  }

  reset() {
    this.container.replaceChildren();
    this.stable = document.createElement("div");
    this.stable.className = "blocks";
    this.tail = document.createElement("div");
    this.tail.className = "blocks tail";
    this.container.append(this.stable, this.tail);
    this.scanned = 0; // every complete line before this index has been looked at
    this.fence = null; // the open fence's marker, e.g. "```"
    this.math = null; // the open display formula's marker, "$$" or "\\["
    this.boundary = 0; // text before this index is made of complete blocks
    this.rendered = 0; // text before this index is in `stable`
    this.renderedText = "";
    this.tailText = null;
    this.final = false;
  }

  /** Show `text` (which extends what was shown before) as a reply still being written; `cursor`
   * (an element, or null for none) goes at its end. */
  renderStreaming(text, cursor) {
    if (this.final) this.reset();
    this.scan(text);
    if (this.boundary > this.rendered) {
      const block = document.createElement("div");
      fillBlock(block, text.slice(this.rendered, this.boundary), { highlight: true });
      this.stable.append(block);
      this.rendered = this.boundary;
      this.renderedText = text.slice(0, this.rendered);
      this.tailText = null;
    }
    const tail = text.slice(this.rendered);
    if (tail !== this.tailText) {
      this.tailText = tail;
      if (this.fence && tail.length > 2000) {
        // A long open code block: no markdown to parse in it, so show it as text (cheap).
        const wrapper = document.createElement("div");
        wrapper.className = "code-block";
        const pre = document.createElement("pre");
        const code = document.createElement("code");
        code.textContent = tail.slice(tail.indexOf("\n") + 1);
        pre.append(code);
        wrapper.append(pre);
        this.tail.replaceChildren(wrapper);
      } else {
        fillBlock(this.tail, tail, { highlight: false });
      }
    }
    if (cursor) placeCursor(this.tail.lastElementChild ? this.tail : this.stable, cursor);
  }

  /** Show the finished text: one full parse, highlighted, with copy buttons. */
  renderFinal(text) {
    if (this.final || this.rendered === 0 || !text.startsWith(this.renderedText)) {
      this.reset();
      fillBlock(this.stable, text, { highlight: true });
    } else {
      const block = document.createElement("div");
      fillBlock(block, text.slice(this.rendered), { highlight: true });
      this.stable.append(block);
      this.tail.replaceChildren();
    }
    this.final = true;
  }

  // Find block boundaries in the complete lines added since the last call.
  scan(text) {
    let start = this.scanned;
    for (let end = text.indexOf("\n", start); end !== -1; end = text.indexOf("\n", start)) {
      const line = text.slice(start, end);
      const marker = FENCE.exec(line)?.[1];
      if (this.math) {
        if (MATH_CLOSE[this.math].test(line)) {
          this.math = null;
          this.boundary = end + 1;
        }
      } else if (!this.fence && MATH_OPEN.test(line)) {
        this.math = MATH_OPEN.exec(line)[1];
        this.boundary = start;
      } else if (this.fence) {
        if (marker && marker[0] === this.fence[0] && marker.length >= this.fence.length && !line.trim().slice(marker.length)) {
          this.fence = null;
          this.boundary = end + 1;
        }
      } else if (marker) {
        this.fence = marker;
        this.boundary = start;
      } else if (!line.trim()) {
        this.boundary = end + 1;
      }
      start = end + 1;
    }
    this.scanned = start;
  }
}

// The blinking cursor goes at the end of the last line of text, inside lists and code blocks.
function placeCursor(root, cursor) {
  let target = root;
  while (target.lastElementChild && /^(DIV|UL|OL|LI|BLOCKQUOTE|PRE|P|H[1-6]|TABLE|TBODY|TR|TD)$/.test(target.lastElementChild.tagName)) {
    target = target.lastElementChild;
  }
  if (target.tagName === "PRE" && target.lastElementChild) target = target.lastElementChild;
  target.append(cursor);
}
