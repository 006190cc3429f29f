/*
 * nin_edge.c - the C API (nin_edge.h) over onnxruntime's C API.
 *
 * The preprocessing is runtime/preprocess.py written again in C, operation for operation in float32,
 * so that the model sees the same tensor (bit for bit when no resize is needed, within float rounding
 * of a matrix product otherwise). Build it with -ffp-contract=off: a fused multiply-add would round
 * differently from numpy.
 */
#define _POSIX_C_SOURCE 200809L
#include "nin_edge.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <onnxruntime_c_api.h>

#include "json.h"
#include "sha256.h"

/* The Python runtime's limits (runtime/preprocess.py: MAX_IMAGE_PIXELS, MAX_ASPECT_RATIO). */
#define MAX_IMAGE_PIXELS 64000000LL
#define MAX_ASPECT_RATIO 64
/* Images per onnxruntime run for a model with a symbolic batch (RuntimeConfig.max_batch's default). */
#define MAX_BATCH 32
/* A manifest is a few KB (runtime/bundle.py: MAX_MANIFEST_BYTES). */
#define MAX_MANIFEST_BYTES (1 << 20)
#define MANIFEST "manifest.json"
#define BUNDLE_FORMAT "nin-edge-bundle"
#define BUNDLE_FORMAT_VERSION 1

/* ITU-R 601-2 luma, the weights of PIL's convert("L") (runtime/preprocess.py: _LUMA). */
static const float LUMA[3] = {0.299f, 0.587f, 0.114f};

struct nin_model {
    const OrtApi *ort;
    OrtEnv *env;
    OrtSession *session;
    OrtMemoryInfo *memory;
    char *input_name;
    char *output_name;
    int64_t fixed_batch; /* 0: symbolic batch axis */
    nin_info info;
    /* storage behind info's pointers */
    char *model_name, *precision, *path, *color, *resize;
    char **labels;
    char sha256[65]; /* the model's identity, as Classifier.sha256 (nin_model_sha256) */
    float mean[3], std[3];
};

static nin_status set_error(nin_error *err, nin_status code, const char *format, ...) {
    if (err != NULL) {
        va_list args;
        va_start(args, format);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, format, args);
        va_end(args);
    }
    return code;
}

static nin_status ok(nin_error *err) {
    if (err != NULL) {
        err->code = NIN_OK;
        err->message[0] = '\0';
    }
    return NIN_OK;
}

const char *nin_status_name(nin_status status) {
    switch (status) {
    case NIN_OK: return "NIN_OK";
    case NIN_ERR_ARGUMENT: return "NIN_ERR_ARGUMENT";
    case NIN_ERR_IO: return "NIN_ERR_IO";
    case NIN_ERR_MODEL: return "NIN_ERR_MODEL";
    case NIN_ERR_IMAGE: return "NIN_ERR_IMAGE";
    case NIN_ERR_RUNTIME: return "NIN_ERR_RUNTIME";
    case NIN_ERR_MEMORY: return "NIN_ERR_MEMORY";
    }
    return "NIN_ERR_UNKNOWN";
}

const char *nin_onnxruntime_version(void) { return OrtGetApiBase()->GetVersionString(); }

static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *out = malloc(n);
    if (out != NULL) memcpy(out, s, n);
    return out;
}

/* An onnxruntime status as our error (and released); NIN_OK for NULL. */
static nin_status ort_error(const OrtApi *ort, OrtStatus *status, nin_error *err, const char *what,
                            const char *source) {
    if (status == NULL) return NIN_OK;
    nin_status code = set_error(err, NIN_ERR_RUNTIME, "%s '%s': onnxruntime: %s", what, source,
                                ort->GetErrorMessage(status));
    ort->ReleaseStatus(status);
    return code;
}

/* onnxruntime logs warnings to stderr by default; a library must not print. */
static void silent_logger(void *param, OrtLoggingLevel severity, const char *category, const char *logid,
                          const char *code_location, const char *message) {
    (void)param, (void)severity, (void)category, (void)logid, (void)code_location, (void)message;
}

/* -- bundles (runtime/bundle.py) ---------------------------------------------------------------------- */

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path, long long *size) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    if (size != NULL) *size = (long long)st.st_size;
    return 1;
}

static char *join_path(const char *folder, const char *name) {
    size_t a = strlen(folder), b = strlen(name);
    char *out = malloc(a + b + 2);
    if (out == NULL) return NULL;
    memcpy(out, folder, a);
    out[a] = '/';
    memcpy(out + a + 1, name, b + 1);
    return out;
}

