/*
 * The default backend: libc's allocator. See backend.h.
 */
#include "backend.h"

#include <stdlib.h>
#include <string.h>

static const mmt__backend_t libc_backend = {malloc, calloc, realloc, free};

mmt__backend_t mmt__backend = {malloc, calloc, realloc, free};

mmt__backend_t mmt__backend_set(const mmt__backend_t *b)
{
    mmt__backend_t old = mmt__backend;
    mmt__backend = b ? *b : libc_backend;
    return old;
}

char *mmt__backend_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mmt__backend.malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void *mmt__backend_grow(void *array, size_t *cap, size_t count, size_t size, size_t first)
{
    if (count < *cap) return array;
    size_t ncap = *cap ? *cap * 2 : first;
    void *grown = mmt__backend.realloc(array, ncap * size);
    if (grown) *cap = ncap;
    return grown;
}
