/*
 * nin-classify - classify image files with a nin-export model through nin-edge's C API.
 *
 *   nin-classify [--top-k K] [--threads N] [--precision P] MODEL IMAGE...
 *
 * MODEL is an .onnx file written by nin-export or a bundle folder. Prints the CSV that
 * `nin-infer MODEL IMAGE... -o - --format csv --top-k K` prints (same columns, same number format,
 * paths as given, the model_sha256 column too), so the two can be diffed. An image that cannot be
 * read gets a row with its error, like nin-infer; the exit status is then 1 and one `error: ...` line on stderr says how many failed.
 * Images are decoded with stb_image (PNG, JPEG, BMP, GIF, TGA, PSD, HDR, PNM); see docs/c-api.md for
 * what differs from the Python runtime's Pillow reader.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STBI_NO_STDIO_WARNINGS
#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#include "stb_image.h"

#include "nin_edge.h"

/* Images decoded and classified together; the model runs them as one batch. */
#define CHUNK 32
/* As the Python runtime's MAX_IMAGE_PIXELS: checked from the header, before decoding. */
#define MAX_PIXELS 64000000LL

typedef struct {
    const char *path;
    uint8_t *pixels;
    nin_image image;
    char error[1200];
} item;

/* Python's repr() of a float: the shortest decimal that reads back to the same double. */
static void format_double(double v, char *out, size_t size) {
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(out, size, "%.*g", precision, v);
        if (strtod(out, NULL) == v) break;
    }
    if (strpbrk(out, ".eninf") == NULL) strncat(out, ".0", size - strlen(out) - 1); /* 1 -> 1.0 */
}

/* One CSV field as Python's csv.writer (QUOTE_MINIMAL, "\n" line ends) writes it. */
static void put_field(const char *s, int last) {
    if (strpbrk(s, ",\"\n\r") != NULL) {
        putchar('"');
        for (const char *p = s; *p; p++) {
            if (*p == '"') putchar('"');
            putchar(*p);
        }
        putchar('"');
    } else {
        fputs(s, stdout);
    }
    putchar(last ? '\n' : ',');
}

/* 16-bit pixels to 8 bits as the Python runtime gets them from Pillow: a 16-bit grey image (mode I;16)
 * is scaled, round(v / 257); with alpha or colour Pillow keeps the high byte. */
static uint8_t *narrow16(const uint16_t *wide, size_t n, int channels) {
    uint8_t *out = malloc(n ? n : 1);
    if (out == NULL) return NULL;
    for (size_t i = 0; i < n; i++)
        out[i] = channels == 1 ? (uint8_t)floor(wide[i] / 257.0 + 0.5) : (uint8_t)(wide[i] >> 8);
    return out;
}

static void decode(item *it) {
    int w = 0, h = 0, c = 0;
    FILE *f = fopen(it->path, "rb");
    if (f == NULL) {
        snprintf(it->error, sizeof it->error, "image file '%s' does not exist", it->path);
        return;
    }
    if (!stbi_info_from_file(f, &w, &h, &c)) {
        snprintf(it->error, sizeof it->error, "cannot read image '%s': %s", it->path, stbi_failure_reason());
        fclose(f);
        return;
    }
    if ((long long)w * h > MAX_PIXELS) {
        snprintf(it->error, sizeof it->error, "image '%s': image of %dx%d pixels exceeds the limit of 64,000,000",
                 it->path, w, h);
        fclose(f);
        return;
    }
    int sixteen = stbi_is_16_bit_from_file(f);
    if (sixteen) {
        uint16_t *wide = stbi_load_from_file_16(f, &w, &h, &c, 0);
        it->pixels = wide ? narrow16(wide, (size_t)w * h * c, c) : NULL;
        stbi_image_free(wide);
    } else {
        it->pixels = stbi_load_from_file(f, &w, &h, &c, 0);
    }
    fclose(f);
    if (it->pixels == NULL) {
        snprintf(it->error, sizeof it->error, "cannot read image '%s': %s", it->path,
                 stbi_failure_reason() ? stbi_failure_reason() : "out of memory");
        return;
    }
    it->image = (nin_image){it->pixels, w, h, c, 0};
}

static int usage(const char *program) {
    fprintf(stderr, "usage: %s [--top-k K] [--threads N] [--precision P] MODEL IMAGE...\n", program);
    return 2;
}

