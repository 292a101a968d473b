/* flowforge_json.c: the arena, UTF-8 checks and the JSON parser and writer (see the header). */
#include "flowforge_json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---------------------------------------------------------------------------- */

/* Chunks come from malloc; a request bigger than a chunk gets a chunk of its own. */
#define FF_CHUNK_SIZE (64 * 1024)

typedef struct ff_chunk {
    struct ff_chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    max_align_t data[]; /* aligned start of the usable bytes */
} ff_chunk;

struct ff_arena {
    ff_chunk *chunks; /* newest first */
    char *last;       /* the newest allocation, which realloc may extend in place */
    size_t last_size;
};

ff_arena *ff_arena_new(void) { return calloc(1, sizeof(ff_arena)); }

void ff_arena_reset(ff_arena *arena) {
    ff_chunk *chunk = arena->chunks;
    while (chunk != NULL) {
        ff_chunk *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    arena->chunks = NULL;
    arena->last = NULL;
    arena->last_size = 0;
}

void ff_arena_free(ff_arena *arena) {
    if (arena == NULL) return;
    ff_arena_reset(arena);
    free(arena);
}

static size_t ff_align_up(size_t value, size_t align) { return (value + align - 1) & ~(align - 1); }

void *ff_arena_alloc(ff_arena *arena, size_t size, size_t align) {
    if (align == 0) align = 1;
    if (align > _Alignof(max_align_t) || (align & (align - 1)) != 0) return NULL;
    if (size == 0) size = 1; /* distinct pointers for empty blocks */
    ff_chunk *chunk = arena->chunks;
    size_t start = chunk != NULL ? ff_align_up(chunk->used, align) : 0;
    if (chunk == NULL || start > chunk->size || chunk->size - start < size) {
        size_t usable = size > FF_CHUNK_SIZE ? size : FF_CHUNK_SIZE;
        if (usable > SIZE_MAX - sizeof(ff_chunk)) return NULL;
        chunk = malloc(sizeof(ff_chunk) + usable);
        if (chunk == NULL) return NULL;
        chunk->size = usable;
        chunk->used = 0;
        /* A dedicated big chunk goes behind the current one, so the current chunk's free
         * space stays usable for the small allocations that follow. */
        if (size > FF_CHUNK_SIZE && arena->chunks != NULL) {
            chunk->next = arena->chunks->next;
            arena->chunks->next = chunk;
        } else {
            chunk->next = arena->chunks;
            arena->chunks = chunk;
        }
        start = 0;
    }
    char *ptr = (char *)chunk->data + start;
    chunk->used = start + size;
    if (chunk == arena->chunks) {
        arena->last = ptr;
        arena->last_size = size;
    } else {
        arena->last = NULL;
    }
    return ptr;
}

void *ff_arena_realloc(ff_arena *arena, void *ptr, size_t old_size, size_t new_size, size_t align) {
    if (ptr == NULL) return ff_arena_alloc(arena, new_size, align);
    if (new_size <= old_size) return ptr;
    ff_chunk *chunk = arena->chunks;
    if (ptr == arena->last && chunk != NULL) {
        size_t start = (size_t)((char *)ptr - (char *)chunk->data);
        if (chunk->size - start >= new_size) {
            chunk->used = start + new_size;
            arena->last_size = new_size;
            return ptr;
        }
    }
    void *fresh = ff_arena_alloc(arena, new_size, align);
    if (fresh != NULL) memcpy(fresh, ptr, old_size);
    return fresh;
}

char *ff_arena_strndup(ff_arena *arena, const char *text, size_t len) {
    if (len == SIZE_MAX) return NULL;
    char *copy = ff_arena_alloc(arena, len + 1, 1);
    if (copy == NULL) return NULL;
    if (len > 0) memcpy(copy, text, len);
    copy[len] = '\0';
    return copy;
}

char *ff_arena_vprintf(ff_arena *arena, const char *format, va_list args) {
    va_list again;
    va_copy(again, args);
    int needed = vsnprintf(NULL, 0, format, args);
    char *text = needed >= 0 ? ff_arena_alloc(arena, (size_t)needed + 1, 1) : NULL;
    if (text != NULL) vsnprintf(text, (size_t)needed + 1, format, again);
    va_end(again);
    return text;
}

char *ff_arena_printf(ff_arena *arena, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *text = ff_arena_vprintf(arena, format, args);
    va_end(args);
    return text;
}

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/* Length of the well-formed sequence at `s` (at most `len` bytes), or 0 when ill-formed.
 * The ranges are those of the Unicode standard's table 3-7. */
static size_t ff_utf8_sequence(const unsigned char *s, size_t len) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;      /* no overlongs */
        else if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;      /* no overlongs */
        else if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (len < need) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < need; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    }
    return need;
}

