/*
 * The engine's textfile (opts.export_path): the counters, the tags and the machine's
 * figures as mmt_meminfo_write writes them in the Prometheus text format, followed by the
 * running policy's rules (mmt_rule_firing, mmt_rule_fired_total), for node_exporter's
 * textfile collector to serve. The engine's thread writes it (thread.c: when a policy is
 * switched to, every export_every_s seconds after its last write, and a last time as the
 * thread stops), never an allocation: reading the tags and the machine, and formatting,
 * take the backend's memory and a few milliseconds at most.
 *
 * Atomically: the text goes into a temporary file beside it, ".NAME.tmp.PID" (node_exporter
 * reads only names ending in .prom, and the process id keeps two processes that share a
 * file from sharing a temporary one), which is then renamed over it: a reader opens the
 * old file or the new one, whole, never a part. Not fsync'd: a crash of the machine may
 * lose the last write, which the next one replaces, and metrics are not worth a disk flush
 * every period.
 *
 * The temporary file's descriptor is close-on-exec, moved out of the program's way and
 * checked before each use (core/fd.h): a program that closes it meanwhile fails that
 * write, which is said, and never gets its own file written or closed. A write that fails
 * (the folder missing or read-only, the disk full) removes its temporary file, is logged as
 * a warning naming the path and the cause, once for as long as the cause stays the same,
 * and is tried again at the next period; the program goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "engine.h"
#include "export.h"

_Atomic unsigned mmt__textfile_every_ms;

/* The steps a write fails at, for the log: a failure is said again only at another step
 * or for another cause. */
enum { STEP_NONE, STEP_MEMORY, STEP_CREATE, STEP_WRITE, STEP_RENAME };

int mmt__textfile_init(struct mmt_policy *p, const char *path)
{
    textfile_t *t = &p->textfile;
    *t = (textfile_t){.every = p->opts.export_every_s ? p->opts.export_every_s
                                                       : MMT__DEFAULT_EXPORT_EVERY_S};
    if (!path || !*path) return 0;
    char cwd[PATH_MAX];
    bool relative = path[0] != '/' && getcwd(cwd, sizeof cwd);
    size_t len = (relative ? strlen(cwd) + 1 : 0) + strlen(path);
    t->path = mmt__backend.malloc(len + 1);
    /* ".NAME.tmp.PID": the name grows by 6 bytes and the id. */
    t->temp = mmt__backend.malloc(len + 32);
    if (!t->path || !t->temp) {
        mmt__textfile_free(p);
        return MMT_ENOMEM;
    }
    snprintf(t->path, len + 1, "%s%s%s", relative ? cwd : "", relative ? "/" : "", path);
    t->pid = getpid();
    /* A relative path is left so only where the current folder cannot be had. */
    const char *slash = strrchr(t->path, '/'), *name = slash ? slash + 1 : t->path;
    snprintf(t->temp, len + 32, "%.*s.%s.tmp.%ld", (int)(name - t->path), t->path, name,
             (long)t->pid);
    return 0;
}

void mmt__textfile_free(struct mmt_policy *p)
{
    mmt__backend.free(p->textfile.path);
    mmt__backend.free(p->textfile.temp);
    p->textfile.path = p->textfile.temp = NULL;
}

bool mmt__textfile_ours(const struct mmt_policy *p)
{
    return p->textfile.path && getpid() == p->textfile.pid;
}

double mmt__textfile_every(const struct mmt_policy *p)
{
    unsigned ms = atomic_load_explicit(&mmt__textfile_every_ms, memory_order_relaxed);
    return ms ? ms / 1000.0 : p->textfile.every;
}

/* The running policy's rules as the textfile has them, into *out (backend memory, NULL
 * for a policy without rules or none); returns its length, or MMT_ENOMEM. */
static int rules_text(struct mmt_policy *p, char **out)
{
    *out = NULL;
    mmt__policy_lock(p);
    const pstate_t *s = p->cur;
    size_t n = s ? s->nrules : 0;
    mmt__rule_figures_t *f = n ? mmt__backend.malloc(n * sizeof *f) : NULL;
    int len = n && !f ? MMT_ENOMEM : 0;
    for (size_t i = 0; f && i < n; i++)
        f[i] = (mmt__rule_figures_t){s->rules[i].name, s->rules[i].firing, s->rules[i].fired};
    if (f) len = mmt__format_rules(NULL, 0, f, n);
    if (len > 0) {
        *out = mmt__backend.malloc((size_t)len + 1);
        if (*out) mmt__format_rules(*out, (size_t)len + 1, f, n);
        else len = MMT_ENOMEM;
    }
    mmt__policy_unlock(p);
    mmt__backend.free(f);
    return len;
}

