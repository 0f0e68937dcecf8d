/*
 * Private to the policy engine. A policy lives in a `pstate` (one sandboxed LuaJIT state
 * with the rules and tasks its file declared); the engine (`struct mmt_policy`) holds the
 * running pstate, swaps in a new one on reload, and evaluates it at checkpoints and on its
 * thread's timer.
 *
 *   engine.c  public API, load/reload/swap, checkpoint hook
 *   state.c   creating a pstate: allocator cap, sandbox, time budget, running the file
 *   module.c  the `mmt` Lua module (mmt.rule, mmt.every, mmt.log, ...)
 *   rules.c   evaluating rules and tasks against a snapshot
 *   thread.c  the timer and file watcher thread
 *   pressure.c the kernel's pressure triggers (mmt.pressure, systemd's memory pressure watch)
 *   samples.c recent samples of in_use, for the rate (the process's, and the tags')
 *   trend.c   the least-squares trend of in_use over a window, for m.eta and m.predict
 *   textfile.c the Prometheus textfile the engine's thread writes (opts.export_path)
 *   lj.c      loading LuaJIT at run time (lj.h: the Lua API through a table)
 */
#ifndef MMT_LUA_ENGINE_H
#define MMT_LUA_ENGINE_H

#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "lj.h"
#include "fd.h"
#include "fields.h"
#include "mmt/policy.h"
#include "preload_engine.h"
#include "samples.h"
#include "sys.h"
#include "tags.h"
#include "trend.h"
#include "virtual.h"

#define MMT__DEFAULT_LUA_LIMIT ((size_t)64 << 20)
#define MMT__DEFAULT_BUDGET_MS 100u
#define MMT__DEFAULT_CHECKPOINT ((size_t)1 << 20)
#define MMT__DEFAULT_TREND_WINDOW_S 60u
#define MMT__DEFAULT_EXPORT_EVERY_S 15u
#define MMT__MAX_POLICY_BYTES ((size_t)4 << 20) /* a larger file is refused */
#define MMT__MAX_ERRORS 3                       /* consecutive errors that disable a rule */
#define MMT__MAX_RULES 65536                    /* rules one policy may declare */
#define MMT__LOAD_BUDGET_FACTOR 10u             /* a file's own run: ten calls' budget */
#define MMT__MIN_PERIOD 0.001                   /* seconds: mmt.every's shortest period */
#define MMT__TAG_RATES_MAX 256                  /* tags whose rate an engine follows (4 KiB each) */

/* The name policy chunks get; messages carry the file's whole path instead
 * (mmt__pstate_expand), since LuaJIT cuts longer chunk names. */
#define MMT__CHUNK "mmt:policy"

/* Why the hook stopped the policy code that is running (state.c). */
enum { MMT__STOP_NONE, MMT__STOP_BUDGET, MMT__STOP_EVALUATION, MMT__STOP_STACK };

/* What a declarative rule compares: a field of mmt_meminfo_t (fields.h, same index), or
 * one of the figures the engine adds. */
typedef enum metric {
    METRIC_RATE = MMT__NFIELDS, METRIC_RSS, METRIC_LUA,
    /* The machine's (memory.h, mmt_machine_read): a rule on one does not hold where the
     * machine has no such figure (no cgroup, no PSI, a cgroup with no limit for the ratio). */
    METRIC_CGROUP_CURRENT, METRIC_CGROUP_RATIO, METRIC_PSI_SOME10, METRIC_PSI_FULL10,
    METRIC_AVAILABLE, METRIC_COUNT
} metric_t;

/* What policies can reach outside unsafe mode (state.c), NULL-terminated. */
extern const char *const mmt__sandbox[];

/* The metrics' names: the fields', then rate, rss, lua and the machine's. */
const char *mmt__metric_name(metric_t m);