bool ff_utf8_valid(const char *text, size_t len) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        size_t n = ff_utf8_sequence(s + i, len - i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

static const char FF_REPLACEMENT[] = "\xEF\xBF\xBD"; /* U+FFFD */

const char *ff_utf8_repair(ff_arena *arena, const char *text, size_t len, size_t *out_len) {
    if (ff_utf8_valid(text, len)) {
        if (out_len != NULL) *out_len = len;
        return text;
    }
    ff_buf buf;
    ff_buf_init(&buf, arena);
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        size_t n = ff_utf8_sequence(s + i, len - i);
        if (n == 0) {
            ff_buf_append(&buf, FF_REPLACEMENT, 3);
            i += 1;
        } else {
            ff_buf_append(&buf, text + i, n);
            i += n;
        }
    }
    return ff_buf_finish(&buf, out_len);
}

/* ---- buffer --------------------------------------------------------------------------- */

void ff_buf_init(ff_buf *buf, ff_arena *arena) {
    buf->arena = arena;
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
    buf->failed = false;
}

static bool ff_buf_reserve(ff_buf *buf, size_t more) {
    if (buf->failed) return false;
    if (more > SIZE_MAX - buf->len - 1) {
        buf->failed = true;
        return false;
    }
    size_t need = buf->len + more + 1; /* room for the final NUL */
    if (need <= buf->cap) return true;
    size_t cap = buf->cap < 64 ? 64 : buf->cap;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *data = ff_arena_realloc(buf->arena, buf->data, buf->cap, cap, 1);
    if (data == NULL) {
        buf->failed = true;
        return false;
    }
    buf->data = data;
    buf->cap = cap;
    return true;
}

void ff_buf_append(ff_buf *buf, const char *bytes, size_t len) {
    if (len == 0 || !ff_buf_reserve(buf, len)) return;
    memcpy(buf->data + buf->len, bytes, len);
    buf->len += len;
}

void ff_buf_puts(ff_buf *buf, const char *text) { ff_buf_append(buf, text, strlen(text)); }

void ff_buf_putc(ff_buf *buf, char c) { ff_buf_append(buf, &c, 1); }

char *ff_buf_finish(ff_buf *buf, size_t *out_len) {
    if (!ff_buf_reserve(buf, 0)) return NULL;
    buf->data[buf->len] = '\0';
    if (out_len != NULL) *out_len = buf->len;
    return buf->data;
}

/* ---- values --------------------------------------------------------------------------- */

typedef struct ff_member {
    const char *key;
    size_t key_len;
    ff_json *value;
} ff_member;

struct ff_json {
    ff_json_type type;
    union {
        bool boolean;
        struct {
            double value;
            const char *text; /* the parsed spelling, written back as is; NULL when built */
        } number;
        struct {
            const char *ptr;
            size_t len;
        } string;
        struct {
            ff_arena *arena; /* where the container grows */
            void *items;     /* ff_json*[] for arrays, ff_member[] for objects */
            size_t len;
            size_t cap;
        } list;
    } as;
};

static ff_json *ff_node(ff_arena *arena, ff_json_type type) {
    ff_json *node = ff_arena_alloc(arena, sizeof(ff_json), _Alignof(ff_json));
    if (node == NULL) return NULL;
    memset(node, 0, sizeof *node);
    node->type = type;
    if (type == FF_JSON_ARRAY || type == FF_JSON_OBJECT) node->as.list.arena = arena;
    return node;
}

ff_json *ff_json_null(ff_arena *arena) { return ff_node(arena, FF_JSON_NULL); }