/* The whole file as a NUL-terminated string; NULL (errno set) when it cannot be read. */
static char *read_text(const char *path, size_t limit) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    char *buf = malloc(limit + 1);
    size_t n = buf ? fread(buf, 1, limit + 1, f) : 0;
    int bad = buf == NULL || ferror(f) || n > limit;
    fclose(f);
    if (bad) {
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int is_plain_name(const char *name) {
    return name[0] != '\0' && strchr(name, '/') == NULL && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
           strcmp(name, MANIFEST) != 0;
}

static int is_sha256(const char *s) {
    if (strlen(s) != 64) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

/* This CPU's INT8 class, as runtime/int8.py's cpu_class names it. */
static const char *cpu_class(void) {
#if defined(__aarch64__) || defined(__arm__)
    return "arm64";
#elif defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") ? "x86-vnni" : "x86-avx2";
#else
    return "x86-avx2";
#endif
}

/* Check a bundle against its manifest (every file's size and sha256) and pick the `precision` model's
 * .onnx file into *model_path (malloc'ed). */
static nin_status open_bundle(const char *folder, const char *precision, char **model_path, nin_error *err) {
    nin_status code = NIN_OK;
    char why[200];
    json_value manifest;
    char *path = join_path(folder, MANIFEST);
    if (path == NULL) return set_error(err, NIN_ERR_MEMORY, "out of memory");
    long long size = 0;
    if (!is_file(path, &size)) {
        code = set_error(err, NIN_ERR_MODEL, "'%s' is a folder but not a nin-edge bundle: it has no %s", folder,
                         MANIFEST);
        free(path);
        return code;
    }
    if (size > MAX_MANIFEST_BYTES) {
        code = set_error(err, NIN_ERR_MODEL,
                         "bundle manifest '%s' is %lld bytes; a nin-edge manifest is a few KB (at most %d bytes "
                         "read): it is not one",
                         path, size, MAX_MANIFEST_BYTES);
        free(path);
        return code;
    }
    char *text = read_text(path, MAX_MANIFEST_BYTES);
    if (text == NULL) {
        code = set_error(err, NIN_ERR_IO, "cannot read bundle manifest '%s': %s", path, strerror(errno));
        free(path);
        return code;
    }
    int parsed = json_parse(text, &manifest, why, sizeof why);
    free(text);
    if (parsed != 0) {
        code = set_error(err, NIN_ERR_MODEL, "bundle manifest '%s' is not readable JSON: %s", path, why);
        free(path);
        return code;
    }
    const json_value *format = json_get(&manifest, "format");
    const json_value *version = json_get(&manifest, "format_version");
    const json_value *files = json_get(&manifest, "files");
    const json_value *models = json_get(&manifest, "models");
    if (format == NULL || format->type != JSON_STRING || strcmp(format->string, BUNDLE_FORMAT) != 0) {
        code = set_error(err, NIN_ERR_MODEL, "'%s' is not a nin-edge bundle manifest (no \"format\": \"%s\")", path,
                         BUNDLE_FORMAT);
        goto done;
    }
    if (version == NULL || version->type != JSON_NUMBER || version->number < 1 ||
        version->number != floor(version->number)) {
        code = set_error(err, NIN_ERR_MODEL, "bundle manifest '%s': format_version must be a positive integer",
                         path);
        goto done;
    }
    if (version->number > BUNDLE_FORMAT_VERSION) {
        code = set_error(err, NIN_ERR_MODEL,
                         "bundle manifest '%s' has format version %.0f; this library reads up to %d: upgrade "
                         "nin-edge's C library to load it",
                         path, version->number, BUNDLE_FORMAT_VERSION);
        goto done;
    }
    if (files == NULL || files->type != JSON_OBJECT || models == NULL || models->type != JSON_OBJECT) {
        code = set_error(err, NIN_ERR_MODEL, "bundle manifest '%s' lacks its \"files\" or \"models\" table", path);
        goto done;
    }
    /* Every listed file: a plain name, present, of the listed size and sha256. */
    for (size_t i = 0; i < files->count; i++) {
        const char *name = files->keys[i];
        const json_value *digest = json_get(&files->items[i], "sha256");
        const json_value *bytes = json_get(&files->items[i], "bytes");
        if (!is_plain_name(name) || digest == NULL || digest->type != JSON_STRING || !is_sha256(digest->string) ||
            bytes == NULL || bytes->type != JSON_NUMBER || bytes->number < 0) {
            code = set_error(err, NIN_ERR_MODEL,
                             "bundle manifest '%s': the files entry '%s' is damaged or was not written by nin-edge: "
                             "copy the bundle again",
                             path, name);
            goto done;
        }
        char *file = join_path(folder, name);
        if (file == NULL) {
            code = set_error(err, NIN_ERR_MEMORY, "out of memory");
            goto done;
        }
        long long actual = 0;
        char hex[65] = "";
        unsigned long long read_bytes = 0;
        int present = is_file(file, &actual);
        int match = 0;
        if (present && actual == (long long)bytes->number) {
            FILE *f = fopen(file, "rb");
            match = f != NULL && sha256_file(f, hex, &read_bytes) == 0 && strcmp(hex, digest->string) == 0;
            if (f != NULL) fclose(f);
        }
        if (!present)
            code = set_error(err, NIN_ERR_MODEL, "bundle '%s' is missing '%s', which its manifest lists", folder,
                             name);
        else if (!match)
            code = set_error(err, NIN_ERR_MODEL,
                             "bundle file '%s' does not match the sha256 in its manifest: it was altered or "
                             "truncated; copy the bundle again",
                             file);
        free(file);
        if (code != NIN_OK) goto done;
    }
    /* The model: "int8" in a bundle with one INT8 model per machine class is this CPU's. */
    const char *want = precision ? precision : "fp32";
    char key[64];
    if (strcmp(want, "int8") == 0 && json_get(models, "int8") == NULL) {
        snprintf(key, sizeof key, "int8.%s", cpu_class());
        if (json_get(models, key) != NULL) want = key;
    }
    const json_value *entry = json_get(models, want);
    if (entry == NULL) {
        char have[512] = "";
        for (size_t i = 0; i < models->count; i++) {
            size_t used = strlen(have);
            snprintf(have + used, sizeof have - used, "%s%s", i ? ", " : "", models->keys[i]);
        }
        code = set_error(err, NIN_ERR_ARGUMENT,
                         "bundle '%s' has no '%s' model; it has: %s (pass one of these as the precision)", folder,
                         want, have);
        goto done;
    }
    const json_value *onnx = json_get(entry, "onnx");
    if (onnx == NULL || onnx->type != JSON_STRING || json_get(files, onnx->string) == NULL) {
        code = set_error(err, NIN_ERR_MODEL, "bundle manifest '%s': the %s onnx file is not listed", path, want);
        goto done;
    }
    *model_path = join_path(folder, onnx->string);
    if (*model_path == NULL) code = set_error(err, NIN_ERR_MEMORY, "out of memory");
done:
    json_free(&manifest);
    free(path);
    return code;
}

/* -- the model's sha256 (runtime/session.py: ModelSource.sha256, runtime/core/digest.py) -------------- */

/* What nin-infer's model_sha256 column and Classifier.sha256 hold: the sha256 of the model file; for a model
 * whose weights lie in external files, sha256(hex(file) + hex(graph digest)), the graph digest hashing each
 * external initializer as the TensorProto it would be with its bytes in raw_data. The protobuf walk below is
 * digest.py's, field for field, so the two agree byte for byte. */

#define PB_GRAPH 7
#define PB_INITIALIZER 5
#define PB_RAW_DATA 9
#define PB_EXTERNAL_DATA 13
#define PB_DATA_LOCATION 14

typedef struct pb_field {
    uint64_t number, wire;
    size_t start, value, end;
} pb_field;

static int pb_varint(const unsigned char *d, size_t n, size_t *pos, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
        if (*pos >= n) return -1;
        unsigned char byte = d[(*pos)++];
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (byte < 0x80) {
            *out = value;
            return 0;
        }
    }
    return -1;
}

/* The next top-level field of the message d[0..n) at *pos: 1, 0 at the end, -1 when malformed. */
static int pb_next(const unsigned char *d, size_t n, size_t *pos, pb_field *f) {
    if (*pos >= n) return 0;
    uint64_t key, x;
    f->start = *pos;
    if (pb_varint(d, n, pos, &key) != 0) return -1;
    f->number = key >> 3, f->wire = key & 7, f->value = *pos;
    if (f->wire == 0) {
        if (pb_varint(d, n, pos, &x) != 0) return -1;
    } else if (f->wire == 1 || f->wire == 5) {
        *pos += f->wire == 1 ? 8 : 4;
    } else if (f->wire == 2) {
        if (pb_varint(d, n, pos, &x) != 0 || x > n - *pos) return -1;
        f->value = *pos;
        *pos += (size_t)x;
    } else {
        return -1;
    }
    if (*pos > n) return -1;
    f->end = *pos;
    return 1;
}

/* Whether the TensorProto t[0..n) keeps its bytes in an external file (data_location EXTERNAL). */
static int pb_is_external(const unsigned char *t, size_t n) {
    size_t pos = 0;
    pb_field f;
    uint64_t location;
    while (pb_next(t, n, &pos, &f) == 1) {
        if (f.number != PB_DATA_LOCATION || f.wire != 0) continue;
        pos = f.value;
        return pb_varint(t, n, &pos, &location) == 0 && location == 1; /* the first entry decides */
    }
    return 0;
}

static size_t pb_encode_varint(uint64_t value, unsigned char out[10]) {
    size_t i = 0;
    do {
        out[i] = value & 0x7F;
        value >>= 7;
        if (value) out[i] |= 0x80;
        i++;
    } while (value);
    return i;
}

/* A whole number as Python's int() reads an external_data value (digits only; -1 when not one). */
static long long pb_number(const unsigned char *s, size_t n) {
    long long v = 0;
    if (n == 0 || n > 18) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Hash one external initializer (the TensorProto t[0..n)) into ctx; 0, or -1 with `why` filled. */
static int feed_external(sha256_ctx *ctx, const unsigned char *t, size_t n, const char *folder, char *why,
                         size_t why_size) {
    char location[4096] = "";
    long long offset = 0, length = -1;
    size_t pos = 0, before = 0, after = 0;
    pb_field f;
    int r;
    while ((r = pb_next(t, n, &pos, &f)) == 1) {
        if (f.number == PB_EXTERNAL_DATA && f.wire == 2) {
            const unsigned char *e = t + f.value;
            size_t en = f.end - f.value, epos = 0;
            pb_field g;
            const unsigned char *key = NULL, *val = NULL;
            size_t key_n = 0, val_n = 0;
            while (pb_next(e, en, &epos, &g) == 1) {
                if (g.number == 1) key = e + g.value, key_n = g.end - g.value;
                if (g.number == 2) val = e + g.value, val_n = g.end - g.value;
            }
            if (key_n == 8 && memcmp(key, "location", 8) == 0 && val_n < sizeof location) {
                memcpy(location, val, val_n);
                location[val_n] = '\0';
            } else if (key_n == 6 && memcmp(key, "offset", 6) == 0 && val_n) {
                offset = pb_number(val, val_n);
                if (offset < 0) return snprintf(why, why_size, "an external data offset is not a number"), -1;
            } else if (key_n == 6 && memcmp(key, "length", 6) == 0 && val_n) {
                length = pb_number(val, val_n);
                if (length < 0) return snprintf(why, why_size, "an external data length is not a number"), -1;
            }
        } else if (f.number != PB_DATA_LOCATION && f.number != PB_RAW_DATA) {
            *(f.number < PB_RAW_DATA ? &before : &after) += f.end - f.start;
        }
    }
    if (r < 0) return snprintf(why, why_size, "a tensor is malformed"), -1;
    if (location[0] == '\0' || location[0] == '/' || strcmp(location, "..") == 0 || strncmp(location, "../", 3) == 0 ||
        strstr(location, "/../") != NULL || (strlen(location) >= 3 && strcmp(location + strlen(location) - 3, "/..") == 0))
        return snprintf(why, why_size, "external data location '%s' is not a path inside the model's folder", location),
               -1;
    char *path = join_path(folder, location);
    long long size = 0;
    if (path == NULL) return snprintf(why, why_size, "out of memory"), -1;
    if (!is_file(path, &size)) {
        snprintf(why, why_size, "its external data file '%s' does not exist", path);
        free(path);
        return -1;
    }
    if (length < 0) length = size - offset;
    if (length < 0 || offset + length > size) {
        snprintf(why, why_size, "its external data file '%s' has %lld bytes; a tensor claims bytes %lld to %lld", path,
                 size, offset, offset + length);
        free(path);
        return -1;
    }
    /* The tensor's key and length, its fields before raw_data, raw_data from the file, the fields after. */
    unsigned char head[32], raw_key[16];
    size_t raw_n = pb_encode_varint(PB_RAW_DATA << 3 | 2, raw_key);
    raw_n += pb_encode_varint((uint64_t)length, raw_key + raw_n);
    size_t head_n = pb_encode_varint(PB_INITIALIZER << 3 | 2, head);
    head_n += pb_encode_varint(before + raw_n + (uint64_t)length + after, head + head_n);
    sha256_update(ctx, head, head_n);
    for (int pass = 0; pass < 2; pass++) {
        pos = 0;
        while (pb_next(t, n, &pos, &f) == 1)
            if (!(f.number == PB_EXTERNAL_DATA && f.wire == 2) && f.number != PB_DATA_LOCATION &&
                f.number != PB_RAW_DATA && (f.number < PB_RAW_DATA) == (pass == 0))
                sha256_update(ctx, t + f.start, f.end - f.start);
        if (pass == 1) break;
        sha256_update(ctx, raw_key, raw_n);
        FILE *file = fopen(path, "rb");
        int good = file != NULL && fseeko(file, (off_t)offset, SEEK_SET) == 0;
        unsigned char buf[65536];
        for (long long left = length; good && left > 0;) {
            size_t got = fread(buf, 1, left < (long long)sizeof buf ? (size_t)left : sizeof buf, file);
            if (got == 0) good = 0;
            sha256_update(ctx, buf, got);
            left -= (long long)got;
        }
        if (file != NULL) fclose(file);
        if (!good) {
            snprintf(why, why_size, "its external data file '%s' ended early or cannot be read", path);
            free(path);
            return -1;
        }
    }
    free(path);
    return 0;
}

/* The graph digest of the model d[0..n) into hex; *external set when any initializer is external.
 * 0, or -1 with `why` filled. Only needed (and only an error) when the model has external data. */
static int graph_digest(const unsigned char *d, size_t n, const char *folder, char hex[65], int *external, char *why,
                        size_t why_size) {
    sha256_ctx ctx;
    size_t pos = 0;
    pb_field top, f;
    int r, graphs = 0;
    *external = 0;
    sha256_init(&ctx);
    while ((r = pb_next(d, n, &pos, &top)) == 1) {
        if (top.number != PB_GRAPH || top.wire != 2) continue;
        graphs++;
        const unsigned char *g = d + top.value;
        size_t gn = top.end - top.value, gpos = 0;
        while ((r = pb_next(g, gn, &gpos, &f)) == 1) {
            if (f.number == PB_INITIALIZER && f.wire == 2 && pb_is_external(g + f.value, f.end - f.value)) {
                *external = 1;
                if (feed_external(&ctx, g + f.value, f.end - f.value, folder, why, why_size) != 0) return -1;
            } else {
                sha256_update(&ctx, g + f.start, f.end - f.start);
            }
        }
        if (r < 0) break;
    }
    if (r < 0 || graphs == 0) return snprintf(why, why_size, "its protobuf is malformed or holds no graph"), -1;
    sha256_final(&ctx, hex);
    return 0;
}

static nin_status model_sha256(nin_model *m, nin_error *err) {
    long long size = 0;
    FILE *f = fopen(m->path, "rb");
    int readable = f != NULL && is_file(m->path, &size);
    unsigned char *data = readable ? malloc(size ? (size_t)size : 1) : NULL;
    int good = data != NULL && fread(data, 1, (size_t)size, f) == (size_t)size;
    if (f != NULL) fclose(f);
    if (!good) {
        int no_memory = readable && data == NULL; /* only a failed malloc is out of memory; the rest is I/O */
        free(data);
        return no_memory ? set_error(err, NIN_ERR_MEMORY, "out of memory reading model '%s'", m->path)
                         : set_error(err, NIN_ERR_IO, "cannot read model file '%s'", m->path);
    }
    sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, data, (size_t)size);
    sha256_final(&ctx, m->sha256);
    /* The folder external data lies in: the model file's (Path(path).parent). */
    char *folder = copy_string(m->path);
    char *slash = folder ? strrchr(folder, '/') : NULL;
    char graph[65], why[600] = "";
    int external = 0;
    nin_status code = NIN_OK;
    if (folder == NULL) code = set_error(err, NIN_ERR_MEMORY, "out of memory");
    else if (slash == folder) folder[1] = '\0';
    else if (slash != NULL) *slash = '\0';
    else strcpy(folder, ".");
    /* As uses_external_data: a file the walk cannot read has no external data, and is hashed as it is. */
    int walked = code == NIN_OK ? graph_digest(data, (size_t)size, folder, graph, &external, why, sizeof why) : 0;
    if (code == NIN_OK && external) {
        if (walked != 0) {
            code = set_error(err, NIN_ERR_MODEL, "model '%s' is not a readable ONNX file: %s", m->path, why);
        } else {
            char joined[129];
            snprintf(joined, sizeof joined, "%s%s", m->sha256, graph);
            sha256_init(&ctx);
            sha256_update(&ctx, joined, 128);
            sha256_final(&ctx, m->sha256);
        }
    }
    free(folder);
    free(data);
    return code;
}

/* -- metadata (runtime/core/metadata.py) ------------------------------------------------------------- */

/* metadata_props[key] into *value (malloc'ed), NULL when absent. */
static nin_status lookup(nin_model *m, OrtModelMetadata *meta, OrtAllocator *alloc, const char *key, char **value,
                         nin_error *err) {
    char *raw = NULL;
    *value = NULL;
    nin_status code = ort_error(m->ort, m->ort->ModelMetadataLookupCustomMetadataMap(meta, alloc, key, &raw), err,
                                "reading the metadata of model", m->path);
    if (code != NIN_OK || raw == NULL) return code;
    *value = copy_string(raw);
    alloc->Free(alloc, raw);
    return *value ? NIN_OK : set_error(err, NIN_ERR_MEMORY, "out of memory");
}

static int whole_number(const char *text, int *out) {
    json_value v;
    char why[100];
    if (json_parse(text, &v, why, sizeof why) != 0) return 0;
    int good = v.type == JSON_NUMBER && v.number == floor(v.number) && v.number >= 1 && v.number <= 1 << 20;
    if (good) *out = (int)v.number;
    json_free(&v);
    return good;
}

/* The preprocessing JSON: color, resize, scale, mean, std (Preprocessing's defaults where absent). */
static int read_preprocessing(nin_model *m, const char *text, char *why, size_t why_size) {
    json_value pre;
    int channels = m->info.channels;
    if (json_parse(text ? text : "{}", &pre, why, why_size) != 0) return 0;
    int good = 0;
    double scale = 1.0 / 255.0;
    double mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    const json_value *v;
    if (pre.type != JSON_OBJECT) {
        snprintf(why, why_size, "preprocessing must be a JSON object");
        goto done;
    }
    v = json_get(&pre, "color");
    m->color = copy_string(v && v->type == JSON_STRING ? v->string : "grayscale");
    v = json_get(&pre, "resize");
    m->resize = copy_string(v && v->type == JSON_STRING ? v->string : "bilinear");
    if ((v = json_get(&pre, "scale")) != NULL) {
        if (v->type != JSON_NUMBER) { snprintf(why, why_size, "preprocessing scale must be a number"); goto done; }
        scale = v->number;
    }
    for (int which = 0; which < 2; which++) {
        const char *name = which ? "std" : "mean";
        double *dst = which ? std : mean;
        if ((v = json_get(&pre, name)) == NULL) continue;
        /* One value for every channel, or one per channel (numpy broadcasting in preprocess.py). */
        if (v->type != JSON_ARRAY || (v->count != 1 && v->count != (size_t)channels)) {
            snprintf(why, why_size, "preprocessing %s must be a list of 1 or %d numbers", name, channels);
            goto done;
        }
        for (size_t c = 0; c < (size_t)channels; c++) {
            const json_value *x = &v->items[v->count == 1 ? 0 : c];
            if (x->type != JSON_NUMBER) { snprintf(why, why_size, "preprocessing %s holds a non-number", name); goto done; }
            dst[c] = x->number;
        }
    }
    if (!(isfinite(scale) && scale > 0)) {
        snprintf(why, why_size, "preprocessing scale must be a positive finite number, got %g", scale);
        goto done;
    }
    for (int c = 0; c < channels; c++) {
        if (!(isfinite(std[c]) && std[c] > 0) || !isfinite(mean[c])) {
            snprintf(why, why_size, "preprocessing std must be positive and finite and mean finite");
            goto done;
        }
        m->mean[c] = (float)mean[c];
        m->std[c] = (float)std[c];
    }
    if (m->color == NULL || m->resize == NULL) { snprintf(why, why_size, "out of memory"); goto done; }
    if (strcmp(m->color, "grayscale") != 0 && strcmp(m->color, "rgb") != 0) {
        snprintf(why, why_size, "preprocessing color must be \"grayscale\" or \"rgb\", got \"%s\"", m->color);
        goto done;
    }
    if (strcmp(m->resize, "bilinear") != 0) {
        snprintf(why, why_size, "preprocessing resize must be \"bilinear\", got \"%s\"", m->resize);
        goto done;
    }
    m->info.scale = (float)scale;
    good = 1;
done:
    json_free(&pre);
    return good;
}

static nin_status read_metadata(nin_model *m, nin_error *err) {
    const OrtApi *ort = m->ort;
    OrtModelMetadata *meta = NULL;
    OrtAllocator *alloc = NULL;
    static const char *const keys[] = {"model", "input_size", "in_channels", "labels", "preprocessing", "precision"};
    char *values[6] = {NULL};
    char why[300] = "";
    nin_status code = ort_error(ort, ort->GetAllocatorWithDefaultOptions(&alloc), err, "loading model", m->path);
    if (code == NIN_OK)
        code = ort_error(ort, ort->SessionGetModelMetadata(m->session, &meta), err, "reading the metadata of model",
                         m->path);
    for (int i = 0; i < 6 && code == NIN_OK; i++) code = lookup(m, meta, alloc, keys[i], &values[i], err);
    if (meta != NULL) ort->ReleaseModelMetadata(meta);
    if (code != NIN_OK) goto done;

    char missing[100] = "";
    for (int i = 0; i < 4; i++)
        if (values[i] == NULL) snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
                                        missing[0] ? ", " : "", keys[i]);
    if (missing[0]) {
        code = set_error(err, NIN_ERR_MODEL,
                         "model '%s' has no nin-edge metadata (%s missing); export it with nin-export", m->path,
                         missing);
        goto done;
    }
    m->model_name = values[0], values[0] = NULL;
    m->precision = values[5] ? values[5] : copy_string("fp32"), values[5] = NULL;
    if (!whole_number(values[1], &m->info.input_size) || !whole_number(values[2], &m->info.channels) ||
        (m->info.channels != 1 && m->info.channels != 3)) {
        snprintf(why, sizeof why, "input_size must be a whole number and in_channels 1 or 3, got %s and %s",
                 values[1], values[2]);
        goto bad;
    }
    json_value labels;
    if (json_parse(values[3], &labels, why, sizeof why) != 0) goto bad;
    int strings = labels.type == JSON_ARRAY && labels.count > 0;
    for (size_t i = 0; strings && i < labels.count; i++) strings = labels.items[i].type == JSON_STRING;
    if (!strings) {
        json_free(&labels);
        snprintf(why, sizeof why, "labels must be a JSON list of strings");
        goto bad;
    }
    m->labels = calloc(labels.count, sizeof *m->labels);
    if (m->labels == NULL) {
        json_free(&labels);
        code = set_error(err, NIN_ERR_MEMORY, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < labels.count; i++) {
        m->labels[i] = labels.items[i].string; /* taken over from the JSON tree */
        labels.items[i].string = NULL;
    }
    m->info.label_count = labels.count;
    json_free(&labels);
    if (!read_preprocessing(m, values[4], why, sizeof why)) goto bad;
    goto done;
bad:
    code = set_error(err, NIN_ERR_MODEL, "model '%s' has unreadable nin-edge metadata: %s", m->path, why);
done:
    for (int i = 0; i < 6; i++) free(values[i]);
    return code;
}

/* The session's input (N, C, H, W) and output (N, classes) against the metadata. */
static nin_status read_contract(nin_model *m, nin_error *err) {
    const OrtApi *ort = m->ort;
    OrtAllocator *alloc = NULL;
    OrtTypeInfo *type = NULL;
    const OrtTensorTypeAndShapeInfo *tensor = NULL;
    size_t inputs = 0, outputs = 0, rank = 0;
    int64_t dims[4] = {0};
    char *name = NULL;
    nin_status code = ort_error(ort, ort->GetAllocatorWithDefaultOptions(&alloc), err, "loading model", m->path);
    if (code == NIN_OK) code = ort_error(ort, ort->SessionGetInputCount(m->session, &inputs), err, "loading model", m->path);
    if (code == NIN_OK) code = ort_error(ort, ort->SessionGetOutputCount(m->session, &outputs), err, "loading model", m->path);
    if (code != NIN_OK) return code;
    if (inputs != 1 || outputs < 1)
        return set_error(err, NIN_ERR_MODEL, "model '%s' has %zu inputs and %zu outputs; a nin-edge model has one "
                         "image input and a logits output", m->path, inputs, outputs);
    code = ort_error(ort, ort->SessionGetInputName(m->session, 0, alloc, &name), err, "loading model", m->path);
    if (code != NIN_OK) return code;
    m->input_name = copy_string(name);
    alloc->Free(alloc, name);
    code = ort_error(ort, ort->SessionGetOutputName(m->session, 0, alloc, &name), err, "loading model", m->path);
    if (code != NIN_OK) return code;
    m->output_name = copy_string(name);
    alloc->Free(alloc, name);
    if (m->input_name == NULL || m->output_name == NULL) return set_error(err, NIN_ERR_MEMORY, "out of memory");

    code = ort_error(ort, ort->SessionGetInputTypeInfo(m->session, 0, &type), err, "loading model", m->path);
    if (code == NIN_OK) code = ort_error(ort, ort->CastTypeInfoToTensorInfo(type, &tensor), err, "loading model", m->path);
    if (code == NIN_OK && tensor == NULL) code = set_error(err, NIN_ERR_MODEL, "model '%s': its input is not a tensor", m->path);
    if (code == NIN_OK) code = ort_error(ort, ort->GetDimensionsCount(tensor, &rank), err, "loading model", m->path);
    ONNXTensorElementDataType element = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    if (code == NIN_OK && rank == 4) code = ort_error(ort, ort->GetDimensions(tensor, dims, 4), err, "loading model", m->path);
    if (code == NIN_OK) code = ort_error(ort, ort->GetTensorElementType(tensor, &element), err, "loading model", m->path);
    if (type != NULL) ort->ReleaseTypeInfo(type);
    if (code != NIN_OK) return code;
    int size = m->info.input_size, channels = m->info.channels;
    if (rank != 4 || element != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || (dims[1] > 0 && dims[1] != channels) ||
        (dims[2] > 0 && dims[2] != size) || (dims[3] > 0 && dims[3] != size))
        return set_error(err, NIN_ERR_MODEL,
                         "model '%s': its input is not a float32 (N, %d, %d, %d) tensor as its metadata says", m->path,
                         channels, size, size);
    m->fixed_batch = dims[0] > 0 ? dims[0] : 0;
    return NIN_OK;
}

nin_status nin_open(const char *path, const nin_options *options, nin_model **out, nin_error *err) {
    if (out == NULL) return set_error(err, NIN_ERR_ARGUMENT, "nin_open: the model pointer is NULL");
    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return set_error(err, NIN_ERR_ARGUMENT, "nin_open: no model path given; expected an .onnx file or a bundle folder");
    nin_options defaults = {0, NULL};
    if (options == NULL) options = &defaults;
    if (options->threads < 0)
        return set_error(err, NIN_ERR_ARGUMENT, "threads must be 0 (onnxruntime's default) or more, got %d",
                         options->threads);

    const OrtApiBase *base = OrtGetApiBase();
    const OrtApi *ort = base->GetApi(ORT_API_VERSION);
    if (ort == NULL)
        return set_error(err, NIN_ERR_RUNTIME,
                         "the onnxruntime library %s does not offer C API version %d, which this library was built "
                         "with; use an onnxruntime at least as new as the headers",
                         base->GetVersionString(), ORT_API_VERSION);

    char *model_path = NULL;
    nin_status code;
    if (is_dir(path)) {
        code = open_bundle(path, options->precision, &model_path, err);
        if (code != NIN_OK) return code;
    } else {
        if (options->precision != NULL)
            return set_error(err, NIN_ERR_ARGUMENT,
                             "precision '%s' picks a model of a bundle folder; '%s' is not a folder",
                             options->precision, path);
        if (!is_file(path, NULL))
            return set_error(err, NIN_ERR_IO, "model file '%s' does not exist or is not a file", path);
        model_path = copy_string(path);
        if (model_path == NULL) return set_error(err, NIN_ERR_MEMORY, "out of memory");
    }

    nin_model *m = calloc(1, sizeof *m);
    if (m == NULL) {
        free(model_path);
        return set_error(err, NIN_ERR_MEMORY, "out of memory");
    }
    m->ort = ort;
    m->path = model_path;
    OrtSessionOptions *so = NULL;
    code = ort_error(ort, ort->CreateEnvWithCustomLogger(silent_logger, NULL, ORT_LOGGING_LEVEL_WARNING, "nin_edge",
                                                         &m->env),
                     err, "loading model", m->path);
    if (code == NIN_OK) code = ort_error(ort, ort->CreateSessionOptions(&so), err, "loading model", m->path);
    if (code == NIN_OK && options->threads > 0)
        code = ort_error(ort, ort->SetIntraOpNumThreads(so, options->threads), err, "loading model", m->path);
    if (code == NIN_OK) {
        OrtStatus *status = ort->CreateSession(m->env, m->path, so, &m->session);
        if (status != NULL) {
            code = set_error(err, NIN_ERR_MODEL, "cannot load model '%s': it is not a valid ONNX model (onnxruntime: %s)",
                             m->path, ort->GetErrorMessage(status));
            ort->ReleaseStatus(status);
        }
    }
    if (so != NULL) ort->ReleaseSessionOptions(so);
    if (code == NIN_OK)
        code = ort_error(ort, ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &m->memory), err,
                         "loading model", m->path);
    if (code == NIN_OK) code = read_metadata(m, err);
    if (code == NIN_OK) code = read_contract(m, err);
    if (code == NIN_OK) code = model_sha256(m, err);
    if (code != NIN_OK) {
        nin_close(m);
        return code;
    }
    m->info.model = m->model_name;
    m->info.precision = m->precision;
    m->info.path = m->path;
    m->info.labels = (const char *const *)m->labels;
    m->info.color = m->color;
    m->info.resize = m->resize;
    m->info.mean = m->mean;
    m->info.std = m->std;
    *out = m;
    return ok(err);
}