typedef struct rule {
    char *name;
    char *where;     /* "file:line" of its mmt.rule call */
    int when_ref;    /* Lua function, or LUA_NOREF for a declarative rule */
    int fire_ref;
    int resolve_ref; /* LUA_NOREF if none */
    metric_t metric;
    double above, below, hold;
    /* A rule on a tag (tag = "cache/pages") compares the figure of that tag's subtree. */
    char *tag_path;       /* NULL: the process's figures */
    bool tag_optional;    /* the tag may not exist yet: until it does, the rule does not hold */
    int tag;              /* the tag's id; -1 while an optional tag does not exist */
    unsigned tag_checked; /* mmt__tag_count() when a missing tag was last looked up */
    /* A pressure rule (mmt.pressure, pressure.c): fired when the kernel's PSI trigger
     * reports a stall of `above` percent of `window` seconds (some or full), resolved
     * after a window with no report. Its metric is psi_some10 or psi_full10: where no
     * trigger can be armed, it is that declarative rule, judged at each tick. */
    int pressure;       /* 0: not one; MMT__PSI_SOME or MMT__PSI_FULL */
    double window;      /* seconds */
    int pressure_mode;  /* MMT__PSI_WAITING until the engine's thread has armed it (or
                         * failed to): then MMT__PSI_ARMED or MMT__PSI_POLLING */
    double last_event;  /* when its trigger last reported (monotonic seconds) */
    /* Evaluation state; carried over by name across reloads. */
    bool firing;
    uint64_t fired;  /* times it fired since the engine started (the textfile's
                      * mmt_rule_fired_total): counted where the event function is told */
    double since;    /* when the condition started to hold while not firing; < 0: not holding */
    int errors;      /* consecutive */
    int overruns;    /* evaluations in a row that ran past their budget with this rule the
                      * one that took the most time */
    double spent;    /* seconds taken in the current evaluation */
    bool disabled;
} rule_t;

typedef struct task {
    char *where;
    int fn_ref;
    double period;
    double origin;   /* when it was declared */
    double next_due; /* on the grid of origin plus whole periods */
    int errors;
    int overruns;    /* as for rules */
    double spent;
    uint64_t runs;   /* times it was started (mmt-policy test --coverage) */
    bool disabled;
} task_t;

/* A hard limit a policy sets (mmt.limit, module.c): declared as its file runs, applied
 * when the engine switches to it, and given back when a later policy of the engine no
 * longer sets it, or the engine is freed (engine.c, which records who owns each limit). */
typedef struct policy_limit {
    unsigned tag;
    uint64_t bytes; /* 0: the policy removes the tag's limit */
    bool applied;   /* set by the switch to the policy (not when no memory was left to
                     * record it): only an applied limit is given back */
    char *where;    /* "file:line" of the mmt.limit call */
} policy_limit_t;

typedef struct pstate {
    lua_State *L;
    struct mmt_policy *engine;
    size_t lua_bytes, lua_limit; /* the allocator's account */
    char *reserve;               /* where lua_newstate allocates (state.c) */
    size_t reserve_used;
    bool being_born;             /* inside lua_newstate */
    char *path;                  /* the file it was loaded from */
    unsigned budget_ms;
    /* Limits of the policy code running now (set by mmt__pstate_call, read by its hook). */
    double deadline;             /* monotonic seconds after which this call is stopped */
    double eval_deadline;        /* the evaluation's own end (rules.c); INFINITY outside one */
    double refunded;             /* seconds of declaring rules given back to the load's budget */
    uintptr_t stack_top, stack_floor; /* the C stack below stack_floor is out of bounds */
    int stop;                    /* MMT__STOP_*: why it was stopped */
    bool armed;                  /* policy code is running: the hook applies the limits */
    double call_seconds;         /* how long the last mmt__pstate_call took */
    int glue_ref;                /* rules.c's evaluation function, made once (no garbage) */
    size_t resume_at;            /* the rule an evaluation starts with (after one was cut) */
    bool loading;                /* mmt.rule and mmt.every only work while the file runs */
    rule_t *rules;
    size_t nrules, rules_cap;
    uint32_t *names;             /* rule index + 1 by hash of the name, 0 free (rules.c) */
    size_t names_cap;            /* a power of two, at least twice nrules; 0: none yet */
    uint32_t names_seed;         /* the name hash's own (rules.c) */
    task_t *tasks;
    size_t ntasks, tasks_cap;
    policy_limit_t *limits;      /* what its file set with mmt.limit, one per tag */
    size_t nlimits, limits_cap;
    bool said_no_thread;         /* a reclaim or trim at a checkpoint was refused for want of
                                  * the engine's thread: logged once (module.c) */
    struct snapshot *evaluating; /* the evaluation's snapshot while one runs (rules.c) */
    mmt__tag_paths_t paths;      /* the tags' paths, for m.tags and mmt.tags(), made again
                                  * when there are more tags (module.c) */
} pstate_t;

