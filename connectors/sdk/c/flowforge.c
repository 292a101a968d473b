/* flowforge.c: the canonical-ABI glue of the `flowforge:connector@0.1.0` world, written once,
 * and the connector API of flowforge.h on top of it.
 *
 * Memory layouts (wasm32, everything 4-byte aligned), as the component model's canonical
 * ABI lays them out:
 *   result<string, string>          disc u8 @0; ok/err string ptr @4, len @8
 *   result<http-response, string>   disc u8 @0; ok: status u16 @4, headers ptr/len @8/@12,
 *                                   body ptr/len @16/@20; err: string ptr/len @4/@8
 *   result<string, failure>         disc u8 @0; ok: string ptr/len @4/@8; err: kind u8 @4,
 *                                   message ptr/len @8/@12, retry-after-ms disc u8 @16, @20
 *   tuple<string, string>           name ptr/len @0/@4, value ptr/len @8/@12 (16 bytes)
 * Every block the host writes into guest memory (the call's arguments, the results of
 * imports) comes from cabi_realloc, which allocates from the invocation's arena; the host
 * calls the cabi_post_ export once it has copied the result out, and the arena is emptied.
 */
#include "flowforge.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FF_HOST "flowforge:connector/host@0.1.0"
#define FF_INVOKE "flowforge:connector/handler@0.1.0#invoke"

/* ---- imports -------------------------------------------------------------------------- */

__attribute__((import_module(FF_HOST), import_name("log"))) extern void
ff__host_log(int32_t level, const char *message, size_t message_len);

__attribute__((import_module(FF_HOST), import_name("secret"))) extern void
ff__host_secret(const char *name, size_t name_len, void *ret);

__attribute__((import_module(FF_HOST), import_name("fetch"))) extern void
ff__host_fetch(const char *method, size_t method_len, const char *url, size_t url_len,
               const void *headers, size_t header_count, const char *body, size_t body_len,
               int32_t timeout_is_some, uint32_t timeout_ms, void *ret);

/* Big enough and aligned for every result this world passes through memory. */
typedef struct ff_ret_area {
    _Alignas(8) uint8_t bytes[24];
} ff_ret_area;

static uint32_t ff_word(const ff_ret_area *area, size_t offset) {
    uint32_t value;
    memcpy(&value, area->bytes + offset, sizeof value);
    return value;
}

static void ff_put_word(ff_ret_area *area, size_t offset, uint32_t value) {
    memcpy(area->bytes + offset, &value, sizeof value);
}

/* A (ptr, len) pair in guest memory, as a pointer. */
static const char *ff_ptr(uint32_t address) { return (const char *)(uintptr_t)address; }

typedef struct ff_wire_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} ff_wire_header;

/* ---- the invocation's arena ----------------------------------------------------------- */

static ff_arena *ff__arena;

static ff_arena *ff_call_arena(void) {
    if (ff__arena == NULL) ff__arena = ff_arena_new();
    return ff__arena;
}

__attribute__((export_name("cabi_realloc"))) void *cabi_realloc(void *old, size_t old_size,
                                                                  size_t align, size_t new_size) {
    ff_arena *arena = ff_call_arena();
    void *block = arena != NULL ? ff_arena_realloc(arena, old, old_size, new_size, align) : NULL;
    /* The host cannot handle a failed allocation: trapping is the honest answer. */
    if (block == NULL) __builtin_trap();
    return block;
}

/* ---- results -------------------------------------------------------------------------- */

ff_result ff_ok(const ff_json *output) {
    ff_result result = {0};
    result.output = output;
    result.retry_after_ms = -1;
    return result;
}

ff_result ff_fail(ff_error_kind kind, const char *message, int64_t retry_after_ms) {
    ff_result result = {0};
    result.failed = true;
    result.kind = kind;
    result.message = message != NULL ? message : "";
    result.retry_after_ms = retry_after_ms;
    return result;
}