ff_json *ff_json_bool_new(ff_arena *arena, bool value) {
    ff_json *node = ff_node(arena, FF_JSON_BOOL);
    if (node != NULL) node->as.boolean = value;
    return node;
}

ff_json *ff_json_number(ff_arena *arena, double value) {
    ff_json *node = ff_node(arena, FF_JSON_NUMBER);
    if (node != NULL) node->as.number.value = value;
    return node;
}

ff_json *ff_json_stringn(ff_arena *arena, const char *text, size_t len) {
    ff_json *node = ff_node(arena, FF_JSON_STRING);
    if (node == NULL) return NULL;
    char *copy = ff_arena_strndup(arena, text, len);
    if (copy == NULL) return NULL;
    node->as.string.ptr = copy;
    node->as.string.len = len;
    return node;
}

ff_json *ff_json_string(ff_arena *arena, const char *text) {
    return ff_json_stringn(arena, text, strlen(text));
}

ff_json *ff_json_array(ff_arena *arena) { return ff_node(arena, FF_JSON_ARRAY); }

ff_json *ff_json_object(ff_arena *arena) { return ff_node(arena, FF_JSON_OBJECT); }

static bool ff_list_grow(ff_json *node, size_t item_size, size_t item_align) {
    if (node->as.list.len < node->as.list.cap) return true;
    size_t cap = node->as.list.cap < 4 ? 4 : node->as.list.cap * 2;
    if (cap > SIZE_MAX / item_size) return false;
    void *items = ff_arena_realloc(node->as.list.arena, node->as.list.items,
                                   node->as.list.cap * item_size, cap * item_size, item_align);
    if (items == NULL) return false;
    node->as.list.items = items;
    node->as.list.cap = cap;
    return true;
}

bool ff_json_push(ff_json *array, ff_json *item) {
    if (array == NULL || item == NULL || array->type != FF_JSON_ARRAY) return false;
    if (!ff_list_grow(array, sizeof(ff_json *), _Alignof(ff_json *))) return false;
    ((ff_json **)array->as.list.items)[array->as.list.len++] = item;
    return true;
}

/* Append a member without looking for an existing one (the parser keeps repeats). */
static bool ff_object_append(ff_json *object, const char *key, size_t key_len, ff_json *value) {
    if (!ff_list_grow(object, sizeof(ff_member), _Alignof(ff_member))) return false;
    ff_member *member = &((ff_member *)object->as.list.items)[object->as.list.len++];
    member->key = key;
    member->key_len = key_len;
    member->value = value;
    return true;
}

static ff_member *ff_find(const ff_json *object, const char *key, size_t key_len) {
    if (object == NULL || object->type != FF_JSON_OBJECT) return NULL;
    ff_member *members = object->as.list.items;
    for (size_t i = object->as.list.len; i > 0; i--) {
        ff_member *member = &members[i - 1];
        if (member->key_len == key_len && memcmp(member->key, key, key_len) == 0) return member;
    }
    return NULL;
}

bool ff_json_setn(ff_json *object, const char *key, size_t key_len, ff_json *value) {
    if (object == NULL || value == NULL || object->type != FF_JSON_OBJECT) return false;
    ff_member *existing = ff_find(object, key, key_len);
    if (existing != NULL) {
        existing->value = value;
        return true;
    }
    char *copy = ff_arena_strndup(object->as.list.arena, key, key_len);
    return copy != NULL && ff_object_append(object, copy, key_len, value);
}

bool ff_json_set(ff_json *object, const char *key, ff_json *value) {
    return ff_json_setn(object, key, strlen(key), value);
}

bool ff_json_set_string(ff_json *object, const char *key, const char *text) {
    if (object == NULL || object->type != FF_JSON_OBJECT) return false;
    return ff_json_set(object, key, ff_json_string(object->as.list.arena, text));
}

bool ff_json_set_number(ff_json *object, const char *key, double value) {
    if (object == NULL || object->type != FF_JSON_OBJECT) return false;
    return ff_json_set(object, key, ff_json_number(object->as.list.arena, value));
}

bool ff_json_set_bool(ff_json *object, const char *key, bool value) {
    if (object == NULL || object->type != FF_JSON_OBJECT) return false;
    return ff_json_set(object, key, ff_json_bool_new(object->as.list.arena, value));
}