typedef struct action {
    char *name;
    mmt_policy_action_fn fn;
    void *ud;
} action_t;

/* A point-in-time view of the counters plus the engine's derived figures. */
typedef struct snapshot {
    mmt_meminfo_t info;
    double rate;  /* bytes/s of in_use over about the last window (engine.c) */
    double lua;   /* the policy VM's bytes */
    double time;  /* monotonic seconds */
    double rss;   /* < 0 until read */
    /* Every tag's figures, read on first need (a rule on a tag, or policy code reading
     * m.tags) and kept for the rest of the evaluation, which frees them: rules and policy
     * code judge on one reading. */
    mmt__tag_reading_t *tags; /* NULL until read */
    unsigned ntags;
    double tags_time;         /* when they were read */
    /* The machine's figures (cgroup, PSI, /proc/meminfo), each part read on first need
     * like the tags (mmt__snapshot_machine). */
    mmt_machine_t machine;
    unsigned machine_read;    /* MMT_MACHINE_* parts read so far */
    unsigned machine_found;   /* of those, the parts the machine has */
    const void *table;        /* the Lua table made of it (mmt__push_snapshot), if any */
} snapshot_t;

/* The rate of one tag's subtree's in_use, computed like the snapshot's `rate` from samples
 * of its own: followed from the first time a policy asks for it (a rule on its rate, or
 * m.tags[path].rate), and sampled at every evaluation that reads the tags. */
typedef struct tag_rate {
    unsigned tag;
    double rate; /* as of its newest sample */
    mmt__samples_t samples;
} tag_rate_t;

enum { MMT__PSI_SOME = 1, MMT__PSI_FULL = 2 };
enum { MMT__PSI_WAITING, MMT__PSI_ARMED, MMT__PSI_POLLING };
enum { MMT__PRESSURE_MAX = 16 }; /* pressure rules a policy may declare (a descriptor each) */

/* One armed trigger: a PSI file written a threshold, or systemd's $MEMORY_PRESSURE_WATCH
 * (a PSI file, a FIFO or a socket). The engine thread's own (pressure.c). */
typedef struct trigger {
    char rule[128];     /* the pressure rule it fires; "" for systemd's without a rule */
    mmt__own_fd_t fd;
    short events;       /* POLLPRI on a PSI file, POLLIN on a FIFO or socket */
    bool systemd;       /* $MEMORY_PRESSURE_WATCH's */
    bool fifo;          /* a FIFO (systemd's only) */
    double window;      /* systemd's without a rule: resolves (for the log) after this long */
    double last;        /* its last report */
} trigger_t;

/* The engine thread's triggers (pressure.c). */
typedef struct pressure {
    trigger_t t[MMT__PRESSURE_MAX + 1];
    size_t n;
    unsigned generation;   /* the engine's pressure_generation they were armed for */
    /* systemd's memory pressure protocol, as the environment gave it when the thread
     * started: the path to watch ("" for none) and the bytes to write to it. */
    char systemd_path[512];
    unsigned char systemd_write[256];
    size_t systemd_write_len;
    char systemd_problem[160]; /* what was wrong with them, for the thread to say */
    bool systemd_claimed;  /* this engine holds the process's $MEMORY_PRESSURE_WATCH */
    bool systemd_tried;    /* claimed and armed, or failed (said once): not tried again */
    double systemd_trimmed; /* when the default action last trimmed */
} pressure_t;

/* How many folders the watcher watches at most: the policy path's own, then the folder
 * of each symlink's target on the way to the file. */
