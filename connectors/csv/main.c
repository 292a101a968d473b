/* flowforge/csv: parse CSV text into rows, and write rows as CSV text (RFC 4180).
 *
 * Parsing reads quoted fields (with "" for a quote, and delimiters and line breaks inside),
 * CRLF, LF or CR line endings, and an optional header row that turns rows into objects.
 * Writing quotes a field only when it must (it holds the delimiter, a quote or a line
 * break). A malformed document fails with invalid-input naming the line.
 */
#include <string.h>

#include "flowforge.h"

typedef struct options {
    char delimiter;
    bool header;
    bool skip_empty_lines;
    const char *line_ending;
    const ff_json *columns; /* an array of strings, or NULL */
} options;

/* ---- parsing -------------------------------------------------------------------------- */

typedef struct reader {
    ff_ctx *ctx;
    const char *text;
    size_t len;
    size_t pos;
    size_t line; /* 1-based physical line at pos */
    char delimiter;
} reader;

/* Step over one line break at r->pos (CRLF, LF or CR); false when there is none. */
static bool take_line_break(reader *r) {
    if (r->pos >= r->len) return false;
    if (r->text[r->pos] == '\r') {
        r->pos += (r->pos + 1 < r->len && r->text[r->pos + 1] == '\n') ? 2 : 1;
    } else if (r->text[r->pos] == '\n') {
        r->pos += 1;
    } else {
        return false;
    }
    r->line++;
    return true;
}

/* One record into `fields` (an array of strings). Returns false with the failure recorded
 * in *failure when the record is malformed. *blank is set when the line held nothing. */
static bool read_record(reader *r, ff_json *fields, bool *blank, ff_result *failure) {
    ff_arena *arena = r->ctx->arena;
    size_t record_start = r->pos;
    for (;;) {
        ff_json *field;
        if (r->pos < r->len && r->text[r->pos] == '"') {
            size_t opened_on = r->line;
            ff_buf buf;
            ff_buf_init(&buf, arena);
            r->pos++;
            for (;;) {
                if (r->pos >= r->len) {
                    *failure = ff_failf(r->ctx, FF_INVALID_INPUT,
                                        "line %zu: unterminated quote (the quoted field that "
                                        "starts here is never closed)",
                                        opened_on);
                    return false;
                }
                /* Copy up to the next quote or line break in one piece. */
                size_t run = r->pos;
                while (r->pos < r->len && r->text[r->pos] != '"' && r->text[r->pos] != '\r' &&
                       r->text[r->pos] != '\n')
                    r->pos++;
                ff_buf_append(&buf, r->text + run, r->pos - run);
                if (r->pos >= r->len) continue;
                char c = r->text[r->pos];
                if (c == '"') {
                    if (r->pos + 1 < r->len && r->text[r->pos + 1] == '"') {
                        ff_buf_putc(&buf, '"');
                        r->pos += 2;
                        continue;
                    }
                    r->pos++; /* the closing quote */
                    break;
                }
                /* A line break inside quotes belongs to the field, as written. */
                size_t before = r->pos;
                take_line_break(r);
                ff_buf_append(&buf, r->text + before, r->pos - before);
            }
            size_t len;
            char *value = ff_buf_finish(&buf, &len);
            field = value != NULL ? ff_json_stringn(arena, value, len) : NULL;
            if (r->pos < r->len && r->text[r->pos] != r->delimiter && r->text[r->pos] != '\r' &&
                r->text[r->pos] != '\n') {
                *failure = ff_failf(r->ctx, FF_INVALID_INPUT,
                                    "line %zu: unexpected character '%c' after a closing quote "
                                    "(a quote inside a quoted field is written as \"\")",
                                    r->line, r->text[r->pos]);
                return false;
            }
        } else {
            size_t start = r->pos;
            while (r->pos < r->len && r->text[r->pos] != r->delimiter &&
                   r->text[r->pos] != '\r' && r->text[r->pos] != '\n')
                r->pos++;
            field = ff_json_stringn(arena, r->text + start, r->pos - start);
        }
        if (field == NULL || !ff_json_push(fields, field)) {
            *failure = ff_fail(FF_INTERNAL, "out of memory", -1);
            return false;
        }
        if (r->pos < r->len && r->text[r->pos] == r->delimiter) {
            r->pos++;
            continue;
        }
        *blank = r->pos == record_start; /* nothing at all, not even "" */
        take_line_break(r);
        return true;
    }
}

