// A conversation's generation parameters: the fields the chosen model accepts (their rules come with
// the page, as `GET /api/models` gives them), read back as the `parameters` object of a PATCH.
// An empty field means "the default": it is sent as null, which clears the parameter.
const t = (s) => (window.gettext ? window.gettext(s) : s);
// A translated text with %(name)s placeholders filled in.
const tf = (s, values) => t(s).replace(/%\((\w+)\)s/g, (_, name) => values[name]);

const STEP = { number: "0.05", integer: "1" };

export class ParameterSettings {
  constructor({ models, fields, status }) {
    this.rules = new Map(models.map((model) => [model.ref, model.parameters]));
    this.fields = fields;
    this.status = status;
    this.inputs = new Map();
  }

  /** Draws the fields of `modelRef`, filled with `values` (the conversation's parameters). */
  show(modelRef, values = {}) {
    this.drawn = JSON.stringify([modelRef, values ?? {}]);
    const rules = this.rules.get(modelRef) ?? {};
    this.fields.replaceChildren();
    this.inputs.clear();
    for (const [name, rule] of Object.entries(rules)) this.fields.append(this.field(name, rule, values[name]));
    if (!this.inputs.size) this.fields.textContent = t("This model takes no parameters.");
    this.status.textContent = "";
  }

  /** Draws them again only if the model or the saved values changed (another tab, a model switch):
   * a `conversation` frame comes with every reply, and must not wipe what the user is typing. */
  refresh(modelRef, values = {}) {
    if (JSON.stringify([modelRef, values ?? {}]) !== this.drawn) this.show(modelRef, values);
  }

  field(name, rule, value) {
    const id = `parameter-${name}`;
    const row = document.createElement("div");
    row.className = "parameter";
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = rule.label;
    const input = rule.kind === "choice" ? this.select(rule) : document.createElement(rule.kind === "strings" ? "textarea" : "input");
    input.id = id;
    input.name = name;
    if (rule.kind === "number" || rule.kind === "integer") {
      input.type = "number";
      input.step = STEP[rule.kind];
      if (rule.minimum !== undefined) input.min = rule.allow_zero ? 0 : rule.minimum;
      if (rule.maximum !== undefined) input.max = rule.maximum;
      input.inputMode = rule.kind === "integer" ? "numeric" : "decimal";
    }
    if (rule.kind === "strings") input.rows = 2;
    input.placeholder = placeholder(rule);
    input.value = value === undefined || value === null ? "" : Array.isArray(value) ? value.join("\n") : String(value);
    const help = document.createElement("small");
    help.id = `${id}-help`;
    help.className = "muted";
    help.textContent = rule.help;
    input.setAttribute("aria-describedby", help.id);
    row.append(label, input, help);
    this.inputs.set(name, { input, rule });
    return row;
  }

  select(rule) {
    const select = document.createElement("select");
    select.append(new Option(t("Default"), ""));
    for (const choice of rule.choices) select.append(new Option(choice, choice));
    return select;
  }

  /** The PATCH's `parameters`: every shown field, null where empty; or null with the field marked invalid. */
  values() {
    const values = {};
    for (const [name, { input, rule }] of this.inputs) {
      input.removeAttribute("aria-invalid");
      const text = input.value.trim();
      if (!text) {
        values[name] = null;
      } else if (rule.kind === "strings") {
        values[name] = text.split("\n").map((line) => line.trim()).filter(Boolean);
      } else if (rule.kind === "choice") {
        values[name] = text;
      } else {
        const number = Number(text);
        if (!Number.isFinite(number)) return this.invalid(name, tf("%(label)s must be a number.", { label: rule.label }));
        if (!inRange(number, rule)) return this.invalid(name, tf("%(label)s must be from %(minimum)s to %(maximum)s%(zero)s.", { label: rule.label, minimum: rule.minimum, maximum: rule.maximum, zero: rule.allow_zero ? t(" (or 0: off)") : "" }));
        values[name] = number;
      }
    }
    return values;
  }

  /** Marks the field the server (or `values`) refused and says why. */
  invalid(name, message) {
    const found = this.inputs.get(name);
    if (found) {
      found.input.setAttribute("aria-invalid", "true");
      found.input.focus();
    }
    this.status.textContent = message;
    return null;
  }
}

/** The server checks again (and says why it refuses): this only spares a round trip. */
function inRange(number, rule) {
  if (rule.allow_zero && number === 0) return true;
  if (rule.kind === "integer" && !Number.isInteger(number)) return false;
  return (rule.minimum === undefined || number >= rule.minimum) && (rule.maximum === undefined || number <= rule.maximum);
}

function placeholder(rule) {
  if (rule.kind === "strings") return tf("Up to %(count)s, one per line", { count: rule.max_items });
  if (rule.default !== undefined) return tf("Default: %(value)s", { value: rule.default });
  if (rule.kind === "choice") return t("Default");
  return rule.maximum !== undefined ? tf("Default (%(minimum)s–%(maximum)s)", rule) : t("Default");
}