/* Writes n bytes of text through fd, checking before each call that it is still the
 * engine's. Returns 0 or an errno value. */
static int write_all(const mmt__own_fd_t *fd, const char *text, size_t n)
{
    while (n) {
        if (!mmt__fd_is_own(fd)) return EBADF;
        ssize_t w = write(fd->fd, text, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno;
        if (w == 0) return EIO;
        text += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Logs a failed write, unless the one before failed the same way; returns false. */
static bool failed(struct mmt_policy *p, int step, int error)
{
    textfile_t *t = &p->textfile;
    if (t->failed_step == step && t->failed_errno == error) return false;
    t->failed_step = step;
    t->failed_errno = error;
    const char *why = error == EBADF && step == STEP_WRITE
                          ? "its descriptor was closed by the program"
                          : strerror(error);
    char every[32];
    snprintf(every, sizeof every, "%g", mmt__textfile_every(p));
    switch (step) {
    case STEP_MEMORY:
        mmt__policy_log(p, MMT_LOG_WARN, "textfile %s not written: out of memory (tried again "
                        "every %s s)", t->path, every);
        break;
    case STEP_CREATE:
        mmt__policy_log(p, MMT_LOG_WARN, "textfile %s not written: cannot create %s: %s (tried "
                        "again every %s s)", t->path, t->temp, why, every);
        break;
    case STEP_WRITE:
        mmt__policy_log(p, MMT_LOG_WARN, "textfile %s not written: writing %s: %s (tried again "
                        "every %s s)", t->path, t->temp, why, every);
        break;
    default:
        mmt__policy_log(p, MMT_LOG_WARN, "textfile %s not written: cannot rename %s over it: %s "
                        "(tried again every %s s)", t->path, t->temp, why, every);
        break;
    }
    return false;
}

/* The text (two pieces) into the temporary file, then renamed over the textfile. */
static bool replace(struct mmt_policy *p, const char *a, size_t na, const char *b, size_t nb)
{
    textfile_t *t = &p->textfile;
    /* A temporary file of an earlier process with this id, left by a crash, is in the way
     * of O_EXCL, which keeps a file planted at that name (a link) from being written. */
    unlink(t->temp);
    int fd = open(t->temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0644);
    if (fd < 0) return failed(p, STEP_CREATE, errno);
    mmt__own_fd_t own = mmt__fd_take(fd);
    int error = own.fd < 0 ? EBADF : write_all(&own, a, na);
    if (!error) error = write_all(&own, b, nb);
    if (own.fd >= 0 && mmt__fd_is_own(&own)) {
        if (close(own.fd) != 0 && !error) error = errno; /* NFS says ENOSPC here */
    } else if (!error) {
        error = EBADF;
    }
    if (error) {
        unlink(t->temp);
        return failed(p, STEP_WRITE, error);
    }
    if (rename(t->temp, t->path) != 0) {
        error = errno;
        unlink(t->temp);
        return failed(p, STEP_RENAME, error);
    }
    return true;
}

void mmt__textfile_write(struct mmt_policy *p)
{
    textfile_t *t = &p->textfile;
    if (!mmt__textfile_ours(p)) return;
    char buf[4096], *counters, *rules = NULL;
    int nc = mmt__meminfo_text(MMT_FORMAT_PROMETHEUS, buf, sizeof buf, &counters);
    int nr = nc >= 0 ? rules_text(p, &rules) : 0;
    bool ok = nc >= 0 && nr >= 0 ? replace(p, counters, (size_t)nc, nr ? rules : "", (size_t)nr)
                                 : failed(p, STEP_MEMORY, ENOMEM);
    mmt__backend.free(rules);
    if (counters != buf) mmt__backend.free(counters);
    if (ok && t->failed_step != STEP_NONE)
        mmt__policy_log(p, MMT_LOG_INFO, "textfile %s written again", t->path);
    if (ok) t->failed_step = t->failed_errno = 0;
}

void mmt__policy_export_at_exit(mmt_policy_t *p, unsigned timeout_ms)
{
    if (!p || !mmt__textfile_ours(p) || !p->thread_started ||
        pthread_equal(pthread_self(), p->thread))
        return;
    unsigned asked = atomic_fetch_add(&p->textfile_asked, 1) + 1;
    mmt__thread_wake(p);
    double end = mmt__now() + timeout_ms / 1000.0;
    while ((int)(atomic_load(&p->textfile_done) - asked) < 0 && mmt__now() < end) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}
