/* Native tests of the C SDK's JSON library (connectors/sdk/c/flowforge_json.c).
 *
 * Built and run by tests/connectors/test_c_connectors.py with the host's compiler (and with
 * sanitizers where the compiler has them). Prints one line per failed check and exits 1 if
 * any failed; prints "ok N checks" otherwise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flowforge_json.h"

static int checks;
static int failures;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        checks++;                                                                      \
        if (!(cond)) {                                                                 \
            failures++;                                                                \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                     \
        }                                                                              \
    } while (0)

static ff_arena *arena;

static const ff_json *parse(const char *text) {
    return ff_json_parse(arena, text, strlen(text), NULL);
}

/* parse(text) then write; compare with `expected`. */
static void round_trip(const char *text, const char *expected) {
    checks++;
    ff_json_error error;
    const ff_json *value = ff_json_parse(arena, text, strlen(text), &error);
    if (value == NULL) {
        failures++;
        printf("FAIL round trip of %s: parse error %s\n", text, error.message);
        return;
    }
    size_t len;
    char *out = ff_json_write(arena, value, &len);
    if (out == NULL || strcmp(out, expected) != 0 || len != strlen(expected)) {
        failures++;
        printf("FAIL round trip of %s: got %s, expected %s\n", text, out ? out : "(null)",
               expected);
    }
}

/* `len` bytes must be rejected, with an error message and position. */
static void rejects(const char *text, size_t len, const char *why) {
    checks++;
    ff_json_error error;
    const ff_json *value = ff_json_parse(arena, text, len, &error);
    if (value != NULL || error.message[0] == '\0' || error.line == 0) {
        failures++;
        printf("FAIL accepted malformed input (%s)\n", why);
    }
}

static void test_round_trips(void) {
    round_trip("null", "null");
    round_trip(" true ", "true");
    round_trip("false", "false");
    round_trip("\"\"", "\"\"");
    round_trip("[]", "[]");
    round_trip("{}", "{}");
    round_trip("{ \"a\" : [1, 2, {\"b\": null}], \"c\": \"d\" }", "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}");
    round_trip("[[[[[]]]]]", "[[[[[]]]]]");
    /* Member order is kept; a repeated key keeps both members. */
    round_trip("{\"z\":1,\"a\":2,\"z\":3}", "{\"z\":1,\"a\":2,\"z\":3}");
    /* Parsed numbers keep their spelling. */
    round_trip("[1.0, -0, 1e3, 1E+3, 2.5e-3, 12345678901234567890, 0.1]",
               "[1.0,-0,1e3,1E+3,2.5e-3,12345678901234567890,0.1]");
    round_trip(" \t\r\n[ 1 ,\n2 ] \n", "[1,2]");
}

