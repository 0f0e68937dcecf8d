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
    /* Callocs of up to this many bytes are made as malloc and memset of the user bytes:
     * glibc's calloc (2.36) never takes a block from its per-thread cache, and clearing
     * mmt's header too pushes small ones past its unrolled clearing. 0: always calloc. */
    size_t small_calloc;
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

/* For the preload library's malloc_usable_size: the room the allocator gives the live
 * block `ptr` (from `usable`, called on the backend block), less mmt's header. A block
 * with more room than its size grows to it (counted as allocated bytes, not as a call), so
 * that a program writing into that room stays counted. Aborts on a pointer that is not a
 * live block, as mmt_size does. */
size_t mmt__claim_usable(void *ptr, size_t (*usable)(void *raw));

#if defined(MMT_BACKEND_NEXT)
/* The preload library's allocator: the next definition of malloc in the program's lookup
 * order (tools/next.c). The table starts at these four; once the allocator is found, its
 * own malloc and calloc take their places. */
void *mmt__next_malloc(size_t n);
void *mmt__next_calloc(size_t count, size_t n);
void *mmt__next_realloc(void *p, size_t n);
void mmt__next_free(void *p);

/* How many bytes the block at `raw` (the allocator's pointer, not mmt's) can hold, from
 * the allocator's malloc_usable_size; 0 if it has none. */
size_t mmt__next_usable(void *raw);

/* The file name of the object that defines the allocator: "libc.so.6", "libjemalloc.so.2". */
const char *mmt__next_name(void);
#endif

/* Gives the allocator's free memory back to the system (glibc's malloc_trim, mimalloc's
 * mi_collect, jemalloc's purge of every arena). */
void mmt__backend_trim(void);

/* Installs `b` (copied); NULL restores the built-in one. Returns the table in force. */
mmt__backend_t mmt__backend_set(const mmt__backend_t *b);

#endif
