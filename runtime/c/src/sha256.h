/* SHA-256 (FIPS 180-4): of a file, for checking bundle files against their manifest, and streamed, for
 * the model's identity (nin_model_sha256) (internal). */
#ifndef NIN_SHA256_H
#define NIN_SHA256_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct sha256_ctx {
    uint32_t h[8];
    unsigned char block[64];
    size_t used; /* bytes waiting in block */
    unsigned long long total;
} sha256_ctx;

void sha256_init(sha256_ctx *ctx);
void sha256_update(sha256_ctx *ctx, const void *data, size_t size);
/* The lowercase hex digest into hex[65]. */
void sha256_final(sha256_ctx *ctx, char hex[65]);

/* The lowercase hex digest of the file's bytes into hex[65]; the byte count into *size. 0 on success,
 * -1 when the file cannot be read. */
int sha256_file(FILE *file, char hex[65], unsigned long long *size);

#endif