static ff_result ff_vfail(ff_ctx *ctx, ff_error_kind kind, int64_t retry_after_ms,
                          const char *format, va_list args) {
    const char *message = ff_arena_vprintf(ctx->arena, format, args);
    return ff_fail(kind, message != NULL ? message : "out of memory", retry_after_ms);
}

ff_result ff_failf(ff_ctx *ctx, ff_error_kind kind, const char *format, ...) {
    va_list args;
    va_start(args, format);
    ff_result result = ff_vfail(ctx, kind, -1, format, args);
    va_end(args);
    return result;
}

ff_result ff_failed(const ff_ctx *ctx) {
    if (ctx->failure.failed) return ctx->failure;
    return ff_fail(FF_INTERNAL, "ff_failed: no SDK call has failed", -1);
}

/* Record a failure in the context for ff_failed; the calling SDK function returns NULL. */
static void ff_record(ff_ctx *ctx, ff_error_kind kind, int64_t retry_after_ms,
                      const char *format, ...) __attribute__((format(printf, 4, 5)));
static void ff_record(ff_ctx *ctx, ff_error_kind kind, int64_t retry_after_ms,
                      const char *format, ...) {
    va_list args;
    va_start(args, format);
    ctx->failure = ff_vfail(ctx, kind, retry_after_ms, format, args);
    va_end(args);
}

static const char *const ff_kind_names[] = {
    "invalid-input", "invalid-config", "unauthorized", "not-found",
    "rate-limited",  "unavailable",    "internal",
};

const char *ff_error_kind_name(ff_error_kind kind) {
    return (unsigned)kind <= FF_INTERNAL ? ff_kind_names[kind] : "internal";
}

/* ---- logging -------------------------------------------------------------------------- */

void ff_log(ff_ctx *ctx, ff_log_level level, const char *format, ...) {
    va_list args;
    va_start(args, format);
    const char *message = ff_arena_vprintf(ctx->arena, format, args);
    va_end(args);
    if (message == NULL) return;
    size_t len;
    /* The host reads a WIT string: it must be UTF-8. */
    const char *text = ff_utf8_repair(ctx->arena, message, strlen(message), &len);
    if (text == NULL) return;
    if ((unsigned)level > FF_ERROR) level = FF_ERROR;
    ff__host_log((int32_t)level, text, len);
}

/* ---- secrets -------------------------------------------------------------------------- */

const char *ff_secret(ff_ctx *ctx, const char *name) {
    ff_ret_area area = {0};
    ff__host_secret(name, strlen(name), &area);
    const char *text = ff_ptr(ff_word(&area, 4));
    size_t len = ff_word(&area, 8);
    if (area.bytes[0] != 0) {
        ff_record(ctx, FF_UNAUTHORIZED, -1, "%.*s", (int)len, text);
        return NULL;
    }
    char *value = ff_arena_strndup(ctx->arena, text, len);
    if (value == NULL) ff_record(ctx, FF_INTERNAL, -1, "out of memory");
    return value;
}

/* ---- HTTP ----------------------------------------------------------------------------- */

/* A WIT string from a C string: repaired to UTF-8 so the host can lift it. */
static const char *ff_wire_text(ff_ctx *ctx, const char *text, size_t *len) {
    if (text == NULL) text = "";
    return ff_utf8_repair(ctx->arena, text, strlen(text), len);
}

