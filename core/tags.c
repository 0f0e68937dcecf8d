/*
 * Tags: the tree of names, each thread's counts per tag, folding into the subtrees'
 * estimates and peaks, reading and the report. See tags.h for the scheme.
 */
#include "tags.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "oom.h"

typedef struct tag {
    char name[MMT_TAG_NAME_MAX + 1];
    mmt_tag_t parent;
    /* The children, oldest first: tags_lock. */
    mmt_tag_t first_child, last_child, next_sibling;
    _Atomic uint64_t peak;     /* the subtree's */
    mmt__counts_t gone;        /* counts of threads with no table (fields only) */
    int64_t child_net, child_pending; /* a fork child's sums: it may not allocate */
} tag_t;

/* tags[id] is set before count is raised past id (release), and never changes after. */
static tag_t root_tag;
static tag_t *tags[MMT_TAGS_MAX + 1] = {&root_tag};
static _Atomic unsigned count = 1;
static pthread_mutex_t tags_lock = PTHREAD_MUTEX_INITIALIZER;

/* Limits (reclaim.c), flat by id: read at every allocation while any is set, with no
 * pointer to chase. mmt__limit_of is a subtree's hard limit, 0 for none; mmt__limited_at is 1 + the
 * id of the nearest tag at or above a tag that has one, limited_above the same strictly
 * above it, 0 for none. Written under tags_lock, for every tag at once when a limit
 * changes, and for a new tag before it is published. */
_Atomic uint64_t mmt__limit_of[MMT_TAGS_MAX + 1];
_Atomic uint16_t mmt__limited_at[MMT_TAGS_MAX + 1], mmt__limited_above[MMT_TAGS_MAX + 1];

/* The tags that have a limit, for granting allowances (reclaim.h): ids, `limited_n` of
 * them. Rebuilt under tags_lock when a limit changes; a reader that meets a list half
 * rebuilt made its grant under a generation the change then ends (mmt__limits_gen). */
static _Atomic uint16_t limited_ids[MMT_TAGS_MAX + 1];
static _Atomic unsigned limited_n;

/* What the live tables may hold back from the tags' estimates, in all: each holds back at
 * most one window per tag it counts in (tags.h), so MMT__TAG_WINDOW until it counts in
 * more than MMT__TAG_WINDOW / MMT__TAG_WINDOW_MIN tags, MMT__TAG_WINDOW_MIN per tag after.
 * Raised when a table is made or counts in one more tag, lowered when it is retired. */
_Atomic int64_t mmt__tags_held_back;

static int64_t table_hold(const mmt__tag_table_t *t)
{
    int64_t spread = (int64_t)t->touched * MMT__TAG_WINDOW_MIN;
    return spread > MMT__TAG_WINDOW ? spread : MMT__TAG_WINDOW;
}

unsigned mmt__tag_count(void)
{
    return atomic_load_explicit(&count, memory_order_acquire);
}

/* ---- Counting ----------------------------------------------------------------------- */