void nin_close(nin_model *m) {
    if (m == NULL) return;
    const OrtApi *ort = m->ort;
    if (m->session) ort->ReleaseSession(m->session);
    if (m->memory) ort->ReleaseMemoryInfo(m->memory);
    if (m->env) ort->ReleaseEnv(m->env);
    for (size_t i = 0; m->labels && i < m->info.label_count; i++) free(m->labels[i]);
    free(m->labels);
    free(m->input_name);
    free(m->output_name);
    free(m->model_name);
    free(m->precision);
    free(m->path);
    free(m->color);
    free(m->resize);
    free(m);
}

const nin_info *nin_model_info(const nin_model *model) { return model ? &model->info : NULL; }

const char *nin_model_sha256(const nin_model *model) { return model ? model->sha256 : NULL; }

/* -- preprocessing (runtime/preprocess.py) ------------------------------------------------------------ */

static nin_status check_image(const nin_image *im, size_t i, nin_error *err) {
    if (im->pixels == NULL) return set_error(err, NIN_ERR_ARGUMENT, "image %zu: pixels is NULL", i);
    if (im->width <= 0 || im->height <= 0)
        return set_error(err, NIN_ERR_IMAGE, "image %zu: image is empty or has a negative side, %dx%d", i, im->width,
                         im->height);
    if (im->channels < 1 || im->channels > 4)
        return set_error(err, NIN_ERR_ARGUMENT,
                         "image %zu: %d channels; expected 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)", i,
                         im->channels);
    if (im->stride != 0 && im->stride < (size_t)im->width * (size_t)im->channels)
        return set_error(err, NIN_ERR_ARGUMENT, "image %zu: stride %zu is less than width x channels (%zu)", i,
                         im->stride, (size_t)im->width * (size_t)im->channels);
    long long pixels = (long long)im->width * im->height;
    if (pixels > MAX_IMAGE_PIXELS)
        return set_error(err, NIN_ERR_IMAGE, "image %zu: image of %dx%d pixels exceeds the limit of %lld", i,
                         im->width, im->height, MAX_IMAGE_PIXELS);
    int lo = im->width < im->height ? im->width : im->height, hi = im->width ^ im->height ^ lo;
    if ((long long)hi > (long long)MAX_ASPECT_RATIO * lo)
        return set_error(err, NIN_ERR_IMAGE,
                         "image %zu: image of %dx%d pixels has sides more than %d:1 apart; refused (resizing it "
                         "would take far more memory than its pixels); crop it first",
                         i, im->width, im->height, MAX_ASPECT_RATIO);
    return NIN_OK;
}

