/*
 * The engine's own thread: it ticks the timer every interval_ms (the rules, and the
 * mmt.every tasks that are due), wakes between ticks when a task is due sooner (the tasks
 * alone run then), and with `watch` it reloads the policy when its file changes. Each
 * time it wakes, it runs the reclaims and trims that policy code asked of it at
 * checkpoints (engine.c: not inside an allocation), then logs the reclaim reports made
 * since (core/reclaim.h): they are made inside allocations, which must not call the log.
 *
 * Following the file. inotify watches the folders on the way to it: the folder of the
 * path as given and, when the path is a symlink, the folder of each link's target (a
 * Kubernetes ConfigMap volume has two links: policy.lua -> ..data/policy.lua and
 * ..data -> ..<timestamp>, swapped by renaming a new ..data over the old one). Any event
 * in those folders, or one of them going away, makes the watcher resolve the path again
 * (moving its watches; a missing folder is waited for from its nearest existing
 * ancestor) and compare the file's identity (stat through links: device, inode, size,
 * modification time) with the one it saw last. Another file (renamed over it, a link or
 * folder swapped) is a change at once; the same file with other contents is one once it
 * is written and closed (IN_CLOSE_WRITE); a newly created file only once its creator
 * closes it, so that a half-written file is not loaded. Every mmt__watch_check_ms the
 * identity is compared all the same: a safety net for what inotify does not report.
 * Without an inotify instance (until the engine is inotify_delay_ms old, never with
 * MMT__INOTIFY_NEVER, or when inotify_init1 fails) the identity is polled every 250 ms.
 * Nothing here opens the policy file or the folders: a FIFO in their place cannot block
 * the thread (and the load refuses anything but a regular file, state.c).
 *
 * The textfile (textfile.c) is written here too: when a policy is switched to, a period
 * after its last write, when _exit asks, and a last time as the thread stops.
 *
 * Descriptors. The wake-up socket pair and the inotify instance are close-on-exec and
 * moved to numbers at or above 512, out of the way of a program's own; each is compared
 * with the identity it had when made before every use (mmt__own_fd_t), and a lost one is
 * dropped, never read, written or closed: a lost inotify instance means polling, a lost
 * wake-up means waking every 50 ms to look for a stop or a new path. A socket pair rather
 * than an eventfd, because closing either end cannot strand the thread in poll(): with
 * the writing end closed, the end it polls hangs up; with the polled end closed, poll()
 * still holds it and what is sent on the other end still wakes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "engine.h"

enum {
    STAT_POLL_MS = 250,      /* the file's identity, without inotify */
    LOST_WAKE_POLL_MS = 50,  /* a stop or a new path, without the wake-up pair */
    LONGEST_SLEEP_MS = 2000, /* a stop whose wake-up nobody could deliver */
    MAX_LINKS = 40,          /* symlinks followed on the way to the file, as the kernel does */
};

/* Events that make the watcher look again. IN_ONLYDIR: a watch is only ever on a folder. */
#define WATCH_MASK                                                                         \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF | \
     IN_MOVE_SELF | IN_ONLYDIR)

_Atomic unsigned mmt__watch_check_ms = 2000;

/* ---- The engine's descriptors ------------------------------------------------------------ */

/* ---- Following the file ------------------------------------------------------------------ */

static bool same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

enum { SAME, REWRITTEN, REPLACED };

/* How the file the path leads to now differs from the one seen last: SAME (also when
 * there is none now), REWRITTEN (the same file, another size or time) or REPLACED
 * (another file, or one where there was none). */
static int difference(const watcher_t *w)
{
    struct stat now;
    if (!w->path || stat(w->path, &now) != 0) return SAME;
    if (!w->seen_ok || now.st_dev != w->seen.st_dev || now.st_ino != w->seen.st_ino)
        return REPLACED;
    return same_file_state(&now, &w->seen) ? SAME : REWRITTEN;
}

static void mark_seen(watcher_t *w)
{
    w->seen_ok = w->path && stat(w->path, &w->seen) == 0;
}

/* Splits `path` into its folder and last name ("a/b" is "a" and "b", "b" is "." and "b",
 * "/b" is "/" and "b"). False if the folder does not fit. */