ff_json_type ff_json_type_of(const ff_json *value) {
    return value == NULL ? FF_JSON_NULL : value->type;
}

bool ff_json_is(const ff_json *value, ff_json_type type) {
    return value != NULL && value->type == type;
}

const ff_json *ff_json_get(const ff_json *object, const char *key) {
    if (key == NULL) return NULL;
    ff_member *member = ff_find(object, key, strlen(key));
    return member != NULL ? member->value : NULL;
}

const ff_json *ff_json_at(const ff_json *array, size_t index) {
    if (array == NULL || array->type != FF_JSON_ARRAY || index >= array->as.list.len) return NULL;
    return ((ff_json **)array->as.list.items)[index];
}

size_t ff_json_len(const ff_json *value) {
    if (value == NULL) return 0;
    switch (value->type) {
    case FF_JSON_ARRAY:
    case FF_JSON_OBJECT: return value->as.list.len;
    case FF_JSON_STRING: return value->as.string.len;
    default: return 0;
    }
}

const char *ff_json_key_at(const ff_json *object, size_t index) {
    if (object == NULL || object->type != FF_JSON_OBJECT || index >= object->as.list.len)
        return NULL;
    return ((ff_member *)object->as.list.items)[index].key;
}

const ff_json *ff_json_value_at(const ff_json *object, size_t index) {
    if (object == NULL || object->type != FF_JSON_OBJECT || index >= object->as.list.len)
        return NULL;
    return ((ff_member *)object->as.list.items)[index].value;
}

const char *ff_json_str(const ff_json *value, const char *fallback) {
    return value != NULL && value->type == FF_JSON_STRING ? value->as.string.ptr : fallback;
}

size_t ff_json_strlen(const ff_json *value) {
    return value != NULL && value->type == FF_JSON_STRING ? value->as.string.len : 0;
}

double ff_json_num(const ff_json *value, double fallback) {
    return value != NULL && value->type == FF_JSON_NUMBER ? value->as.number.value : fallback;
}

bool ff_json_int(const ff_json *value, int64_t *out) {
    if (value == NULL || value->type != FF_JSON_NUMBER) return false;
    double number = value->as.number.value;
    const double limit = 9007199254740992.0; /* 2^53: every integer up to it is exact */
    if (!(number >= -limit && number <= limit) || number != floor(number)) return false;
    *out = (int64_t)number;
    return true;
}

bool ff_json_bool(const ff_json *value, bool fallback) {
    return value != NULL && value->type == FF_JSON_BOOL ? value->as.boolean : fallback;
}

ff_json *ff_json_copy(ff_arena *arena, const ff_json *value) {
    if (value == NULL) return ff_json_null(arena);
    switch (value->type) {
    case FF_JSON_NULL: return ff_json_null(arena);
    case FF_JSON_BOOL: return ff_json_bool_new(arena, value->as.boolean);
    case FF_JSON_NUMBER: {
        ff_json *node = ff_json_number(arena, value->as.number.value);
        if (node != NULL && value->as.number.text != NULL) {
            node->as.number.text = ff_arena_strndup(arena, value->as.number.text,
                                                    strlen(value->as.number.text));
        }
        return node;
    }
    case FF_JSON_STRING: return ff_json_stringn(arena, value->as.string.ptr, value->as.string.len);
    case FF_JSON_ARRAY: {
        ff_json *array = ff_json_array(arena);
        for (size_t i = 0; array != NULL && i < value->as.list.len; i++) {
            if (!ff_json_push(array, ff_json_copy(arena, ff_json_at(value, i)))) return NULL;
        }
        return array;
    }
    case FF_JSON_OBJECT: {
        ff_json *object = ff_json_object(arena);
        ff_member *members = value->as.list.items;
        for (size_t i = 0; object != NULL && i < value->as.list.len; i++) {
            char *key = ff_arena_strndup(arena, members[i].key, members[i].key_len);
            ff_json *copy = ff_json_copy(arena, members[i].value);
            if (key == NULL || copy == NULL ||
                !ff_object_append(object, key, members[i].key_len, copy))
                return NULL;
        }
        return object;
    }
    }
    return NULL;
}

