/* flowforge_json.h: a small JSON library for FlowForge connectors written in C.
 *
 * Values live in an arena: every node, string and buffer of one invocation is allocated
 * from it and released at once when the invocation ends, so connector code never frees
 * anything. The library is plain C11 with libc only (no host imports), so it also builds
 * natively for its tests.
 *
 * Conventions:
 *   - Parsing is strict RFC 8259: one value, optional surrounding whitespace, no trailing
 *     commas, no comments, strings must be valid UTF-8 and escapes must be well formed
 *     (a lone UTF-16 surrogate is rejected). Nesting deeper than FF_JSON_MAX_DEPTH is
 *     rejected, so hostile input cannot exhaust the stack.
 *   - Numbers are doubles. A parsed number keeps its text, so it is written back exactly as
 *     it came (large integers and `1.0` survive a round trip unchanged).
 *   - Strings are byte strings with a length; they are also NUL-terminated for convenience
 *     (a string holding "\u0000" is cut short by C string functions: use ff_json_strlen).
 *   - Writing never fails on content: invalid UTF-8 in a string becomes U+FFFD, and a
 *     non-finite number becomes null (JSON has neither).
 *   - Objects keep insertion order. A parsed object with a repeated key keeps both members;
 *     lookups find the last one (as Python and JavaScript do). ff_json_set replaces.
 *   - Readers accept NULL and wrong types and answer with the fallback, so a chain such as
 *     ff_json_str(ff_json_get(ff_json_get(v, "a"), "b"), "") is safe.
 */
#ifndef FLOWFORGE_JSON_H
#define FLOWFORGE_JSON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most arrays and objects a parsed value may nest. */
#define FF_JSON_MAX_DEPTH 256

/* ---- arena ---------------------------------------------------------------------------- */

typedef struct ff_arena ff_arena;

ff_arena *ff_arena_new(void);
/* Release everything allocated from the arena and the arena itself. */
void ff_arena_free(ff_arena *arena);
/* Release everything allocated from the arena; the arena stays usable. */
void ff_arena_reset(ff_arena *arena);
/* Memory aligned to `align` (a power of two); NULL only when memory is exhausted. */
void *ff_arena_alloc(ff_arena *arena, size_t size, size_t align);
/* Grow the block at `ptr` (from this arena, `old_size` bytes) to `new_size`; in place when
 * it is the newest allocation, else by copying. */