enum { MMT__MAX_WATCHES = 8 };

/* One inotify watch, on a folder on the way to the policy file. */
typedef struct folder_watch {
    int wd;
    char *dir;  /* as the path names it */
    char *name; /* the entry in it that leads to the file; NULL: `dir` is only the nearest
                 * existing ancestor of a missing folder, watched until that comes back */
} folder_watch_t;

/* A reclaim or a trim that policy code asked for at an allocation checkpoint, for the
 * engine's thread to run (mmt.reclaim, mmt.trim). */
typedef struct deferred {
    bool trim;     /* mmt.trim; else mmt.reclaim of `bytes` in `tag`'s subtree */
    unsigned tag;
    size_t bytes;
} deferred_t;

/* How many may wait at once: a request for a tag that waits already joins it, so this
 * many tags at least. */
enum { MMT__DEFERRED_MAX = 64 };

/* The textfile (textfile.c). path, temp, pid and every are fixed once the engine is made;
 * failed_step and failed_errno are the engine thread's own while it runs. */
typedef struct textfile {
    char *path;   /* absolute (made so against the folder current then); NULL: none */
    char *temp;   /* beside it, ".NAME.tmp.PID", which node_exporter does not read */
    pid_t pid;    /* the process that made the engine: it alone writes the file */
    double every; /* seconds between two writes */
    int failed_step, failed_errno; /* how the last write failed, logged; 0: it did not */
} textfile_t;

/* The file watcher's state (thread.c): the engine thread's own while it runs. */
typedef struct watcher {
    mmt__own_fd_t in;       /* inotify, or fd -1: poll the file's identity instead */
    folder_watch_t watches[MMT__MAX_WATCHES];
    size_t nwatches;
    bool partial;      /* a folder on the way could not be watched: poll as well */
    bool warned;       /* that was logged, for this path */
    bool creating;     /* the file was created and is not closed yet: not a change yet */
    char *path;        /* the engine's path, as given */
    struct stat seen;  /* the file's identity (through links) when it was last compared */
    bool seen_ok;
    unsigned generation;
} watcher_t;


/* How often a watcher with inotify compares the file's identity all the same: a safety
 * net for changes inotify does not report (a network file system's, an overflowed event
 * queue, a folder swapped where no watch was). 2000 by default; tests make it long to
 * prove that inotify alone followed a change. */
extern _Atomic unsigned mmt__watch_check_ms;

struct mmt_policy {
    mmt_policy_options_t opts; /* with defaults filled in */

    /* lock serialises all Lua execution and protects: cur, the samples of in_use and its
     * trend, and every rule's and task's state. A checkpoint only try-locks it. */
    pthread_mutex_t lock;
    /* Threads waiting for `lock` in pthread_mutex_lock (the timer, a load, a fork, free):
     * checkpoints leave it to them rather than take it first again and again. */
    _Atomic unsigned lock_wanted;
    pstate_t *cur;
    mmt__samples_t in_use; /* one at every evaluation, for the rate */
    double window;         /* the rate's, in seconds: the interval, or 1 without a timer */
    mmt__trend_t trend;    /* in_use at every evaluation, for m.eta and m.predict; over
                            * opts.trend_window_s. A reload keeps it, as it keeps in_use */
    /* The tags whose rate is followed, at most MMT__TAG_RATES_MAX, for the engine's life
     * (a reload keeps them, as it keeps the samples of in_use); tag_rate_of[tag] is the
     * index in tag_rates + 1, 0 for a tag not followed. Also under `lock`. */
    tag_rate_t *tag_rates;
    size_t ntag_rates, tag_rates_cap;
    uint16_t tag_rate_of[MMT_TAGS_MAX + 1];
    bool tag_rates_full; /* a tag was refused for want of room: said once */
    _Atomic double rate_now; /* the last evaluation's rate: written under `lock`, read by
                              * mmt.meminfo() at any time */
    /* When the engine's thread next has a task to run (monotonic seconds; INFINITY: none
     * before the next tick). Written under `lock`, read by the thread at any time. */
    _Atomic double tasks_due;