bool ff_json_equal(const ff_json *a, const ff_json *b) {
    if (ff_json_type_of(a) != ff_json_type_of(b)) return false;
    if (a == NULL || b == NULL) return true; /* both null (one may be a null node) */
    switch (a->type) {
    case FF_JSON_NULL: return true;
    case FF_JSON_BOOL: return a->as.boolean == b->as.boolean;
    case FF_JSON_NUMBER: return a->as.number.value == b->as.number.value;
    case FF_JSON_STRING:
        return a->as.string.len == b->as.string.len &&
               memcmp(a->as.string.ptr, b->as.string.ptr, a->as.string.len) == 0;
    case FF_JSON_ARRAY:
        if (a->as.list.len != b->as.list.len) return false;
        for (size_t i = 0; i < a->as.list.len; i++) {
            if (!ff_json_equal(ff_json_at(a, i), ff_json_at(b, i))) return false;
        }
        return true;
    case FF_JSON_OBJECT: {
        /* Compare as mappings (last repeat wins, as lookups do). */
        ff_member *members = a->as.list.items;
        for (size_t i = 0; i < a->as.list.len; i++) {
            ff_member *in_b = ff_find(b, members[i].key, members[i].key_len);
            ff_member *in_a = ff_find(a, members[i].key, members[i].key_len);
            if (in_b == NULL || !ff_json_equal(in_a->value, in_b->value)) return false;
        }
        ff_member *others = b->as.list.items;
        for (size_t i = 0; i < b->as.list.len; i++) {
            if (ff_find(a, others[i].key, others[i].key_len) == NULL) return false;
        }
        return true;
    }
    }
    return false;
}

/* ---- parser --------------------------------------------------------------------------- */

typedef struct ff_parser {
    ff_arena *arena;
    const char *text;
    size_t len;
    size_t pos;
    ff_json_error *error;
    bool failed;
} ff_parser;

static void ff_parse_fail(ff_parser *p, const char *message) {
    if (p->failed) return; /* keep the first, innermost reason */
    p->failed = true;
    if (p->error == NULL) return;
    snprintf(p->error->message, sizeof p->error->message, "%s", message);
    p->error->offset = p->pos;
    size_t line = 1, column = 1;
    for (size_t i = 0; i < p->pos && i < p->len; i++) {
        if (p->text[i] == '\n') {
            line++;
            column = 1;
        } else if (((unsigned char)p->text[i] & 0xC0) != 0x80) {
            column++; /* count characters, not UTF-8 continuation bytes */
        }
    }
    p->error->line = line;
    p->error->column = column;
}

static void ff_skip_space(ff_parser *p) {
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static bool ff_literal(ff_parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0) {
        ff_parse_fail(p, "invalid literal");
        return false;
    }
    p->pos += n;
    return true;
}

static int ff_hex4(const char *s) {
    int value = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int digit;
        if (c >= '0' && c <= '9') digit = c - '0';
        else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
        else return -1;
        value = value * 16 + digit;
    }
    return value;
}

static void ff_put_utf8(ff_buf *buf, uint32_t cp) {
    char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    ff_buf_append(buf, out, n);
}

/* A byte that stands for itself inside a JSON string literal: printable ASCII other than
 * the quote and the backslash. */