/* The (dst x src) weights of PIL-style bilinear resampling along one axis (_resize_matrix): computed in
 * double, normalised per row, then rounded to float as numpy's astype(float32). Rows are dense. */
static float *resize_matrix(int src, int dst) {
    float *w = malloc((size_t)dst * (size_t)src * sizeof *w);
    double *row = malloc((size_t)src * sizeof *row);
    if (w == NULL || row == NULL) {
        free(w);
        free(row);
        return NULL;
    }
    double scale = (double)src / (double)dst;
    double support = scale > 1.0 ? scale : 1.0;
    for (int i = 0; i < dst; i++) {
        double centre = (i + 0.5) * scale, total = 0.0;
        for (int j = 0; j < src; j++) {
            double v = 1.0 - fabs((j + 0.5) - centre) / support;
            row[j] = v > 0.0 ? v : 0.0;
            total += row[j];
        }
        for (int j = 0; j < src; j++) w[(size_t)i * src + j] = (float)(row[j] / total);
    }
    free(row);
    return w;
}

/* The first and one-past-last nonzero weight of each row, so the products skip the zeros (adding 0 does
 * not change a float sum). */
static void nonzero_span(const float *w, int src, int i, int *first, int *last) {
    int a = 0, b = src;
    while (a < src && w[(size_t)i * src + a] == 0.0f) a++;
    while (b > a && w[(size_t)i * src + b - 1] == 0.0f) b--;
    *first = a;
    *last = b;
}

