/*
 * The allocator underneath the preload library: the next definition of malloc in the
 * program's lookup order, found with dlsym(RTLD_NEXT). That is glibc's for most programs,
 * and the program's own where it brings one: Redis links jemalloc, a service may be
 * started with tcmalloc or mimalloc preloaded after mmt. mmt adds its header and counts,
 * and the blocks stay where the program put them, so its allocator's statistics, its
 * fragmentation and its malloc_usable_size stay its own.
 *
 * dlsym itself may allocate (glibc's keeps a per-thread error buffer), which comes back
 * here before the answer is known. Those calls are served from a small static arena (a
 * thread that allocates while another is finding the functions waits for it); its blocks are never given
 * back (free ignores them) and never passed to the allocator underneath. A program whose
 * allocator is not found at all (no definition after mmt: not possible with glibc) falls
 * back to glibc's own entry points.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

/* ---- The bootstrap arena ---------------------------------------------------------------- */

/* Each arena block is [ size (16 bytes) ][ bytes ]: realloc and the usable size need it. */
#define ARENA_SIZE (64 * 1024)
#define ARENA_HEAD 16

static alignas(max_align_t) unsigned char arena[ARENA_SIZE];
static _Atomic size_t arena_used;

static bool in_arena(const void *p)
{
    return (uintptr_t)p - (uintptr_t)arena < ARENA_SIZE;
}

static size_t arena_size(const void *p)
{
    size_t n;
    memcpy(&n, (const unsigned char *)p - ARENA_HEAD, sizeof n);
    return n;
}

static void *arena_alloc(size_t n)
{
    if (n > ARENA_SIZE) return NULL;
    size_t need = (n + ARENA_HEAD + 15) & ~(size_t)15;
    size_t at = atomic_fetch_add_explicit(&arena_used, need, memory_order_relaxed);
    if (at + need > ARENA_SIZE) return NULL; /* never reached by dlsym's few small blocks */
    unsigned char *p = arena + at + ARENA_HEAD;
    memcpy(p - ARENA_HEAD, &n, sizeof n);
    return p; /* static storage: zeroed, and never reused */
}

/* ---- Finding the allocator -------------------------------------------------------------- */

typedef struct next_fns {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    size_t (*usable)(void *);
} next_fns_t;

static next_fns_t next;
static const char *next_name = "libc.so.6";

enum { UNKNOWN, FINDING, FOUND };
static _Atomic int state = UNKNOWN;
/* This thread is inside dlsym, finding them. Initial-exec: the library is loaded at start,
 * and a dynamic TLS access could allocate. */
static _Thread_local bool finding_here __attribute__((tls_model("initial-exec")));

static void *(*resolve(const char *name))(void)
{
    void *f = dlsym(RTLD_NEXT, name);
    void *(*fn)(void);
    memcpy(&fn, &f, sizeof fn); /* object to function pointer, as POSIX allows */
    return fn;
}

/* The part of the file name of the object that defines `fn` after its last slash. */
static const char *object_name(void *(*fn)(void))
{
    Dl_info info;
    void *addr;
    memcpy(&addr, &fn, sizeof addr);
    if (!dladdr(addr, &info) || !info.dli_fname || !*info.dli_fname) return NULL;
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

static void find_next(void)
{
    next_fns_t n;
    finding_here = true;
    void *(*m)(void) = resolve("malloc");
    void *(*c)(void) = resolve("calloc");
    void *(*r)(void) = resolve("realloc");
    void *(*f)(void) = resolve("free");
    void *(*u)(void) = resolve("malloc_usable_size");
    if (m && c && r && f) {
        memcpy(&n.malloc, &m, sizeof m);
        memcpy(&n.calloc, &c, sizeof c);
        memcpy(&n.realloc, &r, sizeof r);
        memcpy(&n.free, &f, sizeof f);
        memcpy(&n.usable, &u, sizeof u);
        const char *name = object_name(m);
        if (name) next_name = name; /* dladdr's string lives as long as the object */
        /* The usable size only from the allocator's own object: another's (glibc's, for
         * an allocator without one) would be asked about a block it never made. */
        Dl_info mi, ui;
        void *mp, *up;
        memcpy(&mp, &m, sizeof mp);
        memcpy(&up, &u, sizeof up);
        if (u && (!dladdr(mp, &mi) || !dladdr(up, &ui) || mi.dli_fbase != ui.dli_fbase))
            n.usable = NULL;
    } else {
        n = (next_fns_t){__libc_malloc, __libc_calloc, __libc_realloc, __libc_free, NULL};
    }
    finding_here = false;
    next = n;
    /* From now on mmt calls the allocator's malloc and calloc directly; realloc and free
     * keep a wrapper, for the arena's blocks. The table is written before any thread of
     * the program can exist: the first allocation is the dynamic loader's. */
    mmt__backend.malloc = n.malloc;
    mmt__backend.calloc = n.calloc;
    atomic_store_explicit(&state, FOUND, memory_order_release);
}

/* True once the allocator is known; false if this call must be served from the arena. */
static bool ready(void)
{
    if (__builtin_expect(atomic_load_explicit(&state, memory_order_acquire) == FOUND, 1)) return true;
    if (finding_here) return false;
    int expected = UNKNOWN;
    if (atomic_compare_exchange_strong(&state, &expected, FINDING)) {
        find_next();
        return true;
    }
    while (atomic_load_explicit(&state, memory_order_acquire) != FOUND) sched_yield();
    return true;
}

/* ---- The backend table -------------------------------------------------------------------- */

void *mmt__next_malloc(size_t n)
{
    return ready() ? next.malloc(n) : arena_alloc(n);
}

void *mmt__next_calloc(size_t count, size_t n)
{
    if (ready()) return next.calloc(count, n);
    size_t total;
    return __builtin_mul_overflow(count, n, &total) ? NULL : arena_alloc(total);
}

void *mmt__next_realloc(void *p, size_t n)
{
    if (!in_arena(p)) return ready() ? next.realloc(p, n) : arena_alloc(n);
    /* An arena block moves out of the arena (or to a new arena block while finding). */
    void *q = ready() ? next.malloc(n) : arena_alloc(n);
    if (q) {
        size_t old = arena_size(p);
        memcpy(q, p, old < n ? old : n);
    }
    return q;
}

void mmt__next_free(void *p)
{
    /* Before the allocator is known, every block came from the arena. */
    if (!in_arena(p) && ready()) next.free(p);
}

size_t mmt__next_usable(void *raw)
{
    if (in_arena(raw)) return arena_size(raw);
    return ready() && next.usable ? next.usable(raw) : 0;
}

const char *mmt__next_name(void)
{
    ready();
    return next_name;
}
