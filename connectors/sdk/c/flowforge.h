/* flowforge.h: write a FlowForge connector in C.
 *
 * The author writes one function:
 *
 *     #include "flowforge.h"
 *
 *     ff_result handle(ff_ctx *ctx, const ff_json *config, const ff_json *input) {
 *         const char *name = ff_json_str(ff_json_get(input, "name"), NULL);
 *         if (name == NULL) return ff_fail(FF_INVALID_INPUT, "input.name must be a string", -1);
 *         ff_json *out = ff_json_object(ctx->arena);
 *         ff_json_set_string(out, "greeting", ff_arena_printf(ctx->arena, "Hello, %s!", name));
 *         return ff_ok(out);
 *     }
 *
 * The SDK (flowforge.c) holds the canonical-ABI glue of the `flowforge:connector` world:
 * it exports `handler.invoke`, parses config and input (unparseable config fails with
 * invalid-config, unparseable input with invalid-input, before `handle` runs), serialises
 * the output, and lowers the host's log, secret and fetch.
 *
 * Memory: everything of one invocation comes from `ctx->arena` and is released when the
 * invocation ends; never free anything. Strings the SDK hands out are NUL-terminated.
 *
 * Failing SDK calls (ff_secret, ff_fetch, ff_raise_for_status, ff_response_json) return
 * NULL or false and record the failure in the context; pass it on with
 * `return ff_failed(ctx);`.
 */
#ifndef FLOWFORGE_H
#define FLOWFORGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flowforge_json.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The WIT `error-kind`, in its order. */
typedef enum ff_error_kind {
    FF_INVALID_INPUT,
    FF_INVALID_CONFIG,
    FF_UNAUTHORIZED,
    FF_NOT_FOUND,
    FF_RATE_LIMITED, /* retryable */
    FF_UNAVAILABLE,  /* retryable */
    FF_INTERNAL,
} ff_error_kind;

/* The WIT `log-level`, in its order. */
typedef enum ff_log_level { FF_TRACE, FF_DEBUG, FF_INFO, FF_WARN, FF_ERROR } ff_log_level;

/* What `handle` returns: an output (ff_ok) or a failure (ff_fail, ff_failf, ff_failed). */
typedef struct ff_result {
    bool failed;
    const ff_json *output;  /* when not failed; NULL writes `null` */
    ff_error_kind kind;     /* when failed */
    const char *message;    /* when failed */
    int64_t retry_after_ms; /* when failed: a hint for retryable kinds; < 0 means none */
} ff_result;

/* One invocation. */
typedef struct ff_ctx {
    ff_arena *arena;   /* allocate everything here; released after the invocation */
    ff_result failure; /* what the last failing SDK call recorded (see ff_failed) */
} ff_ctx;

/* The connector's logic, written by the author. */
ff_result handle(ff_ctx *ctx, const ff_json *config, const ff_json *input);

/* ---- results -------------------------------------------------------------------------- */

ff_result ff_ok(const ff_json *output);
/* A failure; `message` must outlive the invocation (a literal or an arena string).
 * `retry_after_ms` < 0 means no hint. */
ff_result ff_fail(ff_error_kind kind, const char *message, int64_t retry_after_ms);
/* A failure with a printf-formatted message, no retry hint. */
ff_result ff_failf(ff_ctx *ctx, ff_error_kind kind, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
/* The failure the last failing SDK call recorded (internal if none did). */
ff_result ff_failed(const ff_ctx *ctx);
/* The kind's WIT name, e.g. "rate-limited". */
const char *ff_error_kind_name(ff_error_kind kind);

/* ---- logging (printf-style) ----------------------------------------------------------- */

void ff_log(ff_ctx *ctx, ff_log_level level, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
#define ff_log_debug(ctx, ...) ff_log((ctx), FF_DEBUG, __VA_ARGS__)
#define ff_log_info(ctx, ...) ff_log((ctx), FF_INFO, __VA_ARGS__)
#define ff_log_warn(ctx, ...) ff_log((ctx), FF_WARN, __VA_ARGS__)
#define ff_log_error(ctx, ...) ff_log((ctx), FF_ERROR, __VA_ARGS__)

/* ---- secrets -------------------------------------------------------------------------- */

/* The secret's value, or NULL when it is not granted (the recorded failure is
 * unauthorized, with the host's message). */
const char *ff_secret(ff_ctx *ctx, const char *name);

/* ---- HTTP ----------------------------------------------------------------------------- */

typedef struct ff_header {
    const char *name;
    const char *value;
} ff_header;

typedef struct ff_request {
    const char *method;       /* NULL means GET */
    const char *url;
    const ff_header *headers; /* header_count of them */
    size_t header_count;
    const char *body;         /* body_len bytes; when body_len is 0, a NUL-terminated text */
    size_t body_len;
    const ff_json *json;      /* when set: the body, with content-type application/json */
    uint32_t timeout_ms;      /* 0 means the host's default */
} ff_request;

typedef struct ff_response {
    uint16_t status;
    const ff_header *headers; /* header_count of them, names as the server sent them */
    size_t header_count;
    const char *body; /* body_len bytes, NUL-terminated */
    size_t body_len;
    const char *url; /* the request's URL, for messages */
} ff_response;

/* Send a request through the host (which checks it against the granted hosts). NULL when
 * the host refused or could not complete it (refused, timeout, unreachable): the recorded
 * failure is unavailable with the host's message, so the step may be retried. */
const ff_response *ff_fetch(ff_ctx *ctx, const ff_request *request);
/* The value of header `name` (case-insensitive), or NULL. */
const char *ff_response_header(const ff_response *response, const char *name);
/* The body parsed as JSON, or NULL (recorded failure: unavailable, the body is not JSON). */
const ff_json *ff_response_json(ff_ctx *ctx, const ff_response *response);
/* True for a 2xx status only, as in every FlowForge SDK. */
bool ff_response_ok(const ff_response *response);
/* True for a status below 400. Otherwise false with the shared mapping recorded: 429 ->
 * rate-limited, 5xx -> unavailable, 401/403 -> unauthorized, 404 -> not-found, other 4xx
 * -> invalid-input; a 429 or 503 carries its Retry-After as retry-after-ms (see
 * ff_retry_after_ms). */
bool ff_raise_for_status(ff_ctx *ctx, const ff_response *response);
/* Milliseconds from a Retry-After value, or -1 for no hint: delta-seconds (digits only),
 * or an HTTP-date (IMF-fixdate, "Wed, 21 Oct 2015 07:28:00 GMT") measured against `date`,
 * the response's Date header, since the guest has no clock; without a readable `date` a
 * date gives no hint. A date at or before `date` is 0; beyond a u32 is clamped to it.
 * Either argument may be NULL. */
int64_t ff_retry_after_ms(const char *retry_after, const char *date);
/* Seconds since the epoch for an IMF-fixdate, into *seconds; false for anything else. */
bool ff_http_date_seconds(const char *value, int64_t *seconds);

#ifdef __cplusplus
}
#endif

#endif