    /* load_lock serialises loads and protects: path, loaded, loaded_ok. Taken before
     * `lock`. */
    pthread_mutex_t load_lock;
    char *path;
    char error[512]; /* the last load's error: written by a load, read, under conf_lock */
    struct stat loaded; /* the file's identity when a load last read it */
    bool loaded_ok;
    _Atomic unsigned path_generation; /* bumped when path changes: the watcher re-arms */

    /* conf_lock protects: actions, log_fn, log_ud, event_fn, event_ud, error. Held only to
     * copy them in or out. */
    pthread_mutex_t conf_lock;
    action_t *actions;
    size_t nactions, actions_cap;
    mmt_policy_log_fn log_fn;
    void *log_ud;
    mmt_policy_event_fn event_fn;
    void *event_ud;

    int listener; /* its checkpoint hook (mmt__on_checkpoint), > 0 */

    /* The timer and watcher thread (thread.c). thread_started, like the wake-up pair
     * below, is fixed while policy code can run on other threads: set when the engine is
     * made (before any policy loads) or in a child after fork, and cleared by
     * mmt_policy_free only once its checkpoint hook is gone. */
    bool thread_started;
    pthread_t thread;
    /* A socket pair that wakes the thread (mmt__thread_wake): it polls wake[0], others
     * send on wake[1]. Made before the thread starts and closed after it ends, so fixed
     * while it runs; wake_lost is set by whoever finds either end no longer the engine's,
     * and the thread then wakes by itself often enough to see a stop (thread.c). */
    mmt__own_fd_t wake[2];
    _Atomic bool wake_lost;
    _Atomic bool stopping;  /* set before waking it to stop */
    watcher_t watcher; /* the thread's own */
    /* The watcher polls the file's identity until the thread is this old, then uses
     * inotify: a process that execs before then never makes an inotify instance, whose
     * closing at exec or exit waits for the kernel (5 to 20 ms measured here). 0 by
     * default; the preload library asks for 1000 in its reporting process and
     * MMT__INOTIFY_NEVER in the others (mmt__policy_new), and a forked child's engines
     * are set to MMT__INOTIFY_NEVER: inotify instances are a per-user resource (128 by
     * default), not to be taken by every process of a tree. */
    _Atomic unsigned inotify_delay_ms;

    /* Pressure triggers (pressure.c): the thread arms those of the running policy when
     * pressure_generation (bumped by each switch to a new policy) moves, and sleeps no
     * later than pressure_due, when a firing pressure rule may resolve (written under
     * `lock`). `pressure` is the thread's own. */
    _Atomic unsigned pressure_generation;
    _Atomic unsigned pressure_rules; /* how many the running policy has (set with the above) */
    _Atomic double pressure_due;
    pressure_t pressure;

    /* The textfile (textfile.c), written by the thread. _exit asks it for a last write by
     * bumping textfile_asked (mmt__policy_export_at_exit); the thread sets textfile_done
     * to the value it saw once it has written. */
    textfile_t textfile;
    _Atomic unsigned textfile_asked, textfile_done;

    /* The next reclaim report to log (core/reclaim.h): the engine's thread's own while it
     * runs, then mmt_policy_free's. */
    uint64_t reports_cursor;

    /* deferred_lock protects: deferred, ndeferred, the reclaims and trims asked at
     * checkpoints, oldest first, which the engine's thread runs (mmt__policy_defer). Taken
     * after `lock`; nothing is called while it is held. */
    pthread_mutex_t deferred_lock;
    deferred_t deferred[MMT__DEFERRED_MAX];
    size_t ndeferred;
    /* How many of them wait or run, at any time: while any does, checkpoints do not
     * evaluate, so that the next evaluation sees what they did. */
    _Atomic unsigned deferred_busy;
    bool thread_ended; /* under deferred_lock: no more is asked of the thread */

    /* A virtual engine's clock and step (virtual.h); NULL for an engine of the process. */
    struct mmt__virtual *virt;

    /* All engines, for the fork handlers (engine.c); under the engine list's lock. */
    struct mmt_policy *next_engine;
    bool fork_skipped; /* this fork came from inside its policy code: its locks were not taken */
};