static bool split_path(const char *path, char *dir, size_t dirlen, const char **name)
{
    const char *slash = strrchr(path, '/');
    *name = slash ? slash + 1 : path;
    int n = !slash         ? snprintf(dir, dirlen, ".")
            : slash == path ? snprintf(dir, dirlen, "/")
                            : snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
    return n >= 0 && (size_t)n < dirlen;
}

/* Watches folder `dir`, or if it is missing its nearest existing ancestor (*ancestor is
 * then set): an event there shows the folder coming back. Returns the watch or -1. */
static int watch_folder(watcher_t *w, const char *dir, char *watched, size_t len, bool *ancestor)
{
    *ancestor = false;
    snprintf(watched, len, "%s", dir);
    int wd = inotify_add_watch(w->in.fd, watched, WATCH_MASK);
    while (wd < 0 && (errno == ENOENT || errno == ENOTDIR)) {
        char *slash = strrchr(watched, '/');
        if (!slash && strcmp(watched, ".") == 0) break;
        if (!slash) snprintf(watched, len, ".");
        else if (slash == watched && watched[1] == '\0') break;
        else if (slash == watched) watched[1] = '\0';
        else *slash = '\0';
        *ancestor = true;
        wd = inotify_add_watch(w->in.fd, watched, WATCH_MASK);
    }
    return wd;
}

static void free_watches(folder_watch_t *watches, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mmt__backend.free(watches[i].dir);
        mmt__backend.free(watches[i].name);
    }
}

/* Drops the inotify instance, which the program closed or replaced: from now on the file
 * is polled. Its watches went with it; nothing is removed through a descriptor that is
 * no longer the engine's. */
static void lose_inotify(struct mmt_policy *p, watcher_t *w)
{
    mmt__policy_log(p, MMT_LOG_DEBUG, "descriptor %d is no longer the engine's inotify instance "
                    "(closed by the program?); the policy file is checked every %d ms instead",
                    w->in.fd, STAT_POLL_MS);
    w->in.fd = -1;
    free_watches(w->watches, w->nwatches);
    w->nwatches = 0;
}

/* Points the watches at the folders on the way from w->path to the file, as they are
 * now: the path's own folder, then that of each symlink's target (lstat and readlink
 * only: nothing is opened). Watches no longer on the way are removed. Returns true if
 * a missing folder, for which an ancestor is watched, has come back meanwhile: its
 * coming back may have been before the ancestor's watch, so no event will tell. */
static bool resolve_once(struct mmt_policy *p, watcher_t *w)
{
    folder_watch_t next[MMT__MAX_WATCHES];
    bool back = false;
    size_t n = 0;
    bool partial = false;
    char cur[PATH_MAX], dir[PATH_MAX], watched[PATH_MAX], target[PATH_MAX];
    snprintf(cur, sizeof cur, "%s", w->path);
    for (int links = 0;; links++) {
        if (n == MMT__MAX_WATCHES) { /* a longer chain of links: its end is polled */
            partial = true;
            break;
        }
        const char *name;
        if (!split_path(cur, dir, sizeof dir, &name)) break;
        bool ancestor;
        int wd = watch_folder(w, dir, watched, sizeof watched, &ancestor);
        if (wd < 0) {
            partial = true;
            if (!w->warned)
                mmt__policy_log(p, MMT_LOG_WARN, "%s: cannot watch the folder %s (%s); checking "
                                "the file every %d ms instead", w->path, dir, strerror(errno),
                                STAT_POLL_MS);
            w->warned = true;
            break;
        }
        next[n].wd = wd;
        next[n].dir = mmt__backend_strdup(watched);
        next[n].name = ancestor ? NULL : mmt__backend_strdup(name);
        if (!next[n].dir || (!ancestor && !next[n].name)) {
            free_watches(&next[n], 1);
            partial = true;
            break;
        }
        n++;
        if (ancestor) { /* nothing below a missing folder exists yet */
            struct stat st;
            back = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
            break;
        }
        struct stat st;
        if (links == MAX_LINKS || lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) break;
        ssize_t len = readlink(cur, target, sizeof target - 1);
        if (len <= 0) break;
        target[len] = '\0';
        int m = target[0] == '/' ? snprintf(cur, sizeof cur, "%s", target)
                                 : snprintf(cur, sizeof cur, "%s/%s", dir, target);
        if (m < 0 || (size_t)m >= sizeof cur) break;
    }
    /* inotify gives a folder one watch however it is named: remove only what is gone. */
    for (size_t i = 0; i < w->nwatches; i++) {
        bool kept = false;
        for (size_t j = 0; j < n && !kept; j++) kept = next[j].wd == w->watches[i].wd;
        for (size_t j = 0; j < i && !kept; j++) kept = w->watches[j].wd == w->watches[i].wd;
        if (!kept) inotify_rm_watch(w->in.fd, w->watches[i].wd); /* may be gone already */
    }
    free_watches(w->watches, w->nwatches);
    memcpy(w->watches, next, n * sizeof next[0]);
    w->nwatches = n;
    w->partial = partial;
    return back;
}