const ff_response *ff_fetch(ff_ctx *ctx, const ff_request *request) {
    size_t method_len, url_len;
    const char *method = ff_wire_text(ctx, request->method != NULL ? request->method : "GET",
                                      &method_len);
    const char *url = ff_wire_text(ctx, request->url, &url_len);
    const char *body = request->body;
    size_t body_len = request->body_len;
    if (request->json != NULL) {
        body = ff_json_write(ctx->arena, request->json, &body_len);
    } else if (body != NULL && body_len == 0) {
        body_len = strlen(body);
    }
    bool has_type = false;
    size_t count = request->header_count + 1; /* room for a content-type */
    ff_wire_header *headers = ff_arena_alloc(ctx->arena, count * sizeof *headers, 4);
    if (method == NULL || url == NULL || headers == NULL || (request->json != NULL && !body)) {
        ff_record(ctx, FF_INTERNAL, -1, "out of memory");
        return NULL;
    }
    count = 0;
    for (size_t i = 0; i < request->header_count; i++) {
        ff_wire_header *wire = &headers[count++];
        wire->name = ff_wire_text(ctx, request->headers[i].name, &wire->name_len);
        wire->value = ff_wire_text(ctx, request->headers[i].value, &wire->value_len);
        if (wire->name == NULL || wire->value == NULL) {
            ff_record(ctx, FF_INTERNAL, -1, "out of memory");
            return NULL;
        }
        if (strcasecmp(wire->name, "content-type") == 0) has_type = true;
    }
    if (request->json != NULL && !has_type) {
        static const char name[] = "content-type", value[] = "application/json";
        headers[count++] = (ff_wire_header){name, sizeof name - 1, value, sizeof value - 1};
    }

    ff_ret_area area = {0};
    ff__host_fetch(method, method_len, url, url_len, headers, count, body != NULL ? body : "",
                   body != NULL ? body_len : 0, request->timeout_ms != 0,
                   request->timeout_ms, &area);
    if (area.bytes[0] != 0) {
        ff_record(ctx, FF_UNAVAILABLE, -1, "%.*s", (int)ff_word(&area, 8),
                  ff_ptr(ff_word(&area, 4)));
        return NULL;
    }
    ff_response *response = ff_arena_alloc(ctx->arena, sizeof *response, _Alignof(ff_response));
    uint32_t header_count = ff_word(&area, 12);
    ff_header *copies = ff_arena_alloc(ctx->arena, (header_count + 1) * sizeof *copies, 4);
    if (response == NULL || copies == NULL) {
        ff_record(ctx, FF_INTERNAL, -1, "out of memory");
        return NULL;
    }
    uint16_t status;
    memcpy(&status, area.bytes + 4, sizeof status);
    const ff_wire_header *received = (const ff_wire_header *)ff_ptr(ff_word(&area, 8));
    for (uint32_t i = 0; i < header_count; i++) {
        copies[i].name = ff_arena_strndup(ctx->arena, received[i].name, received[i].name_len);
        copies[i].value = ff_arena_strndup(ctx->arena, received[i].value, received[i].value_len);
    }
    response->status = status;
    response->headers = copies;
    response->header_count = header_count;
    response->body_len = ff_word(&area, 20);
    response->body = ff_arena_strndup(ctx->arena, ff_ptr(ff_word(&area, 16)), response->body_len);
    response->url = url;
    if (response->body == NULL) {
        ff_record(ctx, FF_INTERNAL, -1, "out of memory");
        return NULL;
    }
    return response;
}

const char *ff_response_header(const ff_response *response, const char *name) {
    for (size_t i = 0; i < response->header_count; i++) {
        const ff_header *header = &response->headers[i];
        if (header->name != NULL && strcasecmp(header->name, name) == 0) return header->value;
    }
    return NULL;
}

const ff_json *ff_response_json(ff_ctx *ctx, const ff_response *response) {
    ff_json_error error;
    const ff_json *value = ff_json_parse(ctx->arena, response->body, response->body_len, &error);
    if (value == NULL) {
        ff_record(ctx, FF_UNAVAILABLE, -1,
                  "HTTP %u from %s: the body is not JSON (%s at line %zu, column %zu)",
                  response->status, response->url, error.message, error.line, error.column);
    }
    return value;
}

/* Optional whitespace around a header value (RFC 9110 OWS) is spaces and tabs only. */
static bool ff_is_ows(char c) { return c == ' ' || c == '\t'; }

static bool ff_all_digits(const char *text, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') return false;
    }
    return true;
}

/* The number spelled by exactly `len` digits, if it lies in [low, high]; -1 otherwise. */
static int64_t ff_number(const char *text, size_t len, int64_t low, int64_t high) {
    if (!ff_all_digits(text, len)) return -1;
    int64_t value = 0;
    for (size_t i = 0; i < len; i++) value = value * 10 + (text[i] - '0');
    return value >= low && value <= high ? value : -1;
}

