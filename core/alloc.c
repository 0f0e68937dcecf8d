/*
 * The allocation entry points and the block header.
 *
 * Layout: [ word | check ][ user bytes ... ]. The 16-byte header keeps the user pointer at
 * the backend's alignment (alignof(max_align_t) on the platforms mmt supports). `word` is
 * the size in its low 48 bits and the block's tag (tags.h) in its top 16: a block of the
 * root tag has its size as its word. `check` is the word XOR the header's own address XOR
 * a key, so a header copied elsewhere, a foreign or interior pointer and a zeroed or
 * overwritten header (tag bits included) all fail the check (a random 64-bit value passes
 * with odds of 2^-64). On free the check is flipped to its "freed"
 * form; if the backend leaves the header alone, a second free is named as such, otherwise
 * it fails the check like any stray pointer.
 */
#include <assert.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "counters.h"
#include "fork.h"
#include "reclaim.h"
#include "mmt/memory.h"
#include "oom.h"
#include "tags.h"

typedef struct header {
    uint64_t word; /* size | tag << MMT__TAG_SHIFT */
    uint64_t check;
} header_t;

static_assert(sizeof(header_t) == MMT_HEADER_SIZE, "the header is 16 bytes");
static_assert(sizeof(size_t) == 8, "sizes and tags share a 64-bit word (MMT_MAX_SIZE)");
static_assert(MMT_HEADER_SIZE % alignof(max_align_t) == 0,
              "the header keeps malloc's alignment");

/* Each fits a sign-extended 32-bit immediate, so that sealing and flipping are one xor. The
 * check's strength is the address and size it binds, not the key's width. */
#define CHECK_KEY 0x6d6d2121ull
#define CHECK_FREED 0x0f4eed0full
#define CHECK_ALIGNED 0x0a119ed0ull /* this block came from mmt_aligned_alloc */

static inline uint64_t seal(const header_t *h, uint64_t word)
{
    return (uint64_t)(uintptr_t)h ^ word ^ CHECK_KEY;
}

static inline void *finish(header_t *h, uint64_t word)
{
    h->word = word;
    h->check = seal(h, word);
    return h + 1;
}

static const char stray[] =
    "not a live mmt block (not from mmt, an interior pointer, freed twice, or its header "
    "was overwritten)";

/* The header check reads memory in front of a pointer that may not be an mmt block, or
 * that was freed: finding out is its job, so AddressSanitizer must let it read. */
#if defined(__SANITIZE_ADDRESS__)
#define CHECKER __attribute__((no_sanitize_address, noinline))
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHECKER __attribute__((no_sanitize_address, noinline))
#endif
#endif
#ifndef CHECKER
#define CHECKER inline __attribute__((always_inline)) /* on every free: no call */
#endif
#define ALLOCATOR inline __attribute__((always_inline))

/*
 * An aligned block (mmt_aligned_alloc): [ backend block ... | offset | size | check ][ user
 * bytes ]. The user pointer sits at the alignment asked for, the usual header right in
 * front of it with its check marked CHECK_ALIGNED, and in the 8 bytes before the header,
 * how far back the backend block starts. That word is read only once the check has shown
 * the header to be genuine.
 */
#define ALIGNED_PREFIX (MMT_HEADER_SIZE + 16) /* header + offset word, kept 16-aligned */

/* Returns the header of ptr (non-NULL) and sets *raw to its backend block, or aborts
 * naming `call` and ptr. */
static CHECKER header_t *checked_header(const char *call, const void *ptr, void **raw)
{
    if (MMT__UNLIKELY((uintptr_t)ptr % alignof(max_align_t) != 0))
        mmt__bad_pointer(call, ptr, "misaligned, so not a pointer mmt returned");
    header_t *h = (header_t *)ptr - 1;
    uint64_t good = seal(h, h->word);
    *raw = h;
    if (MMT__UNLIKELY(h->check != good)) {
        if (h->check == (good ^ CHECK_ALIGNED)) {
            *raw = (char *)ptr - ((const uint64_t *)h)[-1];
            return h;
        }
        if (h->check == (good ^ CHECK_FREED) || h->check == (good ^ CHECK_ALIGNED ^ CHECK_FREED))
            mmt__bad_pointer(call, ptr, "freed twice (double free)");
        mmt__bad_pointer(call, ptr, stray);
    }
    return h;
}