static ff_result parse_csv(ff_ctx *ctx, const options *opt, const ff_json *input) {
    const ff_json *text = ff_json_get(input, "text");
    if (!ff_json_is(text, FF_JSON_STRING)) {
        return ff_fail(FF_INVALID_INPUT, "input.text must be a string (the CSV to parse)", -1);
    }
    reader r = {ctx, ff_json_str(text, ""), ff_json_strlen(text), 0, 1, opt->delimiter};
    if (r.len >= 3 && memcmp(r.text, "\xEF\xBB\xBF", 3) == 0) r.pos = 3; /* a UTF-8 BOM */

    ff_json *rows = ff_json_array(ctx->arena);
    ff_json *columns = NULL;
    ff_result failure;
    while (r.pos < r.len) {
        size_t line = r.line;
        ff_json *fields = ff_json_array(ctx->arena);
        bool blank = false;
        if (fields == NULL) return ff_fail(FF_INTERNAL, "out of memory", -1);
        if (!read_record(&r, fields, &blank, &failure)) return failure;
        if (blank && opt->skip_empty_lines) continue;
        if (opt->header && columns == NULL) {
            for (size_t i = 0; i < ff_json_len(fields); i++) {
                for (size_t j = 0; j < i; j++) {
                    if (ff_json_equal(ff_json_at(fields, i), ff_json_at(fields, j))) {
                        return ff_failf(ctx, FF_INVALID_INPUT,
                                        "line %zu: the header names column \"%s\" twice", line,
                                        ff_json_str(ff_json_at(fields, i), ""));
                    }
                }
            }
            columns = fields;
            continue;
        }
        if (columns == NULL) {
            ff_json_push(rows, fields);
            continue;
        }
        if (ff_json_len(fields) != ff_json_len(columns)) {
            return ff_failf(ctx, FF_INVALID_INPUT,
                            "line %zu: %zu field(s), but the header has %zu column(s)", line,
                            ff_json_len(fields), ff_json_len(columns));
        }
        ff_json *row = ff_json_object(ctx->arena);
        for (size_t i = 0; row != NULL && i < ff_json_len(fields); i++) {
            const ff_json *name = ff_json_at(columns, i);
            ff_json_setn(row, ff_json_str(name, ""), ff_json_strlen(name),
                         (ff_json *)ff_json_at(fields, i));
        }
        if (!ff_json_push(rows, row)) return ff_fail(FF_INTERNAL, "out of memory", -1);
    }

    ff_json *output = ff_json_object(ctx->arena);
    if (opt->header) ff_json_set(output, "columns", columns ? columns : ff_json_array(ctx->arena));
    ff_json_set(output, "rows", rows);
    ff_json_set_number(output, "row_count", (double)ff_json_len(rows));
    return ff_ok(output);
}

/* ---- writing -------------------------------------------------------------------------- */

/* One field, quoted when it holds the delimiter, a quote or a line break (or when it is
 * the only field of its row and empty, so the row is not read back as a blank line). */
static void write_field(ff_buf *out, const char *text, size_t len, char delimiter, bool alone) {
    bool quote = len == 0 && alone;
    for (size_t i = 0; i < len && !quote; i++) {
        char c = text[i];
        quote = c == delimiter || c == '"' || c == '\r' || c == '\n';
    }
    if (!quote) {
        ff_buf_append(out, text, len);
        return;
    }
    ff_buf_putc(out, '"');
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"') {
            ff_buf_append(out, text + run, i + 1 - run);
            ff_buf_putc(out, '"');
            run = i + 1;
        }
    }
    ff_buf_append(out, text + run, len - run);
    ff_buf_putc(out, '"');
}

/* A value as field text: strings as they are, null as nothing, anything else as JSON. */
static void write_value(ff_ctx *ctx, ff_buf *out, const ff_json *value, char delimiter,
                        bool alone) {
    switch (ff_json_type_of(value)) {
    case FF_JSON_NULL: write_field(out, "", 0, delimiter, alone); return;
    case FF_JSON_STRING:
        write_field(out, ff_json_str(value, ""), ff_json_strlen(value), delimiter, alone);
        return;
    default: {
        size_t len;
        const char *text = ff_json_write(ctx->arena, value, &len);
        if (text != NULL) write_field(out, text, len, delimiter, alone);
        return;
    }
    }
}

/* The columns of object rows: the configured ones, else every key in first-seen order. */
static ff_json *object_columns(ff_ctx *ctx, const options *opt, const ff_json *rows) {
    ff_json *columns = ff_json_array(ctx->arena);
    if (opt->columns != NULL) {
        for (size_t i = 0; i < ff_json_len(opt->columns); i++)
            ff_json_push(columns, (ff_json *)ff_json_at(opt->columns, i));
        return columns;
    }
    ff_json *seen = ff_json_object(ctx->arena); /* a set of the keys met so far */
    for (size_t i = 0; i < ff_json_len(rows); i++) {
        const ff_json *row = ff_json_at(rows, i);
        for (size_t k = 0; k < ff_json_len(row) && ff_json_is(row, FF_JSON_OBJECT); k++) {
            const char *key = ff_json_key_at(row, k);
            if (ff_json_get(seen, key) != NULL) continue;
            ff_json_set(seen, key, ff_json_null(ctx->arena));
            ff_json_push(columns, ff_json_string(ctx->arena, key));
        }
    }
    return columns;
}