static void raise_peak(_Atomic uint64_t *peak, int64_t candidate)
{
    if (candidate <= 0) return;
    uint64_t c = (uint64_t)candidate;
    uint64_t cur = atomic_load_explicit(peak, memory_order_relaxed);
    while (cur < c && !atomic_compare_exchange_weak_explicit(peak, &cur, c, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}

/* Adds delta to the estimates of tag and its ancestors below the root; rise is the highest
 * the movement reached since the last fold. */
static void publish(unsigned tag, int64_t delta, int64_t rise)
{
    for (unsigned t = tag; t != MMT_TAG_ROOT; t = tags[t]->parent) {
        int64_t before = atomic_fetch_add_explicit(&mmt__estimates[t], delta, memory_order_release);
        raise_peak(&tags[t]->peak, before + rise);
    }
}

/* A thread's counts in tag reached a mark: fold and set new marks. The window shrinks as
 * the thread counts in more tags, so that what it holds back from any subtree stays under
 * MMT__TAG_WINDOW in all while it uses up to MMT__TAG_WINDOW / MMT__TAG_WINDOW_MIN tags. */
static int64_t window(const mmt__tag_table_t *t)
{
    int64_t w = MMT__TAG_WINDOW / (t->touched ? t->touched : 1);
    return w < MMT__TAG_WINDOW_MIN ? MMT__TAG_WINDOW_MIN : w;
}

/* Publishes a thread's pending movement in tag and sets marks a window away. */
static void fold_counts(mmt__tag_table_t *t, mmt__counts_t *c, unsigned tag)
{
    int64_t net = mmt__net(c);
    int64_t base = atomic_load_explicit(&c->base, memory_order_relaxed);
    int64_t top = atomic_load_explicit(&c->top, memory_order_relaxed);
    if (top < net) top = net;
    atomic_store_explicit(&c->base, net, memory_order_relaxed);
    atomic_store_explicit(&c->top, net, memory_order_relaxed);
    publish(tag, net - base, top - base);
    int64_t w = window(t);
    atomic_store_explicit(&c->hi, net + w, memory_order_relaxed);
    atomic_store_explicit(&c->lo, net - w, memory_order_relaxed);
}

/* The thread began counting in one more tag: its other counts' windows narrow now, not at
 * their next folds (those holding back more than the new window fold at once), so that
 * what it holds back stays within MMT__TAG_WINDOW in all. Past MMT__TAG_WINDOW /
 * MMT__TAG_WINDOW_MIN tags the windows are at their floor already. */
static void narrow(mmt__tag_table_t *t)
{
    if (t->touched > MMT__TAG_WINDOW / MMT__TAG_WINDOW_MIN) return;
    int64_t w = window(t);
    for (unsigned k = 0; k < MMT__TAG_CHUNKS; k++) {
        mmt__counts_t *chunk = atomic_load_explicit(&t->chunks[k], memory_order_relaxed);
        for (unsigned j = 0; chunk && j < MMT__TAG_CHUNK; j++) {
            mmt__counts_t *c = &chunk[j];
            int64_t hi = atomic_load_explicit(&c->hi, memory_order_relaxed);
            if (hi == atomic_load_explicit(&c->lo, memory_order_relaxed)) continue; /* unused */
            if (hi - atomic_load_explicit(&c->base, memory_order_relaxed) > w)
                fold_counts(t, c, k * MMT__TAG_CHUNK + j);
        }
    }
}

void mmt__tag_fold(mmt__counts_t *c, unsigned tag)
{
    mmt__tag_table_t *t = atomic_load_explicit(&mmt__tls.tags, memory_order_relaxed);
    /* New counts are zero, marks included: equal marks say so. */
    bool first = atomic_load_explicit(&c->hi, memory_order_relaxed) ==
                 atomic_load_explicit(&c->lo, memory_order_relaxed);
    if (first) {
        int64_t hold = table_hold(t);
        t->touched++;
        atomic_fetch_add_explicit(&mmt__tags_held_back, table_hold(t) - hold, memory_order_relaxed);
    }
    fold_counts(t, c, tag);
    if (first) narrow(t);
}

/* Counts of a thread with no table: published at once. */
void mmt__tag_gone(unsigned tag, uint64_t allocated, uint64_t freed, uint64_t allocations,
                   uint64_t frees, uint64_t reallocs)
{
    mmt__counts_t *g = &tags[tag]->gone;
    atomic_fetch_add_explicit(&g->allocated, allocated, memory_order_release);
    atomic_fetch_add_explicit(&g->freed, freed, memory_order_release);
    atomic_fetch_add_explicit(&g->allocations, allocations, memory_order_release);
    atomic_fetch_add_explicit(&g->frees, frees, memory_order_release);
    atomic_fetch_add_explicit(&g->reallocs, reallocs, memory_order_release);
    int64_t delta = (int64_t)(allocated - freed);
    publish(tag, delta, delta > 0 ? delta : 0);
}

static mmt__counts_t *find(mmt__slot_t *s, unsigned tag)
{
    mmt__tag_table_t *t = atomic_load_explicit(&s->tags, memory_order_relaxed);
    if (MMT__UNLIKELY(!t)) return NULL;
    mmt__counts_t *chunk = atomic_load_explicit(&t->chunks[tag / MMT__TAG_CHUNK], memory_order_relaxed);
    return MMT__LIKELY(chunk != NULL) ? &chunk[tag % MMT__TAG_CHUNK] : NULL;
}

/* This thread's counts in tag, made if need be; NULL if it cannot have them. New counts
 * are zero, so their marks are crossed by the first operation, which folds and sets them. */
static __attribute__((noinline)) mmt__counts_t *make(mmt__slot_t *s, unsigned tag)
{
    if (!mmt__slot_attach(s)) return NULL;
    mmt__tag_table_t *t = atomic_load_explicit(&s->tags, memory_order_relaxed);
    if (!t) {
        t = mmt__backend.calloc(1, sizeof *t);
        if (!t) return NULL;
        atomic_fetch_add_explicit(&mmt__tags_held_back, table_hold(t), memory_order_relaxed);
        atomic_store_explicit(&s->tags, t, memory_order_release);
    }
    mmt__counts_t *chunk = mmt__backend.calloc(MMT__TAG_CHUNK, sizeof *chunk);
    if (!chunk) return NULL;
    atomic_store_explicit(&t->chunks[tag / MMT__TAG_CHUNK], chunk, memory_order_release);
    return &chunk[tag % MMT__TAG_CHUNK];
}

mmt__counts_t *mmt__tag_counts(mmt__slot_t *s, unsigned tag)
{
    mmt__counts_t *c = find(s, tag);
    if (!c) c = make(s, tag);
    if (c && tag == s->tag_bits >> MMT__TAG_SHIFT) s->cur = c;
    return c;
}

mmt__counts_t *mmt__realloc_begin_in(unsigned tag, uint64_t size, uint64_t old)
{
    mmt__slot_t *s = &mmt__tls;
    mmt__counts_t *c = mmt__tag_counts_fast(s, tag);
    if (!c) return NULL;
    mmt__tag_table_t *t = atomic_load_explicit(&s->tags, memory_order_relaxed);
    t->journal_tag = tag;
    t->journal_allocated = atomic_load_explicit(&c->allocated, memory_order_relaxed) + size;
    t->journal_freed = atomic_load_explicit(&c->freed, memory_order_relaxed) + old;
    atomic_store_explicit(&t->busy, 1, memory_order_release); /* after the journal */
    return c;
}

void mmt__count_realloc_in(mmt__counts_t *c, unsigned tag, uint64_t size, uint64_t old)
{
    if (!c) {
        mmt__tag_gone(tag, size, old, 0, 0, 1);
        return;
    }
    mmt__tag_table_t *t = atomic_load_explicit(&mmt__tls.tags, memory_order_relaxed);
    bool slow = mmt__counts_realloc(c, size, old);
    atomic_store_explicit(&t->busy, 0, memory_order_release); /* after the counters */
    if (slow) mmt__tag_fold(c, tag);
}

void mmt__tags_realloc_void(void)
{
    mmt__tag_table_t *t = atomic_load_explicit(&mmt__tls.tags, memory_order_relaxed);
    if (t) atomic_store_explicit(&t->busy, 0, memory_order_release);
}

void mmt__tags_retire_locked(mmt__slot_t *s, bool dead)
{
    mmt__tag_table_t *t = atomic_load_explicit(&s->tags, memory_order_relaxed);
    if (!t) return;
    if (dead && atomic_load_explicit(&t->busy, memory_order_acquire)) {
        mmt__counts_t *c = find(s, t->journal_tag);
        atomic_store_explicit(&c->allocated, t->journal_allocated, memory_order_relaxed);
        atomic_store_explicit(&c->freed, t->journal_freed, memory_order_relaxed);
    }
    unsigned n = mmt__tag_count();
    for (unsigned k = 0; k < MMT__TAG_CHUNKS; k++) {
        mmt__counts_t *chunk = atomic_load_explicit(&t->chunks[k], memory_order_relaxed);
        if (!chunk) continue;
        for (unsigned j = 0; j < MMT__TAG_CHUNK && k * MMT__TAG_CHUNK + j < n; j++) {
            mmt__counts_t *c = &chunk[j];
            unsigned tag = k * MMT__TAG_CHUNK + j;
            int64_t net = mmt__net(c);
            int64_t base = atomic_load_explicit(&c->base, memory_order_relaxed);
            int64_t top = atomic_load_explicit(&c->top, memory_order_relaxed);
            if (top < net) top = net;
            mmt__counts_t *g = &tags[tag]->gone;
#define MOVE(field)                                                                        \
    atomic_fetch_add_explicit(&g->field, atomic_load_explicit(&c->field, memory_order_relaxed), \
                              memory_order_release);
            MOVE(allocated) MOVE(freed) MOVE(allocations) MOVE(frees) MOVE(reallocs)
#undef MOVE
            if (net != base) publish(tag, net - base, top - base);
        }
        if (!dead) mmt__backend.free(chunk);
    }
    atomic_store_explicit(&s->tags, NULL, memory_order_relaxed);
    atomic_fetch_sub_explicit(&mmt__tags_held_back, table_hold(t), memory_order_relaxed);
    s->cur = NULL;
    /* A fork child's handler does not call the allocator, whose locks the child's own
     * handlers may not have reset yet: a dead thread's table stays, unreachable. */
    if (!dead) mmt__backend.free(t);
}

/* ---- Reading ------------------------------------------------------------------------ */

typedef struct sums {
    mmt_meminfo_t m;
    int64_t pending, dip;
    int64_t published; /* the tag's estimate, read before its counts (never summed) */
} sums_t;

static uint64_t acquire(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_acquire);
}

/* Adds `field` of every live table's counts of tags below n, and of the gone counts, into
 * sums[tag].m.field (or, with `into` set, into into[tag]). */
#define SUM_FIELD(slots, n, sums, field)                                                     \
    do {                                                                                     \
        for (unsigned tag_ = 1; tag_ < (n); tag_++)                                          \
            (sums)[tag_].m.field += acquire(&tags[tag_]->gone.field);                        \
        for (mmt__slot_t *s_ = (slots); s_; s_ = s_->next) {                                 \
            mmt__tag_table_t *t_ = atomic_load_explicit(&s_->tags, memory_order_acquire);    \
            if (!t_) continue;                                                               \
            for (unsigned k_ = 0; k_ * MMT__TAG_CHUNK < (n); k_++) {                         \
                mmt__counts_t *c_ = atomic_load_explicit(&t_->chunks[k_], memory_order_acquire); \
                if (!c_) continue;                                                           \
                for (unsigned j_ = 0; j_ < MMT__TAG_CHUNK && k_ * MMT__TAG_CHUNK + j_ < (n); j_++) \
                    (sums)[k_ * MMT__TAG_CHUNK + j_].m.field += acquire(&c_[j_].field);      \
            }                                                                                \
        }                                                                                    \
    } while (0)

/* The own figures of tags 1..n-1, with mmt_meminfo's protocol: frees first, then the rest,
 * then frees again; taken again when more than MMT__READ_SLACK in all was freed meanwhile,
 * and after four tries with the later frees. Then each tag's pending movement and dip. */
static void sum_own(mmt__slot_t *slots, unsigned n, sums_t *own, uint64_t *again)
{
    for (int attempt = 0;; attempt++) {
        memset(own, 0, n * sizeof *own);
        memset(again, 0, n * sizeof *again);
        /* Acquire, and first: a fold's base store comes before its add (release), so the
         * counts read after it never hold a folded movement twice. */
        for (unsigned tag = 1; tag < n; tag++)
            own[tag].published = atomic_load_explicit(&mmt__estimates[tag], memory_order_acquire);
        SUM_FIELD(slots, n, own, freed);
        SUM_FIELD(slots, n, own, frees);
        SUM_FIELD(slots, n, own, allocated);
        SUM_FIELD(slots, n, own, allocations);
        SUM_FIELD(slots, n, own, reallocs);
        uint64_t before = 0, after = 0;
        for (unsigned tag = 1; tag < n; tag++) {
            again[tag] = acquire(&tags[tag]->gone.freed);
            before += own[tag].m.freed;
        }
        for (mmt__slot_t *s = slots; s; s = s->next) {
            mmt__tag_table_t *t = atomic_load_explicit(&s->tags, memory_order_acquire);
            if (!t) continue;
            for (unsigned k = 0; k * MMT__TAG_CHUNK < n; k++) {
                mmt__counts_t *chunk = atomic_load_explicit(&t->chunks[k], memory_order_acquire);
                if (!chunk) continue;
                for (unsigned j = 0; j < MMT__TAG_CHUNK && k * MMT__TAG_CHUNK + j < n; j++) {
                    unsigned tag = k * MMT__TAG_CHUNK + j;
                    if (tag == 0) continue;
                    mmt__counts_t *c = &chunk[j];
                    int64_t base = atomic_load_explicit(&c->base, memory_order_relaxed);
                    int64_t top = atomic_load_explicit(&c->top, memory_order_relaxed);
                    uint64_t a = atomic_load_explicit(&c->allocated, memory_order_relaxed);
                    uint64_t f = acquire(&c->freed);
                    again[tag] += f;
                    int64_t pending = (int64_t)(a - f) - base, rise = top - base;
                    if (pending > MMT__TAG_WINDOW) pending = MMT__TAG_WINDOW;
                    if (pending < -MMT__TAG_WINDOW) pending = -MMT__TAG_WINDOW;
                    if (rise > MMT__TAG_WINDOW) rise = MMT__TAG_WINDOW;
                    if (rise < pending) rise = pending;
                    own[tag].pending += pending;
                    if (rise - pending > own[tag].dip) own[tag].dip = rise - pending;
                }
            }
        }
        for (unsigned tag = 1; tag < n; tag++) after += again[tag];
        if (after - before <= MMT__READ_SLACK) return;
        if (attempt == 3) {
            for (unsigned tag = 1; tag < n; tag++) {
                mmt_meminfo_t *m = &own[tag].m;
                m->freed = again[tag] < m->allocated ? again[tag] : m->allocated;
            }
            return;
        }
    }
}

static void add_figures(sums_t *to, const sums_t *from)
{
    to->m.allocated += from->m.allocated;
    to->m.freed += from->m.freed;
    to->m.allocations += from->m.allocations;
    to->m.frees += from->m.frees;
    to->m.reallocs += from->m.reallocs;
    to->pending += from->pending;
    if (from->dip > to->dip) to->dip = from->dip;
}

/* Adds each tag's figures to its parent's, from the highest id down. */
static void to_subtrees(sums_t *sub, unsigned n)
{
    for (unsigned tag = n - 1; tag > 0; tag--)
        if (tags[tag]->parent != MMT_TAG_ROOT) add_figures(&sub[tags[tag]->parent], &sub[tag]);
}

void mmt__tags_fork_child_locked(mmt__slot_t *slots)
{
    unsigned n = mmt__tag_count();
    for (unsigned tag = 1; tag < n; tag++) {
        mmt__counts_t *g = &tags[tag]->gone;
        tags[tag]->child_net = (int64_t)(atomic_load(&g->allocated) - atomic_load(&g->freed));
        tags[tag]->child_pending = 0;
    }
    int64_t hold = 0;
    for (mmt__slot_t *s = slots; s; s = s->next) {
        mmt__tag_table_t *t = atomic_load_explicit(&s->tags, memory_order_relaxed);
        if (t) hold += table_hold(t);
        for (unsigned k = 0; t && k * MMT__TAG_CHUNK < n; k++) {
            mmt__counts_t *chunk = atomic_load_explicit(&t->chunks[k], memory_order_relaxed);
            for (unsigned j = 0; chunk && j < MMT__TAG_CHUNK && k * MMT__TAG_CHUNK + j < n; j++) {
                tag_t *g = tags[k * MMT__TAG_CHUNK + j];
                int64_t net = mmt__net(&chunk[j]);
                g->child_net += net;
                g->child_pending += net - atomic_load_explicit(&chunk[j].base, memory_order_relaxed);
            }
        }
    }
    for (unsigned tag = n - 1; tag > 0; tag--) {
        tag_t *g = tags[tag];
        if (g->parent != MMT_TAG_ROOT) {
            tags[g->parent]->child_net += g->child_net;
            tags[g->parent]->child_pending += g->child_pending;
        }
        atomic_store_explicit(&mmt__estimates[tag], g->child_net - g->child_pending, memory_order_relaxed);
    }
    atomic_store_explicit(&mmt__tags_held_back, hold, memory_order_relaxed);
}

int mmt__tags_read(mmt__tag_reading_t **out, unsigned *n_out)
{
    unsigned n = mmt__tag_count();
    mmt__tag_reading_t *r = mmt__backend.calloc(n, sizeof *r);
    sums_t *own = mmt__backend.malloc(n * sizeof *own);
    sums_t *sub = mmt__backend.malloc(n * sizeof *sub);
    uint64_t *again = mmt__backend.malloc(n * sizeof *again);
    if (!r || !own || !sub || !again) {
        mmt__backend.free(r);
        mmt__backend.free(own);
        mmt__backend.free(sub);
        mmt__backend.free(again);
        return MMT_ENOMEM;
    }
    mmt__slot_t *slots = mmt__registry_lock();
    sum_own(slots, n, own, again);
    mmt__registry_unlock();

    memcpy(sub, own, n * sizeof *sub);
    to_subtrees(sub, n);

    mmt_meminfo(&r[0].sub);
    r[0].own = r[0].sub;
    r[0].own.peak = 0;
    for (unsigned tag = 1; tag < n; tag++) {
        for (int which = 0; which < 2; which++) {
            mmt_meminfo_t *m = which ? &r[tag].own : &r[tag].sub;
            *m = which ? own[tag].m : sub[tag].m;
            m->in_use = m->allocated - m->freed;
        }
        /* Peak: the estimate as of the folds plus what the tables hold back, as for the
         * process; and never below in_use. */
        int64_t estimate = own[tag].published + sub[tag].pending + sub[tag].dip;
        raise_peak(&tags[tag]->peak, estimate);
        raise_peak(&tags[tag]->peak, (int64_t)r[tag].sub.in_use);
        r[tag].sub.peak = atomic_load_explicit(&tags[tag]->peak, memory_order_relaxed);
        /* The root's own blocks: the process less its children's subtrees. */
        if (tags[tag]->parent == MMT_TAG_ROOT) {
            mmt_meminfo_t *o = &r[0].own, *c = &r[tag].sub;
            o->allocated -= c->allocated < o->allocated ? c->allocated : o->allocated;
            o->freed -= c->freed < o->freed ? c->freed : o->freed;
            o->allocations -= c->allocations < o->allocations ? c->allocations : o->allocations;
            o->frees -= c->frees < o->frees ? c->frees : o->frees;
            o->reallocs -= c->reallocs < o->reallocs ? c->reallocs : o->reallocs;
        }
    }
    r[0].own.in_use = r[0].own.allocated >= r[0].own.freed ? r[0].own.allocated - r[0].own.freed : 0;
    mmt__backend.free(own);
    mmt__backend.free(sub);
    mmt__backend.free(again);
    *out = r;
    *n_out = n;
    return 0;
}

int mmt_tag_meminfo(mmt_tag_t tag, mmt_meminfo_t *info)
{
    if (!info) return MMT_EINVAL;
    if (!mmt__tag_exists(tag)) return MMT_ENOENT;
    if (tag == MMT_TAG_ROOT) {
        mmt_meminfo(info);
        return 0;
    }
    mmt__tag_reading_t *r;
    unsigned n;
    int rc = mmt__tags_read(&r, &n);
    if (rc) return rc;
    *info = r[tag].sub;
    mmt__backend.free(r);
    return 0;
}

/* ---- The tree ----------------------------------------------------------------------- */

static bool valid_name(const char *name)
{
    if (!name || !name[0]) return false;
    size_t len = strnlen(name, MMT_TAG_NAME_MAX + 1);
    return len <= MMT_TAG_NAME_MAX && !memchr(name, '/', len);
}

/* parent's child named name[0..len), or 0: tags_lock. */
static unsigned child_named(unsigned parent, const char *name, size_t len)
{
    for (unsigned c = tags[parent]->first_child; c; c = tags[c]->next_sibling)
        if (strncmp(tags[c]->name, name, len) == 0 && tags[c]->name[len] == '\0') return c;
    return 0;
}

int mmt_tag_new(const char *name, mmt_tag_t parent)
{
    if (!valid_name(name) || !mmt__tag_exists(parent)) return MMT_EINVAL;
    size_t len = strlen(name);
    tag_t *t = mmt__backend.calloc(1, sizeof *t); /* outside the lock: it may be a fork's */
    if (!t) return MMT_ENOMEM;
    pthread_mutex_lock(&tags_lock);
    unsigned id = child_named(parent, name, len);
    if (id) {
        pthread_mutex_unlock(&tags_lock);
        mmt__backend.free(t);
        return (int)id;
    }
    id = atomic_load_explicit(&count, memory_order_relaxed);
    if (id > MMT_TAGS_MAX) {
        pthread_mutex_unlock(&tags_lock);
        mmt__backend.free(t);
        return MMT_ENOSPC;
    }
    memcpy(t->name, name, len + 1);
    t->parent = parent;
    uint16_t above = atomic_load_explicit(&mmt__limited_at[parent], memory_order_relaxed);
    atomic_store_explicit(&mmt__limit_of[id], 0, memory_order_relaxed);
    atomic_store_explicit(&mmt__limited_at[id], above, memory_order_relaxed);
    atomic_store_explicit(&mmt__limited_above[id], above, memory_order_relaxed);
    tags[id] = t;
    if (tags[parent]->last_child) tags[tags[parent]->last_child]->next_sibling = (mmt_tag_t)id;
    else tags[parent]->first_child = (mmt_tag_t)id;
    tags[parent]->last_child = (mmt_tag_t)id;
    atomic_store_explicit(&count, id + 1, memory_order_release);
    pthread_mutex_unlock(&tags_lock);
    return (int)id;
}

mmt_tag_t mmt_tag_switch(mmt_tag_t tag)
{
    if (MMT__UNLIKELY(!mmt__tag_exists(tag))) mmt__bad_tag("mmt_tag_switch", tag);
    mmt__slot_t *s = &mmt__tls;
    mmt_tag_t was = (mmt_tag_t)(s->tag_bits >> MMT__TAG_SHIFT);
    s->tag_bits = (uint64_t)tag << MMT__TAG_SHIFT;
    s->cur = NULL;
    return was;
}

mmt_tag_t mmt_tag_current(void)
{
    return (mmt_tag_t)(mmt__tls.tag_bits >> MMT__TAG_SHIFT);
}

int mmt_tag_lookup(const char *path)
{
    if (!path) return MMT_EINVAL;
    if (!*path) return MMT_TAG_ROOT;
    unsigned tag = MMT_TAG_ROOT;
    pthread_mutex_lock(&tags_lock);
    for (const char *p = path;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        tag = len && len <= MMT_TAG_NAME_MAX ? child_named(tag, p, len) : 0;
        if (!tag || !end) break;
        p = end + 1;
    }
    pthread_mutex_unlock(&tags_lock);
    return tag ? (int)tag : MMT_ENOENT;
}

const char *mmt_tag_name(mmt_tag_t tag)
{
    return mmt__tag_exists(tag) ? tags[tag]->name : NULL;
}

int mmt_tag_parent(mmt_tag_t tag)
{
    return mmt__tag_exists(tag) ? tags[tag]->parent : MMT_ENOENT;
}

int mmt_tag_path(mmt_tag_t tag, char *buf, size_t len)
{
    if (!mmt__tag_exists(tag)) return MMT_ENOENT;
    if (!buf || len == 0) return MMT_EINVAL;
    size_t need = 0;
    for (unsigned t = tag; t != MMT_TAG_ROOT; t = tags[t]->parent)
        need += strlen(tags[t]->name) + (t == tag ? 0 : 1);
    if (need >= len || need > INT32_MAX) return MMT_EINVAL;
    buf[need] = '\0';
    size_t at = need;
    for (unsigned t = tag; t != MMT_TAG_ROOT; t = tags[t]->parent) {
        size_t l = strlen(tags[t]->name);
        if (t != tag) buf[--at] = '/';
        at -= l;
        memcpy(buf + at, tags[t]->name, l);
    }
    return (int)need;
}

/* ---- Limits --------------------------------------------------------------------------- */

void mmt__tag_set_limit(unsigned tag, uint64_t bytes)
{
    pthread_mutex_lock(&tags_lock);
    atomic_store_explicit(&mmt__limit_of[tag], bytes, memory_order_relaxed);
    /* A parent has a lower id than its children: one pass in id order. */
    unsigned n = atomic_load_explicit(&count, memory_order_relaxed);
    for (unsigned t = 0; t < n; t++) {
        uint16_t above = t == MMT_TAG_ROOT ? 0 : atomic_load_explicit(&mmt__limited_at[tags[t]->parent], memory_order_relaxed);
        uint16_t at = atomic_load_explicit(&mmt__limit_of[t], memory_order_relaxed) ? (uint16_t)(t + 1) : above;
        atomic_store_explicit(&mmt__limited_above[t], above, memory_order_relaxed);
        atomic_store_explicit(&mmt__limited_at[t], at, memory_order_relaxed);
    }
    unsigned k = 0;
    for (unsigned t = 0; t < n; t++)
        if (atomic_load_explicit(&mmt__limit_of[t], memory_order_relaxed))
            atomic_store_explicit(&limited_ids[k++], (uint16_t)t, memory_order_relaxed);
    atomic_store_explicit(&limited_n, k, memory_order_relaxed);
    pthread_mutex_unlock(&tags_lock);
}

uint64_t mmt__tag_limit(unsigned tag)
{
    return atomic_load_explicit(&mmt__limit_of[tag], memory_order_relaxed);
}

unsigned mmt__tag_limited_at(unsigned tag)
{
    return atomic_load_explicit(&mmt__limited_at[tag], memory_order_relaxed);
}

unsigned mmt__tag_limited_above(unsigned tag)
{
    return atomic_load_explicit(&mmt__limited_above[tag], memory_order_relaxed);
}

bool mmt__tags_all_far(uint64_t size)
{
    unsigned n = atomic_load_explicit(&limited_n, memory_order_relaxed);
    for (unsigned i = 0; i < n && i <= MMT_TAGS_MAX; i++) {
        unsigned a = atomic_load_explicit(&limited_ids[i], memory_order_relaxed);
        if (!mmt__tag_far(a, size)) return false;
    }
    return true;
}

bool mmt__tag_within(unsigned tag, unsigned ancestor)
{
    for (;; tag = tags[tag]->parent) {
        if (tag == ancestor) return true;
        if (tag == MMT_TAG_ROOT) return false;
    }
}

int64_t mmt__tag_in_use(unsigned tag)
{
    if (tag == MMT_TAG_ROOT) {
        mmt_meminfo_t m;
        mmt_meminfo(&m);
        return (int64_t)m.in_use;
    }
    /* Frees first, as mmt_meminfo reads: a free meanwhile is not subtracted without its
     * allocation. */
    uint64_t freed = 0, allocated = 0;
    mmt__slot_t *slots = mmt__registry_lock();
    /* Which tags are in the subtree, as of now (a tag made and counted in before the lock
     * is in it): a parent has a lower id than its children. */
    unsigned n = mmt__tag_count();
    uint64_t member[(MMT_TAGS_MAX + 1 + 63) / 64] = {0};
#define MEMBER(t) ((member[(t) / 64] >> ((t) % 64)) & 1)
    member[tag / 64] |= (uint64_t)1 << (tag % 64);
    for (unsigned t = tag + 1; t < n; t++)
        if (MEMBER(tags[t]->parent)) member[t / 64] |= (uint64_t)1 << (t % 64);
    for (int pass = 0; pass < 2; pass++) {
        uint64_t *sum = pass ? &allocated : &freed;
        for (unsigned t = tag; t < n; t++)
            if (MEMBER(t)) *sum += acquire(pass ? &tags[t]->gone.allocated : &tags[t]->gone.freed);
        for (mmt__slot_t *s = slots; s; s = s->next) {
            mmt__tag_table_t *tt = atomic_load_explicit(&s->tags, memory_order_acquire);
            for (unsigned k = tag / MMT__TAG_CHUNK; tt && k * MMT__TAG_CHUNK < n; k++) {
                mmt__counts_t *chunk = atomic_load_explicit(&tt->chunks[k], memory_order_acquire);
                for (unsigned j = 0; chunk && j < MMT__TAG_CHUNK && k * MMT__TAG_CHUNK + j < n; j++)
                    if (MEMBER(k * MMT__TAG_CHUNK + j))
                        *sum += acquire(pass ? &chunk[j].allocated : &chunk[j].freed);
            }
        }
    }
    mmt__registry_unlock();
#undef MEMBER
    return (int64_t)(allocated - freed);
}

/* ---- Paths for the exports ------------------------------------------------------------- */

int mmt__tag_path_compare(const char *a, size_t alen, const char *b, size_t blen)
{
    for (size_t i = 0;; i++) {
        /* The end first, then '/', then the other bytes in their order. */
        unsigned ra = i == alen ? 0 : a[i] == '/' ? 1 : (unsigned char)a[i] + 2u;
        unsigned rb = i == blen ? 0 : b[i] == '/' ? 1 : (unsigned char)b[i] + 2u;
        if (ra != rb) return ra < rb ? -1 : 1;
        if (ra == 0) return 0;
    }
}

typedef struct path_ref {
    const char *path;
    size_t len;
    unsigned id;
} path_ref_t;

static int compare_refs(const void *x, const void *y)
{
    const path_ref_t *a = x, *b = y;
    return mmt__tag_path_compare(a->path, a->len, b->path, b->len);
}

void mmt__tag_paths_free(mmt__tag_paths_t *p)
{
    mmt__backend.free(p->text);
    mmt__backend.free(p->at);
    mmt__backend.free(p->order);
    *p = (mmt__tag_paths_t){0};
}

int mmt__tag_paths(unsigned n, mmt__tag_paths_t *out)
{
    *out = (mmt__tag_paths_t){0};
    if (n == 0 || n > mmt__tag_count()) n = mmt__tag_count();
    /* at and len in one block; each path is its parent's, a '/', and its name, and a parent
     * is older than its children (a lower id), so one pass in id order makes them all. */
    size_t *at = mmt__backend.malloc(2 * (size_t)n * sizeof *at);
    unsigned *order = mmt__backend.malloc((size_t)n * sizeof *order);
    path_ref_t *refs = mmt__backend.malloc((size_t)n * sizeof *refs);
    char *text = NULL;
    if (at && order && refs) {
        size_t *len = at + n, total = 1;
        at[0] = len[0] = 0;
        for (unsigned t = 1; t < n; t++) {
            unsigned parent = tags[t]->parent;
            len[t] = (parent == MMT_TAG_ROOT ? 0 : len[parent] + 1) + strlen(tags[t]->name);
            at[t] = total;
            total += len[t] + 1;
        }
        text = mmt__backend.malloc(total);
        if (text) {
            text[0] = '\0';
            for (unsigned t = 1; t < n; t++) {
                unsigned parent = tags[t]->parent;
                char *p = text + at[t];
                if (parent != MMT_TAG_ROOT) {
                    memcpy(p, text + at[parent], len[parent]);
                    p += len[parent];
                    *p++ = '/';
                }
                memcpy(p, tags[t]->name, strlen(tags[t]->name) + 1);
                refs[t - 1] = (path_ref_t){text + at[t], len[t], t};
            }
            qsort(refs, n - 1, sizeof *refs, compare_refs);
            for (unsigned i = 0; i + 1 < n; i++) order[i] = refs[i].id;
            mmt__backend.free(refs);
            *out = (mmt__tag_paths_t){n, text, at, len, order};
            return 0;
        }
    }
    mmt__backend.free(at);
    mmt__backend.free(order);
    mmt__backend.free(refs);
    return MMT_ENOMEM;
}

/* ---- fork ------------------------------------------------------------------------------- */

void mmt__tags_fork_prepare(void)
{
    pthread_mutex_lock(&tags_lock);
}

void mmt__tags_fork_parent(void)
{
    pthread_mutex_unlock(&tags_lock);
}

void mmt__tags_fork_child(void)
{
    pthread_mutex_unlock(&tags_lock);
}