/* The tagged side of counting, all out of line and reached in tail position, so that the
 * root's path keeps its registers: a tag's counts first, then the slot's (whose slow path
 * may evaluate, so it comes last). A block of the current tag, whose counts this thread
 * has found before (s->cur), takes the short way (new_tagged, free_tagged); the functions
 * below take the rest. */
static __attribute__((noinline)) void *count_new_in_slow(unsigned tag, uint64_t size, void *p)
{
    mmt__count_tag_alloc(tag, size);
    return mmt__count_alloc(size, p);
}

/* The tag's counts reached a mark: fold them, then count in the slot. */
static __attribute__((noinline)) void *count_new_in_fold(mmt__counts_t *c, uint64_t word,
                                                         void *p)
{
    mmt__tag_fold(c, (unsigned)(word >> MMT__TAG_SHIFT));
    return mmt__count_alloc(word & MMT__SIZE_MASK, p);
}

static __attribute__((noinline)) void count_free_in_slow(uint64_t word, void *raw)
{
    mmt__count_tag_free((unsigned)(word >> MMT__TAG_SHIFT), word & MMT__SIZE_MASK);
    mmt__count_free(word & MMT__SIZE_MASK, raw);
}

static __attribute__((noinline)) void count_free_in_fold(mmt__counts_t *c, uint64_t word,
                                                         void *raw)
{
    mmt__tag_fold(c, (unsigned)(word >> MMT__TAG_SHIFT));
    mmt__count_free(word & MMT__SIZE_MASK, raw);
}

/* The tag of a block whose header passed the check. A forged header, or one of another copy
 * of mmt's in the process, may name a tag that does not exist here: that aborts too. */
static unsigned known_tag(const char *call, const void *ptr, uint64_t word)
{
    unsigned tag = (unsigned)(word >> MMT__TAG_SHIFT);
    if (MMT__UNLIKELY(!mmt__tag_exists(tag)))
        mmt__bad_pointer(call, ptr, "not a live mmt block (its header names no tag of this process)");
    return tag;
}

/* This thread's counts in the tag of `word` (a tagged size word) when they are its current
 * tag's and known; else NULL. */
static inline __attribute__((always_inline)) mmt__counts_t *current_counts(mmt__slot_t *s, uint64_t word)
{
    mmt__counts_t *c = s->cur;
    return MMT__LIKELY((word & ~MMT__SIZE_MASK) == s->tag_bits) ? c : NULL;
}

/* Seals and counts a new block of `size` bytes in the tag of `tag_bits` (not the root's):
 * out of line, a tail call, so that the root's path stays as short as before tags.
 * `current`: the tag is the thread's current one. */
static __attribute__((noinline)) void *new_tagged(header_t *h, uint64_t size, uint64_t tag_bits,
                                                  bool current)
{
    uint64_t word = size | tag_bits;
    void *p = finish(h, word);
    mmt__slot_t *s = &mmt__tls;
    mmt__counts_t *c = current ? s->cur : current_counts(s, word);
    if (MMT__UNLIKELY(!c)) return count_new_in_slow((unsigned)(word >> MMT__TAG_SHIFT), size, p);
    if (mmt__counts_alloc(c, size)) return count_new_in_fold(c, word, p);
    return mmt__count_alloc(size, p);
}

/* Seals and counts a new block of `size` bytes in the tag of `tag_bits`; returns the
 * user pointer. */
static inline __attribute__((always_inline)) void *count_new(header_t *h, uint64_t size,
                                                            uint64_t tag_bits, bool current)
{
    if (MMT__UNLIKELY(tag_bits != 0)) return new_tagged(h, size, tag_bits, current);
    return mmt__count_alloc(size, finish(h, size));
}

/* The tag bits of a new block: those given, or with CURRENT, the thread's current tag's,
 * read after the backend call (so that no register holds them across it). */
#define CURRENT UINT64_MAX

static ALLOCATOR uint64_t tag_bits_of(uint64_t tag_bits)
{
    return tag_bits == CURRENT ? mmt__tls.tag_bits : tag_bits;
}

/* A failed allocation: NULL for the mmt_try_ functions, else the abort (oom.h). */
static ALLOCATOR void *failed(const char *call, size_t size, const char *why, bool try_)
{
    if (try_) return NULL;
    mmt__oom(call, size, why);
}