static ff_result write_csv(ff_ctx *ctx, const options *opt, const ff_json *input) {
    const ff_json *rows = ff_json_get(input, "rows");
    if (!ff_json_is(rows, FF_JSON_ARRAY)) {
        return ff_fail(FF_INVALID_INPUT, "input.rows must be an array of objects or arrays", -1);
    }
    bool any_object = false;
    for (size_t i = 0; i < ff_json_len(rows); i++) {
        const ff_json *row = ff_json_at(rows, i);
        if (ff_json_is(row, FF_JSON_OBJECT)) {
            any_object = true;
        } else if (!ff_json_is(row, FF_JSON_ARRAY)) {
            return ff_failf(ctx, FF_INVALID_INPUT, "input.rows[%zu] must be an object or an array",
                            i);
        }
    }
    ff_json *columns = any_object || opt->columns != NULL ? object_columns(ctx, opt, rows) : NULL;

    ff_buf out;
    ff_buf_init(&out, ctx->arena);
    if (opt->header && columns != NULL && ff_json_len(columns) > 0) {
        for (size_t c = 0; c < ff_json_len(columns); c++) {
            if (c > 0) ff_buf_putc(&out, opt->delimiter);
            write_value(ctx, &out, ff_json_at(columns, c), opt->delimiter,
                        ff_json_len(columns) == 1);
        }
        ff_buf_puts(&out, opt->line_ending);
    }
    for (size_t i = 0; i < ff_json_len(rows); i++) {
        const ff_json *row = ff_json_at(rows, i);
        bool is_object = ff_json_is(row, FF_JSON_OBJECT);
        size_t count = is_object ? ff_json_len(columns) : ff_json_len(row);
        for (size_t c = 0; c < count; c++) {
            if (c > 0) ff_buf_putc(&out, opt->delimiter);
            const ff_json *value = is_object
                                       ? ff_json_get(row, ff_json_str(ff_json_at(columns, c), ""))
                                       : ff_json_at(row, c);
            write_value(ctx, &out, value, opt->delimiter, count == 1);
        }
        ff_buf_puts(&out, opt->line_ending);
    }
    size_t len;
    const char *text = ff_buf_finish(&out, &len);
    if (text == NULL) return ff_fail(FF_INTERNAL, "out of memory writing the CSV", -1);

    ff_json *output = ff_json_object(ctx->arena);
    ff_json_set(output, "text", ff_json_stringn(ctx->arena, text, len));
    ff_json_set_number(output, "row_count", (double)ff_json_len(rows));
    return ff_ok(output);
}

/* ---- config --------------------------------------------------------------------------- */

static bool read_options(ff_ctx *ctx, const ff_json *config, options *opt, ff_result *failure) {
    const ff_json *delimiter = ff_json_get(config, "delimiter");
    const char *d = ff_json_str(delimiter, ",");
    if ((delimiter != NULL && !ff_json_is(delimiter, FF_JSON_STRING)) ||
        ff_json_strlen(delimiter) > 1 || d[0] == '\0' || (unsigned char)d[0] >= 0x80 ||
        d[0] == '"' || d[0] == '\r' || d[0] == '\n') {
        *failure = ff_fail(FF_INVALID_CONFIG,
                           "config.delimiter must be one ASCII character other than a quote or "
                           "a line break, e.g. \",\", \";\" or \"\\t\"",
                           -1);
        return false;
    }
    opt->delimiter = d[0];
    opt->header = ff_json_bool(ff_json_get(config, "header"), true);
    opt->skip_empty_lines = ff_json_bool(ff_json_get(config, "skip_empty_lines"), true);
    const char *ending = ff_json_str(ff_json_get(config, "line_ending"), "\r\n");
    if (strcmp(ending, "\r\n") != 0 && strcmp(ending, "\n") != 0) {
        *failure = ff_fail(FF_INVALID_CONFIG, "config.line_ending must be \"\\r\\n\" or \"\\n\"",
                           -1);
        return false;
    }
    opt->line_ending = ending;
    opt->columns = ff_json_get(config, "columns");
    for (size_t i = 0; opt->columns != NULL && i < ff_json_len(opt->columns); i++) {
        if (!ff_json_is(ff_json_at(opt->columns, i), FF_JSON_STRING)) {
            *failure = ff_failf(ctx, FF_INVALID_CONFIG, "config.columns[%zu] must be a string", i);
            return false;
        }
    }
    if (opt->columns != NULL && !ff_json_is(opt->columns, FF_JSON_ARRAY)) {
        *failure = ff_fail(FF_INVALID_CONFIG, "config.columns must be an array of strings", -1);
        return false;
    }
    return true;
}

ff_result handle(ff_ctx *ctx, const ff_json *config, const ff_json *input) {
    options opt;
    ff_result failure;
    if (!read_options(ctx, config, &opt, &failure)) return failure;
    const ff_json *op = ff_json_get(config, "operation");
    const char *operation = ff_json_str(op, op == NULL ? "parse" : "(not a string)");
    if (strcmp(operation, "parse") == 0) return parse_csv(ctx, &opt, input);
    if (strcmp(operation, "write") == 0) return write_csv(ctx, &opt, input);
    return ff_failf(ctx, FF_INVALID_CONFIG,
                    "config.operation must be \"parse\" or \"write\", not \"%s\"", operation);
}
