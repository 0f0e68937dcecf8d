/*
 * The policy engine's public API: creating and freeing engines, host actions, logging,
 * loading and reloading (build a fresh state, then swap it in under the lock, carrying
 * rule state over and switching the limits the policies set), evaluation at allocation
 * checkpoints through the core's checkpoint hook, and the reclaim reports' way to the log.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "fork.h"
#include "engine.h"
#include "virtual.h"
#include "listeners.h"
#include "reclaim.h"

/* What this thread is doing inside engines, innermost first: running an engine's policy
 * code (an evaluation or a load), or its log or event function. Engines nest (a host
 * action of one allocates, and another evaluates at that checkpoint), so it is a chain of
 * frames on this thread's stack. Used to refuse calls that would wait for that very code,
 * or free what it is using. This thread only. */
typedef struct active {
    struct mmt_policy *p;
    bool callback;   /* in its log or event function; else running its policy code */
    bool checkpoint; /* its policy code, evaluated at an allocation checkpoint */
    struct active *outer;
} active_t;
static _Thread_local active_t *tls_active;

static void enter(active_t *frame, struct mmt_policy *p, bool callback, bool checkpoint)
{
    *frame = (active_t){p, callback, checkpoint, tls_active};
    tls_active = frame;
}

static void leave(active_t *frame)
{
    tls_active = frame->outer;
}

static bool running_here(struct mmt_policy *p)
{
    for (active_t *a = tls_active; a; a = a->outer)
        if (a->p == p && !a->callback) return true;
    return false;
}

static bool callback_here(struct mmt_policy *p)
{
    for (active_t *a = tls_active; a; a = a->outer)
        if (a->p == p && a->callback) return true;
    return false;
}

bool mmt__inside_checkpoint(void)
{
    for (active_t *a = tls_active; a; a = a->outer)
        if (a->checkpoint) return true;
    return false;
}

/* True if a call on engine p, from this thread, would wait for itself: from its policy
 * code (a host action), from its log or event function, or on its own thread. */
static bool inside(struct mmt_policy *p)
{
    return running_here(p) || callback_here(p) ||
           (p->thread_started && pthread_equal(pthread_self(), p->thread));
}

/* The engine's critical sections run with cancellation off: a cancellation point inside
 * (reading rss, writing a log line) would otherwise end the thread with the engine's
 * locks held. A cancellation that arrives meanwhile takes effect at the caller's next
 * cancellation point, outside. */
static int no_cancel(void)
{
    int old;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    return old;
}

static void restore_cancel(int old)
{
    int ignored;
    pthread_setcancelstate(old, &ignored);
}