/* Admission while limits are set (reclaim.h), past the allowance: a grant, the far test
 * of the request's own limits, or the exact one. The request stays reserved until the
 * caller has counted it and released back to the mark it took before (mmt__limit_settle,
 * mmt__limit_release_to). False if refused (only with try_). */
static __attribute__((noinline)) bool admitted(const char *call, uint64_t tag_bits, uint64_t size,
                                               bool try_)
{
    if (mmt__limit_grant(size)) return true;
    mmt__limit_reserve(size);
    unsigned tag = (unsigned)(tag_bits_of(tag_bits) >> MMT__TAG_SHIFT);
    return mmt__tags_far_from_limits(tag, size) || mmt__limit_admit(call, tag, size, try_, true);
}

/* True if `size` more bytes need admitted(): limits are set and the thread's allowance
 * does not cover them. The path without limits pays one test, the path within an
 * allowance a few more, no call. */
#define PAST_ALLOWANCE(size) (mmt__limits_set() && !mmt__allowed(size))

/* After the reclaimers ran for an allocator's failure: `size` more bytes in the tag of
 * `tag_bits` admitted again, with no reclaim (they may have allocated). */
static bool admitted_again(const char *call, uint64_t tag_bits, uint64_t size, bool try_)
{
    if (!mmt__limits_set()) return true;
    unsigned tag = (unsigned)(tag_bits_of(tag_bits) >> MMT__TAG_SHIFT);
    mmt__limit_reserve(size); /* until this thread's next admission past its allowance */
    return mmt__limit_admit(call, tag, size, try_, false);
}

/* The allocator failed `request` + `extra` bytes, for `admit` more bytes in the tag of
 * `tag_bits`: once the reclaimers and a trim have run, and the request is admitted again,
 * once more. The sum is made here, so that the callers keep no more than the request's size
 * across their first try. */
static __attribute__((noinline)) void *malloc_again(const char *call, uint64_t tag_bits,
                                                    uint64_t admit, size_t request, size_t extra,
                                                    bool zero, bool try_)
{
    size_t n = request + extra;
    if (!mmt__reclaim_for_allocator(n) || !admitted_again(call, tag_bits, admit, try_)) return NULL;
    return zero ? mmt__backend.calloc(1, n) : mmt__backend.malloc(n);
}

/* The allocator failed a malloc (or, `zero`, a calloc) of `size` bytes: tried once more
 * after reclaiming, and counted here. Out of line and reached in tail position, so that
 * the first try keeps nothing but the size across its call. */
static __attribute__((noinline)) void *alloc_retry(const char *call, size_t size,
                                                   uint64_t tag_bits, bool try_, bool zero)
{
    header_t *h = malloc_again(call, tag_bits, size, size, MMT_HEADER_SIZE, zero, try_);
    if (!h) return failed(call, size, "out of memory", try_);
    return count_new(h, size, tag_bits_of(tag_bits), tag_bits == CURRENT);
}

/* malloc in the tag whose bits are `tag_bits`, once admitted. */
static ALLOCATOR void *malloc_admitted(const char *call, size_t size, uint64_t tag_bits, bool try_)
{
    header_t *h = mmt__backend.malloc(size + MMT_HEADER_SIZE);
    if (MMT__UNLIKELY(!h)) return alloc_retry(call, size, tag_bits, try_, false);
    return count_new(h, size, tag_bits_of(tag_bits), tag_bits == CURRENT);
}

static void *alloc_limited(const char *call, size_t size, uint64_t tag_bits, bool try_, bool zero);

static ALLOCATOR void *malloc_tagged(const char *call, size_t size, uint64_t tag_bits, bool try_)
{
    if (MMT__UNLIKELY(size > MMT_MAX_SIZE)) return failed(call, size, "size too large", try_);
    if (PAST_ALLOWANCE(size)) return alloc_limited(call, size, tag_bits, try_, false);
    return malloc_admitted(call, size, tag_bits, try_);
}

void *mmt_malloc(size_t size)
{
    return malloc_tagged("mmt_malloc", size, CURRENT, false);
}

void *mmt_try_malloc(size_t size)
{
    return malloc_tagged("mmt_try_malloc", size, CURRENT, true);
}

