/*
 * The allocator underneath mmt, chosen at build time (premake --backend=...): glibc's by
 * default, mimalloc or jemalloc on request; the preload library's is the program's own
 * (MMT_BACKEND_NEXT). See backend.h.
 *
 * Debian's mimalloc and jemalloc libraries also export malloc and free, so linking one of
 * them replaces the allocator of the whole program, not only mmt's. For jemalloc mmt calls
 * its own non-standard entry points (mallocx and friends), which need a non-zero size: mmt
 * never asks for less than its 16-byte header.
 */
#if defined(MMT_BACKEND_NEXT)
#define _GNU_SOURCE /* RTLD_DEFAULT */
#endif
#include "backend.h"

#include <stdlib.h>
#include <string.h>

#include "mmt/memory.h"

#if defined(MMT_BACKEND_NEXT)
/* The preload library replaces malloc itself, so it sits on the next one (tools/next.c). */
#define BACKEND_NAME mmt__next_name()
#define BACKEND_TABLE {mmt__next_malloc, mmt__next_calloc, mmt__next_realloc, mmt__next_free, 1024}

#elif defined(MMT_BACKEND_MIMALLOC)
#include <mimalloc.h>
#define BACKEND_NAME "mimalloc"
#define BACKEND_TABLE {mi_malloc, mi_calloc, mi_realloc, mi_free, 0}

#elif defined(MMT_BACKEND_JEMALLOC)
#include <jemalloc/jemalloc.h>
#define BACKEND_NAME "jemalloc"

static void *je_malloc_any(size_t n)
{
    return mallocx(n ? n : 1, 0);
}

static void *je_calloc_any(size_t count, size_t n)
{
    size_t total;
    if (__builtin_mul_overflow(count, n, &total)) return NULL;
    return mallocx(total ? total : 1, MALLOCX_ZERO);
}

static void *je_realloc_any(void *p, size_t n)
{
    return p ? rallocx(p, n ? n : 1, 0) : je_malloc_any(n);
}

static void je_free_any(void *p)
{
    if (p) dallocx(p, 0);
}
#define BACKEND_TABLE {je_malloc_any, je_calloc_any, je_realloc_any, je_free_any, 0}

#else
#define BACKEND_NAME "libc"
#define BACKEND_TABLE {malloc, calloc, realloc, free, 1024}
#endif

static const mmt__backend_t built_in = BACKEND_TABLE;

mmt__backend_t mmt__backend = BACKEND_TABLE;

mmt__backend_t mmt__backend_set(const mmt__backend_t *b)
{
    mmt__backend_t old = mmt__backend;
    mmt__backend = b ? *b : built_in;
    return old;
}

const char *mmt_backend(void)
{
    return BACKEND_NAME;
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

/* Gives free memory back to the system, as the allocator underneath knows how. */
#if defined(MMT_BACKEND_NEXT)
#include <dlfcn.h>
void mmt__backend_trim(void)
{
    /* The program's allocator: glibc's has malloc_trim, others may not. */
    int (*trim)(size_t) = (int (*)(size_t))dlsym(RTLD_DEFAULT, "malloc_trim");
    if (trim) trim(0);
}
#elif defined(MMT_BACKEND_MIMALLOC)
void mmt__backend_trim(void)
{
    mi_collect(true);
}
#elif defined(MMT_BACKEND_JEMALLOC)
#define TRIM_STR(x) #x
#define TRIM_XSTR(x) TRIM_STR(x)
void mmt__backend_trim(void)
{
    mallctl("arena." TRIM_XSTR(MALLCTL_ARENAS_ALL) ".purge", NULL, NULL, NULL, 0);
}
#else
#include <malloc.h>
void mmt__backend_trim(void)
{
    malloc_trim(0);
}
#endif