static inline bool ff_plain_ascii(unsigned char c) {
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* A string literal at p->pos (the opening quote); its decoded bytes and length. */
static bool ff_parse_string(ff_parser *p, const char **out, size_t *out_len) {
    p->pos++; /* the opening quote */
    size_t start = p->pos;
    /* Fast path: no escapes, so the decoded string is a copy of the source bytes. Locals,
     * not p->pos, so the compiler keeps the hot loop in registers. */
    const unsigned char *s = (const unsigned char *)p->text;
    size_t i = p->pos;
    while (i < p->len) {
        unsigned char c = s[i];
        if (ff_plain_ascii(c)) {
            i++;
            continue;
        }
        if (c < 0x80) break; /* a quote, a backslash or a control character */
        size_t n = ff_utf8_sequence(s + i, p->len - i);
        if (n == 0) {
            p->pos = i;
            ff_parse_fail(p, "invalid UTF-8 in string");
            return false;
        }
        i += n;
    }
    p->pos = i;
    if (p->pos < p->len && p->text[p->pos] == '"') {
        *out = ff_arena_strndup(p->arena, p->text + start, p->pos - start);
        *out_len = p->pos - start;
        p->pos++;
        if (*out == NULL) ff_parse_fail(p, "out of memory");
        return *out != NULL;
    }
    ff_buf buf;
    ff_buf_init(&buf, p->arena);
    ff_buf_append(&buf, p->text + start, p->pos - start);
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c == '"') {
            p->pos++;
            *out = ff_buf_finish(&buf, out_len);
            if (*out == NULL) ff_parse_fail(p, "out of memory");
            return *out != NULL;
        }
        if (c < 0x20) {
            ff_parse_fail(p, "control character in string (escape it)");
            return false;
        }
        if (c != '\\') {
            size_t n = ff_utf8_sequence((const unsigned char *)p->text + p->pos, p->len - p->pos);
            if (n == 0) {
                ff_parse_fail(p, "invalid UTF-8 in string");
                return false;
            }
            ff_buf_append(&buf, p->text + p->pos, n);
            p->pos += n;
            continue;
        }
        if (p->pos + 1 >= p->len) break;
        char e = p->text[p->pos + 1];
        const char *simple = NULL;
        switch (e) {
        case '"': simple = "\""; break;
        case '\\': simple = "\\"; break;
        case '/': simple = "/"; break;
        case 'b': simple = "\b"; break;
        case 'f': simple = "\f"; break;
        case 'n': simple = "\n"; break;
        case 'r': simple = "\r"; break;
        case 't': simple = "\t"; break;
        case 'u': break;
        default: p->pos++; ff_parse_fail(p, "invalid escape in string"); return false;
        }
        if (simple != NULL) {
            ff_buf_append(&buf, simple, 1);
            p->pos += 2;
            continue;
        }
        if (p->len - p->pos < 6 || ff_hex4(p->text + p->pos + 2) < 0) {
            ff_parse_fail(p, "invalid \\u escape (four hex digits expected)");
            return false;
        }
        uint32_t cp = (uint32_t)ff_hex4(p->text + p->pos + 2);
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            ff_parse_fail(p, "lone low surrogate in \\u escape");
            return false;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* A high surrogate must be followed by an escaped low one: together one code
             * point beyond the BMP. */
            const char *next = p->text + p->pos + 6;
            int low = p->len - p->pos >= 12 && next[0] == '\\' && next[1] == 'u'
                          ? ff_hex4(next + 2)
                          : -1;
            if (low < 0xDC00 || low > 0xDFFF) {
                ff_parse_fail(p, "lone high surrogate in \\u escape");
                return false;
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)low - 0xDC00);
            p->pos += 6;
        }
        ff_put_utf8(&buf, cp);
        p->pos += 6;
    }
    ff_parse_fail(p, "unterminated string");
    return false;
}

static ff_json *ff_parse_number(ff_parser *p) {
    size_t start = p->pos;
    const char *s = p->text;
    size_t i = p->pos;
    if (i < p->len && s[i] == '-') i++;
    if (i < p->len && s[i] == '0') {
        i++;
    } else if (i < p->len && s[i] >= '1' && s[i] <= '9') {
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    } else {
        p->pos = i;
        ff_parse_fail(p, "invalid number");
        return NULL;
    }
    if (i < p->len && s[i] == '.') {
        i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9') {
            p->pos = i;
            ff_parse_fail(p, "invalid number (digits expected after '.')");
            return NULL;
        }
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9') {
            p->pos = i;
            ff_parse_fail(p, "invalid number (digits expected in exponent)");
            return NULL;
        }
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    char *text = ff_arena_strndup(p->arena, s + start, i - start);
    ff_json *node = text != NULL ? ff_json_number(p->arena, 0) : NULL;
    if (node == NULL) {
        ff_parse_fail(p, "out of memory");
        return NULL;
    }
    double value = strtod(text, NULL);
    if (isinf(value)) {
        ff_parse_fail(p, "number out of range");
        return NULL;
    }
    node->as.number.value = value;
    node->as.number.text = text;
    p->pos = i;
    return node;
}

static ff_json *ff_parse_value(ff_parser *p, int depth);