/* calloc of `total` bytes in the tag of `tag_bits`, once admitted. */
static ALLOCATOR void *calloc_admitted(const char *call, size_t total, uint64_t tag_bits, bool try_)
{
    header_t *h;
    if (total <= mmt__backend.small_calloc) { /* see backend.h */
        h = mmt__backend.malloc(total + MMT_HEADER_SIZE);
        if (MMT__UNLIKELY(!h)) return alloc_retry(call, total, tag_bits, try_, true);
        memset(h + 1, 0, total);
    } else {
        h = mmt__backend.calloc(1, total + MMT_HEADER_SIZE);
        if (MMT__UNLIKELY(!h)) return alloc_retry(call, total, tag_bits, try_, true);
    }
    return count_new(h, total, tag_bits_of(tag_bits), tag_bits == CURRENT);
}

/* malloc (or calloc, `zero`) past the thread's allowance: admission, and the reservation
 * ended once the block is counted. */
static __attribute__((noinline)) void *alloc_limited(const char *call, size_t size,
                                                     uint64_t tag_bits, bool try_, bool zero)
{
    uint64_t mark = mmt__limit_settle();
    void *p = NULL;
    if (admitted(call, tag_bits, size, try_))
        p = zero ? calloc_admitted(call, size, tag_bits, try_)
                 : malloc_admitted(call, size, tag_bits, try_);
    mmt__limit_release_to(mark);
    return p;
}

static ALLOCATOR void *calloc_tagged(const char *call, size_t count, size_t size, uint64_t tag_bits,
                                     bool try_)
{
    size_t total;
    if (MMT__UNLIKELY(__builtin_mul_overflow(count, size, &total))) {
        if (try_) return NULL;
        mmt__oom_overflow(call, count, size);
    }
    if (MMT__UNLIKELY(total > MMT_MAX_SIZE)) return failed(call, total, "size too large", try_);
    if (PAST_ALLOWANCE(total)) return alloc_limited(call, total, tag_bits, try_, true);
    return calloc_admitted(call, total, tag_bits, try_);
}

void *mmt_calloc(size_t count, size_t size)
{
    return calloc_tagged("mmt_calloc", count, size, CURRENT, false);
}

void *mmt_try_calloc(size_t count, size_t size)
{
    return calloc_tagged("mmt_try_calloc", count, size, CURRENT, true);
}

static uint64_t bits_of(const char *call, mmt_tag_t tag)
{
    if (MMT__UNLIKELY(!mmt__tag_exists(tag))) mmt__bad_tag(call, tag);
    return (uint64_t)tag << MMT__TAG_SHIFT;
}

void *mmt_malloc_in(mmt_tag_t tag, size_t size)
{
    return malloc_tagged("mmt_malloc_in", size, bits_of("mmt_malloc_in", tag), false);
}

void *mmt_calloc_in(mmt_tag_t tag, size_t count, size_t size)
{
    return calloc_tagged("mmt_calloc_in", count, size, bits_of("mmt_calloc_in", tag), false);
}

/* A realloc that did not happen: its journals (counters.h, tags.h) are void. */
static void realloc_void(void)
{
    atomic_store_explicit(&mmt__tls.busy, 0, memory_order_release);
    mmt__tags_realloc_void();
}

/* The allocator failed a resize to `n` bytes (`growth` more in `tag`, if it grows): runs
 * the reclaimers and a trim with the journals closed (they run user code, which counts),
 * and admits the growth again. True: open them and try once more. */
static __attribute__((noinline)) bool realloc_again(const char *call, unsigned tag,
                                                    uint64_t growth, size_t n, bool try_)
{
    realloc_void();
    return mmt__reclaim_for_allocator(n) &&
           (!growth || admitted_again(call, (uint64_t)tag << MMT__TAG_SHIFT, growth, try_));
}

/* The realloc of an aligned block (it moves to a plain one: realloc promises malloc's
 * alignment) or of a tagged one (counted in its tag too, which it keeps). Out of line, so
 * that the common path keeps its registers. */
