/*
 * test_errors MODEL.onnx FOREIGN.onnx NOT_A_MODEL EMPTY_DIR
 *
 * The C API's error codes and messages on each kind of bad input, that a NULL nin_error is allowed, and
 * that one handle classifies from several threads at once with the same answers. Prints one line per
 * failed check and exits 1 if any failed; pytest (tests/test_c_api.py) runs it.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nin_edge.h"

static int failures = 0, checks = 0;

static void expect(nin_status got, nin_status want, const nin_error *err, const char *fragment, const char *what) {
    checks++;
    if (got != want || (err && err->code != want) || (fragment && err && strstr(err->message, fragment) == NULL)) {
        failures++;
        printf("FAIL %s: got %s (%s), want %s with '%s'\n", what, nin_status_name(got), err ? err->message : "",
               nin_status_name(want), fragment ? fragment : "");
    }
}

typedef struct {
    const nin_model *model;
    const nin_image *image;
    nin_prediction top[3];
    nin_status status;
} job;

static void *classify_many(void *arg) {
    job *j = arg;
    for (int i = 0; i < 5 && j->status == NIN_OK; i++) j->status = nin_classify(j->model, j->image, 1, 3, j->top, NULL);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL.onnx FOREIGN.onnx NOT_A_MODEL EMPTY_DIR\n", argv[0]);
        return 2;
    }
    nin_error err;
    nin_model *model = NULL;
    nin_options int8 = {0, "int8"}, negative = {-1, NULL};

    expect(nin_open(NULL, NULL, &model, &err), NIN_ERR_ARGUMENT, &err, "no model path", "open NULL path");
    expect(nin_open(argv[1], NULL, NULL, &err), NIN_ERR_ARGUMENT, &err, "NULL", "open NULL out");
    expect(nin_open("no/such/model.onnx", NULL, &model, &err), NIN_ERR_IO, &err,
           "model file 'no/such/model.onnx' does not exist", "open missing file");
    expect(nin_open(argv[2], NULL, &model, &err), NIN_ERR_MODEL, &err, "has no nin-edge metadata", "open foreign");
    expect(nin_open(argv[3], NULL, &model, &err), NIN_ERR_MODEL, &err, "not a valid ONNX model", "open not a model");
    expect(nin_open(argv[4], NULL, &model, &err), NIN_ERR_MODEL, &err, "not a nin-edge bundle", "open empty folder");
    expect(nin_open(argv[1], &int8, &model, &err), NIN_ERR_ARGUMENT, &err, "is not a folder", "precision on a file");
    expect(nin_open(argv[1], &negative, &model, &err), NIN_ERR_ARGUMENT, &err, "threads", "negative threads");
    expect(nin_open("no/such/model.onnx", NULL, &model, NULL), NIN_ERR_IO, NULL, NULL, "NULL nin_error");
    checks++;
    if (model != NULL) failures++, printf("FAIL a failed nin_open left *model set\n");

    expect(nin_open(argv[1], NULL, &model, &err), NIN_OK, &err, "", "open the model");
    if (model == NULL) return 1;
    const nin_info *info = nin_model_info(model);
    checks += 2;
    if (nin_model_sha256(NULL) != NULL) failures++, printf("FAIL nin_model_sha256(NULL) is not NULL\n");
    if (strlen(nin_model_sha256(model)) != 64 || strspn(nin_model_sha256(model), "0123456789abcdef") != 64)
        failures++, printf("FAIL nin_model_sha256 is not 64 hex digits: %s\n", nin_model_sha256(model));
    size_t classes = info->label_count, side = (size_t)info->input_size;
    uint8_t *pixels = calloc(side * side * 4 * 2, 1);
    for (size_t i = 0; i < side * side * 4 * 2; i++) pixels[i] = (uint8_t)(i * 7 % 251);
    nin_image good = {pixels, 28, 20, 1, 0};
    nin_prediction top[64];
    char message[100];

    expect(nin_classify(model, &good, 1, 0, top, &err), NIN_ERR_ARGUMENT, &err, "top_k must be a whole number from 1",
           "top_k 0");
    snprintf(message, sizeof message, "from 1 to %zu, got %zu", classes, classes + 1);
    expect(nin_classify(model, &good, 1, classes + 1, top, &err), NIN_ERR_ARGUMENT, &err, message, "top_k too big");
    expect(nin_classify(model, NULL, 1, 1, top, &err), NIN_ERR_ARGUMENT, &err, "NULL", "images NULL");
    expect(nin_classify(model, &good, 0, 1, top, &err), NIN_ERR_ARGUMENT, &err, "got no images", "no images");
    expect(nin_classify(NULL, &good, 1, 1, top, &err), NIN_ERR_ARGUMENT, &err, "NULL", "model NULL");
    nin_image bad = good;
    bad.channels = 5;
    expect(nin_classify(model, &bad, 1, 1, top, &err), NIN_ERR_ARGUMENT, &err, "5 channels", "5 channels");
    bad = good, bad.width = 0;
    expect(nin_classify(model, &bad, 1, 1, top, &err), NIN_ERR_IMAGE, &err, "empty", "width 0");
    bad = good, bad.stride = 10;
    expect(nin_classify(model, &bad, 1, 1, top, &err), NIN_ERR_ARGUMENT, &err, "stride 10", "short stride");
    bad = good, bad.width = 65, bad.height = 1;
    expect(nin_classify(model, &bad, 1, 1, top, &err), NIN_ERR_IMAGE, &err, "more than 64:1 apart", "aspect");
    bad = good, bad.pixels = NULL;
    nin_image two[2] = {good, bad};
    expect(nin_classify(model, two, 2, 1, top, &err), NIN_ERR_ARGUMENT, &err, "image 1: pixels is NULL",
           "second image bad");

    /* Every channel layout classifies; grey, grey + alpha and RGB of equal channels agree. */
    nin_image grey = {pixels, 28, 28, 1, 0};
    expect(nin_classify(model, &grey, 1, classes, top, &err), NIN_OK, &err, "", "classify grey");
    double sum = 0;
    for (size_t i = 0; i < classes; i++) sum += top[i].probability;
    checks++;
    if (sum < 0.999999 || sum > 1.000001 || top[0].probability < top[classes - 1].probability)
        failures++, printf("FAIL probabilities: sum %g, not sorted\n", sum);
    uint8_t *wide = malloc(28 * 28 * 4);
    for (int i = 0; i < 28 * 28; i++) memset(wide + 4 * i, pixels[i], 3), wide[4 * i + 3] = 9;
    nin_image rgba = {wide, 28, 28, 4, 0}, strided = {pixels, 28, 14, 1, 56};
    nin_prediction other[64];
    expect(nin_classify(model, &rgba, 1, 1, other, &err), NIN_OK, &err, "", "classify RGBA");
    checks++;
    if (other[0].index != top[0].index) failures++, printf("FAIL RGBA of grey pixels gave another class\n");
    expect(nin_classify(model, &strided, 1, 1, other, &err), NIN_OK, &err, "", "classify with a stride");

    /* Threads: one handle, four threads, the same answer as one thread. */
    job jobs[4];
    pthread_t threads[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (job){model, &grey, {{0}}, NIN_OK};
        pthread_create(&threads[t], NULL, classify_many, &jobs[t]);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        checks++;
        if (jobs[t].status != NIN_OK || jobs[t].top[0].index != top[0].index ||
            jobs[t].top[0].probability != top[0].probability)
            failures++, printf("FAIL thread %d: %s, class %zu\n", t, nin_status_name(jobs[t].status), jobs[t].top[0].index);
    }
    nin_close(model);
    nin_close(NULL);
    free(pixels);
    free(wide);
    printf("%d of %d checks passed\n", checks - failures, checks);
    return failures ? 1 : 0;
}