int main(int argc, char **argv) {
    long top_k = 1;
    nin_options options = {0, NULL};
    int arg = 1;
    for (; arg < argc && strncmp(argv[arg], "--", 2) == 0; arg += 2) {
        if (strcmp(argv[arg], "--") == 0) { arg++; break; }
        if (arg + 1 >= argc) return usage(argv[0]);
        char *end;
        long value = strtol(argv[arg + 1], &end, 10);
        if (strcmp(argv[arg], "--precision") == 0) {
            options.precision = argv[arg + 1];
            continue;
        }
        if (*end != '\0' || end == argv[arg + 1]) {
            fprintf(stderr, "error: %s takes a whole number, got '%s'\n", argv[arg], argv[arg + 1]);
            return 1;
        }
        if (strcmp(argv[arg], "--top-k") == 0) top_k = value;
        else if (strcmp(argv[arg], "--threads") == 0) options.threads = (int)value;
        else return usage(argv[0]);
    }
    if (argc - arg < 2) return usage(argv[0]);

    nin_error err;
    nin_model *model = NULL;
    if (nin_open(argv[arg], &options, &model, &err) != NIN_OK) {
        fprintf(stderr, "error: %s\n", err.message);
        return 1;
    }
    const nin_info *info = nin_model_info(model);
    if (top_k < 1 || (size_t)top_k > info->label_count) {
        fprintf(stderr, "error: --top-k must be a whole number from 1 to %zu (this model has %zu classes), got %ld\n",
                info->label_count, info->label_count, top_k);
        nin_close(model);
        return 1;
    }
    size_t k = (size_t)top_k;

    /* The header: input,label,index,probability[,label_2,probability_2...],error,model_sha256: rows.py's
       row_columns. model_sha256 is rows.py's model_sha256(): the first 16 hex digits of the model's sha256. */
    fputs("input,label,index,probability", stdout);
    for (size_t j = 2; j <= k; j++) printf(",label_%zu,probability_%zu", j, j);
    fputs(",error,model_sha256\n", stdout);
    char model_id[17];
    snprintf(model_id, sizeof model_id, "%.16s", nin_model_sha256(model));

    char **paths = argv + arg + 1;
    size_t total = (size_t)(argc - arg - 1), failed = 0;
    char first_error[1200] = "";
    item items[CHUNK];
    nin_image images[CHUNK];
    nin_prediction *top = malloc(CHUNK * k * sizeof *top);
    int status = 0;
    if (top == NULL) {
        fprintf(stderr, "error: out of memory\n");
        nin_close(model);
        return 1;
    }
    for (size_t start = 0; start < total; start += CHUNK) {
        size_t n = total - start < CHUNK ? total - start : CHUNK, good = 0;
        for (size_t i = 0; i < n; i++) {
            memset(&items[i], 0, sizeof items[i]);
            items[i].path = paths[start + i];
            decode(&items[i]);
            if (items[i].pixels != NULL) images[good++] = items[i].image;
        }
        nin_status code = good ? nin_classify(model, images, good, k, top, &err) : NIN_OK;
        if (code != NIN_OK) {
            /* One image the library refused (too large, sides too far apart): classify one by one to say which. */
            for (size_t i = 0, g = 0; i < n; i++) {
                if (items[i].pixels == NULL) continue;
                if (nin_classify(model, &items[i].image, 1, k, top + g * k, &err) != NIN_OK) {
                    snprintf(items[i].error, sizeof items[i].error, "image '%s': %s", items[i].path,
                             strncmp(err.message, "image 0: ", 9) == 0 ? err.message + 9 : err.message);
                    stbi_image_free(items[i].pixels);
                    items[i].pixels = NULL;
                } else {
                    g++;
                }
            }
        }
        for (size_t i = 0, g = 0; i < n; i++) {
            put_field(items[i].path, 0);
            if (items[i].pixels == NULL) {
                for (size_t j = 0; j < 2 * k + 1; j++) putchar(',');
                put_field(items[i].error, 0);
                put_field(model_id, 1);
                if (failed++ == 0) snprintf(first_error, sizeof first_error, "%s", items[i].error);
                continue;
            }
            char number[40];
            for (size_t j = 0; j < k; j++) {
                const nin_prediction *p = &top[g * k + j];
                put_field(p->label, 0);
                if (j == 0) printf("%zu,", p->index);
                format_double(p->probability, number, sizeof number);
                put_field(number, 0);
            }
            putchar(',');  /* no error */
            put_field(model_id, 1);
            g++;
            stbi_image_free(items[i].pixels);
        }
        fflush(stdout);
    }
    if (failed) {
        fprintf(stderr, "error: %zu of %zu images failed (first: %s); each has a row saying why\n", failed, total,
                first_error);
        status = 1;
    }
    free(top);
    nin_close(model);
    return status;
}