static ALLOCATOR void *realloc_slow_admitted(const char *call, void *ptr, header_t *h, void *raw,
                                             size_t size, bool try_, unsigned tag, uint64_t growth)
{
    uint64_t word = h->word, old = word & MMT__SIZE_MASK;
    header_t *nh;
    if (raw != (void *)h) {
        nh = mmt__backend.malloc(size + MMT_HEADER_SIZE);
        if (MMT__UNLIKELY(!nh) &&
            !(nh = malloc_again(call, (uint64_t)tag << MMT__TAG_SHIFT, growth, size,
                                MMT_HEADER_SIZE, false, try_)))
            return failed(call, size, "out of memory", try_);
    } else {
        nh = NULL;
    }
    /* Both journals open before the backend call (counters.h, tags.h). */
    mmt__counts_t *c = tag ? mmt__realloc_begin_in(tag, size, old) : NULL;
    mmt__slot_t *s = mmt__realloc_begin(size, old);
    if (nh) {
        memcpy(nh + 1, ptr, old < size ? old : size);
        h->check ^= CHECK_FREED;
        mmt__backend.free(raw);
    } else {
        nh = mmt__backend.realloc(h, size + MMT_HEADER_SIZE);
        if (MMT__UNLIKELY(!nh) && realloc_again(call, tag, growth, size + MMT_HEADER_SIZE, try_)) {
            c = tag ? mmt__realloc_begin_in(tag, size, old) : NULL;
            s = mmt__realloc_begin(size, old);
            nh = mmt__backend.realloc(h, size + MMT_HEADER_SIZE);
        }
        if (MMT__UNLIKELY(!nh)) {
            realloc_void();
            return failed(call, size, "out of memory", try_);
        }
    }
    void *p = finish(nh, size | (word & ~MMT__SIZE_MASK));
    if (tag) mmt__count_realloc_in(c, tag, size, old);
    mmt__count_realloc(s, size, old);
    return p;
}

static __attribute__((noinline)) void *realloc_slow(const char *call, void *ptr, header_t *h,
                                                    void *raw, size_t size, bool try_)
{
    uint64_t old = h->word & MMT__SIZE_MASK;
    unsigned tag = known_tag(call, ptr, h->word);
    uint64_t growth = size > old ? size - old : 0;
    if (!growth || !PAST_ALLOWANCE(growth))
        return realloc_slow_admitted(call, ptr, h, raw, size, try_, tag, growth);
    uint64_t mark = mmt__limit_settle();
    void *p = admitted(call, (uint64_t)tag << MMT__TAG_SHIFT, growth, try_)
                  ? realloc_slow_admitted(call, ptr, h, raw, size, try_, tag, growth)
                  : NULL;
    mmt__limit_release_to(mark);
    return p;
}

/* The allocator failed a plain block's resize: tried once more after reclaiming, and
 * counted here. Out of line, in tail position, so that the first try keeps its registers. */
static __attribute__((noinline)) void *realloc_retry(const char *call, header_t *h, size_t size,
                                                     uint64_t old, bool try_)
{
    header_t *nh = NULL;
    mmt__slot_t *s = NULL;
    if (realloc_again(call, 0, size > old ? size - old : 0, size + MMT_HEADER_SIZE, try_)) {
        s = mmt__realloc_begin(size, old);
        nh = mmt__backend.realloc(h, size + MMT_HEADER_SIZE);
    }
    if (!nh) {
        realloc_void();
        return failed(call, size, "out of memory", try_);
    }
    void *p = finish(nh, size);
    mmt__count_realloc(s, size, old);
    return p;
}

/* A plain block's resize from `old` bytes, once admitted. */
static ALLOCATOR void *realloc_admitted(const char *call, header_t *h, size_t size, uint64_t old,
                                        bool try_)
{
    mmt__slot_t *s = mmt__realloc_begin(size, old); /* for a fork meanwhile (counters.h) */
    header_t *nh = mmt__backend.realloc(h, size + MMT_HEADER_SIZE);
    if (MMT__UNLIKELY(!nh)) return realloc_retry(call, h, size, old, try_);
    void *p = finish(nh, size);
    mmt__count_realloc(s, size, old);
    return p;
}

static __attribute__((noinline)) void *realloc_limited(const char *call, header_t *h, size_t size,
                                                       uint64_t old, bool try_)
{
    uint64_t mark = mmt__limit_settle();
    void *p = admitted(call, 0, size - old, try_) ? realloc_admitted(call, h, size, old, try_) : NULL;
    mmt__limit_release_to(mark);
    return p;
}

/* mmt_realloc(NULL, size): a malloc, named as the realloc it was. Out of line. */
static __attribute__((noinline)) void *realloc_of_null(const char *call, size_t size, bool try_)
{
    return malloc_tagged(call, size, CURRENT, try_);
}