/* What a virtual engine is given (virtual.h): its clock, and the figures it reads. */
struct mmt__virtual {
    double now;                   /* seconds, on the clock of the series or trace */
    const mmt__step_t *step;      /* the step being evaluated, or else `last`: never NULL */
    mmt__step_t last;             /* the last step's figures, without its tags; before the
                                   * first step (as its policy loads) all 0, no machine */
    void (*on_call)(const char *name, int64_t arg, int64_t result, bool stubbed, void *ud);
    void *ud;
};

/* What rounding may leave of a comparison of times: a span of `span` seconds measured at
 * about time `at` is taken as reached that much short of it. Without it a virtual clock's
 * steps (i * 0.1) and a grid's (origin + k * 0.1) that name the same instant may differ in
 * their last bit, and a tick would miss what is due at it. */
static inline double mmt__slack(double span, double at)
{
    return 1e-9 * span + 8 * 2.220446049250313e-16 * (at < 0 ? -at : at);
}

/* The engine's clock: the monotonic clock, or a virtual engine's own. Budgets (how long
 * policy code may run) are always on the monotonic clock. */
static inline double mmt__engine_now(const struct mmt_policy *p)
{
    return p->virt ? p->virt->now : mmt__now();
}

/* engine.c */
void mmt__policy_log(struct mmt_policy *p, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mmt__policy_vlog(struct mmt_policy *p, int level, const char *fmt, va_list ap);
void mmt__policy_event(struct mmt_policy *p, const char *rule, bool fired, const snapshot_t *s);
bool mmt__policy_find_action(struct mmt_policy *p, const char *name, action_t *out);
/* Every tag's figures now (mmt__tags_read), or a virtual engine's step's. */
int mmt__policy_tags_read(struct mmt_policy *p, mmt__tag_reading_t **out, unsigned *n);
/* Caller holds p->lock. Reads every tag into snap unless it has been already, and samples
 * the followed tags' in_use (mmt__tag_rates_sample). False if no memory was left for it. */
bool mmt__snapshot_tags(struct mmt_policy *p, snapshot_t *snap);
/* The snapshot's reading of the machine with at least `parts` (MMT_MACHINE_*) read: the
 * parts not read yet are read now and kept for the rest of the evaluation. Returns the
 * parts of `parts` the machine has. */
unsigned mmt__snapshot_machine(snapshot_t *snap, unsigned parts);
/* Caller holds p->lock. Adds a sample, at `time`, of each followed tag of the reading r
 * (n tags), and computes its rate. */
void mmt__tag_rates_sample(struct mmt_policy *p, double time, const mmt__tag_reading_t *r,
                           unsigned n);
/* Caller holds p->lock. The rate of `tag` with the sample (time, in_use): a tag not
 * followed yet is from now on, and its rate is 0 until its samples reach back half a
 * window (a sample older than the newest is not added: the rate stays its newest's). NAN
 * when MMT__TAG_RATES_MAX tags are followed already (logged once). */
double mmt__tag_rate(struct mmt_policy *p, unsigned tag, double time, double in_use);
/* The engine's thread, or mmt_policy_free once it is stopped (never from inside an
 * allocation, where this thread may hold the engine's locks): logs, at level info, the
 * reclaim reports made since it last looked, and how many it missed. */
void mmt__policy_reclaim_reports(struct mmt_policy *p);
/* True if this thread is inside an engine's checkpoint evaluation (any engine's): inside
 * the allocation or free that reached the checkpoint, on any thread, where the program's
 * reclaimers must not run (the thread may hold what they need). */
bool mmt__inside_checkpoint(void);
/* Any thread, inside policy code: asks the engine's thread to run a reclaim of `bytes` in
 * `tag`'s subtree (`trim` false) or a trim, after those asked before, and wakes it. A
 * reclaim of a tag that waits already asks for the larger of the two. Returns 0, or
 * MMT__DEFER_NO_THREAD (the engine has no thread) or MMT__DEFER_FULL (MMT__DEFERRED_MAX
 * wait already); then nothing is asked. */
enum { MMT__DEFER_NO_THREAD = 1, MMT__DEFER_FULL = 2 };
int mmt__policy_defer(struct mmt_policy *p, bool trim, unsigned tag, size_t bytes);
/* The engine's thread: runs the reclaims and trims asked of it that wait when it is
 * called, oldest first; each reclaim is reported (core/reclaim.h) and each trim logged. */
void mmt__policy_run_deferred(struct mmt_policy *p);
/* The engine's thread, as it ends (stopped, or failing): from now on nothing is asked of
 * it (mmt__policy_defer says there is no thread), and what waits is not run, which the
 * log says. */
void mmt__policy_end_deferred(struct mmt_policy *p);
/* Policy code (an evaluation's, or its file's as it loads): the trend of in_use at the
 * evaluation's time, or now outside one (mmt__trend_fit), as the line's *level then and
 * its *slope per second. Without a line (fewer than 2 samples in the window, or all at one
 * time) the current in_use, the evaluation's, and a slope of 0. While the file loads,
 * when policy code runs without p->lock, this takes it. */
void mmt__policy_trend(pstate_t *s, double *level, double *slope);
void mmt__policy_tick(struct mmt_policy *p);  /* timer: the rules and the tasks due */
void mmt__policy_run_tasks(struct mmt_policy *p); /* timer: the tasks due, not the rules */
/* A backend copy of the path, or NULL; with the file's identity when it was last read. */
char *mmt__policy_path(struct mmt_policy *p, struct stat *loaded, bool *loaded_ok);


/* state.c */
/* The error message at the top of the stack, without converting (which could allocate
 * outside a protected call): a placeholder if the error value is not a string. */
const char *mmt__error_text(lua_State *L);
/* `msg` with the chunk's short name replaced by the file's path, into out (cut to len). */
void mmt__pstate_expand(const pstate_t *s, const char *msg, char *out, size_t len);
/* False if policy code must not run on this thread's stack where it is now: a stack
 * that is not the thread's own (a fiber), or within 128 KiB of its end. */
bool mmt__stack_room(void);
/* Logs a message from policy code, expanded. */
void mmt__pstate_log(const pstate_t *s, int level, const char *msg);
/* The pstate a Lua state belongs to: it is the allocator's userdata. */
static inline pstate_t *mmt__pstate_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}
pstate_t *mmt__pstate_load(struct mmt_policy *p, const char *path, char *err, size_t errlen);
void mmt__pstate_free(pstate_t *s);
/* Calls the function at the top of the stack with `nargs` arguments under the time
 * budget; returns 0 or a Lua error code, with results or the message on the stack. */
