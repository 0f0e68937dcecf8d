/*
 * The default backend: libc's allocator. See backend.h.
 */
#include "backend.h"

#include <stdlib.h>

static const mmt__backend_t libc_backend = {malloc, calloc, realloc, free};

mmt__backend_t mmt__backend = {malloc, calloc, realloc, free};

mmt__backend_t mmt__backend_set(const mmt__backend_t *b)
{
    mmt__backend_t old = mmt__backend;
    mmt__backend = b ? *b : libc_backend;
    return old;
}
