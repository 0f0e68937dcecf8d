/*
 * mmtmem: allocation with exact, cheap memory counters and listeners.
 *
 * Every block from mmt_malloc() and friends carries a 16-byte header holding its size and a
 * check value, so mmt_free() knows how much it releases and catches pointers that are not
 * live mmt blocks. Counters are kept per thread and summed when read: allocating never
 * writes a cache line that another thread writes.
 *
 * Failure policy: the allocation functions never return NULL on failure. They run the OOM
 * handler (if any), write one line to stderr and abort(). A pointer that fails the header
 * check (foreign, interior, freed twice, overwritten) aborts too, naming the pointer.
 *
 * All functions are thread-safe unless a contract says otherwise.
 */
#ifndef MMT_MEMORY_H
#define MMT_MEMORY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MMT_API __attribute__((visibility("default")))
#define MMT_ATTR_MALLOC __attribute__((malloc, warn_unused_result))
#define MMT_ATTR_ALLOC_SIZE(n) __attribute__((alloc_size(n)))
#define MMT_ATTR_ALLOC_SIZE2(n, m) __attribute__((alloc_size(n, m)))
#define MMT_ATTR_WUR __attribute__((warn_unused_result))
#else
#define MMT_API
#define MMT_ATTR_MALLOC
#define MMT_ATTR_ALLOC_SIZE(n)
#define MMT_ATTR_ALLOC_SIZE2(n, m)
#define MMT_ATTR_WUR
#endif

/* Bytes in front of every block. Returned pointers keep alignof(max_align_t). */
#define MMT_HEADER_SIZE 16

/* Largest size the allocation functions accept (2^48 - 1: the header keeps the block's tag
 * in the size word's top 16 bits); larger requests are allocation failures, "size too
 * large", and never reach the allocator underneath. */
#define MMT_MAX_SIZE (((size_t)1 << 48) - 1)

/* Error codes returned (negated errno-like values) by the functions that return int. */
#define MMT_EINVAL (-22) /* an argument is invalid (NULL callback, ...) */
#define MMT_ENOENT (-2)  /* no such listener */
#define MMT_ENOMEM (-12) /* internal bookkeeping could not be allocated */
#define MMT_EBUSY (-16)  /* called from inside the policy code it would wait for */
#define MMT_ELOAD (-5)   /* a policy did not load; mmt_policy_error() says why */
#define MMT_EIO (-6)     /* writing the output failed */
#define MMT_ENOSPC (-28) /* no room left (tags: MMT_TAGS_MAX of them exist) */

/* ---- Allocation ---------------------------------------------------------------------- */

/* Returns a block of `size` bytes aligned for any type; never NULL (see failure policy).
 * mmt_malloc(0) returns a unique zero-size block that must be freed like any other. */
MMT_API void *mmt_malloc(size_t size) MMT_ATTR_MALLOC MMT_ATTR_ALLOC_SIZE(1);

/* Zeroed block of count * size bytes. An overflowing product is an allocation failure. */
MMT_API void *mmt_calloc(size_t count, size_t size) MMT_ATTR_MALLOC MMT_ATTR_ALLOC_SIZE2(1, 2);

/* Resizes ptr to `size` bytes, keeping the first min(old, size) bytes; the block may move.
 * ptr == NULL behaves as mmt_malloc(size). size == 0 releases ptr's contents and returns a
 * zero-size block (never NULL), which must still be freed: mmt never hands out a NULL that
 * a caller could mistake for failure. Counted as `size` bytes allocated and the old size
 * freed, and in `reallocs` (not in `allocations` or `frees`) when ptr != NULL. */
MMT_API void *mmt_realloc(void *ptr, size_t size) MMT_ATTR_WUR MMT_ATTR_ALLOC_SIZE(2);

/* Releases a block. NULL does nothing. A pointer that is not a live mmt block aborts. */
MMT_API void mmt_free(void *ptr);

/* A block of `size` bytes at a multiple of `alignment` (a power of two), freed, resized
 * and measured like any other (mmt_realloc returns a plain, malloc-aligned block). An
 * alignment that is not a power of two aborts, like a failed allocation. */
MMT_API void *mmt_aligned_alloc(size_t alignment, size_t size) MMT_ATTR_MALLOC
    MMT_ATTR_ALLOC_SIZE(2);

