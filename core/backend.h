/*
 * The allocator that mmt sits on. Every byte mmt hands out, and every byte of its own
 * bookkeeping, comes from the functions in mmt__backend: glibc's, mimalloc's or
 * jemalloc's, as built (mmt_backend() names it). A test installs its own table (to fail
 * the k-th allocation, say) with mmt__backend_set().
 *
 * Calling through this table costs what a call through the PLT costs, so the seam is free
 * on the hot path.
 */
#ifndef MMT_CORE_BACKEND_H
#define MMT_CORE_BACKEND_H

#include <stddef.h>

typedef struct mmt__backend {
    void *(*malloc)(size_t size);
    void *(*calloc)(size_t count, size_t size);
    void *(*realloc)(void *ptr, size_t size);
    void (*free)(void *ptr);
} mmt__backend_t;

/* Read on every allocation; written only by mmt__backend_set(), which must be called
 * while no other thread allocates through mmt (tests do it at quiescent points). */
extern mmt__backend_t mmt__backend;

/* A copy of s from the backend (uncounted, for mmt's own bookkeeping), or NULL. */
char *mmt__backend_strdup(const char *s);

/* Returns `array` (holding `count` elements of `size` bytes, room for *cap) with room for
 * one more, doubling its capacity from `first`; NULL, with `array` untouched, if the
 * backend has no memory. */
void *mmt__backend_grow(void *array, size_t *cap, size_t count, size_t size, size_t first);

/* Installs `b` (copied); NULL restores the built-in one. Returns the table in force. */
mmt__backend_t mmt__backend_set(const mmt__backend_t *b);

#endif
