/* SHA-256 (FIPS 180-4) of a file, for checking bundle files against their manifest (internal). */
#ifndef NIN_SHA256_H
#define NIN_SHA256_H

#include <stdio.h>

/* The lowercase hex digest of the file's bytes into hex[65]; the byte count into *size. 0 on success,
 * -1 when the file cannot be read. */
int sha256_file(FILE *file, char hex[65], unsigned long long *size);

#endif