nin_status nin_prepare(const nin_model *m, const nin_image *im, float *out, nin_error *err) {
    if (m == NULL || im == NULL || out == NULL)
        return set_error(err, NIN_ERR_ARGUMENT, "nin_prepare: model, image and out must not be NULL");
    nin_status code = check_image(im, 0, err);
    if (code != NIN_OK) return code;
    const int W = im->width, H = im->height, S = m->info.input_size, C = m->info.channels;
    const size_t stride = im->stride ? im->stride : (size_t)W * (size_t)im->channels;
    /* Grey when the model takes one channel or its color is grayscale (_to_channels). */
    const int grey = C == 1 || strcmp(m->info.color, "grayscale") == 0;
    const int planes = grey ? 1 : 3;
    float *img = malloc((size_t)W * H * planes * sizeof *img);
    if (img == NULL) return set_error(err, NIN_ERR_MEMORY, "out of memory");
    for (int y = 0; y < H; y++) {
        const uint8_t *p = im->pixels + (size_t)y * stride;
        float *q = img + (size_t)y * W * planes;
        for (int x = 0; x < W; x++, p += im->channels) {
            if (im->channels == 1) {
                for (int c = 0; c < planes; c++) *q++ = (float)p[0];
            } else if (grey) { /* RGB(A) to luma, as img @ _LUMA; grey + alpha is RGB to Pillow (convert("RGB")) */
                const uint8_t *rgb = im->channels == 2 ? (const uint8_t[3]){p[0], p[0], p[0]} : p;
                float r = (float)rgb[0] * LUMA[0], g = (float)rgb[1] * LUMA[1], b = (float)rgb[2] * LUMA[2];
                *q++ = r + g + b;
            } else if (im->channels == 2) {
                for (int c = 0; c < 3; c++) *q++ = (float)p[0];
            } else {
                for (int c = 0; c < 3; c++) *q++ = (float)p[c];
            }
        }
    }
    float *sized = img;
    if (H != S || W != S) {
        float *rows = resize_matrix(H, S), *cols = resize_matrix(W, S);
        float *tmp = malloc((size_t)S * W * planes * sizeof *tmp);
        sized = malloc((size_t)S * S * planes * sizeof *sized);
        if (rows == NULL || cols == NULL || tmp == NULL || sized == NULL) {
            free(rows), free(cols), free(tmp), free(sized), free(img);
            return set_error(err, NIN_ERR_MEMORY, "out of memory");
        }
        /* rows @ image: (S x H) by (H x W), then by cols.T: (S x W) by (W x S). */
        for (int i = 0; i < S; i++) {
            int a, b;
            nonzero_span(rows, H, i, &a, &b);
            for (size_t k = 0; k < (size_t)W * planes; k++) {
                float sum = 0.0f;
                for (int j = a; j < b; j++) sum += rows[(size_t)i * H + j] * img[(size_t)j * W * planes + k];
                tmp[(size_t)i * W * planes + k] = sum;
            }
        }
        for (int l = 0; l < S; l++) {
            int a, b;
            nonzero_span(cols, W, l, &a, &b);
            for (int i = 0; i < S; i++)
                for (int c = 0; c < planes; c++) {
                    float sum = 0.0f;
                    for (int k = a; k < b; k++) sum += tmp[((size_t)i * W + k) * planes + c] * cols[(size_t)l * W + k];
                    sized[((size_t)i * S + l) * planes + c] = sum;
                }
        }
        free(rows), free(cols), free(tmp), free(img);
    }
    /* (pixel * scale - mean) / std per channel, into CHW; a grey image feeds every channel. */
    const float scale = m->info.scale;
    for (int c = 0; c < C; c++) {
        const float mean = m->mean[c], std = m->std[c];
        const int src = planes == 1 ? 0 : c;
        float *dst = out + (size_t)c * S * S;
        for (size_t k = 0; k < (size_t)S * S; k++) dst[k] = (sized[k * planes + src] * scale - mean) / std;
    }
    free(sized);
    return ok(err);
}