int mmt__pstate_call(pstate_t *s, int nargs, int nresults);

/* module.c */
int mmt__open_module(lua_State *L);
/* Pushes the snapshot table of snap, and notes it in snap->table. */
void mmt__push_snapshot(pstate_t *s, snapshot_t *snap);

/* rules.c */
/* Evaluates the rules (run_rules) and runs the tasks due at snap->time (run_tasks). */
void mmt__evaluate(pstate_t *s, snapshot_t *snap, bool run_rules, bool run_tasks);
/* The earliest time after `after` that a task of s is due; INFINITY if none is. */
double mmt__tasks_due(const pstate_t *s, double after);
/* Carries each rule's state (firing or not, since when its condition holds, how many times
 * it fired) from `from` (may be NULL) to the rule of the same name in `to`. */
void mmt__carry_state(pstate_t *to, const pstate_t *from);
/* The index of the rule named `name`, or -1. */
long mmt__rule_find(const pstate_t *s, const char *name);
/* Adds rule s->rules[s->nrules - 1] to the name index; false if out of memory. */
bool mmt__rule_index(pstate_t *s);
/* Makes the evaluation function (under a protected call, at load). */
int mmt__rules_open(lua_State *L);

/* The engine's lock, for the engine's thread (pressure.c), waiting for it as the timer
 * does. */
