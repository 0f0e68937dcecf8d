/*
 * The engine's own thread: it ticks the timer (rules and mmt.every tasks) every
 * interval_ms, and with `watch` it reloads the policy when its file changes. inotify
 * watches the file's directory, so that both a write in place (IN_CLOSE_WRITE) and an
 * editor's save by rename (IN_MOVED_TO) are seen; where inotify cannot be had, the file's
 * identity is polled every 250 ms instead, as it is until the engine is inotify_delay_ms
 * old (engine.h). An eventfd wakes the thread: to follow a newly loaded path, or to stop.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "engine.h"

enum { STAT_POLL_MS = 250 };

static bool same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Watches the directory of w->path, if there is an inotify instance and a path. */
static void watch_dir(struct mmt_policy *p, watcher_t *w)
{
    if (w->fd < 0 || !w->path) return;
    const char *path = w->path, *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (w->wd >= 0) inotify_rm_watch(w->fd, w->wd);
    w->wd = inotify_add_watch(w->fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
    if (w->wd < 0)
        mmt__policy_log(p, MMT_LOG_WARN, "%s: cannot watch its directory (%s); checking the file "
                        "every %d ms instead", path, strerror(errno), STAT_POLL_MS);
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
    mmt__backend.free(w->name);
    w->path = path;
    const char *slash = strrchr(path, '/');
    w->name = mmt__backend_strdup(slash ? slash + 1 : path);
    watch_dir(p, w);
    /* After the watch is in place: a later edit is an event, an earlier one shows here. */
    w->seen_ok = stat(path, &w->seen) == 0;
    return w->seen_ok && (!loaded_ok || !same_file_state(&w->seen, &loaded));
}

/* True if an event names the policy file. IN_CREATE alone is not a change yet: the
 * IN_CLOSE_WRITE that follows is. */
static bool drain_events(watcher_t *w)
{
    alignas(struct inotify_event) char buf[4096];
    bool changed = false;
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n <= 0) break;
        for (char *at = buf; at < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)at;
            if (e->len && w->name && strcmp(e->name, w->name) == 0 &&
                (e->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)))
                changed = true;
            at += sizeof *e + e->len;
        }
    }
    return changed;
}

static bool stat_changed(watcher_t *w)
{
    if (!w->path) return false;
    struct stat now;
    bool ok = stat(w->path, &now) == 0;
    bool changed = ok && (!w->seen_ok || !same_file_state(&now, &w->seen));
    if (ok) w->seen = now;
    w->seen_ok = ok;
    return changed;
}

static void *engine_thread(void *arg)
{
    struct mmt_policy *p = arg;
    bool watch = p->opts.watch != 0;
    watcher_t *w = &p->watcher;
    double started = mmt__now();
    bool inotify_tried = false;
    double interval = p->opts.interval_ms / 1000.0;
    double next_tick = interval > 0 ? mmt__now() + interval : INFINITY;

    for (;;) {
        bool changed = false;
        double now = mmt__now();
        double inotify_at = started + atomic_load(&p->inotify_delay_ms) / 1000.0;
        if (watch && !inotify_tried && now >= inotify_at) {
            /* From stat polling to inotify; a change since the last poll still counts. */
            inotify_tried = true;
            changed = stat_changed(w);
            w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
            watch_dir(p, w);
        }
        if (watch) changed = rearm(p, w) || changed;
        bool polling = watch && (w->fd < 0 || w->wd < 0);
        int timeout = -1;
        if (interval > 0) timeout = next_tick > now ? (int)ceil((next_tick - now) * 1000) : 0;
        if (polling && (timeout < 0 || timeout > STAT_POLL_MS)) timeout = STAT_POLL_MS;
        if (watch && w->generation == 0 && (timeout < 0 || timeout > STAT_POLL_MS))
            timeout = STAT_POLL_MS; /* no path yet: look again soon */
        if (watch && !inotify_tried) {
            int until = (int)ceil((inotify_at - now) * 1000);
            if (timeout < 0 || timeout > until) timeout = until;
        }
        if (changed) timeout = 0; /* reload first, then wait */

        struct pollfd fds[2] = {{.fd = p->wake_fd, .events = POLLIN},
                                {.fd = w->fd, .events = POLLIN}};
        int nfds = w->fd >= 0 && w->wd >= 0 ? 2 : 1;
        int rc = poll(fds, (nfds_t)nfds, timeout);
        if (rc < 0 && errno != EINTR) break;
        if (fds[0].revents) {
            uint64_t count;
            ssize_t r = read(p->wake_fd, &count, sizeof count); /* resets the eventfd */
            (void)r;
            if (atomic_load(&p->stopping)) break;
        }

        if (nfds == 2 && fds[1].revents) changed = drain_events(w) || changed;
        if (polling) changed = stat_changed(w) || changed;
        if (changed) {
            mmt_policy_reload(p); /* a failed load is logged; the running policy stays */
            if (polling) stat_changed(w); /* a reload is not a change */
        }
        if (interval > 0 && mmt__now() >= next_tick) {
            mmt__policy_tick(p);
            next_tick += interval;
            now = mmt__now();
            if (next_tick <= now) next_tick = now + interval; /* fell behind: skip ticks */
        }
    }
    return NULL;
}

/* The watcher's resources, when its thread is not running. */
static void watcher_release(watcher_t *w)
{
    if (w->fd >= 0) close(w->fd);
    mmt__backend.free(w->path);
    mmt__backend.free(w->name);
    *w = (watcher_t){.fd = -1, .wd = -1, .generation = 0};
}

int mmt__thread_start(struct mmt_policy *p)
{
    p->watcher = (watcher_t){.fd = -1, .wd = -1, .generation = 0}; /* inotify: on the thread */
    atomic_store(&p->stopping, false);
    p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->wake_fd < 0) {
        watcher_release(&p->watcher);
        return -1;
    }
    /* The thread is the library's: the host's signals go to the host's threads. It
     * inherits the mask in force at creation, so block everything around the call. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->thread, NULL, engine_thread, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        close(p->wake_fd);
        p->wake_fd = -1;
        watcher_release(&p->watcher);
        return -1;
    }
    p->thread_started = true;
    return 0;
}

void mmt__thread_wake(struct mmt_policy *p)
{
    if (!p->thread_started) return;
    uint64_t one = 1;
    ssize_t w = write(p->wake_fd, &one, sizeof one);
    (void)w;
}

void mmt__thread_stop(struct mmt_policy *p, bool release)
{
    if (!p->thread_started) return;
    atomic_store(&p->stopping, true);
    mmt__thread_wake(p);
    pthread_join(p->thread, NULL);
    p->thread_started = false;
    if (!release) return;
    close(p->wake_fd);
    p->wake_fd = -1;
    watcher_release(&p->watcher);
}

/* The eventfd and the inotify instance are shared with the parent (a write to the one
 * would stop the parent's thread, a read from the other would steal its events): the
 * child closes its copies and makes its own. */
void mmt__thread_restart_in_child(struct mmt_policy *p)
{
    if (!p->thread_started) return;
    p->thread_started = false;
    close(p->wake_fd);
    p->wake_fd = -1;
    watcher_release(&p->watcher);
    if (mmt__thread_start(p) != 0)
        mmt__policy_log(p, MMT_LOG_ERROR, "after fork: cannot restart the timer thread; "
                        "rules run at allocation checkpoints only");
}