static ff_json *ff_parse_array(ff_parser *p, int depth) {
    ff_json *array = ff_json_array(p->arena);
    if (array == NULL) {
        ff_parse_fail(p, "out of memory");
        return NULL;
    }
    p->pos++; /* [ */
    ff_skip_space(p);
    if (p->pos < p->len && p->text[p->pos] == ']') {
        p->pos++;
        return array;
    }
    for (;;) {
        ff_json *item = ff_parse_value(p, depth + 1);
        if (item == NULL) return NULL;
        if (!ff_json_push(array, item)) {
            ff_parse_fail(p, "out of memory");
            return NULL;
        }
        ff_skip_space(p);
        if (p->pos < p->len && p->text[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->text[p->pos] == ']') {
            p->pos++;
            return array;
        }
        ff_parse_fail(p, "expected ',' or ']' in array");
        return NULL;
    }
}

static ff_json *ff_parse_object(ff_parser *p, int depth) {
    ff_json *object = ff_json_object(p->arena);
    if (object == NULL) {
        ff_parse_fail(p, "out of memory");
        return NULL;
    }
    p->pos++; /* { */
    ff_skip_space(p);
    if (p->pos < p->len && p->text[p->pos] == '}') {
        p->pos++;
        return object;
    }
    for (;;) {
        ff_skip_space(p);
        if (p->pos >= p->len || p->text[p->pos] != '"') {
            ff_parse_fail(p, "expected a string key in object");
            return NULL;
        }
        const char *key;
        size_t key_len;
        if (!ff_parse_string(p, &key, &key_len)) return NULL;
        ff_skip_space(p);
        if (p->pos >= p->len || p->text[p->pos] != ':') {
            ff_parse_fail(p, "expected ':' after object key");
            return NULL;
        }
        p->pos++;
        ff_json *value = ff_parse_value(p, depth + 1);
        if (value == NULL) return NULL;
        if (!ff_object_append(object, key, key_len, value)) {
            ff_parse_fail(p, "out of memory");
            return NULL;
        }
        ff_skip_space(p);
        if (p->pos < p->len && p->text[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->text[p->pos] == '}') {
            p->pos++;
            return object;
        }
        ff_parse_fail(p, "expected ',' or '}' in object");
        return NULL;
    }
}

/* `depth` counts the arrays and objects around the value. */
static ff_json *ff_parse_value(ff_parser *p, int depth) {
    ff_skip_space(p);
    if (p->pos >= p->len) {
        ff_parse_fail(p, "unexpected end of input");
        return NULL;
    }
    ff_json *node;
    char c = p->text[p->pos];
    if ((c == '{' || c == '[') && depth >= FF_JSON_MAX_DEPTH) {
        ff_parse_fail(p, "nesting too deep");
        return NULL;
    }
    switch (c) {
    case '{': return ff_parse_object(p, depth);
    case '[': return ff_parse_array(p, depth);
    case '"': {
        const char *text;
        size_t len;
        if (!ff_parse_string(p, &text, &len)) return NULL;
        node = ff_node(p->arena, FF_JSON_STRING);
        if (node == NULL) break;
        node->as.string.ptr = text;
        node->as.string.len = len;
        return node;
    }
    case 't':
        if (!ff_literal(p, "true")) return NULL;
        node = ff_json_bool_new(p->arena, true);
        break;
    case 'f':
        if (!ff_literal(p, "false")) return NULL;
        node = ff_json_bool_new(p->arena, false);
        break;
    case 'n':
        if (!ff_literal(p, "null")) return NULL;
        node = ff_json_null(p->arena);
        break;
    default:
        if (p->text[p->pos] == '-' || (p->text[p->pos] >= '0' && p->text[p->pos] <= '9'))
            return ff_parse_number(p);
        ff_parse_fail(p, "unexpected character");
        return NULL;
    }
    if (node == NULL) ff_parse_fail(p, "out of memory");
    return node;
}

ff_json *ff_json_parse(ff_arena *arena, const char *text, size_t len, ff_json_error *error) {
    ff_parser p = {arena, text, len, 0, error, false};
    if (error != NULL) memset(error, 0, sizeof *error);
    if (text == NULL) {
        p.len = 0;
        p.text = "";
    }
    ff_json *value = ff_parse_value(&p, 0);
    if (value == NULL) return NULL;
    ff_skip_space(&p);
    if (p.pos != p.len) {
        ff_parse_fail(&p, "unexpected text after the JSON value");
        return NULL;
    }
    return value;
}

/* ---- writer --------------------------------------------------------------------------- */

void ff_json_write_string(ff_buf *buf, const char *text, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)text;
    ff_buf_putc(buf, '"');
    size_t run = 0; /* start of the bytes copied verbatim */
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (ff_plain_ascii(c)) {
            i++;
            continue;
        }
        size_t n = c >= 0x80 ? ff_utf8_sequence(s + i, len - i) : 0;
        if (n > 0) { /* well-formed multi-byte character: verbatim */
            i += n;
            continue;
        }
        ff_buf_append(buf, text + run, i - run);
        switch (c) {
        case '"': ff_buf_puts(buf, "\\\""); break;
        case '\\': ff_buf_puts(buf, "\\\\"); break;
        case '\b': ff_buf_puts(buf, "\\b"); break;
        case '\f': ff_buf_puts(buf, "\\f"); break;
        case '\n': ff_buf_puts(buf, "\\n"); break;
        case '\r': ff_buf_puts(buf, "\\r"); break;
        case '\t': ff_buf_puts(buf, "\\t"); break;
        default:
            if (c < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                ff_buf_append(buf, esc, 6);
            } else {
                ff_buf_append(buf, FF_REPLACEMENT, 3); /* an ill-formed byte */
            }
        }
        i++;
        run = i;
    }
    ff_buf_append(buf, text + run, len - run);
    ff_buf_putc(buf, '"');
}