void mmt__policy_lock(struct mmt_policy *p);
void mmt__policy_unlock(struct mmt_policy *p);
/* The engine's thread: pressure rule `name` of the running policy, if it has one armed,
 * had its trigger report at `when` (fired) or goes a window without (resolves). It fires
 * or resolves if that changes its state: its code runs, and the event function is told. */
void mmt__policy_pressure(struct mmt_policy *p, const char *name, bool fired, double when);
/* The engine's thread: resolves the armed pressure rules a window past their last
 * report, and sets pressure_due to when the next may. */
void mmt__policy_pressure_resolve(struct mmt_policy *p, double now);

/* rules.c: fires (fired) or resolves rule r of s now, outside an evaluation: its code,
 * then the event function. Caller holds the engine's lock. */
void mmt__rule_turn(pstate_t *s, rule_t *r, snapshot_t *snap, bool fired);

/* pressure.c */
/* True if this process may arm PSI triggers of any window (CAP_SYS_RESOURCE); without it
 * Linux takes windows that are multiples of 2 s (6.4 and later), or none. */
bool mmt__pressure_privileged(void);
/* Reads systemd's $MEMORY_PRESSURE_WATCH and $MEMORY_PRESSURE_WRITE into p->pressure, on
 * the thread that starts the engine's thread (the environment is not read from threads
 * of the library's own). */
void mmt__pressure_environment(struct mmt_policy *p);
/* The engine's thread, at each wake: arms the running policy's pressure rules when the
 * policy changed (and systemd's watch, the first time), closing the previous ones. */
void mmt__pressure_sync(struct mmt_policy *p);
/* The descriptors to poll, into fds (room for MMT__PRESSURE_MAX + 1); returns how many. */
size_t mmt__pressure_fds(struct mmt_policy *p, struct pollfd *fds);
/* After poll: the reports among fds (as mmt__pressure_fds gave them), handled. */
void mmt__pressure_events(struct mmt_policy *p, const struct pollfd *fds, size_t n);
/* Closes the triggers still the engine's (the thread is stopping, or in a child after
 * fork, where they are the parent's too); with `forget_systemd`, gives systemd's watch
 * back to the process. */
void mmt__pressure_release(struct mmt_policy *p, bool forget_systemd);
/* A path the tests arm triggers on instead of the PSI file (NULL: the real one). */
extern const char *mmt__pressure_file_for_tests;

/* textfile.c */
/* mmt_policy_new: sets p->textfile from `path` (opts.export_path; NULL or "": none) and
 * opts.export_every_s. Returns 0, or MMT_ENOMEM with none set. */
int mmt__textfile_init(struct mmt_policy *p, const char *path);
void mmt__textfile_free(struct mmt_policy *p);
/* True if this process writes p's textfile: it has one, and made the engine (a forked
 * child's engine does not write its parent's file). */
bool mmt__textfile_ours(const struct mmt_policy *p);
/* Seconds between two writes: the option's, or mmt__textfile_every_ms when set. */
double mmt__textfile_every(const struct mmt_policy *p);
/* The engine's thread: writes the textfile now, if this process writes it. Takes the
 * engine's lock to read the rules. A failure is logged (once for the same cause) and left
 * to the next write. */
void mmt__textfile_write(struct mmt_policy *p);
/* Nonzero: every engine writes its textfile this often, in milliseconds, whatever its
 * export_every_s (the tests' seam, to write many times a second). */
extern _Atomic unsigned mmt__textfile_every_ms;

/* thread.c */
int mmt__thread_start(struct mmt_policy *p);
/* Stops the thread, promptly even if the program closed its descriptors; with `release`,
 * also closes those still the engine's and frees the watcher. Closing an inotify
 * descriptor waits for the kernel (5 to 20 ms measured here), which a process about to
 * end can leave to the kernel. */
void mmt__thread_stop(struct mmt_policy *p, bool release);
/* Wakes the thread to look at the engine's path and its tasks' due time again (after a
 * load). */
void mmt__thread_wake(struct mmt_policy *p);
/* In a child after fork: the thread is gone; drops what the parent's had and starts one,
 * which polls the file rather than making an inotify instance. */
void mmt__thread_restart_in_child(struct mmt_policy *p);

#endif