/* A copy of the NUL-terminated string s, from mmt_malloc. s == NULL returns NULL. */
MMT_API char *mmt_strdup(const char *s) MMT_ATTR_MALLOC;

/* The size asked for when ptr was allocated (or last reallocated); 0 for NULL. A pointer
 * that is not a live mmt block aborts. */
MMT_API size_t mmt_size(const void *ptr);

/* ---- Counters ------------------------------------------------------------------------ */

typedef struct mmt_meminfo {
    uint64_t allocated;   /* bytes ever allocated (MMT's original two fields come first) */
    uint64_t freed;       /* bytes ever freed */
    uint64_t in_use;      /* allocated - freed */
    uint64_t peak;        /* highest in_use seen (see mmt_meminfo for its accuracy) */
    uint64_t allocations; /* successful allocation calls: malloc, calloc, realloc(NULL, n) */
    uint64_t frees;       /* mmt_free calls on non-NULL pointers */
    uint64_t reallocs;    /* mmt_realloc calls on non-NULL pointers */
    /* allocations - frees is the number of live blocks. More fields may follow. */
} mmt_meminfo_t;

/* Fills *info with the process-wide counters. NULL does nothing.
 * When no other thread is allocating, the figures are exact: in_use is the sum of
 * mmt_size() over live blocks, and peak >= in_use. allocated - freed == in_use and
 * freed <= allocated always hold. While other threads allocate, a reading sums totals
 * taken a moment apart: its in_use never exceeds the true in_use of an instant during the
 * reading by more than 64 KiB. (It may count bytes freed while it reads; when more than
 * 64 KiB were, it reads again, and after four tries gives a figure that can only be low.)
 * peak never decreases. It is exact in a single-threaded program. With N live threads that
 * have allocated (busy or idle) it may be off by less than 2 * N * 64 KiB, low or high:
 * each thread adds its net movement to a shared estimate only once it has moved by its
 * window (at most 64 KiB, see mmt_mem_set_checkpoint), up or down. */
MMT_API void mmt_meminfo(mmt_meminfo_t *info);

/* Formats for mmt_meminfo_write() (and mmt.format() in policies). A program that has made
 * tags (below) gets each tag's subtree too, every tag but the root, in path order (a tag,
 * then its subtree, then its next sibling; siblings by name); one with none gets exactly
 * the process's figures. */
enum {
    MMT_FORMAT_TEXT = 0,       /* one line: "allocated 123 B, freed ..., reallocs 0"; then a
                                * line a tag, indented two spaces a level: "  pages: allocated
                                * ..." (a name's control characters, backslashes and bytes
                                * that are not UTF-8 escaped: \n, \\, \xHH) */
    MMT_FORMAT_JSON = 1,       /* one object on one line: {"allocated":123,...}; then
                                * "tags":{"cache/pages":{"allocated":...},...} (a path's bytes
                                * that are not UTF-8 become U+FFFD) */
    MMT_FORMAT_PROMETHEUS = 2, /* text exposition format: mmt_* metrics with HELP and TYPE;
                                * then per field a family mmt_tag_<field>[_bytes][_total] with
                                * a sample a tag: {tag="cache/pages"} (backslash, quote and
                                * line feed escaped; bytes that are not UTF-8 as in JSON) */
};

/* Writes the current counters (and the tags', see above) to `out` in `format`. Returns 0,
 * MMT_EINVAL (NULL out, unknown format), MMT_EIO, or MMT_ENOMEM (the tags could not be
 * read, or the text outgrew the stack buffer it is made in and no memory was left for a
 * larger one). */
MMT_API int mmt_meminfo_write(FILE *out, int format);

/* ---- Tags ---------------------------------------------------------------------------- */

