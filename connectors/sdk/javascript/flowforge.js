// The FlowForge guest SDK for JavaScript connectors: the glue between the
// `flowforge:connector` world and one function the author writes.
//
//   import { Failure, fetch, secret, log, raiseForStatus } from "flowforge";
//   export function handle(config, input) { return { greeting: `hello ${input.name}` }; }
//
// The builder compiles this module with the author's `index.js` into a component
// (QuickJS, through componentize-qjs). Config and input arrive parsed; the return
// value is sent back as JSON; a thrown Failure becomes the world's `err(failure)`.
// Everything here is synchronous: the host calls (`fetch`, `secret`, `log`) block.

import * as host from "flowforge:connector/host@0.1.0";

/** The error kinds of the world's `failure` record. */
export const ERROR_KINDS = Object.freeze([
  "invalid-input",
  "invalid-config",
  "unauthorized",
  "not-found",
  "rate-limited",
  "unavailable",
  "internal",
]);

const LEVELS = ["trace", "debug", "info", "warn", "error"];
const MAX_U32 = 4294967295;

/**
 * A failure the connector reports on purpose: `kind` is one of ERROR_KINDS;
 * `retryAfterMs` (optional) tells the engine when a retry may succeed.
 */
export class Failure extends Error {
  constructor(kind, message, { retryAfterMs = null } = {}) {
    if (!ERROR_KINDS.includes(kind)) {
      throw new TypeError(`unknown failure kind ${JSON.stringify(kind)}; use one of ${ERROR_KINDS.join(", ")}`);
    }
    super(String(message));
    this.name = "Failure";
    this.kind = kind;
    this.retryAfterMs = retryAfterMs == null ? null : clampU32(retryAfterMs);
  }

  /** Whether the engine may retry the step (rate-limited and unavailable are transient). */
  get retryable() {
    return this.kind === "rate-limited" || this.kind === "unavailable";
  }
}

function clampU32(value) {
  const n = Math.round(Number(value));
  return Number.isFinite(n) ? Math.min(Math.max(n, 0), MAX_U32) : null;
}

// ---- logging ------------------------------------------------------------------

function emit(level, parts) {
  const text = parts.map((part) => (typeof part === "string" ? part : show(part))).join(" ");
  host.log(level, text);
}

function show(value) {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text;
  } catch {
    return String(value);
  }
}

/** `log.info("fetched", n, "items")`: the host keeps the lines (secrets scrubbed). */
export const log = Object.freeze({
  trace: (...parts) => emit("trace", parts),
  debug: (...parts) => emit("debug", parts),
  info: (...parts) => emit("info", parts),
  warn: (...parts) => emit("warn", parts),
  error: (...parts) => emit("error", parts),
  /** `log.at("warn", ...)` for a level chosen at run time. */
  at(level, ...parts) {
    if (!LEVELS.includes(level)) throw new TypeError(`unknown log level ${JSON.stringify(level)}`);
    emit(level, parts);
  },
});

// ---- secrets ------------------------------------------------------------------

/** The value of secret `name`; a Failure("unauthorized") when the step was not granted it. */
export function secret(name) {
  try {
    return host.secret(String(name));
  } catch (err) {
    throw new Failure("unauthorized", messageOf(err));
  }
}

// ---- UTF-8 (the sandbox's QuickJS has no TextEncoder/TextDecoder) ----------------