void *ff_arena_realloc(ff_arena *arena, void *ptr, size_t old_size, size_t new_size, size_t align);
/* A NUL-terminated copy of `len` bytes. */
char *ff_arena_strndup(ff_arena *arena, const char *text, size_t len);
/* printf into the arena; NULL when memory is exhausted. */
char *ff_arena_printf(ff_arena *arena, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
char *ff_arena_vprintf(ff_arena *arena, const char *format, va_list args);

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/* Whether `len` bytes are well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool ff_utf8_valid(const char *text, size_t len);
/* `text` with every ill-formed sequence replaced by U+FFFD (NUL-terminated; its length in
 * *out_len when that is not NULL). Returns `text` itself when it is already valid. */
const char *ff_utf8_repair(ff_arena *arena, const char *text, size_t len, size_t *out_len);

/* ---- values --------------------------------------------------------------------------- */

typedef enum ff_json_type {
    FF_JSON_NULL,
    FF_JSON_BOOL,
    FF_JSON_NUMBER,
    FF_JSON_STRING,
    FF_JSON_ARRAY,
    FF_JSON_OBJECT,
} ff_json_type;

typedef struct ff_json ff_json;

/* Why parsing failed: a message and where (1-based line and column, 0-based offset). */
typedef struct ff_json_error {
    char message[96];
    size_t offset;
    size_t line;
    size_t column;
} ff_json_error;

/* Parse `len` bytes of JSON text; NULL on malformed input (with `error` filled when it is
 * not NULL) or when memory is exhausted. */
ff_json *ff_json_parse(ff_arena *arena, const char *text, size_t len, ff_json_error *error);

/* Serialise compactly (no insignificant whitespace); NUL-terminated, length in *out_len
 * when that is not NULL. NULL only when memory is exhausted. A NULL value writes `null`. */
char *ff_json_write(ff_arena *arena, const ff_json *value, size_t *out_len);

/* Append `value` as JSON to a growing buffer (used by ff_json_write). */
typedef struct ff_buf {
    ff_arena *arena;
    char *data;
    size_t len;
    size_t cap;
    bool failed; /* memory ran out; the content is incomplete */
} ff_buf;
void ff_buf_init(ff_buf *buf, ff_arena *arena);
void ff_buf_append(ff_buf *buf, const char *bytes, size_t len);
void ff_buf_puts(ff_buf *buf, const char *text);
void ff_buf_putc(ff_buf *buf, char c);
/* The bytes so far, NUL-terminated; NULL when memory ran out. */
char *ff_buf_finish(ff_buf *buf, size_t *out_len);
void ff_json_write_to(ff_buf *buf, const ff_json *value);
/* Append `len` bytes as a JSON string literal (quoted, escaped, UTF-8 repaired). */
void ff_json_write_string(ff_buf *buf, const char *text, size_t len);
/* Append a number as JSON (the shortest text that reads back to the same double). */
void ff_json_write_number(ff_buf *buf, double number);

/* Reading. Every reader accepts NULL. */
ff_json_type ff_json_type_of(const ff_json *value); /* FF_JSON_NULL for NULL */
bool ff_json_is(const ff_json *value, ff_json_type type);
/* The member `key` of an object (the last one when repeated), or NULL. */
const ff_json *ff_json_get(const ff_json *object, const char *key);
/* Item `index` of an array, or NULL. */
const ff_json *ff_json_at(const ff_json *array, size_t index);
/* Items of an array, members of an object, bytes of a string; 0 otherwise. */
size_t ff_json_len(const ff_json *value);
/* Member `index` of an object: its key (NULL when out of range) and value. */
const char *ff_json_key_at(const ff_json *object, size_t index);
const ff_json *ff_json_value_at(const ff_json *object, size_t index);
const char *ff_json_str(const ff_json *value, const char *fallback);
size_t ff_json_strlen(const ff_json *value);
double ff_json_num(const ff_json *value, double fallback);
/* The number when it is an integer within [-2^53, 2^53]; false otherwise. */
bool ff_json_int(const ff_json *value, int64_t *out);
bool ff_json_bool(const ff_json *value, bool fallback);

/* Building: new values live in `arena`. NULL only when memory is exhausted. */
ff_json *ff_json_null(ff_arena *arena);
ff_json *ff_json_bool_new(ff_arena *arena, bool value);
ff_json *ff_json_number(ff_arena *arena, double value);
ff_json *ff_json_string(ff_arena *arena, const char *text);            /* copies */
ff_json *ff_json_stringn(ff_arena *arena, const char *text, size_t len); /* copies */
ff_json *ff_json_array(ff_arena *arena);
ff_json *ff_json_object(ff_arena *arena);
/* Deep copy of `value` into `arena`. */
ff_json *ff_json_copy(ff_arena *arena, const ff_json *value);
/* Append to an array; false when `array` is not one or memory is exhausted. */
bool ff_json_push(ff_json *array, ff_json *item);
/* Set `key` (copied) of an object, replacing an existing member of that key. */
bool ff_json_set(ff_json *object, const char *key, ff_json *value);
bool ff_json_setn(ff_json *object, const char *key, size_t key_len, ff_json *value);
/* Shorthands that build the value in the object's own arena. */
bool ff_json_set_string(ff_json *object, const char *key, const char *text);
bool ff_json_set_number(ff_json *object, const char *key, double value);
bool ff_json_set_bool(ff_json *object, const char *key, bool value);
/* Deep equality as JSON values (numbers by value, objects regardless of member order). */
bool ff_json_equal(const ff_json *a, const ff_json *b);

#ifdef __cplusplus
}
#endif

#endif