/*
 * A tag names a part of the program (the cache, the parser, the connections) and counts
 * the blocks allocated in it, exactly, like the process-wide counters. Tags form a tree
 * under MMT_TAG_ROOT; a tag's figures are those of its subtree: its own blocks and its
 * descendants'. Blocks allocated with no tag set belong to the root, whose figures are
 * mmt_meminfo's.
 *
 * Each thread has a current tag (the root when it starts, whatever its creator's):
 * mmt_malloc, mmt_calloc, mmt_strdup, mmt_aligned_alloc and mmt_realloc(NULL, n) allocate
 * in it. A block keeps its tag for life, in its header: mmt_realloc counts in the block's
 * tag, and a free credits the block's tag on whichever thread frees it. Switching costs
 * no lock and no shared write; counting stays per thread, as for the process.
 *
 * Peak per tag (but the root, whose figures are mmt_meminfo's) is never below the in_use
 * of the same reading. When no other thread allocates or reads, it is exact for a subtree
 * that one thread counts in, in one tag; otherwise it has the process-wide peak's bound,
 * less than 2 * N * 64 KiB off with N threads counting in the subtree, while each counts
 * in at most 16 tags (a thread that counts in k > 16 tags holds back up to k * 4 KiB).
 *
 * Costs: a tagged allocation or free counts twice (in its tag and for the process). A
 * thread's counts per tag take 72 bytes, made 64 tags at a time from the allocator
 * underneath, uncounted (at most about 290 KiB for a thread that uses every tag), and
 * freed when the thread exits. A reading sums every tag of every thread under the
 * counters' lock: with 64 threads that each use 4,095 tags, about 14 ms.
 */
typedef uint16_t mmt_tag_t;
#define MMT_TAG_ROOT 0    /* the whole process */
#define MMT_TAGS_MAX 4095 /* tags that can be created besides the root */
#define MMT_TAG_NAME_MAX 63

/* Creates a tag named `name` (1..63 bytes, no '/') under `parent` and returns its id (> 0),
 * or the existing id if `parent` already has a child of that name. MMT_EINVAL: NULL,
 * empty, too long or '/'-holding name, or unknown parent (nothing is left behind);
 * MMT_ENOSPC: MMT_TAGS_MAX tags exist; MMT_ENOMEM. Tags live as long as the process. */
MMT_API int mmt_tag_new(const char *name, mmt_tag_t parent);

/* Makes `tag` the calling thread's current tag and returns the previous one, to be restored
 * with a second call (switches nest like PostgreSQL's MemoryContextSwitchTo). An unknown
 * tag aborts, like a bad pointer. */
MMT_API mmt_tag_t mmt_tag_switch(mmt_tag_t tag);
MMT_API mmt_tag_t mmt_tag_current(void);

/* Allocation in `tag`, whatever the thread's current tag (an unknown tag aborts). */
MMT_API void *mmt_malloc_in(mmt_tag_t tag, size_t size) MMT_ATTR_MALLOC MMT_ATTR_ALLOC_SIZE(2);
MMT_API void *mmt_calloc_in(mmt_tag_t tag, size_t count, size_t size) MMT_ATTR_MALLOC
    MMT_ATTR_ALLOC_SIZE2(2, 3);

/* The tag of a live block; MMT_TAG_ROOT for NULL (a pointer that is not a live block
 * aborts, as in mmt_size). */
MMT_API mmt_tag_t mmt_tag_of(const void *ptr);

/* Fills *info with the counters of `tag`'s subtree. Returns 0, MMT_ENOENT (unknown tag;
 * *info untouched), MMT_EINVAL (NULL info) or MMT_ENOMEM. The root gives what mmt_meminfo
 * gives. A reading while threads allocate has mmt_meminfo's bounds. */
MMT_API int mmt_tag_meminfo(mmt_tag_t tag, mmt_meminfo_t *info);

/* The tag at a path of names from the root ("cache/pages"; "" is the root), or MMT_ENOENT
 * (MMT_EINVAL for NULL). */
MMT_API int mmt_tag_lookup(const char *path);

/* A tag's name ("pages"; "" for the root), or NULL for an unknown tag. */
MMT_API const char *mmt_tag_name(mmt_tag_t tag);

/* A tag's parent (the root's is the root), or MMT_ENOENT. */
MMT_API int mmt_tag_parent(mmt_tag_t tag);

/* Writes the path of `tag` ("cache/pages"; "" for the root) into buf, NUL-terminated, and
 * returns its length; MMT_ENOENT, or MMT_EINVAL if it does not fit (or buf is NULL). */
MMT_API int mmt_tag_path(mmt_tag_t tag, char *buf, size_t len);

