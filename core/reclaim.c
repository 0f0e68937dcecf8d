/*
 * Limits per tag, the reclaimers, mmt_reclaim, mmt_trim and the reclaim reports. See
 * reclaim.h for the scheme.
 */
#include "reclaim.h"

#include <limits.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "mmt/memory.h"
#include "oom.h"
#include "sys.h"
#include "tags.h"

_Atomic unsigned mmt__limits_on;

/* This thread is inside a reclaim: it starts no other, and gets no allowance. */
static _Thread_local unsigned tls_reclaiming;
_Atomic uint64_t mmt__limits_gen = 1;
_Thread_local mmt__allowance_t mmt__allowance __attribute__((tls_model("initial-exec")));

/* Ends every thread's allowance: before a limit changes takes effect, and before a request
 * near a limit is summed (the sum cannot see what allowances have yet to spend). An
 * allocation that passed its allowance's test just before is in flight. */
static void void_allowances(void)
{
    atomic_fetch_add_explicit(&mmt__limits_gen, 1, memory_order_seq_cst);
}

alignas(64) _Atomic int64_t mmt__limits_reserved; /* a line of its own: written at every
                                                 * admission past an allowance */
static _Thread_local uint64_t tls_reserved; /* this thread's share of it */

/* A request admitted past an allowance is reserved until it is counted: a grant made
 * while it is on its way sees it (reclaim.h). */
void mmt__limit_reserve(uint64_t size)
{
    tls_reserved += size;
    atomic_fetch_add(&mmt__limits_reserved, (int64_t)size);
}

static void unreserve(uint64_t size)
{
    tls_reserved -= size;
    atomic_fetch_sub(&mmt__limits_reserved, (int64_t)size);
}

void mmt__limit_release(void)
{
    if (tls_reserved) unreserve(tls_reserved);
}

uint64_t mmt__limit_settle(void)
{
    /* Outside a reclaim, what this thread reserved before is counted by now (a request
     * admitted again after the allocator failed, or one whose counting ran a listener that
     * allocates). Inside one, the request that started it is still on its way. */
    if (!tls_reclaiming) mmt__limit_release();
    return tls_reserved;
}

void mmt__limit_release_to(uint64_t mark)
{
    if (tls_reserved > mark) unreserve(tls_reserved - mark);
}

bool mmt__limit_grant(uint64_t size)
{
    /* Inside a reclaim, the request that started it is on its way: no grant. */
    if (tls_reclaiming || size > (uint64_t)MMT__ALLOWANCE) return false;
    if (!mmt__tls.registered) return false; /* at most one allowance per counted thread */
    uint64_t gen = atomic_load(&mmt__limits_gen);
    if (!mmt__tags_all_far((uint64_t)MMT__ALLOWANCE)) return false;
    /* The request is paid from the new allowance: on its way, it is part of what the
     * allowances may add (mmt__limit_slack), and needs no reservation. */
    mmt__allowance = (mmt__allowance_t){gen, (uint64_t)MMT__ALLOWANCE - size};
    return true;
}

/* Serializes mmt_limit_set, so that mmt__limits_on counts the limits set. */
static pthread_mutex_t limits_lock = PTHREAD_MUTEX_INITIALIZER;

/* "64 MiB", "63.9 MiB", "512 bytes": a whole number of its unit without decimals, else one
 * decimal, or more where one would read as a whole number ("63.98", not "64.0"). Integer
 * arithmetic: no locale's decimal comma, no floating point inside an allocation. */
static const char *human(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
        return buf;
    }
    unsigned u = 0;
    uint64_t scale = 1024;
    while (u + 1 < sizeof units / sizeof *units && bytes / scale >= 1024) {
        scale *= 1024;
        u++;
    }
    if (bytes % scale == 0) {
        snprintf(buf, len, "%llu %s", (unsigned long long)(bytes / scale), units[u]);
        return buf;
    }
    unsigned __int128 ten = 10;
    for (int digits = 1;; digits++, ten *= 10) {
        /* bytes / scale in units of 10^-digits, rounded half up. */
        unsigned __int128 q = ((unsigned __int128)bytes * ten + scale / 2) / scale;
        if (q % 10 != 0 || digits == 3) {
            snprintf(buf, len, "%llu.%0*llu %s", (unsigned long long)(q / ten), digits,
                     (unsigned long long)(q % ten), units[u]);
            return buf;
        }
    }
}

