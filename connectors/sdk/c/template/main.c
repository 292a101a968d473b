/* {{name}}: {{description}}
 *
 * `handle` is the whole connector: config and input arrive parsed, the returned value is
 * written as the output. Everything comes from ctx->arena and is released after the call.
 * See flowforge.h (the SDK) for secrets (ff_secret), HTTP (ff_fetch, ff_raise_for_status),
 * logging (ff_log_info, ...) and the JSON functions (ff_json_*).
 */
#include "flowforge.h"

ff_result handle(ff_ctx *ctx, const ff_json *config, const ff_json *input) {
    const char *greeting = ff_json_str(ff_json_get(config, "greeting"), "Hello");
    const char *name = ff_json_str(ff_json_get(input, "name"), NULL);
    if (name == NULL || name[0] == '\0') {
        return ff_fail(FF_INVALID_INPUT, "input.name must be a non-empty string", -1);
    }
    ff_log_debug(ctx, "greeting %s", name);

    ff_json *output = ff_json_object(ctx->arena);
    ff_json_set_string(output, "message", ff_arena_printf(ctx->arena, "%s, %s!", greeting, name));
    return ff_ok(output);
}