static void test_escapes(void) {
    /* Escapes decode; the writer escapes only what it must and keeps UTF-8 as is. */
    round_trip("\"a\\\"b\\\\c\\/d\"", "\"a\\\"b\\\\c/d\"");
    round_trip("\"\\b\\f\\n\\r\\t\"", "\"\\b\\f\\n\\r\\t\"");
    round_trip("\"\\u0001\\u001f\\u007f\"", "\"\\u0001\\u001f\x7f\"");
    round_trip("\"\\u00e9\\u20AC\"", "\"\xc3\xa9\xe2\x82\xac\"");      /* é € */
    round_trip("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"");            /* 😀 from a pair */
    round_trip("\"\xf0\x9f\x98\x80 caf\xc3\xa9\"", "\"\xf0\x9f\x98\x80 caf\xc3\xa9\"");
    round_trip("{\"k\\ney\":1}", "{\"k\\ney\":1}");

    const ff_json *nul = parse("\"a\\u0000b\"");
    CHECK(nul != NULL && ff_json_strlen(nul) == 3 && memcmp(ff_json_str(nul, ""), "a\0b", 3) == 0);
    CHECK(strcmp(ff_json_write(arena, nul, NULL), "\"a\\u0000b\"") == 0);

    /* Built strings with ill-formed UTF-8 are written with U+FFFD, never as raw bytes. */
    ff_json *bad = ff_json_stringn(arena, "x\xff\xc0\xafy\xed\xa0\x80", 8);
    CHECK(strcmp(ff_json_write(arena, bad, NULL),
                 "\"x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"") ==
          0);
    ff_json *ctrl = ff_json_string(arena, "tab\there\x01");
    CHECK(strcmp(ff_json_write(arena, ctrl, NULL), "\"tab\\there\\u0001\"") == 0);
}

static void test_numbers(void) {
    const ff_json *n = parse("-12.5e1");
    CHECK(ff_json_is(n, FF_JSON_NUMBER) && ff_json_num(n, 0) == -125.0);
    int64_t i = 0;
    CHECK(ff_json_int(parse("42"), &i) && i == 42);
    CHECK(ff_json_int(parse("-9007199254740992"), &i) && i == -9007199254740992LL);
    CHECK(!ff_json_int(parse("1.5"), &i));
    CHECK(!ff_json_int(parse("1e300"), &i));
    CHECK(!ff_json_int(parse("\"3\""), &i));
    CHECK(ff_json_num(parse("1e-320"), -1) > 0); /* subnormal, not rejected */

    /* Built numbers: integers plainly, others in the shortest form that reads back. */
    struct {
        double value;
        const char *text;
    } cases[] = {
        {0, "0"},           {-0.0, "0"},        {3, "3"},
        {-42, "-42"},       {0.1, "0.1"},       {1.0 / 3, "0.3333333333333333"},
        {1e300, "1e+300"},  {2.5e-8, "2.5e-08"}, {9007199254740992.0, "9007199254740992"},
        {1e20, "1e+20"},    {NAN, "null"},      {INFINITY, "null"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *out = ff_json_write(arena, ff_json_number(arena, cases[k].value), NULL);
        checks++;
        if (strcmp(out, cases[k].text) != 0) {
            failures++;
            printf("FAIL number %.17g written as %s, expected %s\n", cases[k].value, out,
                   cases[k].text);
        }
        /* Whatever is written reads back to the same double. */
        if (isfinite(cases[k].value)) {
            CHECK(ff_json_num(parse(out), NAN) == cases[k].value);
        }
    }
}

static void test_malformed(void) {
    const char *bad[] = {
        "",            " ",          "[",           "]",          "[1,]",       "[,1]",
        "[1 2]",       "{",          "{\"a\"}",     "{\"a\":}",   "{\"a\":1,}", "{a:1}",
        "{'a':1}",     "{\"a\" 1}",  "01",          "-01",        "1.",         ".5",
        "-",           "+1",         "1e",          "1e+",        "0x10",       "NaN",
        "Infinity",    "tru",        "nul",         "falsey",     "\"abc",      "\"\\x\"",
        "\"\\u12\"",   "\"\\u12G4\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
        "\"a\nb\"",    "\"\t\"",     "[1] 2",       "{} {}",      "1e400",      "-1e400",
        "/* c */ 1",   "[1] // c",   "\"\\",        "\"\\u\"",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) rejects(bad[k], strlen(bad[k]), bad[k]);

    /* Ill-formed UTF-8 inside strings: overlong, surrogate, truncated, out of range. */
    const char *utf8[] = {"\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xe2\x82\"", "\"\xf4\x90\x80\x80\"",
                          "\"\xff\"",     "\"\x80\""};
    for (size_t k = 0; k < sizeof utf8 / sizeof utf8[0]; k++) rejects(utf8[k], strlen(utf8[k]), "utf8");
    rejects("[1, \0]", 6, "NUL byte");
    rejects(NULL, 0, "NULL text");

    /* Where: line and column of the problem. */
    ff_json_error error;
    CHECK(ff_json_parse(arena, "{\n  \"a\": 1,\n  \"b\": tru\n}", 23, &error) == NULL);
    CHECK(error.line == 3 && error.column == 8);
    CHECK(strstr(error.message, "literal") != NULL);

    /* Nesting is bounded: deep enough is fine, deeper is refused, never a crash. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    CHECK(ff_json_parse(arena, deep, 2 * depth, &error) == NULL);
    CHECK(strstr(error.message, "deep") != NULL);
    size_t ok_depth = FF_JSON_MAX_DEPTH;
    CHECK(ff_json_parse(arena, deep + depth - ok_depth, 2 * ok_depth, NULL) != NULL);
    CHECK(ff_json_parse(arena, deep + depth - ok_depth - 1, 2 * ok_depth + 2, NULL) == NULL);
    free(deep);
}

/* Every truncation and every single-byte corruption of a valid document either parses
 * or is rejected cleanly; what parses writes out as valid JSON again. */
static void test_mutations(void) {
    const char *doc = "{\"a\":[1,-2.5e3,true,false,null,\"x\\n\\u00e9\\ud83d\\ude00\"],"
                      "\"b\":{\"c\":{}},\"d\":\"caf\xc3\xa9\"}";
    size_t len = strlen(doc);
    char *copy = malloc(len + 1);
    const char replacements[] = "{}[]\":,\\0-eE.+ tfnu\x80\xff";
    for (size_t cut = 0; cut <= len; cut++) {
        const ff_json *value = ff_json_parse(arena, doc, cut, NULL);
        CHECK(cut == len ? value != NULL : value == NULL);
    }
    for (size_t pos = 0; pos < len; pos++) {
        for (size_t r = 0; r < sizeof replacements - 1; r++) {
            memcpy(copy, doc, len + 1);
            copy[pos] = replacements[r];
            const ff_json *value = ff_json_parse(arena, copy, len, NULL);
            if (value != NULL) {
                size_t out_len;
                char *out = ff_json_write(arena, value, &out_len);
                checks++;
                if (out == NULL || ff_json_parse(arena, out, out_len, NULL) == NULL ||
                    !ff_utf8_valid(out, out_len)) {
                    failures++;
                    printf("FAIL mutation at %zu to %02x writes bad JSON\n", pos,
                           (unsigned char)replacements[r]);
                }
            }
        }
        ff_arena_reset(arena);
    }
    free(copy);
}

static void test_reading(void) {
    const ff_json *v = parse("{\"s\":\"txt\",\"n\":2,\"b\":true,\"a\":[10,20],\"o\":{\"x\":null},"
                             "\"s\":\"last\"}");
    CHECK(strcmp(ff_json_str(ff_json_get(v, "s"), ""), "last") == 0); /* last repeat wins */
    CHECK(ff_json_num(ff_json_get(v, "n"), 0) == 2);
    CHECK(ff_json_bool(ff_json_get(v, "b"), false));
    CHECK(ff_json_len(ff_json_get(v, "a")) == 2);
    CHECK(ff_json_num(ff_json_at(ff_json_get(v, "a"), 1), 0) == 20);
    CHECK(ff_json_at(ff_json_get(v, "a"), 2) == NULL);
    CHECK(ff_json_is(ff_json_get(ff_json_get(v, "o"), "x"), FF_JSON_NULL));
    CHECK(ff_json_get(ff_json_get(v, "o"), "y") == NULL);
    /* Wrong types and NULL give the fallback. */
    CHECK(strcmp(ff_json_str(ff_json_get(v, "n"), "fb"), "fb") == 0);
    CHECK(ff_json_num(ff_json_get(v, "s"), 7) == 7);
    CHECK(ff_json_bool(NULL, true));
    CHECK(ff_json_get(NULL, "x") == NULL && ff_json_at(NULL, 0) == NULL && ff_json_len(NULL) == 0);
    CHECK(ff_json_type_of(NULL) == FF_JSON_NULL);
    CHECK(ff_json_len(v) == 6);
    CHECK(strcmp(ff_json_key_at(v, 0), "s") == 0 && ff_json_key_at(v, 6) == NULL);
    CHECK(ff_json_num(ff_json_value_at(v, 1), 0) == 2);
}

static void test_building(void) {
    ff_json *o = ff_json_object(arena);
    CHECK(ff_json_set_string(o, "name", "Ada"));
    CHECK(ff_json_set_number(o, "n", 1.5));
    CHECK(ff_json_set_bool(o, "ok", true));
    ff_json *list = ff_json_array(arena);
    for (int k = 0; k < 1000; k++) CHECK(ff_json_push(list, ff_json_number(arena, k)));
    CHECK(ff_json_set(o, "list", list));
    CHECK(ff_json_set_string(o, "name", "Grace")); /* replaces, keeps the position */
    CHECK(ff_json_set(o, "nothing", ff_json_null(arena)));
    CHECK(!ff_json_push(o, ff_json_null(arena))); /* not an array */
    CHECK(!ff_json_set(list, "k", ff_json_null(arena))); /* not an object */
    char *out = ff_json_write(arena, o, NULL);
    CHECK(strncmp(out, "{\"name\":\"Grace\",\"n\":1.5,\"ok\":true,\"list\":[0,1,2,", 46) == 0);
    CHECK(strstr(out, ",999],\"nothing\":null}") != NULL);
    CHECK(strcmp(ff_json_write(arena, NULL, NULL), "null") == 0);

    /* Equality is by value: member order and number spelling do not matter. */
    CHECK(ff_json_equal(parse("{\"a\":1,\"b\":[1.0,{}]}"), parse("{\"b\":[1,{}],\"a\":1e0}")));
    CHECK(!ff_json_equal(parse("{\"a\":1}"), parse("{\"a\":1,\"b\":2}")));
    CHECK(!ff_json_equal(parse("[1,2]"), parse("[2,1]")));
    CHECK(!ff_json_equal(parse("\"1\""), parse("1")));

    /* A deep copy survives its source's arena. */
    ff_arena *other = ff_arena_new();
    const ff_json *source = ff_json_parse(other, "{\"k\":[1.0,\"v\"]}", 15, NULL);
    ff_json *copy = ff_json_copy(arena, source);
    ff_arena_free(other);
    CHECK(strcmp(ff_json_write(arena, copy, NULL), "{\"k\":[1.0,\"v\"]}") == 0);
}

static void test_arena_and_utf8(void) {
    ff_arena *a = ff_arena_new();
    /* Alignment, big blocks beside small ones, growth in place and by copying. */
    char *small = ff_arena_alloc(a, 3, 1);
    double *aligned = ff_arena_alloc(a, sizeof(double), 8);
    CHECK(small != NULL && aligned != NULL && ((uintptr_t)aligned % 8) == 0);
    char *big = ff_arena_alloc(a, 1 << 20, 8);
    CHECK(big != NULL);
    memset(big, 'x', 1 << 20);
    char *after = ff_arena_alloc(a, 16, 1);
    CHECK(after != NULL);
    char *grow = ff_arena_alloc(a, 10, 1);
    memcpy(grow, "0123456789", 10);
    char *grown = ff_arena_realloc(a, grow, 10, 20, 1);
    CHECK(grown == grow); /* the newest block grows where it is */
    char *moved = ff_arena_realloc(a, grown, 20, 200000, 1);
    CHECK(moved != NULL && memcmp(moved, "0123456789", 10) == 0);
    CHECK(ff_arena_alloc(a, 8, 3) == NULL); /* not a power of two */
    CHECK(strcmp(ff_arena_printf(a, "%s-%d", "n", 7), "n-7") == 0);
    ff_arena_reset(a);
    CHECK(ff_arena_alloc(a, 8, 8) != NULL);
    ff_arena_free(a);

    CHECK(ff_utf8_valid("", 0));
    CHECK(ff_utf8_valid("caf\xc3\xa9 \xf0\x9f\x98\x80", 10));
    CHECK(!ff_utf8_valid("\xc3", 1));
    CHECK(!ff_utf8_valid("\xf8\x88\x80\x80\x80", 5));
    size_t len;
    const char *fixed = ff_utf8_repair(arena, "a\xffz", 3, &len);
    CHECK(len == 5 && memcmp(fixed, "a\xef\xbf\xbdz", 5) == 0);
    const char *same = "ok";
    CHECK(ff_utf8_repair(arena, same, 2, &len) == same && len == 2);
}

/* A big document: many members and items, parsed and written back unchanged. */
static void test_large(void) {
    ff_buf buf;
    ff_buf_init(&buf, arena);
    ff_buf_putc(&buf, '[');
    for (int k = 0; k < 20000; k++) {
        char item[64];
        snprintf(item, sizeof item, "%s{\"id\":%d,\"name\":\"item %d\"}", k ? "," : "", k, k);
        ff_buf_puts(&buf, item);
    }
    ff_buf_putc(&buf, ']');
    size_t len;
    char *text = ff_buf_finish(&buf, &len);
    const ff_json *value = ff_json_parse(arena, text, len, NULL);
    CHECK(value != NULL && ff_json_len(value) == 20000);
    size_t out_len;
    char *out = ff_json_write(arena, value, &out_len);
    CHECK(out != NULL && out_len == len && memcmp(out, text, len) == 0);
}

int main(void) {
    arena = ff_arena_new();
    test_round_trips();
    test_escapes();
    test_numbers();
    test_malformed();
    test_reading();
    test_building();
    test_arena_and_utf8();
    test_large();
    test_mutations();
    ff_arena_free(arena);
    if (failures > 0) {
        printf("%d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("ok %d checks\n", checks);
    return 0;
}