static ALLOCATOR void *realloc_any(const char *call, void *ptr, size_t size, bool try_)
{
    if (!ptr) return realloc_of_null(call, size, try_);
    void *raw;
    header_t *h = checked_header(call, ptr, &raw);
    if (MMT__UNLIKELY(size > MMT_MAX_SIZE)) return failed(call, size, "size too large", try_);
    uint64_t old = h->word;
    if (MMT__UNLIKELY(raw != (void *)h || old > MMT__SIZE_MASK))
        return realloc_slow(call, ptr, h, raw, size, try_);
    if (size > old && PAST_ALLOWANCE(size - old)) return realloc_limited(call, h, size, old, try_);
    return realloc_admitted(call, h, size, old, try_);
}

void *mmt_realloc(void *ptr, size_t size)
{
    return realloc_any("mmt_realloc", ptr, size, false);
}

void *mmt_try_realloc(void *ptr, size_t size)
{
    return realloc_any("mmt_try_realloc", ptr, size, true);
}

/* The two words in front of ptr, whatever ptr is: read as bytes, since ptr may be
 * misaligned (the caller's check says so after). */
typedef uint64_t unaligned_u64 __attribute__((aligned(1), may_alias));
static CHECKER void peek_header(const void *ptr, uint64_t *word, uint64_t *check)
{
    const unaligned_u64 *h = (const unaligned_u64 *)((uintptr_t)ptr - MMT_HEADER_SIZE);
    *word = h[0];
    *check = h[1];
}

/* The free of a tagged block: its tag's counts, then the slot's. Out of line (a tail
 * call), so that mmt_free keeps no frame. */
static __attribute__((noinline)) void free_tagged(const void *ptr, uint64_t word, void *raw)
{
    mmt__counts_t *c = current_counts(&mmt__tls, word);
    if (MMT__UNLIKELY(!c)) {
        known_tag("mmt_free", ptr, word);
        count_free_in_slow(word, raw);
        return;
    }
    if (mmt__counts_free(c, word & MMT__SIZE_MASK)) {
        count_free_in_fold(c, word, raw);
        return;
    }
    mmt__count_free(word & MMT__SIZE_MASK, raw);
}

/* Counts the free of a block whose header held `word` and gives raw back. Counted before
 * the block goes back: a fork meanwhile leaves the child a block it does not count,
 * unreachable there, rather than a count of one its heap lacks. */
static ALLOCATOR void free_counted(const void *ptr, uint64_t word, void *raw)
{
    if (MMT__UNLIKELY(word > MMT__SIZE_MASK)) {
        free_tagged(ptr, word, raw);
        return;
    }
    mmt__count_free(word, raw);
}

/* mmt_free of what does not pass as a plain block: an aligned block, or a pointer that is
 * not a live block (which aborts). Out of line, so that mmt_free calls only in tail
 * position and keeps no frame. */
static __attribute__((noinline)) void free_unusual(void *ptr)
{
    void *raw;
    header_t *h = checked_header("mmt_free", ptr, &raw);
    uint64_t word = h->word;
    h->check ^= CHECK_FREED;
    free_counted(ptr, word, raw);
}

void mmt_free(void *ptr)
{
    if (!ptr) return;
    uint64_t word, check;
    peek_header(ptr, &word, &check);
    uintptr_t at = (uintptr_t)ptr - MMT_HEADER_SIZE;
    /* One test for both: the check as a plain block's, and the alignment. */
    if (MMT__UNLIKELY((check ^ at ^ word ^ CHECK_KEY) | ((uintptr_t)ptr % alignof(max_align_t)))) {
        free_unusual(ptr);
        return;
    }
    header_t *h = (header_t *)at;
    h->check = check ^ CHECK_FREED;
    free_counted(ptr, word, h);
}

/* The abort of a failed mmt_aligned_alloc: its line names both arguments, since either
 * may be the cause. */
static _Noreturn void aligned_alloc_failed(size_t alignment, size_t size, const char *why)
{
    char call[64];
    snprintf(call, sizeof call, "mmt_aligned_alloc(%zu, %zu)", alignment, size);
    mmt__oom(call, size, why);
}