/** A string as UTF-8 bytes. */
export function encodeUtf8(text) {
  const out = [];
  for (const ch of String(text)) {
    let c = ch.codePointAt(0);
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // a lone surrogate has no UTF-8 form
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

/** UTF-8 bytes as a string; malformed sequences become U+FFFD. */
export function decodeUtf8(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes ?? []);
  let out = "";
  let chunk = [];
  const flush = () => {
    out += String.fromCodePoint(...chunk);
    chunk = [];
  };
  for (let i = 0; i < b.length; ) {
    const lead = b[i];
    let need = 0;
    let cp = lead;
    let min = 0;
    if (lead >= 0xf0 && lead <= 0xf4) [need, cp, min] = [3, lead & 7, 0x10000];
    else if (lead >= 0xe0) [need, cp, min] = [2, lead & 15, 0x800];
    else if (lead >= 0xc2 && lead < 0xe0) [need, cp, min] = [1, lead & 31, 0x80];
    else if (lead >= 0x80) [need, cp] = [-1, 0xfffd];
    let j = 1;
    for (; j <= need; j++) {
      const next = b[i + j];
      if (next === undefined || (next & 0xc0) !== 0x80) break;
      cp = (cp << 6) | (next & 63);
    }
    if (need > 0 && (j <= need || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) {
      chunk.push(0xfffd);
      i += Math.max(j, 1);
    } else {
      chunk.push(cp);
      i += need > 0 ? need + 1 : 1;
    }
    if (chunk.length >= 4096) flush();
  }
  flush();
  return out;
}

// ---- HTTP -----------------------------------------------------------------------

/** What `fetch` returns: status, headers (lowercase names), body bytes and helpers. */
export class Response {
  constructor(url, status, headerList, body) {
    this.url = url;
    this.status = status;
    this.headerList = headerList; // [[name, value], ...] as received
    this.headers = {};
    for (const [name, value] of headerList) {
      const key = name.toLowerCase();
      this.headers[key] = key in this.headers ? `${this.headers[key]}, ${value}` : value;
    }
    this.body = body;
  }

  get ok() {
    return this.status >= 200 && this.status < 300;
  }

  /** One header's value (names are case-insensitive), or null. */
  header(name) {
    const value = this.headers[String(name).toLowerCase()];
    return value === undefined ? null : value;
  }

  text() {
    return decodeUtf8(this.body);
  }

  /** The body parsed as JSON; a body that is not JSON is the upstream's fault: unavailable. */
  json() {
    const text = this.text();
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new Failure("unavailable", `${origin(this.url)} answered ${this.status} with a body that is not JSON: ${messageOf(err)}`);
    }
  }
}

/**
 * An HTTP request through the host, which allows only the hosts granted to the step.
 *
 *   const res = fetch("https://api.example.com/items", {
 *     method: "POST", headers: { authorization: `Bearer ${secret("token")}` },
 *     json: { name: "x" },            // or body: "text" | Uint8Array
 *     timeoutMs: 5000,
 *   });
 *
 * Any status comes back as a Response (see raiseForStatus); a transport error (refused,
 * timed out, host not granted) throws Failure("unavailable") with the host's message.
 */
export function fetch(url, { method = "GET", headers = {}, body = undefined, json = undefined, timeoutMs = null } = {}) {
  const headerList = Array.isArray(headers)
    ? headers.map(([name, value]) => [String(name), String(value)])
    : Object.entries(headers).map(([name, value]) => [name, String(value)]);
  let bytes = new Uint8Array(0);
  if (json !== undefined) {
    bytes = encodeUtf8(JSON.stringify(json));
    if (!headerList.some(([name]) => name.toLowerCase() === "content-type")) {
      headerList.push(["content-type", "application/json"]);
    }
  } else if (body instanceof Uint8Array) {
    bytes = body;
  } else if (body != null) {
    bytes = encodeUtf8(String(body));
  }
  const request = {
    method: String(method).toUpperCase(),
    url: String(url),
    headers: headerList,
    body: bytes,
    timeoutMs: timeoutMs == null ? null : clampU32(timeoutMs),
  };
  let answer;
  try {
    answer = host.fetch(request);
  } catch (err) {
    // Only the origin: a URL's path or query may hold a token (a webhook URL is a secret).
    throw new Failure("unavailable", `${request.method} ${origin(request.url)}: ${messageOf(err)}`);
  }
  const received = answer.body instanceof Uint8Array ? answer.body : Uint8Array.from(answer.body ?? []);
  return new Response(request.url, answer.status, answer.headers, received);
}

/**
 * The shared retryability convention: the Failure a status means, or null below 400.
 * 429 -> rate-limited, 5xx -> unavailable, 401/403 -> unauthorized, 404 -> not-found,
 * other 4xx -> invalid-input. A 429 or 503 carries its Retry-After as `retryAfterMs`.
 */
export function failureForStatus(response, what = null) {
  const status = response.status;
  if (status < 400) return null;
  const detail = snippet(response);
  const message = `${what ?? origin(response.url)} answered HTTP ${status}${detail ? `: ${detail}` : ""}`;
  const kind =
    status === 429
      ? "rate-limited"
      : status >= 500
        ? "unavailable"
        : status === 401 || status === 403
          ? "unauthorized"
          : status === 404
            ? "not-found"
            : "invalid-input";
  const retryAfter = RETRY_AFTER_STATUSES.includes(status) ? retryAfterMs(firstHeader(response, "retry-after"), firstHeader(response, "date")) : null;
  return new Failure(kind, message, { retryAfterMs: retryAfter });
}

/** Throw the Failure for an error status (see failureForStatus); return the response otherwise. */
export function raiseForStatus(response, what = null) {
  const failure = failureForStatus(response, what);
  if (failure) throw failure;
  return response;
}

// RFC 9110 defines Retry-After for 503 and RFC 6585 for 429; on other statuses it is ignored.
const RETRY_AFTER_STATUSES = [429, 503];
const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * Retry-After in milliseconds, or null: delta-seconds (digits only), or an HTTP-date
 * (IMF-fixdate, `Wed, 21 Oct 2015 07:28:00 GMT`) measured against `date`, the response's
 * Date header, since the sandbox has no clock; without a readable `date` a date gives
 * no hint. A date at or before `date` is 0; anything beyond a u32 is clamped to it.
 */
export function retryAfterMs(retryAfter, date = null) {
  if (retryAfter == null) return null;
  const text = trimOws(String(retryAfter));
  if (/^[0-9]+$/.test(text)) {
    const seconds = Number(text); // a long run of digits is Infinity: clamped below
    return seconds >= MAX_U32 / 1000 ? MAX_U32 : clampU32(seconds * 1000);
  }
  const retryAt = httpDateSeconds(text);
  const sentAt = date == null ? null : httpDateSeconds(String(date));
  if (retryAt === null || sentAt === null) return null;
  return clampU32((retryAt - sentAt) * 1000);
}

/** Seconds since the epoch for an IMF-fixdate, or null for anything else. */
function httpDateSeconds(value) {
  const text = trimOws(String(value));
  const match = /^([A-Za-z]{3}), ([0-9]{2}) ([A-Za-z]{3}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$/.exec(text);
  if (match === null || !DAYS.includes(match[1])) return null;
  const month = MONTHS.indexOf(match[3]) + 1;
  const [day, year, hour, minute, second] = [2, 4, 5, 6, 7].map((i) => Number(match[i]));
  if (month === 0 || hour > 23 || minute > 59 || second > 60) return null; // 60: a leap second
  if (day < 1 || day > daysInMonth(year, month)) return null;
  return daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
}

function daysInMonth(year, month) {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm),
// spelled the same way in all four SDKs so that they agree to the second.
function daysFromCivil(year, month, day) {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

// Optional whitespace around a header value (RFC 9110 OWS) is spaces and tabs only.
function trimOws(text) {
  return text.replace(/^[ \t]+|[ \t]+$/g, "");
}

// The first header of that name: `headers` joins repeats with ", ", which would garble a date.
function firstHeader(response, name) {
  const wanted = name.toLowerCase();
  const pair = (response.headerList ?? []).find(([key]) => String(key).toLowerCase() === wanted);
  return pair === undefined ? null : pair[1];
}

function snippet(response) {
  const text = response.text().replace(/\s+/g, " ").trim();
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

function origin(url) {
  const match = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*)/.exec(String(url));
  const authority = match ? match[1] : "the URL";
  return authority.replace(/\/\/[^@/]*@/, "//"); // userinfo is a credential
}

function messageOf(err) {
  if (err instanceof Error) return err.message;
  return typeof err === "string" ? err : show(err);
}

// ---- the entry point --------------------------------------------------------------

/**
 * The world's `handler` export around the author's function `fn(config, input)`.
 *
 * Accepts the function itself, or a module namespace with `handle` (or a `default`
 * function, or an already made `handler`). The builder calls this on `index.js`.
 */
export function connector(target) {
  if (target && typeof target === "object" && target.handler && typeof target.handler.invoke === "function") {
    return target.handler;
  }
  const fn =
    typeof target === "function"
      ? target
      : target && typeof target.handle === "function"
        ? target.handle
        : target && typeof target.default === "function"
          ? target.default
          : null;
  if (fn === null) {
    throw new TypeError("index.js must export `function handle(config, input)` (or `export const handler = connector(fn)`)");
  }
  return {
    invoke(configText, inputText) {
      try {
        const config = parse(configText, "invalid-config", "config", {});
        const input = parse(inputText, "invalid-input", "input", null);
        const result = fn(config, input);
        if (result && typeof result.then === "function") {
          throw new Failure("internal", "handle() returned a Promise: connectors are synchronous (fetch blocks), drop `async`");
        }
        return JSON.stringify(result === undefined ? null : result);
      } catch (err) {
        throw toWire(err);
      }
    },
  };
}

function parse(text, kind, what, empty) {
  if (text.trim() === "") return empty;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Failure(kind, `${what} is not valid JSON: ${messageOf(err)}`);
  }
}

// The shape componentize-qjs lowers into the world's `failure` record.
function toWire(err) {
  let failure;
  if (err instanceof Failure) {
    failure = err;
  } else if (err && typeof err === "object" && ERROR_KINDS.includes(err.kind)) {
    failure = new Failure(err.kind, err.message ?? err.kind, { retryAfterMs: err.retryAfterMs });
  } else {
    if (err instanceof Error && err.stack) log.debug(`${err.name}: ${err.message}\n${err.stack}`);
    const name = err instanceof Error ? `${err.name}: ` : "";
    failure = new Failure("internal", `${name}${messageOf(err)}`);
  }
  // componentize-qjs lowers a u32 through a saturating int32 conversion, so hand it the
  // same 32 bits as an int32 (`| 0`): 4294967295 crosses as -1, which lowers to 0xffffffff.
  const retryAfterMs = failure.retryAfterMs == null ? null : failure.retryAfterMs | 0;
  return { kind: failure.kind, message: failure.message, retryAfterMs };
}

// ---- what the sandbox lacks --------------------------------------------------------

// The world has no clock and no entropy: the runtime's stubs would trap with an opaque
// "unreachable". Fail with a message that says why instead.
function unavailable(what) {
  return () => {
    throw new Failure("internal", `${what} is not available in the connector sandbox (no clock or randomness); take times and ids from the input`);
  };
}

Math.random = unavailable("Math.random()");
const HostDate = Date;
const SandboxDate = class Date extends HostDate {
  constructor(...args) {
    if (args.length === 0) unavailable("new Date() without arguments")();
    super(...args);
  }
};
SandboxDate.now = unavailable("Date.now()");
globalThis.Date = SandboxDate;