/* resolve_once, again while a missing folder comes back. Returns true if the watches
 * moved: the path leads through other folders than before. */
static bool resolve(struct mmt_policy *p, watcher_t *w)
{
    if (w->in.fd < 0 || !w->path) return false;
    if (!mmt__fd_is_own(&w->in)) {
        lose_inotify(p, w);
        return false;
    }
    int before[MMT__MAX_WATCHES];
    size_t nbefore = w->nwatches;
    for (size_t i = 0; i < nbefore; i++) before[i] = w->watches[i].wd;
    for (int tries = 0; tries < 4 && resolve_once(p, w); tries++) {
    }
    if (w->nwatches != nbefore) return true;
    for (size_t i = 0; i < nbefore; i++)
        if (w->watches[i].wd != before[i]) return true;
    return false;
}

/* A file just created under a watched name: a regular file is being written (not a
 * change until it is closed); anything else (a symlink, a hard link to a whole file)
 * is complete already. */
static bool created_incomplete(const folder_watch_t *fw)
{
    char path[PATH_MAX];
    struct stat st;
    int n = snprintf(path, sizeof path, "%s/%s", fw->dir, fw->name);
    return n >= 0 && (size_t)n < sizeof path && lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
           st.st_nlink == 1;
}

/* Reads the pending events. Returns true if any came from a current watch (the path is
 * then resolved again); sets *written if a name on the way to the file was written and
 * closed or renamed into place, and keeps w->creating. */
static bool drain_events(struct mmt_policy *p, watcher_t *w, bool *written)
{
    alignas(struct inotify_event) char buf[4096];
    bool any = false;
    for (;;) {
        if (!mmt__fd_is_own(&w->in)) {
            lose_inotify(p, w);
            return any;
        }
        ssize_t n = read(w->in.fd, buf, sizeof buf);
        if (n <= 0) break;
        for (char *at = buf; at < buf + n;) {
            const struct inotify_event *e = (const struct inotify_event *)at;
            at += sizeof *e + e->len;
            if (e->mask & IN_Q_OVERFLOW) { /* events were lost: compare as after a write */
                any = *written = true;
                w->creating = false;
                continue;
            }
            for (size_t i = 0; i < w->nwatches; i++) {
                const folder_watch_t *fw = &w->watches[i];
                if (fw->wd != e->wd) continue; /* others are from watches removed since */
                any = true;
                if (!e->len || !fw->name || strcmp(e->name, fw->name) != 0) continue;
                if (e->mask & IN_CREATE) {
                    bool incomplete = created_incomplete(fw);
                    w->creating = w->creating || incomplete;
                    *written = *written || !incomplete;
                }
                if (e->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) {
                    w->creating = false;
                    *written = true;
                }
                if (e->mask & (IN_DELETE | IN_MOVED_FROM)) w->creating = false;
            }
        }
    }
    return any;
}

/* From polling to inotify. A failure (EMFILE: the user's 128 instances are taken) leaves
 * the watcher polling, as it was. */
static void start_inotify(struct mmt_policy *p, watcher_t *w)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        mmt__policy_log(p, MMT_LOG_DEBUG, "no inotify instance (%s); the policy file is checked "
                        "every %d ms instead", strerror(errno), STAT_POLL_MS);
        return;
    }
    w->in = mmt__fd_take(fd);
    resolve(p, w);
}

/* Points the watcher at the engine's current path, if it changed. Returns true if the
 * file is no longer what was loaded: an edit made between the load and the watch. */
