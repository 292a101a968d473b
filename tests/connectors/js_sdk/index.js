// The JavaScript SDK's test guest: each `action` exercises one part of "flowforge".
import { Failure, decodeUtf8, encodeUtf8, fetch, log, raiseForStatus, retryAfterMs, secret } from "flowforge";

const actions = {
  echo: (config, input) => ({ config, input }),
  nothing: () => undefined,
  fail: (_config, input) => {
    throw new Failure(input.kind, input.message, { retryAfterMs: input.retryAfterMs });
  },
  failLikeObject: () => {
    throw { kind: "not-found", message: "plain object" };
  },
  throwError: () => {
    throw new RangeError("out of range");
  },
  badKind: () => new Failure("nope", "x"),
  now: () => Date.now(),
  newDate: () => new Date().toISOString(),
  fixedDate: () => new Date(Date.UTC(2024, 0, 2, 3, 4, 5)).toISOString(),
  random: () => Math.random(),
  async: async () => 1,
  bigint: () => ({ n: 1n }),
  secret: (_config, input) => ({ length: secret(input.name).length }),
  log: () => {
    log.trace("t");
    log.debug("d", 1, { a: 1 });
    log.info("i");
    log.warn("w");
    log.error(new Error("boom"));
    log.at("info", "at");
    return null;
  },
  utf8: (_config, input) => {
    const bytes = encodeUtf8(input.text);
    return { bytes: Array.from(bytes), back: decodeUtf8(bytes), lossy: decodeUtf8(new Uint8Array([0x61, 0xff, 0x62, 0xe2, 0x82])) };
  },
  retryAfter: (_config, input) => input.values.map(([value, date]) => retryAfterMs(value, date)),
  // The status convention probe shared by the four SDKs' tests (test_status_convention.py).
  status: (_config, input) => {
    const res = fetch(input.url, { timeoutMs: 2000 });
    if (input.check) raiseForStatus(res);
    return { status: res.status, ok: res.ok };
  },
  fetch: (_config, input) => {
    const res = fetch(input.url, input.options ?? {});
    if (input.raise) raiseForStatus(res);
    let json = null;
    try {
      json = res.json();
    } catch (err) {
      json = { error: err.kind };
    }
    return { status: res.status, ok: res.ok, headers: res.headers, type: res.header("Content-Type"), text: res.text(), json };
  },
};

export function handle(config, input) {
  const action = actions[input?.action];
  if (action === undefined) throw new Failure("invalid-input", `unknown action ${input?.action}`);
  return action(config, input);
}
