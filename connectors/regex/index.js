// flowforge/regex: extract matches (with positional and named groups) from a text, or
// replace them ($1, $<name>, $& and $$ in the replacement, as in JavaScript).
//
// The pattern is compiled once per call; one that does not compile is a config error.
// Runaway patterns are bounded by the sandbox's fuel and time limits, not here.
import { Failure } from "flowforge";

const MODES = ["extract", "replace", "test"];

export function handle(config, input) {
  const mode = config.mode ?? "extract";
  if (!MODES.includes(mode)) {
    throw new Failure("invalid-config", `mode must be one of ${MODES.join(", ")}; got ${JSON.stringify(mode)}`);
  }
  const all = config.all ?? true;
  if (typeof all !== "boolean") throw new Failure("invalid-config", "all must be true or false");
  const pattern = compile(config.pattern, config.flags ?? "", all && mode !== "test");
  const text = input?.text;
  if (typeof text !== "string") throw new Failure("invalid-input", "input.text must be a string");

  if (mode === "test") {
    return { matched: pattern.test(text) };
  }
  const found = all ? [...text.matchAll(pattern)] : [text.match(pattern)].filter((m) => m !== null);
  if (mode === "extract") {
    return { matches: found.map(describe), count: found.length };
  }
  const replacement = config.replacement;
  if (typeof replacement !== "string") {
    throw new Failure("invalid-config", 'mode "replace" needs replacement, a string ($1, $<name>, $& and $$ are expanded)');
  }
  return { text: text.replace(pattern, replacement), count: found.length };
}

function compile(source, flags, global) {
  if (typeof source !== "string" || source === "") {
    throw new Failure("invalid-config", "pattern must be a non-empty string (a JavaScript regular expression)");
  }
  if (typeof flags !== "string" || !/^[imsu]*$/.test(flags)) {
    throw new Failure("invalid-config", `flags may hold only i, m, s and u; got ${JSON.stringify(flags)}`);
  }
  try {
    // "all" decides between every match and the first, so the g flag is ours to set.
    return new RegExp(source, `${global ? "g" : ""}${flags}`);
  } catch (err) {
    throw new Failure("invalid-config", `pattern ${JSON.stringify(source)} is not a valid regular expression: ${err.message}`);
  }
}

function describe(match) {
  const named = {};
  for (const [name, value] of Object.entries(match.groups ?? {})) named[name] = value ?? null;
  return {
    match: match[0],
    index: match.index,
    groups: match.slice(1).map((value) => value ?? null),
    named,
  };
}