const char *mmt__human_bytes(uint64_t bytes, char *buf, size_t len)
{
    return human(bytes, buf, len);
}

/* `tag "cache/pages"`, or `the process` for the root. */
static const char *tag_words(unsigned tag, char *buf, size_t len)
{
    if (tag == MMT_TAG_ROOT) {
        snprintf(buf, len, "the process");
        return buf;
    }
    char path[256];
    if (mmt_tag_path((mmt_tag_t)tag, path, sizeof path) < 0) snprintf(path, sizeof path, "#%u", tag);
    snprintf(buf, len, "tag \"%s\"", path);
    return buf;
}

int mmt_limit_set(mmt_tag_t tag, uint64_t bytes)
{
    if (!mmt__tag_exists(tag)) return MMT_ENOENT;
    if (bytes > (uint64_t)INT64_MAX) bytes = (uint64_t)INT64_MAX; /* as good as none */
    pthread_mutex_lock(&limits_lock);
    bool had = mmt__tag_limit(tag) != 0;
    mmt__tag_set_limit(tag, bytes);
    void_allowances();
    if (!had && bytes) atomic_fetch_add_explicit(&mmt__limits_on, 1, memory_order_relaxed);
    if (had && !bytes) atomic_fetch_sub_explicit(&mmt__limits_on, 1, memory_order_relaxed);
    pthread_mutex_unlock(&limits_lock);
    return 0;
}

uint64_t mmt_limit_get(mmt_tag_t tag)
{
    return mmt__tag_exists(tag) ? mmt__tag_limit(tag) : 0;
}

/* ---- Reclaimers ------------------------------------------------------------------------ */

typedef struct reclaimer {
    struct reclaimer *next; /* the list, by rank then id: reclaim_lock */
    int id, rank;
    unsigned tag;
    mmt_reclaim_fn fn;
    void *arg;
    unsigned running;    /* calls under way, on any thread */
    bool removed;        /* out of the list; freed when its last call returns */
    bool waited_for;     /* ... unless a remover waits for that: then the remover frees it */
    unsigned empty;      /* calls in a row that freed nothing */
    double skip_until;   /* the back-off: not run by a failing allocation before then */
    char name[MMT_TAG_NAME_MAX + 1];
} reclaimer_t;

static pthread_mutex_t reclaim_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reclaim_idle = PTHREAD_COND_INITIALIZER;
static reclaimer_t *reclaimers;
static int last_id;

/* The reclaimers running on this thread, innermost first. */
typedef struct frame {
    reclaimer_t *r;
    struct frame *outer;
} frame_t;
static _Thread_local frame_t *tls_frames;

int mmt_reclaimer_add(mmt_tag_t tag, const char *name, int rank, mmt_reclaim_fn fn, void *arg)
{
    if (!fn || !name || !*name || strlen(name) > MMT_TAG_NAME_MAX) return MMT_EINVAL;
    if (!mmt__tag_exists(tag)) return MMT_ENOENT;
    reclaimer_t *r = mmt__backend.calloc(1, sizeof *r);
    if (!r) return MMT_ENOMEM;
    *r = (reclaimer_t){.rank = rank, .tag = tag, .fn = fn, .arg = arg};
    strcpy(r->name, name);
    pthread_mutex_lock(&reclaim_lock);
    if (last_id == INT_MAX) {
        pthread_mutex_unlock(&reclaim_lock);
        mmt__backend.free(r);
        return MMT_ENOSPC;
    }
    r->id = ++last_id;
    reclaimer_t **at = &reclaimers;
    while (*at && (*at)->rank <= rank) at = &(*at)->next; /* after its equals: older first */
    r->next = *at;
    *at = r;
    pthread_mutex_unlock(&reclaim_lock);
    return r->id;
}

