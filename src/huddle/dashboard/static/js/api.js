// The one place the page talks to Huddle's REST API. In token mode the page is signed in by an
// HttpOnly session cookie (POST /dashboard/login); every state change also carries the CSRF
// cookie's value in `X-Huddle-CSRF`, which a page from another site cannot read. setToken() is
// for scripts that hold a bearer token instead.

const auth = { token: null };

export class ApiError extends Error {
  constructor(message, code, field) {
    super(message);
    this.code = code;
    this.field = field;
  }
}

export function setToken(token) {
  auth.token = token || null;
}

function cookie(name) {
  const found = document.cookie.split("; ").find((pair) => pair.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
}

function headers() {
  const out = { "Content-Type": "application/json" };
  if (auth.token) out.Authorization = `Bearer ${auth.token}`;
  const csrf = cookie("huddle_csrf");
  if (csrf) out["X-Huddle-CSRF"] = csrf;
  return out;
}

/** Calls one operation (`POST /api/v1/tools/{name}`) and returns its result, or throws ApiError. */
export async function call(name, args = {}) {
  let response;
  try {
    response = await fetch(`/api/v1/tools/${encodeURIComponent(name)}`, {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(args),
    });
  } catch (err) {
    throw new ApiError("Huddle is not reachable right now", "unreachable");
  }
  let body;
  try {
    body = await response.json();
  } catch (err) {
    throw new ApiError(`unexpected reply (${response.status}) from ${name}`, "bad_reply");
  }
  if (response.status === 401 && !auth.token) {
    window.location.assign("/dashboard"); // the session expired or was revoked: back to sign-in
  }
  if (!body.ok) throw new ApiError(body.error || `${name} failed`, body.code, body.field);
  return body.result;
}

export async function health() {
  const response = await fetch("/health", { headers: headers() });
  return response.json();
}

/** The SSE URL, resuming after `since` (EventSource cannot send headers; the cursor rides in the query). */
export function eventsUrl(since) {
  const query = new URLSearchParams();
  if (since !== null && since !== undefined) query.set("since", String(since));
  const text = query.toString();
  return text ? `/api/events?${text}` : "/api/events";
}
