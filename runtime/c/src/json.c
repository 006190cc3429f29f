#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deep enough for any manifest; a deeper text is refused rather than recursed into. */
#define MAX_DEPTH 64

typedef struct {
    const char *p;
    char *why;
    size_t why_size;
    int depth;
} parser;

static int fail(parser *ps, const char *what) {
    snprintf(ps->why, ps->why_size, "%s", what);
    return -1;
}

static void skip_space(parser *ps) {
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') ps->p++;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *out, unsigned cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string at ps->p (on its opening quote); the decoded text is malloc'ed. */
static int parse_string(parser *ps, char **out) {
    const char *start = ++ps->p;
    size_t room = 0;
    for (const char *q = start; *q && *q != '"'; q++) room += (*q == '\\' && q[1]) ? (q++, 4) : 1;
    char *buf = malloc(room + 1);
    if (buf == NULL) return fail(ps, "out of memory");
    size_t n = 0;
    for (;;) {
        unsigned char c = (unsigned char)*ps->p;
        if (c == '\0') { free(buf); return fail(ps, "unterminated string"); }
        if (c < 0x20) { free(buf); return fail(ps, "control character in a string"); }
        if (c == '"') { ps->p++; break; }
        if (c != '\\') { buf[n++] = (char)c; ps->p++; continue; }
        char e = ps->p[1];
        ps->p += 2;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            unsigned cp, low;
            if (hex4(ps->p, &cp) != 0) { free(buf); return fail(ps, "bad \\u escape"); }
            ps->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair: \uD83D\uDE00 */
                if (ps->p[0] != '\\' || ps->p[1] != 'u' || hex4(ps->p + 2, &low) != 0 || low < 0xDC00 || low > 0xDFFF) {
                    free(buf);
                    return fail(ps, "unpaired surrogate in a \\u escape");
                }
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                free(buf);
                return fail(ps, "unpaired surrogate in a \\u escape");
            }
            if (cp == 0) { free(buf); return fail(ps, "\\u0000 in a string"); }
            n += put_utf8(buf + n, cp);
            break;
        }
        default: free(buf); return fail(ps, "bad escape in a string");
        }
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

static int parse_value(parser *ps, json_value *v);

static int append(parser *ps, json_value *v, char *key, const json_value *item, size_t *cap) {
    if (v->count == *cap) {
        size_t grown = *cap ? *cap * 2 : 8;
        json_value *items = realloc(v->items, grown * sizeof *items);
        if (items == NULL) return fail(ps, "out of memory");
        v->items = items;
        if (v->type == JSON_OBJECT) {
            char **keys = realloc(v->keys, grown * sizeof *keys);
            if (keys == NULL) return fail(ps, "out of memory");
            v->keys = keys;
        }
        *cap = grown;
    }
    if (v->type == JSON_OBJECT) v->keys[v->count] = key;
    v->items[v->count++] = *item;
    return 0;
}

static int parse_container(parser *ps, json_value *v, int object) {
    char close = object ? '}' : ']';
    size_t cap = 0;
    v->type = object ? JSON_OBJECT : JSON_ARRAY;
    if (++ps->depth > MAX_DEPTH) return fail(ps, "nested too deeply");
    ps->p++;
    skip_space(ps);
    if (*ps->p == close) { ps->p++; ps->depth--; return 0; }
    for (;;) {
        char *key = NULL;
        json_value item;
        memset(&item, 0, sizeof item);
        skip_space(ps);
        if (object) {
            if (*ps->p != '"') return fail(ps, "expected a string key");
            if (parse_string(ps, &key) != 0) return -1;
            skip_space(ps);
            if (*ps->p != ':') { free(key); return fail(ps, "expected ':'"); }
            ps->p++;
        }
        if (parse_value(ps, &item) != 0 || append(ps, v, key, &item, &cap) != 0) {
            free(key);
            json_free(&item);
            return -1;
        }
        skip_space(ps);
        if (*ps->p == ',') { ps->p++; continue; }
        if (*ps->p == close) { ps->p++; break; }
        return fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    ps->depth--;
    return 0;
}

static int parse_value(parser *ps, json_value *v) {
    skip_space(ps);
    const char *p = ps->p;
    if (*p == '{') return parse_container(ps, v, 1);
    if (*p == '[') return parse_container(ps, v, 0);
    if (*p == '"') { v->type = JSON_STRING; return parse_string(ps, &v->string); }
    if (strncmp(p, "null", 4) == 0) { v->type = JSON_NULL; ps->p += 4; return 0; }
    if (strncmp(p, "true", 4) == 0) { v->type = JSON_TRUE; ps->p += 4; return 0; }
    if (strncmp(p, "false", 5) == 0) { v->type = JSON_FALSE; ps->p += 5; return 0; }
    /* Python's json.dumps writes NaN and Infinity for non-finite floats; they are read (and refused
     * by the metadata checks later) rather than reported as a syntax error. */
    if (strncmp(p, "NaN", 3) == 0) { v->type = JSON_NUMBER; v->number = 0.0 / 0.0; ps->p += 3; return 0; }
    if (strncmp(p, "Infinity", 8) == 0) { v->type = JSON_NUMBER; v->number = 1.0 / 0.0; ps->p += 8; return 0; }
    if (strncmp(p, "-Infinity", 9) == 0) { v->type = JSON_NUMBER; v->number = -1.0 / 0.0; ps->p += 9; return 0; }
    if (*p == '-' || (*p >= '0' && *p <= '9')) {
        char *end;
        v->type = JSON_NUMBER;
        v->number = strtod(p, &end);
        if (end == p) return fail(ps, "bad number");
        ps->p = end;
        return 0;
    }
    return fail(ps, *p ? "unexpected character" : "unexpected end of text");
}

int json_parse(const char *text, json_value *out, char *why, size_t why_size) {
    parser ps = {text, why, why_size, 0};
    memset(out, 0, sizeof *out);
    if (parse_value(&ps, out) != 0) {
        json_free(out);
        return -1;
    }
    skip_space(&ps);
    if (*ps.p != '\0') {
        json_free(out);
        return fail(&ps, "text after the value");
    }
    return 0;
}

void json_free(json_value *v) {
    if (v == NULL) return;
    for (size_t i = 0; i < v->count; i++) {
        json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->string);
    memset(v, 0, sizeof *v);
}

const json_value *json_get(const json_value *object, const char *key) {
    if (object == NULL || object->type != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < object->count; i++)
        if (strcmp(object->keys[i], key) == 0) return &object->items[i];
    return NULL;
}