/* -- running ------------------------------------------------------------------------------------------- */

nin_status nin_logits(const nin_model *m, const nin_image *images, size_t count, float *out, nin_error *err) {
    if (m == NULL || out == NULL || (images == NULL && count > 0))
        return set_error(err, NIN_ERR_ARGUMENT, "nin_logits: model, images and out must not be NULL");
    if (count == 0) return set_error(err, NIN_ERR_ARGUMENT, "input '%s': got no images; expected at least one",
                                     m->input_name);
    const OrtApi *ort = m->ort;
    const size_t S = (size_t)m->info.input_size, C = (size_t)m->info.channels, K = m->info.label_count;
    const size_t per = C * S * S;
    size_t step = m->fixed_batch ? (size_t)m->fixed_batch : MAX_BATCH;
    if (m->fixed_batch && count % step)
        return set_error(err, NIN_ERR_ARGUMENT, "input '%s': this model has a fixed batch of %zu; got %zu images",
                         m->input_name, step, count);
    for (size_t i = 0; i < count; i++) {
        nin_status code = check_image(&images[i], i, err);
        if (code != NIN_OK) return code;
    }
    float *batch = malloc(step * per * sizeof *batch);
    if (batch == NULL) return set_error(err, NIN_ERR_MEMORY, "out of memory");
    nin_status code = NIN_OK;
    for (size_t start = 0; start < count && code == NIN_OK; start += step) {
        size_t n = count - start < step ? count - start : step;
        /* The images were checked above, so only memory can fail here. */
        for (size_t i = 0; i < n && code == NIN_OK; i++) code = nin_prepare(m, &images[start + i], batch + i * per, err);
        if (code != NIN_OK) break;
        int64_t shape[4] = {(int64_t)n, (int64_t)C, (int64_t)S, (int64_t)S};
        OrtValue *input = NULL, *output = NULL;
        code = ort_error(ort, ort->CreateTensorWithDataAsOrtValue(m->memory, batch, n * per * sizeof *batch, shape, 4,
                                                                  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &input),
                         err, "running model", m->path);
        const char *in_names[1] = {m->input_name}, *out_names[1] = {m->output_name};
        if (code == NIN_OK)
            code = ort_error(ort, ort->Run(m->session, NULL, in_names, (const OrtValue *const *)&input, 1, out_names,
                                           1, &output),
                             err, "running model", m->path);
        size_t elements = 0;
        OrtTensorTypeAndShapeInfo *info = NULL;
        if (code == NIN_OK) code = ort_error(ort, ort->GetTensorTypeAndShape(output, &info), err, "running model", m->path);
        ONNXTensorElementDataType element = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
        if (code == NIN_OK) code = ort_error(ort, ort->GetTensorShapeElementCount(info, &elements), err, "running model", m->path);
        if (code == NIN_OK) code = ort_error(ort, ort->GetTensorElementType(info, &element), err, "running model", m->path);
        if (info != NULL) ort->ReleaseTensorTypeAndShapeInfo(info);
        if (code == NIN_OK && (elements != n * K || element != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT))
            code = set_error(err, NIN_ERR_MODEL,
                             "model '%s' gave %zu outputs for %zu images; its metadata lists %zu labels, so %zu "
                             "float32 logits were expected",
                             m->path, elements, n, K, n * K);
        float *logits = NULL;
        if (code == NIN_OK)
            code = ort_error(ort, ort->GetTensorMutableData(output, (void **)&logits), err, "running model", m->path);
        if (code == NIN_OK) {
            for (size_t i = 0; i < n * K && code == NIN_OK; i++)
                if (!isfinite(logits[i]))
                    code = set_error(err, NIN_ERR_IMAGE,
                                     "input '%s': the model's logits for image %zu are NaN or infinite; its values "
                                     "are outside what the model can take",
                                     m->input_name, start + i / K);
            if (code == NIN_OK) memcpy(out + start * K, logits, n * K * sizeof *out);
        }
        if (output != NULL) ort->ReleaseValue(output);
        if (input != NULL) ort->ReleaseValue(input);
    }
    free(batch);
    return code == NIN_OK ? ok(err) : code;
}