void ff_json_write_number(ff_buf *buf, double number) {
    char text[40];
    if (!isfinite(number)) {
        ff_buf_puts(buf, "null");
        return;
    }
    if (number == floor(number) && fabs(number) <= 9007199254740992.0) {
        /* Exact integers (up to 2^53) print as integers, without a fraction or exponent. */
        snprintf(text, sizeof text, "%.0f", number == 0 ? 0.0 : number);
        ff_buf_puts(buf, text);
        return;
    }
    /* The shortest of 15, 16, 17 significant digits that reads back to the same double. */
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, number);
        if (strtod(text, NULL) == number) break;
    }
    ff_buf_puts(buf, text);
}

static void ff_write_value(ff_buf *buf, const ff_json *value) {
    switch (ff_json_type_of(value)) {
    case FF_JSON_NULL: ff_buf_puts(buf, "null"); return;
    case FF_JSON_BOOL: ff_buf_puts(buf, value->as.boolean ? "true" : "false"); return;
    case FF_JSON_NUMBER:
        if (value->as.number.text != NULL) ff_buf_puts(buf, value->as.number.text);
        else ff_json_write_number(buf, value->as.number.value);
        return;
    case FF_JSON_STRING:
        ff_json_write_string(buf, value->as.string.ptr, value->as.string.len);
        return;
    case FF_JSON_ARRAY:
        ff_buf_putc(buf, '[');
        for (size_t i = 0; i < value->as.list.len; i++) {
            if (i > 0) ff_buf_putc(buf, ',');
            ff_write_value(buf, ((ff_json **)value->as.list.items)[i]);
        }
        ff_buf_putc(buf, ']');
        return;
    case FF_JSON_OBJECT: {
        ff_member *members = value->as.list.items;
        ff_buf_putc(buf, '{');
        for (size_t i = 0; i < value->as.list.len; i++) {
            if (i > 0) ff_buf_putc(buf, ',');
            ff_json_write_string(buf, members[i].key, members[i].key_len);
            ff_buf_putc(buf, ':');
            ff_write_value(buf, members[i].value);
        }
        ff_buf_putc(buf, '}');
        return;
    }
    }
}

void ff_json_write_to(ff_buf *buf, const ff_json *value) { ff_write_value(buf, value); }

char *ff_json_write(ff_arena *arena, const ff_json *value, size_t *out_len) {
    ff_buf buf;
    ff_buf_init(&buf, arena);
    ff_write_value(&buf, value);
    return ff_buf_finish(&buf, out_len);
}