/* Writes the tree to `out`, one tag a line, indented by depth, siblings in name order: in
 * use, peak and live blocks of the subtree, then in use and live blocks of the tag's own
 * blocks. Names are escaped as in MMT_FORMAT_TEXT (a newline in one cannot start a line).
 * The text is made before any of it is written: no lock is held while `out` runs. Returns
 * 0, MMT_EINVAL (NULL out), MMT_ENOMEM or MMT_EIO. */
MMT_API int mmt_tag_report(FILE *out);

/* ---- Limits and reclaim ------------------------------------------------------------------
 *
 * A limit caps a tag's subtree in_use (the root's: the whole process). An allocation, or a
 * realloc's growth, that would take a limited subtree above its limit first runs the
 * reclaimers of that subtree (the tag that holds the limit and its descendants), lowest
 * rank first, each asked for what is still missing, until the request fits; still over,
 * it fails: mmt_malloc and the others run the OOM handler and abort with a line naming the
 * tag, the limit and the request; mmt_try_malloc and the others return NULL, with no
 * counter changed. "Above" is strict: in_use may reach the limit exactly.
 *
 * Exactness: with no other thread allocating at that moment, a limit is never exceeded by
 * a byte; with threads allocating at once, by at most what the others have in flight.
 * Far from every limit a thread allocates from an allowance (32 KiB at a time), which
 * costs a test and writes nothing shared; within reach of a limit (what the threads may
 * hold back from it and their allowances: 96 KiB per counted thread for the process, about
 * as much for a tag) each request sums the subtree over every thread, under the counters'
 * lock.
 *
 * When the allocator underneath fails (the system is out of memory), every reclaimer runs
 * (but those backing off) and then mmt_trim, and the request, admitted again, is tried
 * once more before it fails. A zero-byte request, and a realloc that does not grow, are
 * never refused for a limit. Growth the preload library grants through
 * malloc_usable_size is counted, not refused: the program already has those bytes.
 *
 * No spiral: a request calls each reclaimer at most once; a reclaimer that freed nothing
 * (by the measure, not its word) twice in a row is skipped by failing requests for
 * MMT_RECLAIM_BACKOFF_S seconds; a thread inside a reclaimer starts no other reclaim (its
 * allocations are admitted or refused, no more). Each reclaim is reported to the policy
 * engines' logs: what was wanted and freed, by whom, and whether a reclaimer's word
 * differed from the measure or it allocated more than it freed.
 */
#define MMT_RECLAIM_BACKOFF_S 1

/* A reclaimer frees memory its part of the program can spare (drops cache entries, closes
 * idle connections...) when asked for `wanted` bytes, and returns what it believes it
 * freed. It runs on the thread that needs the memory (for mmt_reclaim, the caller's; for a
 * policy's mmt.reclaim, the engine's own thread), outside mmt's locks (but inside a
 * listener's evaluation when that is where the allocation was made), with cancellation
 * off; it may free and allocate (its own allocations never start another reclaim). It
 * must return: no longjmp or exception out of it. Several threads may run one reclaimer
 * at once, each for its own request. */
typedef size_t (*mmt_reclaim_fn)(size_t wanted, void *arg);

/* Registers a reclaimer for `tag`'s subtree, named `name` (1..63 bytes) in reports. Lower
 * `rank` runs first (ranks may be negative; equal ranks, the older first). Returns an
 * id > 0, MMT_EINVAL (NULL fn, NULL, empty or long name), MMT_ENOENT (unknown tag) or
 * MMT_ENOMEM. */
MMT_API int mmt_reclaimer_add(mmt_tag_t tag, const char *name, int rank, mmt_reclaim_fn fn,
                              void *arg);

/* Returns 0, or MMT_ENOENT (no such id, or one already removed). The reclaimer never
 * starts again; and once this returns it is not running: it waits for calls under way on
 * other threads (do not call it while holding what the reclaimer needs). Except when
 * called from inside a reclaimer (this one, or another): then it returns at once, and a
 * call under way finishes on its own. */
MMT_API int mmt_reclaimer_remove(int id);

/* Runs the reclaimers of `tag`'s subtree in rank order until `wanted` bytes are freed,
 * measured by the subtree's in_use; returns the bytes it fell by. Ignores the back-off.
 * Returns 0 for an unknown tag, and inside a reclaimer (no nested reclaim). */
MMT_API size_t mmt_reclaim(mmt_tag_t tag, size_t wanted);

