/*
 * nin_edge.h - classify images with a model written by nin-export, from C.
 *
 * The same contract as the Python runtime (nin_edge.runtime.Classifier): a model file (.onnx) or a
 * bundle folder (nin-export --bundle) is opened, its nin-edge metadata (labels, input size and
 * channels, preprocessing) is read from the ONNX metadata_props through onnxruntime's C API, and 8-bit
 * images of any size are converted, resized (PIL's BILINEAR rule, in float) and normalised exactly as
 * the Python runtime does before the model runs.
 *
 * Errors: every function that can fail returns a nin_status and, when `err` is not NULL, fills it
 * with the same code and a one-line message saying what was given, what was expected and what to do.
 * The library never aborts and never prints (onnxruntime's own log is silenced).
 *
 * Threads: a nin_model is read-only after nin_open; nin_classify and nin_logits may be called on one
 * handle from many threads at once. nin_close must not race with them.
 *
 * Memory: everything a nin_model hands out (labels, nin_info strings) lives until nin_close.
 */
#ifndef NIN_EDGE_H
#define NIN_EDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NIN_EDGE_VERSION "0.1.0"

/* The library exports these functions only (it is built with -fvisibility=hidden). */
#if defined(__GNUC__)
#define NIN_EDGE_API __attribute__((visibility("default")))
#else
#define NIN_EDGE_API
#endif

typedef enum nin_status {
    NIN_OK = 0,
    NIN_ERR_ARGUMENT = 1, /* a NULL pointer, a count or top_k out of range, a bad image description */
    NIN_ERR_IO = 2,       /* a file or folder that is missing or unreadable */
    NIN_ERR_MODEL = 3,    /* not a nin-edge model (no or bad metadata), or a damaged bundle */
    NIN_ERR_IMAGE = 4,    /* an image the model cannot take (too large, sides too far apart, channels) */
    NIN_ERR_RUNTIME = 5,  /* onnxruntime refused the model or failed while running it */
    NIN_ERR_MEMORY = 6    /* out of memory */
} nin_status;

/* Room for a message; longer ones are cut. */
#define NIN_ERROR_MESSAGE_SIZE 1024

typedef struct nin_error {
    nin_status code;
    char message[NIN_ERROR_MESSAGE_SIZE];
} nin_error;

typedef struct nin_model nin_model;

/* How to open a model; zero-initialise it ({0}) for the defaults, or pass NULL. */
typedef struct nin_options {
    /* onnxruntime intra-op threads; 0: onnxruntime's default (one per physical core). */
    int threads;
    /* A bundle folder's model: "fp32" (NULL: the default), "fp16", "int8", or a per-machine key such as
     * "int8.arm64" (see the bundle's manifest.json). Must be NULL for a .onnx file. */
    const char *precision;
} nin_options;

/* The model's nin-edge metadata, as nin-export wrote it. */
typedef struct nin_info {
    const char *model;       /* e.g. "nin" */
    const char *precision;   /* "fp32", "fp16", "int8" */
    const char *path;        /* the .onnx file that was loaded (inside the bundle for a folder) */
    int input_size;          /* the square side the model takes, e.g. 112 */
    int channels;            /* 1 (grey) or 3 (RGB) */
    size_t label_count;      /* the number of classes */
    const char *const *labels;
    /* Preprocessing: convert to `color` ("grayscale" or "rgb"), resize with `resize` ("bilinear") to
     * input_size x input_size, then (pixel * scale - mean[c]) / std[c] per channel c, as float32. */
    const char *color;
    const char *resize;
    float scale;
    const float *mean; /* `channels` values */
    const float *std;  /* `channels` values */
} nin_info;

/* One 8-bit image: `height` rows of `width` pixels of `channels` bytes, each row `stride` bytes apart
 * (0: width * channels). channels: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA; alpha is dropped, as the
 * Python runtime does. At most 64,000,000 pixels, sides at most 64:1 apart (as in Python). */
typedef struct nin_image {
    const uint8_t *pixels;
    int width;
    int height;
    int channels;
    size_t stride;
} nin_image;

/* One of an image's top-k classes. `label` points into the model (valid until nin_close). */
typedef struct nin_prediction {
    size_t index;
    const char *label;
    double probability; /* softmax of the logits, computed in double as the Python runtime does */
} nin_prediction;

/* Open a model: an .onnx file written by nin-export, or a bundle folder (every file its manifest.json
 * lists is checked against its sha256 first, as Classifier("bundle_dir") does). */
NIN_EDGE_API nin_status nin_open(const char *path, const nin_options *options, nin_model **model, nin_error *err);

/* Release the model and everything it handed out; NULL is allowed. */
NIN_EDGE_API void nin_close(nin_model *model);

/* The model's metadata; valid until nin_close. */
NIN_EDGE_API const nin_info *nin_model_info(const nin_model *model);

/* The model's identity: the lowercase hex sha256 of the .onnx file that was loaded (for a bundle, the
 * chosen model's file), computed once by nin_open exactly as the Python runtime's Classifier.sha256 (for
 * weights in external data files, the sha256 of the file's digest joined to the graph digest, which
 * covers those files). nin-infer's model_sha256 column holds its first 16 characters. 64 characters;
 * valid until nin_close; NULL for a NULL model. */
NIN_EDGE_API const char *nin_model_sha256(const nin_model *model);

/* Classify `count` images: out[i * top_k + j] is image i's j-th most probable class (best first, ties
 * to the lower index). top_k from 1 to the number of classes; `out` holds count * top_k entries. */
NIN_EDGE_API nin_status nin_classify(const nin_model *model, const nin_image *images, size_t count, size_t top_k,
                        nin_prediction *out, nin_error *err);

/* The raw logits: out[i * label_count + k]; `out` holds count * label_count floats. */
NIN_EDGE_API nin_status nin_logits(const nin_model *model, const nin_image *images, size_t count, float *out, nin_error *err);

/* One image preprocessed into the model's input tensor: channels * input_size * input_size floats in
 * CHW order, what nin_logits feeds the model (for checks against Classifier.prepare). */
NIN_EDGE_API nin_status nin_prepare(const nin_model *model, const nin_image *image, float *out, nin_error *err);

/* A short name of a status code ("NIN_ERR_IO"). */
NIN_EDGE_API const char *nin_status_name(nin_status status);

/* The onnxruntime library version in use, e.g. "1.32.0". */
NIN_EDGE_API const char *nin_onnxruntime_version(void);

#ifdef __cplusplus
}
#endif

#endif /* NIN_EDGE_H */
