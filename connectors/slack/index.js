// flowforge/slack: post a message through a Slack incoming webhook.
//
// The webhook URL is itself the credential, so it lives in the secret `webhook-url` and
// never appears in the output, a log line or a failure message (the SDK's fetch names
// only the origin, and Slack's answers are reported by status and Slack's error code).
import { Failure, fetch, failureForStatus, log, secret } from "flowforge";

const WEBHOOK_PREFIX = "https://hooks.slack.com/";
const CONFIG_FIELDS = ["username", "icon_emoji", "icon_url"];

export function handle(config, input) {
  const message = payload(config, input);
  const url = secret("webhook-url").trim();
  if (!url.startsWith(WEBHOOK_PREFIX)) {
    throw new Failure("invalid-config", `the secret webhook-url must be a Slack incoming-webhook URL (${WEBHOOK_PREFIX}services/...)`);
  }
  log.debug(`posting to Slack: ${message.text.length} characters of text, ${message.blocks?.length ?? 0} blocks`);
  const response = fetch(url, { method: "POST", json: message, timeoutMs: config.timeout_ms ?? 10000 });
  const failure = slackFailure(response);
  if (failure) throw failure;
  return { ok: true };
}

function payload(config, input) {
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    throw new Failure("invalid-input", "input must be an object with text (and optional blocks)");
  }
  const { text, blocks } = input;
  if (typeof text !== "string" || text.trim() === "") {
    // Slack shows the text in notifications even when blocks are given.
    throw new Failure("invalid-input", "input.text must be a non-empty string (the message, or the notification fallback for blocks)");
  }
  const message = { text };
  if (blocks !== undefined) {
    if (!Array.isArray(blocks) || blocks.some((b) => b === null || typeof b !== "object" || typeof b.type !== "string")) {
      throw new Failure("invalid-input", "input.blocks must be an array of Block Kit blocks, each an object with a type");
    }
    message.blocks = blocks;
  }
  if (input.thread_ts !== undefined) message.thread_ts = String(input.thread_ts);
  for (const field of CONFIG_FIELDS) {
    if (config[field] !== undefined) message[field] = String(config[field]);
  }
  if (config.unfurl_links !== undefined) message.unfurl_links = Boolean(config.unfurl_links);
  return message;
}

// Slack's webhook answers: 200 "ok"; 400 invalid_payload/invalid_blocks/no_text;
// 403 invalid_token/action_prohibited; 404 no_service/channel_not_found;
// 410 channel_is_archived; 429 with Retry-After; 5xx. The body is a short error code.
function slackFailure(response) {
  if (response.status >= 200 && response.status < 300) return null;
  const code = response.text().trim().slice(0, 100) || `HTTP ${response.status}`;
  if (response.status === 410) return new Failure("not-found", `Slack: the webhook's channel is gone (${code})`);
  if (code === "no_service" || code === "channel_not_found") {
    return new Failure("not-found", `Slack: no such webhook or channel (${code}); check the secret webhook-url`);
  }
  if (code === "invalid_token" || code === "action_prohibited") {
    return new Failure("unauthorized", `Slack refused the webhook (${code}); it may have been revoked`);
  }
  return failureForStatus(response, "Slack");
}
