/* A small strict JSON reader for nin-edge's metadata and bundle manifests (internal). */
#ifndef NIN_JSON_H
#define NIN_JSON_H

#include <stddef.h>

typedef enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value {
    json_type type;
    double number;
    char *string;             /* JSON_STRING: UTF-8, NUL-terminated (an embedded \u0000 is refused) */
    size_t count;             /* JSON_ARRAY / JSON_OBJECT: number of items */
    char **keys;              /* JSON_OBJECT: the keys, in file order */
    struct json_value *items; /* JSON_ARRAY / JSON_OBJECT: the values */
} json_value;

/* Parse `text` (NUL-terminated) into *out; 0 on success, else -1 with a reason in `why`. */
int json_parse(const char *text, json_value *out, char *why, size_t why_size);
void json_free(json_value *value);
/* The member `key` of an object, or NULL (also when `object` is not an object). */
const json_value *json_get(const json_value *object, const char *key);

#endif