int mmt_reclaimer_remove(int id)
{
    pthread_mutex_lock(&reclaim_lock);
    reclaimer_t **at = &reclaimers;
    while (*at && (*at)->id != id) at = &(*at)->next;
    reclaimer_t *r = *at;
    if (!r) {
        pthread_mutex_unlock(&reclaim_lock);
        return MMT_ENOENT;
    }
    *at = r->next;
    r->removed = true;
    if (r->running == 0) {
        mmt__backend.free(r);
    } else if (!tls_frames) {
        /* Another thread runs it: once this returns, it must not be running. The wait is
         * no cancellation point: a cancelled waiter would keep the lock for ever. */
        int cancel;
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
        r->waited_for = true;
        while (r->running > 0) pthread_cond_wait(&reclaim_idle, &reclaim_lock);
        mmt__backend.free(r);
        pthread_setcancelstate(cancel, &cancel);
    }
    /* Else this thread is inside a reclaimer (this one, or another that would wait for
     * it while it waits for this one): no wait, and its last call's end frees it. */
    pthread_mutex_unlock(&reclaim_lock);
    return 0;
}

/* The reclaimers one request has called (each at most once, though it may run the chains
 * of several limits): ids, up to RAN_MAX; past that, every one counts as called. */
#define RAN_MAX 64
typedef struct request {
    int ran[RAN_MAX];
    unsigned n;
} request_t;

static bool already_ran(const request_t *q, int id)
{
    if (q->n > RAN_MAX) return true;
    for (unsigned i = 0; i < q->n; i++)
        if (q->ran[i] == id) return true;
    return false;
}

/* The first reclaimer after (rank, id) in the list's order whose tag is in `within`'s
 * subtree, that is not backing off (unless `all`) and that request q has not called,
 * marked running; or NULL. */
static reclaimer_t *next_reclaimer(int *rank, int *id, bool first, unsigned within, bool all,
                                   double now, request_t *q)
{
    pthread_mutex_lock(&reclaim_lock);
    reclaimer_t *r = reclaimers;
    for (; r; r = r->next) {
        if (!first && (r->rank < *rank || (r->rank == *rank && r->id <= *id))) continue;
        if (!mmt__tag_within(r->tag, within)) continue;
        if (!all && now < r->skip_until) continue;
        if (already_ran(q, r->id)) continue;
        break;
    }
    if (r) {
        if (q->n < RAN_MAX) q->ran[q->n] = r->id;
        q->n++;
    }
    if (r) {
        r->running++;
        *rank = r->rank;
        *id = r->id;
    }
    pthread_mutex_unlock(&reclaim_lock);
    return r;
}

/* A call of r returned, having freed `freed` bytes by the measure. True if r now backs
 * off. */
static bool reclaimer_done(reclaimer_t *r, int64_t freed, double now)
{
    bool backs_off = false;
    pthread_mutex_lock(&reclaim_lock);
    if (freed > 0) {
        r->empty = 0;
    } else if (++r->empty >= 2) {
        r->skip_until = now + MMT_RECLAIM_BACKOFF_S;
        backs_off = true;
    }
    if (--r->running == 0 && r->removed) {
        if (r->waited_for) pthread_cond_broadcast(&reclaim_idle);
        else mmt__backend.free(r);
    }
    pthread_mutex_unlock(&reclaim_lock);
    return backs_off;
}

/* ---- Reports --------------------------------------------------------------------------- */

#define REPORT_LEN 512

static pthread_mutex_t reports_lock = PTHREAD_MUTEX_INITIALIZER;
static char reports[MMT__RECLAIM_REPORTS][REPORT_LEN];
static uint64_t reports_next;

static void report(const char *line)
{
    pthread_mutex_lock(&reports_lock);
    snprintf(reports[reports_next % MMT__RECLAIM_REPORTS], REPORT_LEN, "%s", line);
    reports_next++;
    pthread_mutex_unlock(&reports_lock);
}

uint64_t mmt__reclaim_reports_next(void)
{
    pthread_mutex_lock(&reports_lock);
    uint64_t n = reports_next;
    pthread_mutex_unlock(&reports_lock);
    return n;
}

unsigned mmt__reclaim_reports(uint64_t *cursor, void (*fn)(const char *line, void *ud), void *ud)
{
    unsigned missed = 0;
    for (;;) {
        char line[REPORT_LEN];
        pthread_mutex_lock(&reports_lock);
        if (*cursor + MMT__RECLAIM_REPORTS < reports_next) {
            missed += (unsigned)(reports_next - MMT__RECLAIM_REPORTS - *cursor);
            *cursor = reports_next - MMT__RECLAIM_REPORTS;
        }
        bool more = *cursor < reports_next;
        if (more) memcpy(line, reports[*cursor % MMT__RECLAIM_REPORTS], sizeof line);
        pthread_mutex_unlock(&reports_lock);
        if (!more) return missed;
        ++*cursor;
        fn(line, ud);
    }
}