static bool rearm(struct mmt_policy *p, watcher_t *w)
{
    unsigned gen = atomic_load(&p->path_generation);
    if (gen == w->generation) return false;
    w->generation = gen;
    struct stat loaded;
    bool loaded_ok;
    char *path = mmt__policy_path(p, &loaded, &loaded_ok);
    if (!path) return false;
    mmt__backend.free(w->path);
    w->path = path;
    w->warned = w->creating = false;
    resolve(p, w);
    /* After the watches are in place: a later edit is an event, an earlier one shows here. */
    mark_seen(w);
    return w->seen_ok && (!loaded_ok || !same_file_state(&w->seen, &loaded));
}

/* ---- The thread ----------------------------------------------------------------------------- */

/* Empties the wake-up socket. False if it is no longer usable: not the engine's, or its
 * other end was closed. */
static bool drain_wake(struct mmt_policy *p)
{
    char buf[64];
    for (;;) {
        if (!mmt__fd_is_own(&p->wake[0]) || !mmt__fd_is_own(&p->wake[1])) return false;
        ssize_t n = recv(p->wake[0].fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0) return false; /* the sending end is closed */
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
}

/* Lowers *at to `when` if that is sooner. */
static void sooner(double *at, double when)
{
    if (when < *at) *at = when;
}

static void *engine_thread(void *arg)
{
    struct mmt_policy *p = arg;
    bool watch = p->opts.watch != 0;
    watcher_t *w = &p->watcher;
    double started = mmt__now();
    bool inotify_tried = false;
    double interval = p->opts.interval_ms / 1000.0;
    double next_tick = interval > 0 ? started + interval : INFINITY;
    double next_poll = started, next_check = INFINITY;
    /* The textfile: written when a policy is switched to (pressure_generation moves), when
     * _exit asks (textfile_asked moves), a period after the last write, and as the thread
     * stops. Not in a forked child (mmt__textfile_ours). */
    bool exporting = mmt__textfile_ours(p);
    double export_due = exporting ? started + mmt__textfile_every(p) : INFINITY;
    unsigned export_switch = 0; /* none yet: a load made before this thread ran counts */

    for (;;) {
        if (atomic_load(&p->stopping)) break;
        mmt__pressure_sync(p); /* the running policy's triggers, armed if it changed */
        bool changed = false;
        double now = mmt__now();
        unsigned delay = atomic_load(&p->inotify_delay_ms);
        double inotify_at = delay == MMT__INOTIFY_NEVER ? INFINITY : started + delay / 1000.0;
        if (watch && !inotify_tried && now >= inotify_at) {
            /* From polling to inotify; a change since the last poll still counts. */
            inotify_tried = true;
            changed = difference(w) != SAME;
            start_inotify(p, w);
            next_check = now + atomic_load(&mmt__watch_check_ms) / 1000.0;
        }
        if (watch) changed = rearm(p, w) || changed;
        if (w->in.fd >= 0 && !mmt__fd_is_own(&w->in)) lose_inotify(p, w);
        bool inotify = w->in.fd >= 0;
        bool polling = watch && (!inotify || w->partial);
        bool wake_ok = !atomic_load(&p->wake_lost) && mmt__fd_is_own(&p->wake[0]);
        if (!wake_ok) atomic_store(&p->wake_lost, true);
        if (exporting) {
            unsigned generation = atomic_load(&p->pressure_generation);
            if (generation != export_switch ||
                atomic_load(&p->textfile_asked) != atomic_load(&p->textfile_done)) {
                export_switch = generation;
                export_due = now;
            }
        }

        double at = now + LONGEST_SLEEP_MS / 1000.0;
        sooner(&at, next_tick);
        if (interval > 0) sooner(&at, atomic_load(&p->tasks_due));
        if (polling) sooner(&at, next_poll);
        if (watch && inotify) sooner(&at, next_check);
        if (watch && !inotify_tried) sooner(&at, inotify_at);
        if (watch && w->generation == 0) sooner(&at, now + STAT_POLL_MS / 1000.0); /* no path yet */
        if (!wake_ok) sooner(&at, now + LOST_WAKE_POLL_MS / 1000.0);
        sooner(&at, atomic_load(&p->pressure_due)); /* a pressure rule may resolve */
        sooner(&at, export_due);
        if (changed) at = now; /* reload first, then wait */
        int timeout = at > now ? (int)ceil((at - now) * 1000) : 0;

        struct pollfd fds[2 + MMT__PRESSURE_MAX + 1];
        nfds_t nfds = 0;
        int wake_at = -1, inotify_at_index = -1;
        if (wake_ok) {
            wake_at = (int)nfds;
            fds[nfds++] = (struct pollfd){.fd = p->wake[0].fd, .events = POLLIN};
        }
        if (watch && inotify && w->nwatches > 0) {
            inotify_at_index = (int)nfds;
            fds[nfds++] = (struct pollfd){.fd = w->in.fd, .events = POLLIN};
        }
        size_t pressure_at = nfds, npressure = mmt__pressure_fds(p, fds + nfds);
        nfds += npressure;
        int rc = poll(fds, nfds, timeout);
        if (rc < 0 && errno != EINTR) break;
        if (atomic_load(&p->stopping)) break;
        if (rc > 0) mmt__pressure_events(p, fds + pressure_at, npressure);
        if (rc > 0 && wake_at >= 0 && fds[wake_at].revents && !drain_wake(p)) {
            mmt__policy_log(p, MMT_LOG_DEBUG, "the engine's wake-up descriptors %d and %d are no "
                            "longer its own (closed by the program?); it wakes every %d ms instead",
                            p->wake[0].fd, p->wake[1].fd, LOST_WAKE_POLL_MS);
            atomic_store(&p->wake_lost, true);
        }

        now = mmt__now();
        if (rc > 0 && inotify_at_index >= 0 && fds[inotify_at_index].revents) {
            bool written = false;
            if (drain_events(p, w, &written)) {
                /* The file's own events tell when it is whole; where the watches moved,
                 * they came (if at all) before the new watch, so any difference counts.
                 * An inode number can be reused at once: a new file may look rewritten. */
                bool moved = resolve(p, w);
                int d = difference(w);
                if (!w->creating && d != SAME && (moved || d == REPLACED || written))
                    changed = true;
            }
        }
        if (polling && now >= next_poll) {
            if (inotify) resolve(p, w); /* a folder that could not be watched may be now */
            changed = difference(w) != SAME || changed;
            next_poll = now + STAT_POLL_MS / 1000.0;
        }
        if (watch && w->in.fd >= 0 && now >= next_check) {
            resolve(p, w);
            changed = difference(w) != SAME || changed;
            next_check = now + atomic_load(&mmt__watch_check_ms) / 1000.0;
        }
        /* What policy code asked of it at checkpoints, first: checkpoints wait for it, and
         * the tick below should see what it did. */
        mmt__policy_run_deferred(p);
        if (changed) {
            /* Before the load reads it: an edit from now on differs from this. */
            mark_seen(w);
            w->creating = false;
            mmt_policy_reload(p); /* a failed load is logged; the running policy stays */
        }
        /* Tasks need the timer (mmt.every says so at load without one), and run at
         * their own periods: at a tick with the rules, or alone when due between. */
        now = mmt__now();
        if (interval > 0 && now >= next_tick) {
            mmt__policy_tick(p);
            next_tick += interval;
            now = mmt__now();
            if (next_tick <= now) next_tick = now + interval; /* fell behind: skip ticks */
        } else if (interval > 0 && now >= atomic_load(&p->tasks_due)) {
            mmt__policy_run_tasks(p);
        }
        /* After every tick, task run, load and wake-up (mmt.reclaim and mmt.trim wake it),
         * outside the engine's locks: what policy code asked of it at checkpoints since the
         * call above (one inside the tick's allocations), then the reports of the reclaims
         * made since, by policy code or by allocations. */
        mmt__policy_run_deferred(p);
        mmt__policy_reclaim_reports(p);
        mmt__policy_pressure_resolve(p, mmt__now());
        if (exporting && mmt__now() >= export_due) {
            unsigned asked = atomic_load(&p->textfile_asked);
            mmt__textfile_write(p); /* after the tick: it shows what the tick did */
            atomic_store(&p->textfile_done, asked);
            export_due = mmt__now() + mmt__textfile_every(p);
        }
    }
    /* The last write, with the policy as it ends (mmt_policy_free frees it after this). */
    if (exporting) mmt__textfile_write(p);
    atomic_store(&p->textfile_done, atomic_load(&p->textfile_asked));
    mmt__policy_end_deferred(p);
    return NULL;
}

/* The watcher's resources, when its thread is not running. */
static void watcher_release(watcher_t *w)
{
    mmt__fd_release(&w->in); /* its watches go with it */
    free_watches(w->watches, w->nwatches);
    mmt__backend.free(w->path);
    *w = (watcher_t){.in = {.fd = -1}};
}

int mmt__thread_start(struct mmt_policy *p)
{
    p->watcher = (watcher_t){.in = {.fd = -1}}; /* inotify: on the thread */
    atomic_store(&p->stopping, false);
    p->thread_ended = false; /* no thread runs yet, and none asks of it before this returns */
    /* Without the pair (no descriptor left) the engine still runs: it wakes by itself. */
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) == 0) {
        p->wake[0] = mmt__fd_take(pair[0]);
        p->wake[1] = mmt__fd_take(pair[1]);
    } else {
        p->wake[0] = p->wake[1] = (mmt__own_fd_t){.fd = -1};
    }
    if (p->wake[0].fd < 0 || p->wake[1].fd < 0) {
        mmt__fd_release(&p->wake[0]);
        mmt__fd_release(&p->wake[1]);
    }
    atomic_store(&p->wake_lost, p->wake[0].fd < 0);
    /* Pressure triggers: armed by the thread (none open now: a new engine, or one whose
     * thread stopped or forked, which released them); systemd's environment read here. */
    p->pressure.n = 0;
    p->pressure.generation = 0;
    mmt__pressure_environment(p);
    /* The thread is the library's: the host's signals go to the host's threads. It
     * inherits the mask in force at creation, so block everything around the call. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->thread, NULL, engine_thread, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        mmt__fd_release(&p->wake[0]);
        mmt__fd_release(&p->wake[1]);
        watcher_release(&p->watcher);
        return -1;
    }
    p->thread_started = true;
    return 0;
}

/* Any thread. A send on a descriptor that is no longer the engine's is never made; a
 * wake-up that cannot be delivered is noted, and the thread then wakes by itself. */