void *mmt_aligned_alloc(size_t alignment, size_t size)
{
    if (MMT__UNLIKELY(alignment == 0 || (alignment & (alignment - 1)) != 0)) {
        char why[96];
        snprintf(why, sizeof why, "alignment %zu is not a power of two", alignment);
        aligned_alloc_failed(alignment, size, why);
    }
    if (alignment <= alignof(max_align_t)) return mmt_malloc(size);
    /* Room for the prefix in front of the first aligned address past it. */
    if (MMT__UNLIKELY(alignment > MMT_MAX_SIZE - ALIGNED_PREFIX ||
                      size > MMT_MAX_SIZE - ALIGNED_PREFIX - alignment))
        aligned_alloc_failed(alignment, size, "size too large");
    char call[64];
    snprintf(call, sizeof call, "mmt_aligned_alloc(%zu, %zu)", alignment, size);
    bool limited = PAST_ALLOWANCE(size);
    uint64_t mark = limited ? mmt__limit_settle() : 0;
    if (limited) (void)admitted(call, CURRENT, size, false); /* or aborts */
    char *raw = mmt__backend.malloc(size + ALIGNED_PREFIX + alignment);
    if (MMT__UNLIKELY(!raw) &&
        !(raw = malloc_again(call, CURRENT, size, size, ALIGNED_PREFIX + alignment, false, false)))
        aligned_alloc_failed(alignment, size, "out of memory");
    uintptr_t at = ((uintptr_t)raw + ALIGNED_PREFIX + alignment - 1) & ~(uintptr_t)(alignment - 1);
    char *p = (char *)at;
    header_t *h = (header_t *)p - 1;
    ((uint64_t *)h)[-1] = (uint64_t)(p - raw);
    uint64_t tag_bits = mmt__tls.tag_bits, word = size | tag_bits;
    h->word = word;
    h->check = seal(h, word) ^ CHECK_ALIGNED;
    void *q = tag_bits ? count_new_in_slow((unsigned)(tag_bits >> MMT__TAG_SHIFT), size, p)
                       : mmt__count_alloc(size, p);
    if (limited) mmt__limit_release_to(mark);
    return q;
}

char *mmt_strdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = mmt_malloc(n);
    memcpy(d, s, n);
    return d;
}

size_t mmt_size(const void *ptr)
{
    if (!ptr) return 0;
    void *raw;
    return checked_header("mmt_size", ptr, &raw)->word & MMT__SIZE_MASK;
}

mmt_tag_t mmt_tag_of(const void *ptr)
{
    void *raw;
    if (!ptr) return MMT_TAG_ROOT;
    return (mmt_tag_t)(checked_header("mmt_tag_of", ptr, &raw)->word >> MMT__TAG_SHIFT);
}

/* Two threads may ask malloc_usable_size of one live block at once (it only reads, as
 * glibc has it): growing the header is done under one of these locks, chosen by the
 * header's address, so that neither reads a size and check half rewritten, and the
 * growth is counted once. No lock is held while counting (which may run listeners); a
 * fork takes them all, so that no child inherits one held by a thread it lacks. */
static atomic_flag grow_locks[64];

static void grow_lock(atomic_flag *lock)
{
    while (atomic_flag_test_and_set_explicit(lock, memory_order_acquire)) sched_yield();
}

size_t mmt__claim_usable(void *ptr, size_t (*usable)(void *raw))
{
    if (!ptr) return 0;
    atomic_flag *lock = &grow_locks[((uintptr_t)ptr >> 4) % 64];
    grow_lock(lock);
    void *raw;
    header_t *h = checked_header("malloc_usable_size", ptr, &raw);
    if (MMT__UNLIKELY(h->word > MMT__SIZE_MASK)) known_tag("malloc_usable_size", ptr, h->word);
    size_t offset = (size_t)((char *)ptr - (char *)raw);
    size_t avail = usable(raw);
    uint64_t word = h->word, size = word & MMT__SIZE_MASK, grown = 0;
    if (avail > offset && avail - offset > size && avail - offset <= MMT_MAX_SIZE) {
        uint64_t flags = h->check ^ seal(h, word); /* 0, or CHECK_ALIGNED */
        grown = avail - offset - size;
        size += grown;
        word = size | (word & ~MMT__SIZE_MASK);
        h->word = word;
        h->check = seal(h, word) ^ flags;
    }
    atomic_flag_clear_explicit(lock, memory_order_release);
    if (grown) {
        if (word > MMT__SIZE_MASK) mmt__count_tag_grow((unsigned)(word >> MMT__TAG_SHIFT), grown);
        mmt__count_grow(grown);
    }
    return size;
}

void mmt__alloc_fork_prepare(void)
{
    for (int i = 0; i < 64; i++) grow_lock(&grow_locks[i]);
}

void mmt__alloc_fork_parent(void)
{
    for (int i = 0; i < 64; i++) atomic_flag_clear_explicit(&grow_locks[i], memory_order_release);
}