/* A report line under construction. */
typedef struct line {
    char text[REPORT_LEN];
    size_t used;
} line_t;

static void add(line_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(line_t *l, const char *fmt, ...)
{
    if (l->used >= sizeof l->text - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->text + l->used, sizeof l->text - l->used, fmt, ap);
    va_end(ap);
    if (n > 0) l->used += (size_t)n < sizeof l->text - l->used ? (size_t)n : sizeof l->text - 1 - l->used;
}

/* ---- Running a chain ------------------------------------------------------------------- */

/* Calls r for `ask` bytes, outside every lock of this file, with cancellation off (a
 * cancelled reclaimer would leave it marked running for ever). */
static size_t call(reclaimer_t *r, uint64_t ask)
{
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    frame_t frame = {r, tls_frames};
    tls_frames = &frame;
    size_t said = r->fn((size_t)ask, r->arg);
    tls_frames = frame.outer;
    pthread_setcancelstate(cancel, &cancel);
    return said;
}

/*
 * Runs the reclaimers of `within`'s subtree in order until the subtree's in_use is at most
 * `target` (each asked for what is still missing), or, with `every`, each of them (asked
 * for `wanted`). `all`: the back-off does not apply. `for_what` names the reclaim in its
 * report, made if a reclaimer ran. Returns the bytes the subtree's in_use fell by (0 if
 * it rose).
 */
static uint64_t run_chain(unsigned within, int64_t target, bool every, uint64_t wanted, bool all,
                          const char *for_what, request_t *q)
{
    tls_reclaiming++;
    double t0 = mmt__now();
    int64_t start = mmt__tag_in_use(within), now = start;
    line_t parts = {.used = 0};
    unsigned ran = 0;
    int rank = 0, id = 0;
    while (every || now > target) {
        reclaimer_t *r = next_reclaimer(&rank, &id, ran == 0, within, all, t0, q);
        if (!r) break;
        /* In unsigned arithmetic: the difference fits in 64 bits, not always in 63. */
        size_t said = call(r, every ? wanted : (uint64_t)now - (uint64_t)target);
        int64_t after = mmt__tag_in_use(within), freed = now - after;
        now = after;
        char a[32], b[32];
        add(&parts, "%s%s ", ran ? ", " : "", r->name);
        if (freed >= 0) add(&parts, "%s", human((uint64_t)freed, a, sizeof a));
        else add(&parts, "allocated %s more than it freed", human(-(uint64_t)freed, a, sizeof a));
        if ((int64_t)said != freed && !(freed < 0 && said == 0))
            add(&parts, " (said %s)", human(said, b, sizeof b));
        ran++;
        if (reclaimer_done(r, freed, mmt__now())) /* r may be gone now */
            add(&parts, " (freed nothing twice in a row: skipped for %d s)", MMT_RECLAIM_BACKOFF_S);
    }
    uint64_t fell = start > now ? (uint64_t)(start - now) : 0;
    if (ran) {
        char w[32], f[32];
        line_t l = {.used = 0};
        double ms = (mmt__now() - t0) * 1e3;
        add(&l, "reclaim for %s: wanted %s, freed %s: %s, %d.%d ms", for_what,
            human(wanted, w, sizeof w), human(fell, f, sizeof f), parts.text, (int)ms,
            (int)(ms * 10) % 10);
        report(l.text);
    }
    tls_reclaiming--;
    return fell;
}

size_t mmt_reclaim(mmt_tag_t tag, size_t wanted)
{
    if (!mmt__tag_exists(tag) || wanted == 0 || tls_reclaiming) return 0;
    int64_t start = mmt__tag_in_use(tag);
    /* Wanting more than the subtree holds asks every reclaimer. */
    bool every = wanted > (uint64_t)INT64_MAX || (int64_t)wanted > start;
    char what[300];
    request_t q = {.n = 0};
    return run_chain(tag, every ? 0 : start - (int64_t)wanted, every, wanted, true,
                     tag_words(tag, what, sizeof what), &q);
}

/* ---- Admission ------------------------------------------------------------------------- */

static int64_t limit_of(unsigned tag)
{
    return (int64_t)mmt__tag_limit(tag); /* capped at INT64_MAX by mmt_limit_set */
}

/* Whether `size` more bytes fit under tag's limit (none: they do), by the exact sum. */
static bool fits(unsigned tag, uint64_t size)
{
    int64_t limit = limit_of(tag);
    return !limit || (size <= (uint64_t)limit && mmt__tag_in_use(tag) <= limit - (int64_t)size);
}

static _Noreturn void refuse(const char *call, unsigned tag, uint64_t size)
{
    char words[300], l[32], u[32], why[400];
    int64_t in_use = mmt__tag_in_use(tag);
    snprintf(why, sizeof why, "%s would exceed its limit of %s (in use %s)",
             tag_words(tag, words, sizeof words), human((uint64_t)limit_of(tag), l, sizeof l),
             human(in_use > 0 ? (uint64_t)in_use : 0, u, sizeof u));
    mmt__oom(call, size, why);
}

/* The first limit at or above tag that `size` more bytes do not fit under, or -1. */
static int first_over(unsigned tag, uint64_t size)
{
    for (unsigned at = mmt__tag_limited_at(tag); at; at = mmt__tag_limited_above(at - 1))
        if (!fits(at - 1, size)) return (int)(at - 1);
    return -1;
}

bool mmt__limit_admit(const char *call, unsigned tag, uint64_t size, bool try_, bool may_reclaim)
{
    if (size == 0) return true; /* only growth is refused */
    void_allowances();
    int over = first_over(tag, size);
    if (over < 0) return true;
    if (may_reclaim && !tls_reclaiming) {
        /* Each limit the request does not fit under, innermost first, runs its subtree's
         * chain; a reclaimer runs at most once for the request. Reclaimers may allocate,
         * in any subtree: every limit is then checked again. */
        request_t q = {.n = 0};
        for (unsigned at = mmt__tag_limited_at(tag); at; at = mmt__tag_limited_above(at - 1)) {
            unsigned a = at - 1;
            int64_t limit = limit_of(a), now = mmt__tag_in_use(a);
            if (!limit || size > (uint64_t)limit || now <= limit - (int64_t)size) continue;
            char what[300];
            int64_t target = limit - (int64_t)size;
            run_chain(a, target, false, (uint64_t)(now - target), false,
                      tag_words(a, what, sizeof what), &q);
        }
        void_allowances(); /* granted meanwhile, before the reservation, perhaps */
        over = first_over(tag, size);
        if (over < 0) return true;
    }
    if (try_) return false;
    refuse(call, (unsigned)over, size);
}

bool mmt__reclaim_for_allocator(uint64_t size)
{
    if (tls_reclaiming) return false;
    request_t q = {.n = 0};
    run_chain(MMT_TAG_ROOT, 0, true, size, false, "the process (the allocator failed)", &q);
    mmt_trim();
    return true;
}

/* ---- Trim ------------------------------------------------------------------------------ */

size_t mmt_trim(void)
{
    double before = mmt__read_rss();
    mmt__backend_trim();
    double after = mmt__read_rss();
    return before > after ? (size_t)(before - after) : 0;
}

/* ---- fork ------------------------------------------------------------------------------ */

void mmt__limits_fork_prepare(void)
{
    pthread_mutex_lock(&limits_lock);
    pthread_mutex_lock(&reclaim_lock);
    pthread_mutex_lock(&reports_lock);
}

void mmt__limits_fork_parent(void)
{
    pthread_mutex_unlock(&reports_lock);
    pthread_mutex_unlock(&reclaim_lock);
    pthread_mutex_unlock(&limits_lock);
}

/* The child has only this thread: the calls under way are its own, and no one waits. */
void mmt__limits_fork_child(void)
{
    atomic_store(&mmt__limits_reserved, (int64_t)tls_reserved); /* only this thread's live on */
    for (reclaimer_t *r = reclaimers; r; r = r->next) {
        r->running = 0;
        for (const frame_t *f = tls_frames; f; f = f->outer) r->running += f->r == r;
    }
    pthread_cond_init(&reclaim_idle, NULL);
    mmt__limits_fork_parent();
}