void mmt__thread_wake(struct mmt_policy *p)
{
    if (!p->thread_started) return;
    char one = 1;
    if (!mmt__fd_is_own(&p->wake[1]) ||
        (send(p->wake[1].fd, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN &&
         errno != EWOULDBLOCK && errno != EINTR))
        atomic_store(&p->wake_lost, true);
}

/* Never waits long: the thread sees `stopping` at the wake-up, or within
 * LOST_WAKE_POLL_MS once the wake-up is lost (closing its sending end wakes the thread),
 * or within LONGEST_SLEEP_MS if the program closed it while another process still holds
 * it (a child forked without the fork handlers). */
void mmt__thread_stop(struct mmt_policy *p, bool release)
{
    if (!p->thread_started) return;
    atomic_store(&p->stopping, true);
    mmt__thread_wake(p);
    pthread_join(p->thread, NULL);
    p->thread_started = false;
    mmt__pressure_release(p, true); /* a few descriptors, closed at once */
    if (!release) return;
    mmt__fd_release(&p->wake[0]);
    mmt__fd_release(&p->wake[1]);
    watcher_release(&p->watcher);
}

/* The wake-up pair and the inotify instance are shared with the parent (a send on the
 * one would stop the parent's thread, a read from the other would steal its events): the
 * child closes its copies, those still the engine's, and makes a pair of its own. Its
 * watcher polls: inotify instances are a per-user resource (128 by default), which a
 * pre-forking server would otherwise take one of per worker. */
void mmt__thread_restart_in_child(struct mmt_policy *p)
{
    if (!p->thread_started) return;
    p->thread_started = false;
    mmt__fd_release(&p->wake[0]);
    mmt__fd_release(&p->wake[1]);
    watcher_release(&p->watcher);
    mmt__pressure_release(p, false); /* the parent's triggers: the child arms its own */
    atomic_store(&p->inotify_delay_ms, MMT__INOTIFY_NEVER);
    if (mmt__thread_start(p) != 0)
        mmt__policy_log(p, MMT_LOG_ERROR, "after fork: cannot restart the timer thread; "
                        "rules run at allocation checkpoints only");
}