/* Sets the hard limit on `tag`'s subtree in_use (0: none; above INT64_MAX, INT64_MAX).
 * Returns 0 or MMT_ENOENT. A
 * limit below the current in_use refuses growth until the subtree falls under it; it
 * frees nothing by itself. */
MMT_API int mmt_limit_set(mmt_tag_t tag, uint64_t bytes);

/* The limit on `tag` (0: none, or an unknown tag). */
MMT_API uint64_t mmt_limit_get(mmt_tag_t tag);

/* Like mmt_malloc, mmt_calloc and mmt_realloc, but a failure (a limit, the system, a size
 * too large, an overflowing count * size) returns NULL, after reclaiming, instead of
 * aborting, and runs no OOM handler. mmt_try_realloc leaves ptr untouched on failure.
 * A bad pointer still aborts. */
MMT_API void *mmt_try_malloc(size_t size) MMT_ATTR_MALLOC MMT_ATTR_ALLOC_SIZE(1);
MMT_API void *mmt_try_calloc(size_t count, size_t size) MMT_ATTR_MALLOC MMT_ATTR_ALLOC_SIZE2(1, 2);
MMT_API void *mmt_try_realloc(void *ptr, size_t size) MMT_ATTR_WUR MMT_ATTR_ALLOC_SIZE(2);

/* Gives free memory back to the system: glibc's malloc_trim, mimalloc's mi_collect,
 * jemalloc's purge of every arena. Returns the drop in resident bytes it measured. */
MMT_API size_t mmt_trim(void);

/* ---- Listeners ----------------------------------------------------------------------- */

/* A condition returns nonzero when it holds. Both callbacks run on the thread that
 * evaluates, outside mmt's internal locks, and may allocate and free through mmt (that
 * never re-enters evaluation) and call mmt_mem_listen/unlisten. */
typedef int (*mmt_mem_condition_fn)(const mmt_meminfo_t *info, void *arg);
typedef void (*mmt_mem_action_fn)(const mmt_meminfo_t *info, void *arg);

/* Registers a listener: at each evaluation its condition is tested, and its action runs
 * on the rising edge only, the first evaluation where the condition holds after it did
 * not (or after registration). One registered during an evaluation (from a condition or
 * action) is first tested at the next one. Returns an id > 0, or MMT_EINVAL / MMT_ENOMEM.
 * An evaluation takes time linear in the number of listeners. */
MMT_API int mmt_mem_listen(mmt_mem_condition_fn when, mmt_mem_action_fn action, void *arg);

/* Removes a listener. Returns 0, or MMT_ENOENT if no listener has that id. Called from a
 * thread other than the evaluating one, it waits for a running evaluation to finish, so
 * once it returns the listener is not running and never runs again and `arg` may be freed.
 * Called from inside a condition or action, it takes effect for the rest of that pass. */
MMT_API int mmt_mem_unlisten(int id);

/* Evaluates listeners whenever in_use has moved by >= bytes (up or down) since the last
 * evaluation; 0 means only at explicit mmt_mem_checkpoint() calls. Default: 1 MiB.
 * In a single thread the evaluation runs inside the mmt_malloc/mmt_free/mmt_realloc call
 * that moves in_use that far, exactly. With N threads, each thread holds back less than
 * its window of its own movement: W = min(64 KiB, max(4 KiB, bytes / N)), N as of the
 * thread's last fold (with a steady number of threads, less than max(bytes, N * 4 KiB)
 * in all). So the evaluation runs, at the latest, in the call that moves in_use by
 * bytes + 2 * (the sum of the threads' windows) from where it was at the previous one, except:
 * - an allocation or free that finds another thread evaluating does not wait; that
 *   thread's next call that moves in_use, up or down, tries again;
 * - a thread's exit adds its movement without evaluating; the next fold evaluates.
 * A new distance applies to the calling thread at once, and to each other thread from its
 * next fold (at most its window of movement later). */
MMT_API void mmt_mem_set_checkpoint(size_t bytes);

/* The checkpoint distance in force (0: explicit checkpoints only). */
MMT_API size_t mmt_mem_get_checkpoint(void);

/* Evaluates listeners now, waiting if another thread is evaluating. Inside a condition or
 * action it does nothing (no recursion). */
MMT_API void mmt_mem_checkpoint(void);