/* numpy's pairwise sum of a contiguous float64 row (np.add.reduce along the last axis): 8 partial sums
 * added as a tree, then the tail, so that probabilities round exactly as the Python runtime's softmax
 * (a plain loop differs in the last bit). Rows longer than 128 split in halves as numpy does. */
static double pairwise_sum(const double *a, size_t n) {
    if (n < 8) {
        double res = 0.0;
        for (size_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        size_t i;
        for (int j = 0; j < 8; j++) r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    size_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

nin_status nin_classify(const nin_model *m, const nin_image *images, size_t count, size_t top_k, nin_prediction *out,
                        nin_error *err) {
    if (m == NULL) return set_error(err, NIN_ERR_ARGUMENT, "nin_classify: the model is NULL");
    const size_t K = m->info.label_count;
    if (top_k < 1 || top_k > K)
        return set_error(err, NIN_ERR_ARGUMENT, "top_k must be a whole number from 1 to %zu, got %zu", K, top_k);
    if (out == NULL) return set_error(err, NIN_ERR_ARGUMENT, "nin_classify: out is NULL");
    float *logits = malloc((count ? count : 1) * K * sizeof *logits);
    double *probs = malloc(K * sizeof *probs);
    if (logits == NULL || probs == NULL) {
        free(logits), free(probs);
        return set_error(err, NIN_ERR_MEMORY, "out of memory");
    }
    nin_status code = nin_logits(m, images, count, logits, err);
    for (size_t i = 0; code == NIN_OK && i < count; i++) {
        /* softmax in double: subtract the row maximum, exp, divide by the sum (classifier.py: softmax) */
        const float *z = logits + i * K;
        double top = z[0];
        for (size_t k = 1; k < K; k++) if (z[k] > top) top = z[k];
        for (size_t k = 0; k < K; k++) probs[k] = exp((double)z[k] - top);
        double total = pairwise_sum(probs, K);
        for (size_t k = 0; k < K; k++) probs[k] /= total;
        /* top-k, best first, ties to the lower index (a stable argsort of -probs) */
        for (size_t j = 0; j < top_k; j++) {
            size_t best = K;
            for (size_t k = 0; k < K; k++) {
                int taken = 0;
                for (size_t t = 0; t < j; t++) taken |= out[i * top_k + t].index == k;
                if (!taken && (best == K || probs[k] > probs[best])) best = k;
            }
            out[i * top_k + j].index = best;
            out[i * top_k + j].label = m->labels[best];
            out[i * top_k + j].probability = probs[best];
        }
    }
    free(logits);
    free(probs);
    return code;
}