static int ff_name_index(const char *const *names, size_t count, const char *text) {
    for (size_t i = 0; i < count; i++) {
        if (memcmp(names[i], text, 3) == 0) return (int)i;
    }
    return -1;
}

static int64_t ff_days_in_month(int64_t year, int64_t month) {
    if (month == 2) {
        bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        return leap ? 29 : 28;
    }
    return month == 4 || month == 6 || month == 9 || month == 11 ? 30 : 31;
}

/* Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm),
 * spelled the same way in all four SDKs so that they agree to the second. */
static int64_t ff_days_from_civil(int64_t year, int64_t month, int64_t day) {
    int64_t y = month <= 2 ? year - 1 : year;
    int64_t era = (y >= 0 ? y : y - 399) / 400; /* floor division */
    int64_t year_of_era = y - era * 400;
    int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

bool ff_http_date_seconds(const char *value, int64_t *seconds) {
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (value == NULL) return false;
    while (ff_is_ows(*value)) value++;
    size_t len = strlen(value);
    while (len > 0 && ff_is_ows(value[len - 1])) len--;
    const char *t = value;
    if (len != 29 || memcmp(t + 3, ", ", 2) != 0 || memcmp(t + 25, " GMT", 4) != 0) return false;
    if (t[7] != ' ' || t[11] != ' ' || t[16] != ' ' || t[19] != ':' || t[22] != ':') return false;
    if (ff_name_index(days, 7, t) < 0) return false;
    int month_index = ff_name_index(months, 12, t + 8);
    if (month_index < 0) return false;
    int64_t month = month_index + 1;
    int64_t year = ff_number(t + 12, 4, 0, 9999);
    int64_t hour = ff_number(t + 17, 2, 0, 23);
    int64_t minute = ff_number(t + 20, 2, 0, 59);
    int64_t second = ff_number(t + 23, 2, 0, 60); /* 60: a leap second */
    if (year < 0 || hour < 0 || minute < 0 || second < 0) return false;
    int64_t day = ff_number(t + 5, 2, 1, ff_days_in_month(year, month));
    if (day < 0) return false;
    *seconds = ff_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    return true;
}

static int64_t ff_clamp_u32(int64_t value) {
    return value < 0 ? 0 : value > (int64_t)UINT32_MAX ? (int64_t)UINT32_MAX : value;
}

int64_t ff_retry_after_ms(const char *retry_after, const char *date) {
    if (retry_after == NULL) return -1;
    while (ff_is_ows(*retry_after)) retry_after++;
    size_t len = strlen(retry_after);
    while (len > 0 && ff_is_ows(retry_after[len - 1])) len--;
    if (len > 0 && ff_all_digits(retry_after, len)) {
        int64_t seconds = 0;
        for (size_t i = 0; i < len; i++) {
            seconds = seconds * 10 + (retry_after[i] - '0');
            if (seconds > UINT32_MAX / 1000) return UINT32_MAX;
        }
        return seconds * 1000;
    }
    int64_t retry_at = 0, sent_at = 0;
    if (!ff_http_date_seconds(retry_after, &retry_at) || !ff_http_date_seconds(date, &sent_at)) {
        return -1;
    }
    return ff_clamp_u32((retry_at - sent_at) * 1000);
}

bool ff_response_ok(const ff_response *response) {
    return response->status >= 200 && response->status < 300;
}

bool ff_raise_for_status(ff_ctx *ctx, const ff_response *response) {
    uint16_t status = response->status;
    if (status < 400) return true;
    ff_error_kind kind = FF_INVALID_INPUT;
    if (status == 429) {
        kind = FF_RATE_LIMITED;
    } else if (status >= 500) {
        kind = FF_UNAVAILABLE;
    } else if (status == 401 || status == 403) {
        kind = FF_UNAUTHORIZED;
    } else if (status == 404) {
        kind = FF_NOT_FOUND;
    }
    /* RFC 9110 defines Retry-After for 503 and RFC 6585 for 429; elsewhere it is ignored. */
    int64_t retry = status == 429 || status == 503
                        ? ff_retry_after_ms(ff_response_header(response, "retry-after"),
                                            ff_response_header(response, "date"))
                        : -1;
    /* The start of the body usually says why; enough of it to help, not a whole page. */
    int shown = response->body_len > 200 ? 200 : (int)response->body_len;
    ff_record(ctx, kind, retry, "HTTP %u from %s%s%.*s", status, response->url,
              shown > 0 ? ": " : "", shown, response->body);
    return false;
}

/* ---- the export ----------------------------------------------------------------------- */

static ff_ret_area ff__ret;

static void ff_set_ok(const char *text, size_t len) {
    memset(&ff__ret, 0, sizeof ff__ret);
    ff_put_word(&ff__ret, 4, (uint32_t)(uintptr_t)text);
    ff_put_word(&ff__ret, 8, (uint32_t)len);
}

static void ff_set_err(ff_arena *arena, ff_result failure) {
    static const char fallback[] = "out of memory";
    size_t len = sizeof fallback - 1;
    const char *message = failure.message != NULL ? failure.message : "";
    message = ff_utf8_repair(arena, message, strlen(message), &len);
    if (message == NULL) {
        message = fallback;
        len = sizeof fallback - 1;
    }
    memset(&ff__ret, 0, sizeof ff__ret);
    ff__ret.bytes[0] = 1;
    ff__ret.bytes[4] = (uint8_t)((unsigned)failure.kind <= FF_INTERNAL ? failure.kind
                                                                        : FF_INTERNAL);
    ff_put_word(&ff__ret, 8, (uint32_t)(uintptr_t)message);
    ff_put_word(&ff__ret, 12, (uint32_t)len);
    if (failure.retry_after_ms >= 0) {
        ff__ret.bytes[16] = 1;
        ff_put_word(&ff__ret, 20, failure.retry_after_ms > UINT32_MAX
                                      ? UINT32_MAX
                                      : (uint32_t)failure.retry_after_ms);
    }
}

static const ff_json *ff_parse_port(ff_ctx *ctx, const char *what, const char *text, size_t len,
                                    ff_error_kind kind) {
    ff_json_error error;
    const ff_json *value = ff_json_parse(ctx->arena, text, len, &error);
    if (value == NULL) {
        ff_record(ctx, kind, -1, "%s is not valid JSON: %s at line %zu, column %zu", what,
                  error.message, error.line, error.column);
    }
    return value;
}

__attribute__((export_name(FF_INVOKE))) ff_ret_area *ff__invoke(const char *config,
                                                               size_t config_len,
                                                               const char *input,
                                                               size_t input_len) {
    ff_ctx ctx = {0};
    ctx.arena = ff_call_arena();
    if (ctx.arena == NULL) __builtin_trap();
    const ff_json *config_value = ff_parse_port(&ctx, "config", config, config_len,
                                                FF_INVALID_CONFIG);
    const ff_json *input_value =
        config_value != NULL
            ? ff_parse_port(&ctx, "input", input, input_len, FF_INVALID_INPUT)
            : NULL;
    ff_result result = input_value != NULL ? handle(&ctx, config_value, input_value)
                                           : ctx.failure;
    if (result.failed) {
        ff_set_err(ctx.arena, result);
        return &ff__ret;
    }
    size_t len;
    const char *text = ff_json_write(ctx.arena, result.output, &len);
    if (text == NULL) {
        ff_set_err(ctx.arena, ff_fail(FF_INTERNAL, "out of memory writing the output", -1));
    } else {
        ff_set_ok(text, len);
    }
    return &ff__ret;
}

__attribute__((export_name("cabi_post_" FF_INVOKE))) void ff__post_invoke(ff_ret_area *ret) {
    (void)ret;
    ff_arena_reset(ff_call_arena());
}
