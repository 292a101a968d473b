/* A test connector that drives every path of the C SDK through the real host: secrets,
 * fetch (headers, JSON body, status mapping, host errors), logging and failures. */
#include <string.h>

#include "flowforge.h"

static const char *const kinds[] = {"invalid-input", "invalid-config", "unauthorized",
                                    "not-found",     "rate-limited",   "unavailable",
                                    "internal"};

static ff_result do_fetch(ff_ctx *ctx, const ff_json *config, const ff_json *input) {
    ff_header headers[2];
    size_t count = 0;
    const char *secret_name = ff_json_str(ff_json_get(config, "auth_secret"), NULL);
    if (secret_name != NULL) {
        const char *token = ff_secret(ctx, secret_name);
        if (token == NULL) return ff_failed(ctx);
        headers[count++] = (ff_header){"authorization", ff_arena_printf(ctx->arena, "Bearer %s", token)};
    }
    headers[count++] = (ff_header){"accept", "application/json"};
    const ff_json *json = ff_json_get(input, "json");
    const ff_response *response = ff_fetch(ctx, &(ff_request){
        .method = ff_json_str(ff_json_get(input, "method"), "GET"),
        .url = ff_json_str(ff_json_get(input, "url"), ""),
        .headers = headers,
        .header_count = count,
        .json = json,
        .body = ff_json_str(ff_json_get(input, "body"), NULL),
        /* Short, so the harness's timeout fault ends in the host's transport error. */
        .timeout_ms = 500,
    });
    if (response == NULL || !ff_raise_for_status(ctx, response)) return ff_failed(ctx);
    ff_json *out = ff_json_object(ctx->arena);
    ff_json_set_number(out, "status", response->status);
    const char *type = ff_response_header(response, "Content-Type");
    if (type != NULL && strstr(type, "json") != NULL) {
        const ff_json *body = ff_response_json(ctx, response);
        if (body == NULL) return ff_failed(ctx);
        ff_json_set(out, "json", ff_json_copy(ctx->arena, body));
    } else {
        ff_json_set(out, "text", ff_json_stringn(ctx->arena, response->body, response->body_len));
    }
    return ff_ok(out);
}

/* The status convention probe shared by the four SDKs' tests (test_status_convention.py). */
static ff_result do_status(ff_ctx *ctx, const ff_json *input) {
    const ff_response *response = ff_fetch(ctx, &(ff_request){
        .url = ff_json_str(ff_json_get(input, "url"), ""),
        .timeout_ms = 2000,
    });
    if (response == NULL) return ff_failed(ctx);
    if (ff_json_bool(ff_json_get(input, "check"), false) && !ff_raise_for_status(ctx, response)) {
        return ff_failed(ctx);
    }
    ff_json *out = ff_json_object(ctx->arena);
    ff_json_set_number(out, "status", response->status);
    ff_json_set_bool(out, "ok", ff_response_ok(response));
    return ff_ok(out);
}

ff_result handle(ff_ctx *ctx, const ff_json *config, const ff_json *input) {
    const char *action = ff_json_str(ff_json_get(config, "action"), "echo");
    if (strcmp(action, "echo") == 0) return ff_ok(input);
    if (strcmp(action, "secret") == 0) {
        const char *value = ff_secret(ctx, ff_json_str(ff_json_get(input, "name"), ""));
        if (value == NULL) return ff_failed(ctx);
        ff_json *out = ff_json_object(ctx->arena);
        ff_json_set_number(out, "length", (double)strlen(value));
        return ff_ok(out);
    }
    if (strcmp(action, "fetch") == 0) return do_fetch(ctx, config, input);
    if (strcmp(action, "status") == 0) return do_status(ctx, input);
    if (strcmp(action, "log") == 0) {
        ff_log_debug(ctx, "debug %d", 1);
        ff_log_info(ctx, "info %s", ff_json_str(ff_json_get(input, "message"), ""));
        ff_log_warn(ctx, "warn");
        ff_log_error(ctx, "bad byte \xff here");
        return ff_ok(ff_json_bool_new(ctx->arena, true));
    }
    if (strcmp(action, "fail") == 0) {
        const char *kind = ff_json_str(ff_json_get(input, "kind"), "internal");
        int64_t retry = -1;
        ff_json_int(ff_json_get(input, "retry_after_ms"), &retry);
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
            if (strcmp(kinds[i], kind) == 0) {
                return ff_fail((ff_error_kind)i, ff_json_str(ff_json_get(input, "message"), ""), retry);
            }
        }
        return ff_failf(ctx, FF_INVALID_INPUT, "unknown kind %s", kind);
    }
    if (strcmp(action, "failed-without-cause") == 0) return ff_failed(ctx);
    return ff_failf(ctx, FF_INVALID_CONFIG, "unknown action %s", action);
}
