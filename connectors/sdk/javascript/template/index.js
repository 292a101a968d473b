// {{name}}: {{description}}
//
// Write the logic in `handle`: config and input arrive parsed from JSON, and what it
// returns goes back as JSON. Throw a Failure with one of the world's error kinds to fail.
// The SDK ("flowforge") also gives secret(name), fetch(url, options), raiseForStatus()
// and log.debug/info/warn/error. Everything is synchronous: fetch() blocks.
import { Failure, log } from "flowforge";

export function handle(config, input) {
  const greeting = config.greeting ?? "Hello";
  const name = input?.name;
  if (typeof name !== "string" || name.trim() === "") {
    throw new Failure("invalid-input", "input.name must be a non-empty string");
  }
  log.debug(`greeting ${name}`);
  return { message: `${greeting}, ${name}!` };
}
