// flowforge/filter: keep the items of input.items that match a condition from the config.
//
// The condition is data, never code: a comparison {field, op, value} or all/any/not of
// conditions. It is compiled into a predicate once, so a bad config fails before any item
// is looked at, even when there are none.
import { Failure } from "flowforge";

const OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "contains", "matches", "exists", "in"];
const MISSING = Symbol("missing");

export function handle(config, input) {
  const keep = compile(config, "config");
  const items = input?.items;
  if (!Array.isArray(items)) {
    throw new Failure("invalid-input", "input.items must be an array");
  }
  const kept = items.filter((item) => keep(item));
  return { items: kept, count: kept.length };
}

function compile(condition, where) {
  if (condition === null || typeof condition !== "object" || Array.isArray(condition)) {
    throw bad(where, "a condition is an object: {field, op, value}, {all: [...]}, {any: [...]} or {not: ...}");
  }
  const keys = Object.keys(condition);
  for (const combinator of ["all", "any"]) {
    if (combinator in condition) {
      if (keys.length !== 1) throw bad(where, `"${combinator}" stands alone in its object`);
      const parts = condition[combinator];
      if (!Array.isArray(parts)) throw bad(`${where}.${combinator}`, "must be an array of conditions");
      const predicates = parts.map((part, i) => compile(part, `${where}.${combinator}[${i}]`));
      return combinator === "all"
        ? (item) => predicates.every((p) => p(item))
        : (item) => predicates.some((p) => p(item));
    }
  }
  if ("not" in condition) {
    if (keys.length !== 1) throw bad(where, '"not" stands alone in its object');
    const inner = compile(condition.not, `${where}.not`);
    return (item) => !inner(item);
  }
  return comparison(condition, where);
}

function comparison(condition, where) {
  const { field, op, value } = condition;
  const unknown = Object.keys(condition).filter((k) => !["field", "op", "value", "flags"].includes(k));
  if (unknown.length) throw bad(where, `unknown key(s) ${unknown.join(", ")}`);
  if (typeof field !== "string") throw bad(`${where}.field`, 'must be a dotted path such as "a.b" ("" for the item itself)');
  if (!OPS.includes(op)) throw bad(`${where}.op`, `must be one of ${OPS.join(", ")}; got ${JSON.stringify(op)}`);
  if (op !== "exists" && !("value" in condition)) throw bad(`${where}.value`, `op "${op}" needs a value`);
  if (condition.flags !== undefined && op !== "matches") throw bad(`${where}.flags`, 'only op "matches" takes flags');
  const path = field === "" ? [] : field.split(".");
  const get = (item) => lookup(item, path);

  switch (op) {
    case "eq":
      return (item) => equal(get(item), value);
    case "ne":
      return (item) => !equal(get(item), value);
    case "gt":
    case "gte":
    case "lt":
    case "lte": {
      if (typeof value !== "number" && typeof value !== "string") {
        throw bad(`${where}.value`, `op "${op}" compares with a number or a string`);
      }
      const test = { gt: (c) => c > 0, gte: (c) => c >= 0, lt: (c) => c < 0, lte: (c) => c <= 0 }[op];
      return (item) => {
        const found = get(item);
        // Only like with like: a string is never greater than a number.
        if (typeof found !== typeof value || (typeof found === "number" && Number.isNaN(found))) return false;
        return test(found < value ? -1 : found > value ? 1 : 0);
      };
    }
    case "contains":
      return (item) => {
        const found = get(item);
        if (typeof found === "string") return typeof value === "string" && found.includes(value);
        if (Array.isArray(found)) return found.some((element) => equal(element, value));
        return false;
      };
    case "matches": {
      if (typeof value !== "string") throw bad(`${where}.value`, 'op "matches" takes a regular expression as a string');
      const flags = condition.flags ?? "";
      if (typeof flags !== "string" || !/^[imsu]*$/.test(flags)) {
        throw bad(`${where}.flags`, "may hold only i, m, s and u");
      }
      let pattern;
      try {
        pattern = new RegExp(value, flags);
      } catch (err) {
        throw bad(`${where}.value`, `not a valid regular expression: ${err.message}`);
      }
      return (item) => {
        const found = get(item);
        return typeof found === "string" && pattern.test(found);
      };
    }
    case "exists": {
      const wanted = value ?? true;
      if (typeof wanted !== "boolean") throw bad(`${where}.value`, 'op "exists" takes true (the default) or false');
      return (item) => (get(item) !== MISSING) === wanted;
    }
    case "in":
      if (!Array.isArray(value)) throw bad(`${where}.value`, 'op "in" takes an array of values');
      return (item) => {
        const found = get(item);
        return found !== MISSING && value.some((candidate) => equal(found, candidate));
      };
  }
  throw bad(`${where}.op`, `unhandled op ${op}`);
}

function lookup(item, path) {
  let here = item;
  for (const key of path) {
    if (Array.isArray(here) && /^\d+$/.test(key)) {
      const index = Number(key);
      if (index >= here.length) return MISSING;
      here = here[index];
    } else if (here !== null && typeof here === "object" && !Array.isArray(here) && Object.hasOwn(here, key)) {
      here = here[key];
    } else {
      return MISSING;
    }
  }
  return here;
}

// JSON equality: same type and same contents (key order does not matter).
function equal(a, b) {
  if (a === MISSING || b === MISSING) return false;
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && equal(a[k], b[k]));
}

function bad(where, message) {
  return new Failure("invalid-config", `${where}: ${message}`);
}
