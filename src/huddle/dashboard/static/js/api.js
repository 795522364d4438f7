// The one place the page talks to Huddle's REST API. Token auth (a later release) plugs in here:
// setToken() and every request carries `Authorization: Bearer …`; the SSE URL gets it too.

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

function headers() {
  const out = { "Content-Type": "application/json" };
  if (auth.token) out.Authorization = `Bearer ${auth.token}`;
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
  if (auth.token) query.set("access_token", auth.token);
  const text = query.toString();
  return text ? `/api/events?${text}` : "/api/events";
}