/* ---- Logging ---------------------------------------------------------------------------- */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* The default log: one line on stderr for errors, warnings and information; debug
 * messages (the engine's own notes, like "loaded") only with MMT_DEBUG set. */
bool mmt__log_names_pid;

static void stderr_log(int level, const char *message, void *ud)
{
    (void)ud;
    if (level >= MMT_LOG_DEBUG && !getenv("MMT_DEBUG")) return;
    char pid[32] = "";
    if (mmt__log_names_pid) snprintf(pid, sizeof pid, "pid %ld: ", (long)getpid());
    mmt__say("mmt policy [%s] %s%s", level >= 0 && level <= 3 ? level_names[level] : "?", pid,
             message);
}

/* The length of the well-formed UTF-8 sequence at c (1 to 4), with its code point in
 * *cp; 0 if c does not start one (a stray continuation byte, an overlong form, a
 * surrogate, past U+10FFFF, or cut short). */
static size_t utf8_sequence(const unsigned char *c, uint32_t *cp)
{
    if (c[0] < 0x80) {
        *cp = c[0];
        return 1;
    }
    size_t n = c[0] >= 0xc2 && c[0] <= 0xdf ? 2 : c[0] >= 0xe0 && c[0] <= 0xef ? 3
             : c[0] >= 0xf0 && c[0] <= 0xf4 ? 4 : 0;
    if (n == 0) return 0;
    uint32_t v = c[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((c[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (c[i] & 0x3f);
    }
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < least[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return n;
}

/*
 * A log line is one line: policies log what they like, and a newline in it would forge
 * lines of its own in the host's log. Control characters (C0 but tab, DEL, C1, and the
 * Unicode line and paragraph separators) are written as escapes, \n, \r, \xHH or
 * \uHHHH, and so is every byte that is not part of well-formed UTF-8 (\xHH). The result
 * is cut, at a character boundary, to fit `len`.
 */
static void one_line(const char *in, char *out, size_t len)
{
    size_t used = 0;
    for (const unsigned char *c = (const unsigned char *)in; *c;) {
        char esc[8];
        uint32_t cp = 0;
        size_t take = utf8_sequence(c, &cp), n;
        if (take == 0) {
            n = (size_t)snprintf(esc, sizeof esc, "\\x%02x", *c);
            take = 1;
        } else if (cp == '\n' || cp == '\r') {
            n = (size_t)snprintf(esc, sizeof esc, "\\%c", cp == '\n' ? 'n' : 'r');
        } else if ((cp < 0x20 && cp != '\t') || cp == 0x7f) {
            n = (size_t)snprintf(esc, sizeof esc, "\\x%02x", (unsigned)cp);
        } else if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
            n = (size_t)snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
        } else {
            memcpy(esc, c, take); /* an ordinary character: copied whole, or not at all */
            n = take;
        }
        if (used + n >= len) break;
        memcpy(out + used, esc, n);
        used += n;
        c += take;
    }
    out[used] = '\0';
}

void mmt__policy_vlog(struct mmt_policy *p, int level, const char *fmt, va_list ap)
{
    char raw[1536], message[2048];
    vsnprintf(raw, sizeof raw, fmt, ap);
    one_line(raw, message, sizeof message);
    pthread_mutex_lock(&p->conf_lock);
    mmt_policy_log_fn fn = p->log_fn;
    void *ud = p->log_ud;
    pthread_mutex_unlock(&p->conf_lock);
    active_t frame;
    enter(&frame, p, true, false);
    fn(level, message, ud);
    leave(&frame);
}

void mmt_policy_set_event(mmt_policy_t *p, mmt_policy_event_fn fn, void *ud)
{
    if (!p) return;
    pthread_mutex_lock(&p->conf_lock);
    p->event_fn = fn;
    p->event_ud = fn ? ud : NULL;
    pthread_mutex_unlock(&p->conf_lock);
}

void mmt__policy_event(struct mmt_policy *p, const char *rule, bool fired, const snapshot_t *s)
{
    pthread_mutex_lock(&p->conf_lock);
    mmt_policy_event_fn fn = p->event_fn;
    void *ud = p->event_ud;
    pthread_mutex_unlock(&p->conf_lock);
    if (!fn) return;
    active_t frame;
    enter(&frame, p, true, false);
    fn(rule, fired, &s->info, ud);
    leave(&frame);
}

void mmt__policy_log(struct mmt_policy *p, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mmt__policy_vlog(p, level, fmt, ap);
    va_end(ap);
}

void mmt_policy_set_log(mmt_policy_t *p, mmt_policy_log_fn fn, void *ud)
{
    if (!p) return;
    pthread_mutex_lock(&p->conf_lock);
    p->log_fn = fn ? fn : stderr_log;
    p->log_ud = fn ? ud : NULL;
    pthread_mutex_unlock(&p->conf_lock);
}

/* ---- Reclaim reports ---------------------------------------------------------------------- */

static void log_reclaim_report(const char *line, void *ud)
{
    mmt__policy_log(ud, MMT_LOG_INFO, "%s", line);
}

void mmt__policy_reclaim_reports(struct mmt_policy *p)
{
    unsigned missed = mmt__reclaim_reports(&p->reports_cursor, log_reclaim_report, p);
    if (missed)
        mmt__policy_log(p, MMT_LOG_WARN, "%u reclaim report%s lost: made faster than the "
                        "engine's thread logs them (it keeps the last %d)", missed,
                        missed == 1 ? " was" : "s were", MMT__RECLAIM_REPORTS);
}

/* ---- Host actions ------------------------------------------------------------------------ */

int mmt_policy_action(mmt_policy_t *p, const char *name, mmt_policy_action_fn fn, void *ud)
{
    if (!p || !name || !*name || !fn) return MMT_EINVAL;
    pthread_mutex_lock(&p->conf_lock);
    for (size_t i = 0; i < p->nactions; i++) {
        if (strcmp(p->actions[i].name, name) == 0) {
            p->actions[i].fn = fn;
            p->actions[i].ud = ud;
            pthread_mutex_unlock(&p->conf_lock);
            return 0;
        }
    }
    char *copy = mmt__backend_strdup(name);
    action_t *na = copy ? mmt__backend_grow(p->actions, &p->actions_cap, p->nactions, sizeof *na, 4)
                        : NULL;
    if (!na) {
        pthread_mutex_unlock(&p->conf_lock);
        mmt__backend.free(copy);
        return MMT_ENOMEM;
    }
    p->actions = na;
    p->actions[p->nactions++] = (action_t){copy, fn, ud};
    pthread_mutex_unlock(&p->conf_lock);
    return 0;
}

bool mmt__policy_find_action(struct mmt_policy *p, const char *name, action_t *out)
{
    bool found = false;
    pthread_mutex_lock(&p->conf_lock);
    for (size_t i = 0; i < p->nactions && !found; i++) {
        if (strcmp(p->actions[i].name, name) == 0) {
            *out = p->actions[i];
            found = true;
        }
    }
    pthread_mutex_unlock(&p->conf_lock);
    return found;
}

/* ---- Evaluation ------------------------------------------------------------------------------ */

/*
 * The rate. Every evaluation adds (time, in_use) to the engine's samples, then reads the
 * rate from them afresh: in_use's change from the sample nearest one window (the timer's
 * interval, or a second without a timer) before now, divided by the real time between
 * the two. The span is never under half a window; until the engine has samples that old
 * (its first half window, counted from its first evaluation) the rate is 0. A span much
 * longer than the window means no evaluation came near its start, and then it reaches
 * back to the last one before (allocation that is slow to cross the checkpoint
 * distance, without a timer). The samples reach back two windows (samples.h).
 *
 * One sample reset at each tick would not do: a checkpoint that reset it just before a
 * tick would leave the tick a span of microseconds, and a rate of 0 or many times the
 * truth. Every evaluation reads the same samples, so each gets a full span.
 */

/* Caller holds p->lock. Also adds the evaluation's sample to the trend (m.eta, m.predict),
 * which every evaluation feeds through here. */
static double rate_at(struct mmt_policy *p, double now, const mmt_meminfo_t *info)
{
    mmt__samples_add(&p->in_use, now, (double)info->in_use);
    mmt__trend_add(&p->trend, now, (double)info->in_use);
    double rate = 0, span; /* 0 until the samples reach back half a window */
    mmt__samples_rate(&p->in_use, p->window, &rate, &span);
    atomic_store_explicit(&p->rate_now, rate, memory_order_relaxed);
    return rate;
}

/* ---- The tags' rates ---------------------------------------------------------------------- */

/*
 * A tag's rate is computed as the process's is (above), from samples of its subtree's
 * in_use, but only for the tags a policy asks about, and only at the evaluations that read
 * the tags (a rule on a tag reads them at every one; m.tags when policy code reads it):
 * reading every tag at every evaluation would cost a walk of every thread's counts even
 * for policies that never look at a tag. A tag read seldom (by a task every 10 s) gets
 * the rate over the span since its last reading, as m.rate without a timer does.
 */

/* Caller holds p->lock: adds the sample unless the ring has one as new, and computes. */
static void sample_tag(struct mmt_policy *p, tag_rate_t *t, double time, double in_use)
{
    size_t k = mmt__samples_count(&t->samples);
    if (k > 0 && mmt__samples_at(&t->samples, k - 1).time >= time) return;
    mmt__samples_add(&t->samples, time, in_use);
    double rate = 0, span;
    mmt__samples_rate(&t->samples, p->window, &rate, &span);
    t->rate = rate;
}

void mmt__tag_rates_sample(struct mmt_policy *p, double time, const mmt__tag_reading_t *r,
                           unsigned n)
{
    for (size_t i = 0; i < p->ntag_rates; i++) {
        tag_rate_t *t = &p->tag_rates[i];
        if (t->tag < n) sample_tag(p, t, time, (double)r[t->tag].sub.in_use);
    }
}

double mmt__tag_rate(struct mmt_policy *p, unsigned tag, double time, double in_use)
{
    if (tag == MMT_TAG_ROOT || tag > MMT_TAGS_MAX) return NAN;
    if (!p->tag_rate_of[tag]) {
        tag_rate_t *rates = p->ntag_rates < MMT__TAG_RATES_MAX
                                ? mmt__backend_grow(p->tag_rates, &p->tag_rates_cap,
                                                    p->ntag_rates, sizeof *rates, 4)
                                : NULL;
        if (!rates) {
            if (!p->tag_rates_full) {
                p->tag_rates_full = true;
                char path[256];
                if (mmt_tag_path((mmt_tag_t)tag, path, sizeof path) < 0)
                    snprintf(path, sizeof path, "#%u", tag); /* too long a path to say */
                if (p->ntag_rates < MMT__TAG_RATES_MAX)
                    mmt__policy_log(p, MMT_LOG_WARN, "tag \"%s\": its rate is nan: no memory "
                                    "left to follow it", path);
                else
                    mmt__policy_log(p, MMT_LOG_WARN, "tag \"%s\": its rate is nan: an engine "
                                    "follows the rates of %d tags at most (said once)", path,
                                    MMT__TAG_RATES_MAX);
            }
            return NAN;
        }
        p->tag_rates = rates;
        tag_rate_t *t = &rates[p->ntag_rates++];
        t->tag = tag;
        t->rate = 0;
        mmt__samples_init(&t->samples, 2 * p->window);
        p->tag_rate_of[tag] = (uint16_t)p->ntag_rates;
    }
    tag_rate_t *t = &p->tag_rates[p->tag_rate_of[tag] - 1];
    sample_tag(p, t, time, in_use);
    return t->rate;
}

unsigned mmt__snapshot_machine(snapshot_t *snap, unsigned parts)
{
    unsigned missing = parts & ~snap->machine_read & MMT_MACHINE_ALL;
    if (missing) {
        mmt_machine_t now;
        unsigned found = (unsigned)mmt_machine_read(&now, missing);
        if (missing & MMT_MACHINE_CGROUP) snap->machine.cgroup = now.cgroup;
        if (missing & MMT_MACHINE_PSI) snap->machine.psi = now.psi;
        if (missing & MMT_MACHINE_SYSTEM) snap->machine.system = now.system;
        snap->machine_read |= missing;
        snap->machine_found |= found;
    }
    return snap->machine_found & parts;
}

/* A virtual engine's reading of the tags: the step's. */
static int virtual_tags(const mmt__step_t *step, mmt__tag_reading_t **out, unsigned *n)
{
    unsigned count = mmt__tag_count();
    mmt__tag_reading_t *r = mmt__backend.calloc(count ? count : 1, sizeof *r);
    if (!r) return MMT_ENOMEM;
    for (unsigned i = 1; i < count && i < step->ntags && step->tags; i++) r[i] = step->tags[i];
    r[0].sub = r[0].own = step->info;
    *out = r;
    *n = count;
    return 0;
}

int mmt__policy_tags_read(struct mmt_policy *p, mmt__tag_reading_t **out, unsigned *n)
{
    if (p->virt) return virtual_tags(p->virt->step, out, n);
    return mmt__tags_read(out, n);
}

bool mmt__snapshot_tags(struct mmt_policy *p, snapshot_t *snap)
{
    if (snap->tags) return true;
    if (mmt__policy_tags_read(p, &snap->tags, &snap->ntags) != 0) return false;
    snap->tags_time = mmt__engine_now(p);
    mmt__tag_rates_sample(p, snap->tags_time, snap->tags, snap->ntags);
    return true;
}

/* Caller holds p->lock. Evaluates the rules (at checkpoints and ticks) and runs the tasks
 * due (on the timer thread), with the rate computed for this evaluation. Then tells the
 * engine's thread when a task is next due. A task that was due at this evaluation and is
 * still due (the evaluation was cut before it, or could not run) is left to the next
 * tick, which runs every task due: waking for it at once could loop without end. One
 * that came due during the evaluation has the thread wake at once. `checkpoint`: inside
 * the allocation or free that reached a checkpoint (mmt__inside_checkpoint). */
static void evaluate_locked(struct mmt_policy *p, const mmt_meminfo_t *info, bool rules,
                            bool tasks, bool checkpoint)
{
    pstate_t *s = p->cur;
    double now = mmt__engine_now(p);
    double rate = rate_at(p, now, info);
    if (s && mmt__stack_room()) {
        /* Not on a stack policy code cannot measure (a fiber's) or too near its end: the
         * evaluation is left to the next checkpoint or tick. */
        snapshot_t snap = {.info = *info, .rate = rate, .lua = (double)s->lua_bytes,
                           .time = now, .rss = -1};
        if (p->virt) { /* the machine is the step's: read as if already */
            snap.machine = p->virt->step->machine;
            snap.machine_read = MMT_MACHINE_ALL;
            snap.machine_found = p->virt->step->machine_parts & MMT_MACHINE_ALL;
            snap.rss = p->virt->step->rss >= 0 ? p->virt->step->rss : 0;
        }
        active_t frame;
        enter(&frame, p, false, checkpoint);
        mmt__evaluate(s, &snap, rules, tasks);
        leave(&frame);
        mmt__backend.free(snap.tags);
    }
    if (tasks)
        atomic_store_explicit(&p->tasks_due, s ? mmt__tasks_due(s, now) : INFINITY,
                              memory_order_relaxed);
}

/* Takes p->lock, waiting for it. A mutex favours whoever asks while it is free: allocating
 * threads that try it at every checkpoint would keep the timer, a load or free from ever
 * getting it, so they stand back while someone waits (lock_wanted). */
static void lock_engine(struct mmt_policy *p)
{
    atomic_fetch_add_explicit(&p->lock_wanted, 1, memory_order_relaxed);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_sub_explicit(&p->lock_wanted, 1, memory_order_relaxed);
}

/* The engine's checkpoint hook (mmt__on_checkpoint): the policy is evaluated inside the
 * allocation that crossed the distance. A busy engine is never waited for: the checkpoint
 * stays due, and this thread's next allocation or free tries again. Busy includes a
 * reclaim or trim asked of the engine's thread that it has not finished: the evaluation
 * after one sees what it did. */
static bool checkpoint_hook(const mmt_meminfo_t *info, void *arg)
{
    struct mmt_policy *p = arg;
    if (atomic_load_explicit(&p->deferred_busy, memory_order_acquire)) return false;
    int cancel = no_cancel();
    bool ran = !atomic_load_explicit(&p->lock_wanted, memory_order_relaxed) &&
               pthread_mutex_trylock(&p->lock) == 0;
    if (ran) {
        evaluate_locked(p, info, true, false, true);
        pthread_mutex_unlock(&p->lock);
    }
    restore_cancel(cancel);
    return ran;
}

static void timer_evaluation(struct mmt_policy *p, bool rules)
{
    /* The engine's own thread, which no one else should cancel; but if someone does, it
     * is not inside this. */
    int cancel = no_cancel();
    lock_engine(p);
    mmt_meminfo_t info;
    mmt_meminfo(&info);
    evaluate_locked(p, &info, rules, true, false);
    pthread_mutex_unlock(&p->lock);
    restore_cancel(cancel);
}

void mmt__policy_lock(struct mmt_policy *p)
{
    lock_engine(p);
}

void mmt__policy_unlock(struct mmt_policy *p)
{
    pthread_mutex_unlock(&p->lock);
}

/* Caller holds p->lock: pressure_due from the running policy's armed and firing rules. */
static void pressure_due(struct mmt_policy *p)
{
    double due = INFINITY;
    pstate_t *s = p->cur;
    for (size_t i = 0; s && i < s->nrules; i++) {
        const rule_t *r = &s->rules[i];
        if (r->pressure && r->pressure_mode == MMT__PSI_ARMED && r->firing && !r->disabled &&
            r->last_event + 2 * r->window < due)
            due = r->last_event + 2 * r->window;
    }
    atomic_store_explicit(&p->pressure_due, due, memory_order_relaxed);
}

/* Caller holds p->lock: turns rule r of the running policy, on a snapshot of now. */
static void turn_locked(struct mmt_policy *p, rule_t *r, bool fired)
{
    pstate_t *s = p->cur;
    if (!mmt__stack_room()) return;
    mmt_meminfo_t info;
    mmt_meminfo(&info);
    double now = mmt__engine_now(p);
    snapshot_t snap = {.info = info, .rate = rate_at(p, now, &info), .lua = (double)s->lua_bytes,
                       .time = now, .rss = -1};
    active_t frame;
    enter(&frame, p, false, false);
    mmt__rule_turn(s, r, &snap, fired);
    leave(&frame);
    mmt__backend.free(snap.tags);
}

void mmt__policy_pressure(struct mmt_policy *p, const char *name, bool fired, double when)
{
    int cancel = no_cancel();
    lock_engine(p);
    pstate_t *s = p->cur;
    long i = s ? mmt__rule_find(s, name) : -1;
    if (i >= 0 && s->rules[i].pressure && s->rules[i].pressure_mode == MMT__PSI_ARMED) {
        rule_t *r = &s->rules[i];
        if (fired) r->last_event = when;
        if (r->firing != fired && !r->disabled) turn_locked(p, r, fired);
        pressure_due(p);
    }
    pthread_mutex_unlock(&p->lock);
    restore_cancel(cancel);
}

void mmt__policy_pressure_resolve(struct mmt_policy *p, double now)
{
    if (now < atomic_load_explicit(&p->pressure_due, memory_order_relaxed)) return;
    int cancel = no_cancel();
    lock_engine(p);
    pstate_t *s = p->cur;
    for (size_t i = 0; s && i < s->nrules; i++) {
        rule_t *r = &s->rules[i];
        if (r->pressure && r->pressure_mode == MMT__PSI_ARMED && r->firing && !r->disabled &&
            now - r->last_event >= 2 * r->window)
            turn_locked(p, r, false);
    }
    pressure_due(p);
    pthread_mutex_unlock(&p->lock);
    restore_cancel(cancel);
}

void mmt__policy_trend(pstate_t *s, double *level, double *slope)
{
    struct mmt_policy *p = s->engine;
    const snapshot_t *e = s->evaluating;
    /* The evaluation's time, which its sample has: the line is read where the engine's
     * clock stood, whatever that clock is. */
    double now = e ? e->time : mmt__engine_now(p);
    if (s->loading) lock_engine(p);
    bool line = mmt__trend_fit(&p->trend, now, level, slope);
    if (s->loading) pthread_mutex_unlock(&p->lock);
    if (line) return;
    mmt_meminfo_t info;
    if (!e) mmt_meminfo(&info);
    *level = (double)(e ? e->info.in_use : info.in_use);
    *slope = 0;
}

void mmt__policy_tick(struct mmt_policy *p)
{
    timer_evaluation(p, true);
}

void mmt__policy_run_tasks(struct mmt_policy *p)
{
    timer_evaluation(p, false);
}

/* ---- The policies' limits ------------------------------------------------------------------ */

/*
 * A policy's limits (mmt.limit) are its own. When the engine switches from one policy to
 * the next, the limits the new one sets are applied, and those the old one set and the new
 * one does not are given back. Freeing the engine gives back every limit of its policy. A
 * failed load switches nothing: its limits were never applied.
 *
 * Engines may limit the same tag, so who owns a limit is recorded for the process, a
 * record a tag (`owned`): at the bottom the program's value (what the limit was before any
 * engine set it), above it each engine's value, the most recent on top, which is the one
 * in force. Giving a limit back removes the engine's value: the tag then takes the value
 * on top of those left, or the program's once none is left. Whichever order engines give
 * their limits back in, none is left behind.
 *
 * The program may set the limit itself meanwhile (mmt_limit_set). Its current value then
 * matches neither the value last set through the record nor any engine's: the limit is
 * the program's again. The engines' values are dropped from the record and the program's
 * value becomes the new bottom: giving the limit back then leaves it as the program set
 * it, and a policy that sets it anew will give back the program's value later.
 */

/* One engine's value of a limit. */
typedef struct limit_owner {
    const struct mmt_policy *engine;
    uint64_t bytes; /* as set: past 2^63 - 1, that */
} limit_owner_t;

/* Who owns the limit of one tag. */
typedef struct owned_limit {
    unsigned tag;
    uint64_t program;       /* the program's value, under the engines' */
    uint64_t top;           /* the value last set through this record */
    limit_owner_t *owners;  /* the engines' values, the most recent last */
    size_t nowners, owners_cap;
} owned_limit_t;

/* owned_lock protects owned, nowned and owned_cap: a record for each tag that an engine
 * limits, and only those. Taken after the engines' locks; it is never held while the log or
 * any other code of the program runs. */
static pthread_mutex_t owned_lock = PTHREAD_MUTEX_INITIALIZER;
static owned_limit_t *owned;
static size_t nowned, owned_cap;

/* Caller holds owned_lock. */
static owned_limit_t *owned_find(unsigned tag)
{
    for (size_t i = 0; i < nowned; i++)
        if (owned[i].tag == tag) return &owned[i];
    return NULL;
}

/* Caller holds owned_lock. Drops the record of a tag that no engine limits any more. */
static void owned_drop_if_unowned(owned_limit_t *o)
{
    if (o->nowners) return;
    mmt__backend.free(o->owners);
    *o = owned[--nowned];
    if (nowned) return;
    mmt__backend.free(owned);
    owned = NULL;
    owned_cap = 0;
}

/* Caller holds owned_lock. True if the program set the limit since it was last set
 * through the record: `now` is neither that value nor any engine's. The engines' values
 * are then dropped, and `now` is the program's. */
static bool owned_taken_by_program(owned_limit_t *o, uint64_t now)
{
    if (now == o->top) return false;
    for (size_t i = 0; i < o->nowners; i++)
        if (o->owners[i].bytes == now) return false;
    o->nowners = 0;
    o->program = o->top = now;
    return true;
}

/* Caller holds owned_lock. The index of p's value in o, or o->nowners if it has none. */
static size_t owner_index(const owned_limit_t *o, const struct mmt_policy *p)
{
    size_t i = 0;
    while (i < o->nowners && o->owners[i].engine != p) i++;
    return i;
}

/* Sets the limit on `tag` to `bytes` as engine p's, on top of any other engine's. Returns
 * false, with nothing changed, if no memory was left to record it; else *was is the limit
 * before, and *set the limit as set. */
static bool take_limit(struct mmt_policy *p, unsigned tag, uint64_t bytes, uint64_t *was,
                       uint64_t *set)
{
    pthread_mutex_lock(&owned_lock);
    uint64_t now = mmt_limit_get((mmt_tag_t)tag);
    owned_limit_t *o = owned_find(tag);
    if (!o) {
        owned_limit_t *grown = mmt__backend_grow(owned, &owned_cap, nowned, sizeof *grown, 8);
        if (!grown) {
            pthread_mutex_unlock(&owned_lock);
            return false;
        }
        owned = grown;
        o = &owned[nowned++];
        *o = (owned_limit_t){.tag = tag, .program = now, .top = now};
    }
    owned_taken_by_program(o, now);
    size_t at = owner_index(o, p);
    if (at < o->nowners) {
        /* Its value moves to the top. */
        memmove(&o->owners[at], &o->owners[at + 1], (o->nowners - at - 1) * sizeof *o->owners);
        o->nowners--;
    } else {
        limit_owner_t *grown = mmt__backend_grow(o->owners, &o->owners_cap, o->nowners,
                                                 sizeof *grown, 2);
        if (!grown) {
            owned_drop_if_unowned(o);
            pthread_mutex_unlock(&owned_lock);
            return false;
        }
        o->owners = grown;
    }
    mmt_limit_set((mmt_tag_t)tag, bytes);
    o->top = mmt_limit_get((mmt_tag_t)tag);
    o->owners[o->nowners++] = (limit_owner_t){p, o->top};
    pthread_mutex_unlock(&owned_lock);
    *was = now;
    *set = o->top;
    return true;
}

/* Gives back engine p's limit on `tag`. Returns false if the limit was the program's
 * again (left as it is); else *was is the limit before, and *to the limit now: the value of
 * the engine on top of those left, or the program's. */
static bool give_limit(struct mmt_policy *p, unsigned tag, uint64_t *was, uint64_t *to)
{
    pthread_mutex_lock(&owned_lock);
    uint64_t now = mmt_limit_get((mmt_tag_t)tag);
    *was = *to = now;
    owned_limit_t *o = owned_find(tag);
    size_t at = o && !owned_taken_by_program(o, now) ? owner_index(o, p) : 0;
    bool given = o && at < o->nowners;
    if (given) {
        memmove(&o->owners[at], &o->owners[at + 1], (o->nowners - at - 1) * sizeof *o->owners);
        o->nowners--;
        *to = o->nowners ? o->owners[o->nowners - 1].bytes : o->program;
        if (*to != now) mmt_limit_set((mmt_tag_t)tag, *to);
        o->top = *to;
    }
    if (o) owned_drop_if_unowned(o);
    pthread_mutex_unlock(&owned_lock);
    return given;
}

/* `tag "cache/pages"`, or `the process` for the root. */
static const char *tag_words(unsigned tag, char *buf, size_t len)
{
    char path[256];
    if (tag == MMT_TAG_ROOT) snprintf(buf, len, "the process");
    else if (mmt_tag_path((mmt_tag_t)tag, path, sizeof path) < 0)
        snprintf(buf, len, "tag #%u", tag);
    else snprintf(buf, len, "tag \"%s\"", path);
    return buf;
}

/* "40 MiB", or "none" for 0. */
static const char *limit_words(uint64_t bytes, char *buf, size_t len)
{
    if (!bytes) snprintf(buf, len, "none");
    else mmt__human_bytes(bytes, buf, len);
    return buf;
}

static const policy_limit_t *limit_of(const pstate_t *s, unsigned tag)
{
    for (size_t i = 0; s && i < s->nlimits; i++)
        if (s->limits[i].tag == tag) return &s->limits[i];
    return NULL;
}

/* Caller holds p->lock: rules see the policy and its limits change as one. Switches the
 * limits from those of `from` to those of `to` (either may be NULL), logging each change;
 * `why` says why a limit of `from` is given back. A dry run's engine sets none: it says
 * each limit of `to` it would set, and, having applied none, gives none back. */
static void switch_limits(struct mmt_policy *p, pstate_t *to, const pstate_t *from,
                          const char *why)
{
    char what[300], a[32], b[32];
    for (size_t i = 0; from && i < from->nlimits; i++) {
        const policy_limit_t *l = &from->limits[i];
        if (!l->applied || limit_of(to, l->tag)) continue;
        uint64_t was, now;
        if (!give_limit(p, l->tag, &was, &now))
            mmt__policy_log(p, MMT_LOG_INFO, "limit on %s left at %s: the program changed it "
                            "after the policy set it", tag_words(l->tag, what, sizeof what),
                            limit_words(was, a, sizeof a));
        else if (now != was)
            mmt__policy_log(p, MMT_LOG_INFO, "limit on %s back to %s (was %s): %s",
                            tag_words(l->tag, what, sizeof what), limit_words(now, a, sizeof a),
                            limit_words(was, b, sizeof b), why);
    }
    for (size_t i = 0; to && i < to->nlimits; i++) {
        policy_limit_t *l = &to->limits[i];
        uint64_t was, set;
        if (p->opts.dry_run) {
            /* As mmt_limit_set would take it: past INT64_MAX, INT64_MAX. */
            uint64_t would = l->bytes > INT64_MAX ? INT64_MAX : l->bytes;
            was = mmt_limit_get((mmt_tag_t)l->tag);
            if (would)
                mmt__policy_log(p, MMT_LOG_INFO, "%s: dry run: would set the limit on %s to %s "
                                "(now %s)", l->where, tag_words(l->tag, what, sizeof what),
                                limit_words(would, a, sizeof a), limit_words(was, b, sizeof b));
            else
                mmt__policy_log(p, MMT_LOG_INFO, "%s: dry run: would remove the limit on %s "
                                "(now %s)", l->where, tag_words(l->tag, what, sizeof what),
                                limit_words(was, b, sizeof b));
            continue;
        }
        l->applied = take_limit(p, l->tag, l->bytes, &was, &set);
        if (!l->applied) {
            mmt__policy_log(p, MMT_LOG_ERROR, "%s: limit on %s not set: out of memory", l->where,
                            tag_words(l->tag, what, sizeof what));
            continue;
        }
        l->bytes = set;
        if (was != set)
            mmt__policy_log(p, MMT_LOG_INFO, "%s: limit on %s set to %s (was %s)", l->where,
                            tag_words(l->tag, what, sizeof what), limit_words(set, a, sizeof a),
                            limit_words(was, b, sizeof b));
    }
}

/* ---- Reclaims and trims asked at checkpoints ------------------------------------------------ */

/*
 * Policy code evaluated at a checkpoint runs inside the allocation or free that reached
 * it, on whichever thread made it, and that thread may hold a lock the program's
 * reclaimers take: a reclaimer run there could wait for it forever. So mmt.reclaim and
 * mmt.trim called there (module.c) only ask the engine's thread, which is woken and runs
 * them soon after, in the order asked, outside the engine's locks; each reclaim is
 * reported as any other (the report reaches the log from that thread), and each trim is
 * logged. Until they are done, checkpoints do not evaluate the engine: the evaluation
 * after them sees what they did. Policy code on the engine's own thread (a tick, a task)
 * or running its file at a load runs them at once.
 */

int mmt__policy_defer(struct mmt_policy *p, bool trim, unsigned tag, size_t bytes)
{
    /* Fixed while policy code runs: mmt_policy_free stops the thread only once no
     * checkpoint can evaluate. */
    if (!p->thread_started) return MMT__DEFER_NO_THREAD;
    pthread_mutex_lock(&p->deferred_lock);
    int rc = p->thread_ended ? MMT__DEFER_NO_THREAD : MMT__DEFER_FULL;
    for (size_t i = 0; i < p->ndeferred && rc == MMT__DEFER_FULL; i++) {
        deferred_t *d = &p->deferred[i];
        if (d->trim == trim && (trim || d->tag == tag)) {
            if (bytes > d->bytes) d->bytes = bytes;
            rc = 0;
        }
    }
    if (rc == MMT__DEFER_FULL && p->ndeferred < MMT__DEFERRED_MAX) {
        p->deferred[p->ndeferred++] = (deferred_t){.trim = trim, .tag = tag, .bytes = bytes};
        atomic_fetch_add(&p->deferred_busy, 1);
        rc = 0;
    }
    pthread_mutex_unlock(&p->deferred_lock);
    if (rc == 0) mmt__thread_wake(p);
    return rc;
}

void mmt__policy_run_deferred(struct mmt_policy *p)
{
    /* Those waiting now, no more: one whose reclaimer frees enough to reach a checkpoint
     * may ask again, and the thread, woken for it, comes back (and sees a stop first). */
    pthread_mutex_lock(&p->deferred_lock);
    size_t n = p->ndeferred;
    pthread_mutex_unlock(&p->deferred_lock);
    for (; n > 0 && !atomic_load(&p->stopping); n--) {
        pthread_mutex_lock(&p->deferred_lock);
        deferred_t d = p->deferred[0];
        p->ndeferred--;
        memmove(&p->deferred[0], &p->deferred[1], p->ndeferred * sizeof d);
        pthread_mutex_unlock(&p->deferred_lock);
        size_t gave = d.trim ? mmt_trim() : mmt_reclaim((mmt_tag_t)d.tag, d.bytes);
        atomic_fetch_sub(&p->deferred_busy, 1); /* done: the next evaluation sees it */
        if (d.trim) {
            char bytes[32];
            mmt__policy_log(p, MMT_LOG_INFO, "trim asked at a checkpoint: %s given back to the "
                            "system", mmt__human_bytes(gave, bytes, sizeof bytes));
        }
    }
}

void mmt__policy_end_deferred(struct mmt_policy *p)
{
    deferred_t left[MMT__DEFERRED_MAX];
    pthread_mutex_lock(&p->deferred_lock);
    p->thread_ended = true;
    size_t n = p->ndeferred;
    memcpy(left, p->deferred, n * sizeof left[0]);
    p->ndeferred = 0;
    atomic_store(&p->deferred_busy, 0); /* else checkpoints would wait for them forever */
    pthread_mutex_unlock(&p->deferred_lock);
    char what[300], bytes[32];
    for (size_t i = 0; i < n; i++) {
        if (left[i].trim)
            mmt__policy_log(p, MMT_LOG_INFO, "trim asked at a checkpoint not run: the engine's "
                            "thread stopped");
        else
            mmt__policy_log(p, MMT_LOG_INFO, "reclaim of %s in %s asked at a checkpoint not run: "
                            "the engine's thread stopped",
                            mmt__human_bytes(left[i].bytes, bytes, sizeof bytes),
                            tag_words(left[i].tag, what, sizeof what));
    }
}

/* ---- Loading ------------------------------------------------------------------------------------ */

static int load_locked(struct mmt_policy *p, const char *path)
{
    /* Before reading: an edit after this point differs from it, and the watcher sees it. */
    p->loaded_ok = stat(path, &p->loaded) == 0;
    char err[sizeof p->error];
    active_t frame;
    enter(&frame, p, false, false);
    pstate_t *s = mmt__pstate_load(p, path, err, sizeof err);
    leave(&frame);
    if (!s) {
        pthread_mutex_lock(&p->conf_lock);
        one_line(err, p->error, sizeof p->error); /* a host prints it: one line too */
        pthread_mutex_unlock(&p->conf_lock);
        mmt__policy_log(p, MMT_LOG_ERROR, "%s%s", err,
                        p->cur ? " (the previous policy keeps running)" : "");
        return MMT_ELOAD;
    }
    lock_engine(p);
    pstate_t *old = p->cur;
    mmt__carry_state(s, old);
    switch_limits(p, s, old, "the policy no longer sets it");
    p->cur = s;
    atomic_store_explicit(&p->tasks_due, mmt__tasks_due(s, -INFINITY), memory_order_relaxed);
    /* Its pressure rules wait for the thread to arm them; those it carried firing over
     * resolve a while after the switch unless their trigger reports again. */
    unsigned npressure = 0;
    for (size_t i = 0; i < s->nrules; i++) {
        rule_t *r = &s->rules[i];
        if (!r->pressure) continue;
        r->last_event = mmt__engine_now(p);
        npressure++;
        if (p->virt) r->pressure_mode = MMT__PSI_POLLING; /* no kernel: judged at each step */
    }
    pressure_due(p);
    atomic_store(&p->pressure_rules, npressure);
    atomic_fetch_add(&p->pressure_generation, 1);
    pthread_mutex_unlock(&p->lock);
    mmt__thread_wake(p); /* its tasks' clocks started during the load: due before a tick */
    mmt__pstate_free(old);
    pthread_mutex_lock(&p->conf_lock);
    p->error[0] = '\0';
    pthread_mutex_unlock(&p->conf_lock);
    /* A reload is said: an operator who edits a running program's policy sees it took. */
    const char *rules = s->nrules == 1 ? "" : "s", *tasks = s->ntasks == 1 ? "" : "s";
    if (old)
        mmt__policy_log(p, MMT_LOG_INFO, "policy reloaded: %s: %zu rule%s and %zu task%s", path,
                        s->nrules, rules, s->ntasks, tasks);
    else
        mmt__policy_log(p, MMT_LOG_DEBUG, "%s: loaded, %zu rule%s and %zu task%s", path,
                        s->nrules, rules, s->ntasks, tasks);
    return 0;
}

/* Refuses a call made from inside the engine's own code (see inside()), saying so once. */
static bool refuse_inside(struct mmt_policy *p, const char *call)
{
    if (!inside(p)) return false;
    /* Not through the log function if that is where the call came from: it might call
     * again, and again. */
    if (callback_here(p))
        stderr_log(MMT_LOG_ERROR, call, NULL);
    else
        mmt__policy_log(p, MMT_LOG_ERROR, "%s", call);
    return true;
}

int mmt_policy_load(mmt_policy_t *p, const char *path)
{
    if (!p || !path || !*path) return MMT_EINVAL;
    if (running_here(p)) return MMT_EBUSY; /* mmt.call("reload"): refused quietly, as ever */
    if (refuse_inside(p, "mmt_policy_load: refused: called from the engine's own log or "
                         "event function or thread, which the load would wait for"))
        return MMT_EBUSY;
    int cancel = no_cancel();
    pthread_mutex_lock(&p->load_lock);
    bool moved = !p->path || strcmp(p->path, path) != 0;
    if (moved) {
        char *copy = mmt__backend_strdup(path);
        if (!copy) {
            pthread_mutex_unlock(&p->load_lock);
            restore_cancel(cancel);
            return MMT_ENOMEM;
        }
        mmt__backend.free(p->path);
        p->path = copy;
        atomic_fetch_add(&p->path_generation, 1);
    }
    int rc = load_locked(p, p->path);
    pthread_mutex_unlock(&p->load_lock);
    if (moved) mmt__thread_wake(p); /* the watcher follows the new path now, not later */
    restore_cancel(cancel);
    return rc;
}

int mmt_policy_reload(mmt_policy_t *p)
{
    if (!p) return MMT_EINVAL;
    if (running_here(p)) return MMT_EBUSY;
    /* The engine's thread reloads a watched file itself: that is not a call from inside. */
    if (callback_here(p) && refuse_inside(p, "mmt_policy_reload: refused: called from the "
                                              "engine's own log or event function"))
        return MMT_EBUSY;
    int cancel = no_cancel();
    pthread_mutex_lock(&p->load_lock);
    int rc = p->path ? load_locked(p, p->path) : MMT_EINVAL;
    pthread_mutex_unlock(&p->load_lock);
    restore_cancel(cancel);
    return rc;
}

char *mmt__policy_path(struct mmt_policy *p, struct stat *loaded, bool *loaded_ok)
{
    pthread_mutex_lock(&p->load_lock);
    char *copy = p->path ? mmt__backend_strdup(p->path) : NULL;
    *loaded = p->loaded;
    *loaded_ok = p->loaded_ok;
    pthread_mutex_unlock(&p->load_lock);
    return copy;
}

/* The caller's copy: the engine's own text may change under it with a reload on the
 * watcher's thread. */
static _Thread_local char error_copy[sizeof ((struct mmt_policy *)0)->error];

const char *mmt_policy_error(const mmt_policy_t *p)
{
    if (!p) return "";
    struct mmt_policy *q = (struct mmt_policy *)p; /* const for the caller; its lock is not */
    pthread_mutex_lock(&q->conf_lock);
    memcpy(error_copy, q->error, sizeof error_copy);
    pthread_mutex_unlock(&q->conf_lock);
    return error_copy;
}

/* ---- fork --------------------------------------------------------------------------------- */

/* Every live engine, for the fork handlers. Their prepare handler runs before the core's
 * (registered after it), so the lock order is: engine list, each engine's load_lock, lock,
 * conf_lock and deferred_lock, then the owners of limits (owned_lock), then the core's
 * locks. A running load or evaluation is waited out. */
static pthread_mutex_t engines_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mmt_policy *engines;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
    pthread_mutex_lock(&engines_lock);
    for (struct mmt_policy *p = engines; p; p = p->next_engine) {
        /* Forked from inside this engine's policy code (a host action) or its log or event
         * function: this thread holds some of its locks already. The child's copy is left as it is, timer thread and all. */
        p->fork_skipped = running_here(p) || callback_here(p);
        if (!p->fork_skipped) {
            pthread_mutex_lock(&p->load_lock);
            lock_engine(p);
            pthread_mutex_lock(&p->conf_lock);
        }
        /* Even from inside its code: no thread holds it while it runs other code. */
        pthread_mutex_lock(&p->deferred_lock);
    }
    pthread_mutex_lock(&owned_lock); /* likewise */
}

static void unlock_engines(void)
{
    pthread_mutex_unlock(&owned_lock);
    for (struct mmt_policy *p = engines; p; p = p->next_engine) {
        pthread_mutex_unlock(&p->deferred_lock);
        if (p->fork_skipped) continue;
        pthread_mutex_unlock(&p->conf_lock);
        pthread_mutex_unlock(&p->lock);
        pthread_mutex_unlock(&p->load_lock);
    }
}

static void fork_parent(void)
{
    unlock_engines();
    pthread_mutex_unlock(&engines_lock);
}

/* The child has no timer thread: each engine gets a new one. Nor has it the threads that
 * were waiting for an engine's lock: left counted in lock_wanted, they would keep the
 * child's checkpoints from ever evaluating. The reclaims and trims the parent's policy
 * asked of the parent's thread are the parent's: the child drops them. An engine whose
 * thread is not restarted has none to ask. */
static void fork_child(void)
{
    for (struct mmt_policy *p = engines; p; p = p->next_engine) {
        p->ndeferred = 0;
        atomic_store(&p->deferred_busy, 0);
        p->thread_ended = p->fork_skipped;
    }
    unlock_engines();
    for (struct mmt_policy *p = engines; p; p = p->next_engine) {
        atomic_store_explicit(&p->lock_wanted, 0, memory_order_relaxed);
        if (!p->fork_skipped) mmt__thread_restart_in_child(p);
    }
    pthread_mutex_unlock(&engines_lock);
}

/* Caller holds engines_lock. */
static void unlink_engine(struct mmt_policy *p)
{
    for (struct mmt_policy **at = &engines; *at; at = &(*at)->next_engine) {
        if (*at == p) {
            *at = p->next_engine;
            break;
        }
    }
}

static void register_fork_handlers(void)
{
    mmt__fork_init(true); /* the core's first: their prepare runs after ours */
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- Life cycle ---------------------------------------------------------------------------------- */

mmt_policy_t *mmt_policy_new(const mmt_policy_options_t *opts)
{
    return mmt__policy_new(opts, 0);
}

static void engine_unmake(struct mmt_policy *p)
{
    mmt__textfile_free(p);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->load_lock);
    pthread_mutex_destroy(&p->conf_lock);
    pthread_mutex_destroy(&p->deferred_lock);
    mmt__backend.free(p);
}

/* An engine with its options and defaults, its locks and its textfile, not started: no
 * checkpoint hook, no thread, not in the list of engines. */
static struct mmt_policy *engine_make(const mmt_policy_options_t *opts, size_t extra)
{
    struct mmt_policy *p = mmt__backend.calloc(1, sizeof *p + extra);
    if (!p) return NULL;
    if (opts) p->opts = *opts;
    if (!p->opts.checkpoint_bytes) p->opts.checkpoint_bytes = MMT__DEFAULT_CHECKPOINT;
    if (!p->opts.lua_memory_limit) p->opts.lua_memory_limit = MMT__DEFAULT_LUA_LIMIT;
    if (!p->opts.budget_ms) p->opts.budget_ms = MMT__DEFAULT_BUDGET_MS;
    if (!p->opts.evaluation_ms)
        p->opts.evaluation_ms = p->opts.budget_ms > UINT_MAX / 2 ? UINT_MAX : 2 * p->opts.budget_ms;
    p->window = p->opts.interval_ms ? p->opts.interval_ms / 1000.0 : 1.0;
    mmt__samples_init(&p->in_use, 2 * p->window);
    if (!p->opts.trend_window_s) p->opts.trend_window_s = MMT__DEFAULT_TREND_WINDOW_S;
    mmt__trend_init(&p->trend, p->opts.trend_window_s);
    atomic_init(&p->rate_now, 0.0);
    atomic_init(&p->tasks_due, INFINITY);
    atomic_init(&p->pressure_due, INFINITY);
    atomic_init(&p->pressure_generation, 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->load_lock, NULL);
    pthread_mutex_init(&p->conf_lock, NULL);
    pthread_mutex_init(&p->deferred_lock, NULL);
    p->log_fn = stderr_log;
    p->reports_cursor = mmt__reclaim_reports_next(); /* only the reclaims from now on */
    p->wake[0].fd = p->wake[1].fd = -1;
    p->watcher.in.fd = -1;
    if (mmt__textfile_init(p, p->opts.export_path) != 0) {
        engine_unmake(p);
        return NULL;
    }
    p->opts.export_path = p->textfile.path; /* the engine's copy, not the caller's */
    return p;
}

struct mmt_policy *mmt__policy_new(const mmt_policy_options_t *opts, unsigned inotify_delay_ms)
{
    struct mmt_policy *p = engine_make(opts, 0);
    if (!p) return NULL;
    atomic_init(&p->inotify_delay_ms, inotify_delay_ms);
    size_t current = mmt_mem_get_checkpoint();
    if (current == 0 || current > p->opts.checkpoint_bytes)
        mmt_mem_set_checkpoint(p->opts.checkpoint_bytes);

    p->listener = mmt__on_checkpoint(checkpoint_hook, p);
    if (p->listener < 0) goto fail;
    pthread_once(&fork_once, register_fork_handlers);
    /* In the list before the thread starts: a fork from now on restarts it in the child. */
    pthread_mutex_lock(&engines_lock);
    p->next_engine = engines;
    engines = p;
    if ((p->opts.interval_ms || p->opts.watch || p->textfile.path) && mmt__thread_start(p) != 0) {
        unlink_engine(p);
        pthread_mutex_unlock(&engines_lock);
        goto fail;
    }
    pthread_mutex_unlock(&engines_lock);
    return p;
fail:
    if (p->listener > 0) mmt_mem_unlisten(p->listener);
    engine_unmake(p);
    return NULL;
}

mmt_policy_t *mmt__virtual_new(const mmt_policy_options_t *opts, double start,
                               mmt__call_fn on_call, void *ud)
{
    mmt_policy_options_t o = opts ? *opts : (mmt_policy_options_t){0};
    o.watch = 0;
    o.export_path = NULL;
    o.dry_run = 1;
    struct mmt_policy *p = engine_make(&o, sizeof(struct mmt__virtual));
    if (!p) return NULL;
    p->virt = (struct mmt__virtual *)(p + 1);
    *p->virt = (struct mmt__virtual){.now = start, .on_call = on_call, .ud = ud};
    p->virt->last.time = start;
    p->virt->step = &p->virt->last;
    return p;
}

int mmt__policy_tag(mmt_policy_t *p, const char *path)
{
    int tag = mmt_tag_lookup(path);
    if (tag != MMT_ENOENT || !p->virt) return tag;
    /* Made one name at a time, each under the last. */
    tag = MMT_TAG_ROOT;
    for (const char *at = path; *at;) {
        const char *slash = strchr(at, '/');
        size_t len = slash ? (size_t)(slash - at) : strlen(at);
        char name[MMT_TAG_NAME_MAX + 1];
        if (len == 0 || len > MMT_TAG_NAME_MAX) return MMT_EINVAL;
        memcpy(name, at, len);
        name[len] = '\0';
        tag = mmt_tag_new(name, (mmt_tag_t)tag);
        if (tag < 0) return tag;
        at += len + (slash != NULL);
        if (slash && !*at) return MMT_EINVAL;
    }
    return tag;
}

void mmt__virtual_set_time(mmt_policy_t *p, double time)
{
    if (p && p->virt) p->virt->now = time;
}

void mmt__virtual_step(mmt_policy_t *p, const mmt__step_t *step)
{
    if (!p || !p->virt) return;
    lock_engine(p);
    p->virt->now = step->time;
    p->virt->step = step;
    evaluate_locked(p, &step->info, true, true, false);
    p->virt->last = *step;
    p->virt->last.tags = NULL; /* the caller's, gone after the step */
    p->virt->last.ntags = 0;
    p->virt->step = &p->virt->last;
    pthread_mutex_unlock(&p->lock);
}

void mmt__policy_stop_for_exit(struct mmt_policy *p)
{
    pthread_mutex_lock(&engines_lock);
    unlink_engine(p);
    pthread_mutex_unlock(&engines_lock);
    mmt_mem_unlisten(p->listener); /* first, as in mmt_policy_free */
    mmt__thread_stop(p, false);
}

int mmt_policy_free(mmt_policy_t *p)
{
    if (!p) return 0;
    if (refuse_inside(p, "mmt_policy_free: refused: called from the engine's own policy code, "
                         "log or event function or thread; free it once that has returned"))
        return MMT_EBUSY;
    int cancel = no_cancel();
    pthread_mutex_lock(&engines_lock);
    unlink_engine(p);
    pthread_mutex_unlock(&engines_lock);
    /* The checkpoint hook first, waiting out an evaluation in progress on another thread:
     * from then on no policy code outside the engine's thread can wake the thread or ask it
     * for a reclaim, so none does as it stops and its descriptors are closed. */
    if (p->listener > 0) mmt_mem_unlisten(p->listener);
    bool had_thread = p->thread_started;
    mmt__thread_stop(p, true);
    if (had_thread) mmt__policy_reclaim_reports(p); /* those made since its last look */
    lock_engine(p);
    switch_limits(p, NULL, p->cur, "the engine is freed");
    mmt__pstate_free(p->cur);
    p->cur = NULL;
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->nactions; i++) mmt__backend.free(p->actions[i].name);
    mmt__backend.free(p->actions);
    mmt__backend.free(p->tag_rates);
    mmt__backend.free(p->path);
    engine_unmake(p);
    restore_cancel(cancel);
    return 0;
}
