// The JSON API under /api/: session cookie plus the CSRF token from the page.
const t = (s) => (window.gettext ? window.gettext(s) : s);
// A translated text with %(name)s placeholders filled in.
const tf = (s, values) => t(s).replace(/%\((\w+)\)s/g, (_, name) => values[name]);

export function csrfToken() {
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

/** Calls the API; resolves to the parsed body, or rejects with an Error carrying the API's code. */
export async function api(method, url, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") init.headers["X-CSRFToken"] = csrfToken();
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw Object.assign(new Error(t("The server cannot be reached. Check your connection and try again.")), { code: "network" });
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data?.error ?? {};
    throw Object.assign(new Error(error.message || tf("The server answered %(status)s.", { status: response.status })), {
      code: error.code || "http",
      field: error.field,
    });
  }
  return data;
}

/** A URL from one of the page's URL patterns, whose conversation id is the placeholder 0. */
export function urlFor(pattern, id) {
  return pattern.replace(/\/0(\/?)$/, `/${id}$1`);
}