/* ---- The machine around the program ------------------------------------------------
 *
 * What the kernel says of the memory around the program: the memory cgroup it runs in
 * (whose limit is the one that kills it in a container), the pressure stall information
 * (PSI: the share of time tasks waited for memory), and the machine's total and available
 * memory. Linux only; read from /proc and the cgroup file systems at each call (a few
 * small files, no allocation, about 24 KiB of stack), so any thread may call it, inside a
 * listener too.
 *
 * The cgroup is the process's own, found from /proc/self/cgroup and the mount table: on
 * cgroup v2 where the memory controller is on for it (its folder has memory.current),
 * else on cgroup v1's memory hierarchy. v1 numbers are read as v2's: current from
 * memory.usage_in_bytes, max from memory.limit_in_bytes, high from the soft limit; v1
 * counts no "high" events, its "max" events are memory.failcnt, and its "oom" and
 * "oom_kill" both are memory.oom_control's oom_kill (each v1 OOM that is not disabled
 * kills). A v1 limit of 2^62 or more is v1's way of saying none. `limit` is what binds:
 * the lowest max of the cgroup and its ancestors (v1: memory.stat's
 * hierarchical_memory_limit).
 *
 * PSI comes from the cgroup's memory.pressure on cgroup v2, else from
 * /proc/pressure/memory (the whole machine's).
 */

#define MMT_UNLIMITED UINT64_MAX /* a cgroup limit that is not set */

typedef struct mmt_machine {
    struct mmt_cgroup {
        int version;       /* 1 or 2; 0: no memory cgroup found (the fields below are 0) */
        uint64_t current;  /* bytes charged to it now */
        uint64_t max;      /* its hard limit, MMT_UNLIMITED for none */
        uint64_t high;     /* where it is throttled (v1: the soft limit), MMT_UNLIMITED for none */
        uint64_t limit;    /* the lowest max of it and its ancestors, MMT_UNLIMITED for none */
        uint64_t events_high, events_max, events_oom, events_oom_kill; /* since it was made */
        char path[256];    /* its folder ("/sys/fs/cgroup/memory/..."), cut to fit */
    } cgroup;
    struct mmt_psi {
        int valid;         /* 0: no PSI here (the fields below are 0) */
        double some10, some60, some300; /* % of time some task waited for memory, averaged
                                         * over 10 s, 60 s and 300 s */
        double full10, full60, full300; /* % of time every task did */
        uint64_t some_total, full_total; /* microseconds waited, ever */
        char source[256];  /* the file read */
    } psi;
    struct mmt_system {
        uint64_t total;     /* bytes of RAM (/proc/meminfo's MemTotal); 0 if unknown */
        uint64_t available; /* bytes available without swapping (MemAvailable); 0 if unknown */
    } system;
} mmt_machine_t;

/* The parts mmt_machine_read reads. */
enum { MMT_MACHINE_CGROUP = 1, MMT_MACHINE_PSI = 2, MMT_MACHINE_SYSTEM = 4, MMT_MACHINE_ALL = 7 };

/* Fills the parts of *out asked for in `parts` (the others are zeroed): returns the parts
 * found (cgroup.version != 0, psi.valid, system.total != 0), 0 if none, MMT_EINVAL for a
 * NULL out. */
MMT_API int mmt_machine_read(mmt_machine_t *out, unsigned parts);

/* ---- Failure and misc ---------------------------------------------------------------- */

/* Runs when an allocation fails, before the report line and abort(), which it cannot
 * cancel: `size` is the size asked for (SIZE_MAX for an overflowing calloc), `info` the
 * counters then, `arg` what mmt_set_oom_handler was given with it. It is not called again
 * if it itself triggers an allocation failure. */
typedef void (*mmt_oom_fn)(size_t size, const mmt_meminfo_t *info, void *arg);

/* Sets the handler and its argument, from any thread (NULL unsets). */
MMT_API void mmt_set_oom_handler(mmt_oom_fn fn, void *arg);

/* "MAJOR.MINOR.PATCH" of the loaded library. */
MMT_API const char *mmt_version(void);

/* The allocator underneath, chosen when the library was built: "libc", "mimalloc" or
 * "jemalloc". */
MMT_API const char *mmt_backend(void);

/* Text for an error code returned by this library ("unknown error" for others). */
MMT_API const char *mmt_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
