/*
 * The kernel's memory pressure triggers, on the engine's thread.
 *
 * A pressure rule (mmt.pressure) arms a PSI trigger: "some 300000 2000000" written to the
 * pressure file that m.psi reads (the cgroup's memory.pressure on cgroup v2, else
 * /proc/pressure/memory) asks the kernel to report, as POLLPRI on that descriptor, when
 * tasks stalled on memory for 300 ms of a 2 s window. The thread polls the descriptors
 * with its wake-up pair; a report fires the rule. The kernel reports at most once a
 * window, so a rule under steady pressure hears from it about once a window: it resolves
 * when a whole window more has passed without a report (two windows after the last).
 *
 * Linux lets a process without CAP_SYS_RESOURCE arm triggers whose window is a multiple
 * of 2 s (6.4 and later; none before): the load refuses other windows there, naming the
 * capability. A trigger that cannot be armed all the same (no PSI file the process may
 * write, a kernel older than that) is not lost: its rule is judged at each tick as the
 * declarative rule psi_some10 (or psi_full10) above its threshold, which the log says once.
 *
 * systemd's memory pressure protocol: a service started with MemoryPressureWatch= gets
 * $MEMORY_PRESSURE_WATCH, a path (the service's memory.pressure, or a FIFO or a socket of
 * the service manager's; "/dev/null" for none), and may get $MEMORY_PRESSURE_WRITE, the
 * Base64 of what to write into it (the trigger). The first engine of the process to load
 * a policy arms it (one trim per report is enough for a process): a PSI file is polled for
 * POLLPRI, a FIFO or socket for POLLIN, whose bytes are read and dropped. A report fires
 * the policy's pressure rule named "memory-pressure" if it has one (that rule then arms
 * nothing of its own); without one, the engine does what systemd's own event loop does:
 * it trims (mmt.trim: the allocator's free memory back to the system), at most once a
 * second, and logs it.
 *
 * Descriptors are the engine's (fd.h): close-on-exec, numbered from 512 up, checked
 * before each use; in a child after fork, closed (they are the parent's too) and armed
 * anew.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine.h"
#include "machine.h"

const char *mmt__pressure_file_for_tests;

/* The engine whose thread holds systemd's watch, for the process. */
static _Atomic(struct mmt_policy *) systemd_owner;

static const char SYSTEMD_RULE[] = "memory-pressure";

bool mmt__pressure_privileged(void)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &header, data) != 0) return false;
    return (data[CAP_SYS_RESOURCE / 32].effective >> (CAP_SYS_RESOURCE % 32)) & 1u;
}

/* ---- systemd's environment ---------------------------------------------------------------- */

static int base64_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes Base64 text (padding optional, blanks skipped) into out; the length, or -1 if
 * it is not Base64 or does not fit. */
static long base64_decode(const char *text, unsigned char *out, size_t len)
{
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (const char *c = text; *c; c++) {
        if (*c == '=') break;
        if (*c == ' ' || *c == '\n' || *c == '\t' || *c == '\r') continue;
        int v = base64_value(*c);
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == len) return -1;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (long)n;
}

void mmt__pressure_environment(struct mmt_policy *p)
{
    pressure_t *ps = &p->pressure;
    ps->systemd_path[0] = '\0';
    ps->systemd_problem[0] = '\0';
    ps->systemd_write_len = 0;
    /* Not from the environment of a set-user-ID or file-capability program, whose caller
     * chose it: it names a file to write into. */
    const char *watch = secure_getenv("MEMORY_PRESSURE_WATCH");
    if (!watch || !*watch || strcmp(watch, "/dev/null") == 0) return;
    /* Said by the thread (sync_systemd): the engine's log function is not set yet. */
    if (strlen(watch) >= sizeof ps->systemd_path) {
        snprintf(ps->systemd_problem, sizeof ps->systemd_problem, "$MEMORY_PRESSURE_WATCH is "
                 "%zu bytes long, more than the %zu kept: not watched", strlen(watch),
                 sizeof ps->systemd_path - 1);
        return;
    }
    const char *write_b64 = secure_getenv("MEMORY_PRESSURE_WRITE");
    if (write_b64 && *write_b64) {
        long n = base64_decode(write_b64, ps->systemd_write, sizeof ps->systemd_write);
        if (n < 0) {
            snprintf(ps->systemd_problem, sizeof ps->systemd_problem, "$MEMORY_PRESSURE_WRITE "
                     "is not Base64 of at most %zu bytes: $MEMORY_PRESSURE_WATCH is not watched",
                     sizeof ps->systemd_write);
            return;
        }
        ps->systemd_write_len = (size_t)n;
    }
    memcpy(ps->systemd_path, watch, strlen(watch) + 1);
}

/* ---- Arming ---------------------------------------------------------------------------------- */

/* Writes all of buf to fd (non-blocking: a full FIFO or socket fails); 0 or an errno. */
static int write_all(int fd, const void *buf, size_t len, bool socket)
{
    const char *b = buf;
    while (len) {
        ssize_t n = socket ? send(fd, b, len, MSG_NOSIGNAL) : write(fd, b, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) return EIO;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads and drops what waits on a FIFO or socket: the bytes read (0: none waited); *ended
 * is set at its end (a socket's peer closed) or on an error. Never waits, and never reads the
 * program's descriptor: it reads through a duplicate of its own (high, like the engine's
 * others), made and then checked to be the engine's open file, non-blocking as the
 * engine opened it, so that a program that closed the engine's number and put a file of
 * its own there since the check before the poll is not read from. */
static long drain(const mmt__own_fd_t *own, bool *ended)
{
    *ended = true;
    if (!mmt__fd_is_own(own)) return 0;
    int fd = fcntl(own->fd, F_DUPFD_CLOEXEC, MMT__HIGH_FD);
    if (fd < 0) return 0;
    struct stat st;
    int flags = fcntl(fd, F_GETFL);
    if (fstat(fd, &st) != 0 || st.st_dev != own->dev || st.st_ino != own->ino || flags < 0 ||
        !(flags & O_NONBLOCK)) {
        close(fd);
        return 0;
    }
    *ended = false;
    char buf[512];
    long total = 0;
    for (int i = 0; i < 64; i++) { /* a flood is read a slice a wake, not for ever */
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            total += n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        *ended = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
        break;
    }
    close(fd);
    return total;
}

/* True if fd is a file of procfs or a cgroup file system: a PSI file, not a file of the
 * program's (or the system's) that a bad environment or path names, which a trigger
 * written into would overwrite. */
static bool psi_file_system(int fd)
{
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0) return false;
    return fs.f_type == PROC_SUPER_MAGIC || fs.f_type == CGROUP2_SUPER_MAGIC ||
           fs.f_type == CGROUP_SUPER_MAGIC;
}

/* Opens the PSI file and writes the trigger into it; 0 or an errno, with the file's name
 * in `file`. */
static int arm_psi(int kind, double threshold, double window, mmt__own_fd_t *out, char *file,
                   size_t len)
{
    if (mmt__pressure_file_for_tests) {
        snprintf(file, len, "%s", mmt__pressure_file_for_tests);
    } else if (!mmt__machine_psi_file(file, len)) {
        snprintf(file, len, "/proc/pressure/memory");
        return ENOENT;
    }
    int fd = open(file, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !psi_file_system(fd)) {
        close(fd);
        return ENOTSUP;
    }
    long window_us = lround(window * 1e6);
    char text[64];
    int n = snprintf(text, sizeof text, "%s %ld %ld", kind == MMT__PSI_FULL ? "full" : "some",
                     lround(threshold * window_us), window_us);
    int err = write_all(fd, text, (size_t)n + 1, false); /* with its NUL, as the kernel asks */
    if (err) {
        close(fd);
        return err;
    }
    *out = mmt__fd_take(fd);
    return out->fd < 0 ? EMFILE : 0;
}

/* Opens systemd's path as its kind asks, writes its bytes; 0 or an errno. */
static int arm_systemd(pressure_t *ps, trigger_t *t)
{
    struct stat st;
    if (ps->systemd_path[0] != '/') return EINVAL;
    if (stat(ps->systemd_path, &st) != 0) return errno;
    int fd;
    bool socket_kind = S_ISSOCK(st.st_mode);
    if (S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode)) {
        /* A FIFO read-write: open never waits, and no writer closing makes it hang up. */
        int mode = S_ISFIFO(st.st_mode) || ps->systemd_write_len ? O_RDWR : O_RDONLY;
        fd = open(ps->systemd_path, mode | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) return errno;
        struct stat opened;
        if (fstat(fd, &opened) != 0 || (opened.st_mode & S_IFMT) != (st.st_mode & S_IFMT) ||
            (S_ISREG(opened.st_mode) && !psi_file_system(fd))) {
            close(fd); /* swapped since the stat, or a regular file that is no PSI file */
            return ENOTSUP;
        }
        t->events = S_ISREG(st.st_mode) ? POLLPRI : POLLIN;
        t->fifo = S_ISFIFO(st.st_mode);
    } else if (socket_kind) {
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        if (strlen(ps->systemd_path) >= sizeof addr.sun_path) return ENAMETOOLONG;
        memcpy(addr.sun_path, ps->systemd_path, strlen(ps->systemd_path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) return errno;
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            int err = errno;
            close(fd);
            return err;
        }
        t->events = POLLIN;
    } else {
        return ENOTSUP;
    }
    if (ps->systemd_write_len) {
        int err = write_all(fd, ps->systemd_write, ps->systemd_write_len, socket_kind);
        if (err) {
            close(fd);
            return err;
        }
        /* What this end wrote into a FIFO and nobody read yet would be its first report. */
        if (S_ISFIFO(st.st_mode)) {
            char buf[512];
            while (read(fd, buf, sizeof buf) > 0) continue;
        }
    }
    /* The window of the trigger written, if it is one ("some 150000 2000000"): a report
     * comes at most once a window. */
    t->window = 2;
    char text[sizeof ps->systemd_write + 1];
    memcpy(text, ps->systemd_write, ps->systemd_write_len);
    text[ps->systemd_write_len] = '\0';
    long stall, window;
    char kind[5];
    if (sscanf(text, "%4s %ld %ld", kind, &stall, &window) == 3 && window > 0)
        t->window = (double)window / 1e6;
    t->fd = mmt__fd_take(fd);
    return t->fd.fd < 0 ? EMFILE : 0;
}

/* ---- On the engine's thread --------------------------------------------------------------- */

static void close_trigger(trigger_t *t)
{
    mmt__fd_release(&t->fd);
}

/* Claims and arms systemd's watch, once. */
static void sync_systemd(struct mmt_policy *p)
{
    pressure_t *ps = &p->pressure;
    /* From the first policy on: the host sets its log function before it loads one. */
    if (atomic_load(&p->pressure_generation) == 0) return;
    if (ps->systemd_problem[0]) {
        mmt__policy_log(p, MMT_LOG_WARN, "%s", ps->systemd_problem);
        ps->systemd_problem[0] = '\0';
    }
    if (ps->systemd_tried || !ps->systemd_path[0]) return;
    ps->systemd_tried = true;
    struct mmt_policy *none = NULL;
    if (!ps->systemd_claimed &&
        !atomic_compare_exchange_strong(&systemd_owner, &none, p)) {
        mmt__policy_log(p, MMT_LOG_DEBUG, "$MEMORY_PRESSURE_WATCH is watched by another engine "
                        "of this process");
        return;
    }
    ps->systemd_claimed = true;
    trigger_t *t = &ps->t[ps->n];
    *t = (trigger_t){.fd = {.fd = -1}, .systemd = true, .last = -INFINITY};
    int err = arm_systemd(ps, t);
    if (err) {
        mmt__policy_log(p, MMT_LOG_WARN, "$MEMORY_PRESSURE_WATCH=%s cannot be watched: %s",
                        ps->systemd_path, strerror(err));
        return;
    }
    ps->n++;
    mmt__policy_log(p, MMT_LOG_INFO, "memory pressure: watching $MEMORY_PRESSURE_WATCH=%s",
                    ps->systemd_path);
}

static trigger_t *systemd_trigger(pressure_t *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        if (ps->t[i].systemd) return &ps->t[i];
    return NULL;
}

void mmt__pressure_sync(struct mmt_policy *p)
{
    pressure_t *ps = &p->pressure;
    bool changed = atomic_load(&p->pressure_generation) != ps->generation;
    if (changed) {
        /* The previous policy's triggers go; systemd's stays, whatever the policy, unless
         * its descriptor was lost (then it is armed again). */
        size_t kept = 0;
        for (size_t i = 0; i < ps->n; i++) {
            if (ps->t[i].systemd && ps->t[i].fd.fd >= 0) ps->t[kept++] = ps->t[i];
            else close_trigger(&ps->t[i]);
        }
        ps->n = kept;
    }
    sync_systemd(p);
    if (!changed) return;
    trigger_t *sd = systemd_trigger(ps);
    if (sd) sd->rule[0] = '\0';
    /* A policy with no pressure rule has nothing to arm: the engine's lock, which a
     * checkpoint right after the load would find taken, is not needed. */
    unsigned gen = atomic_load(&p->pressure_generation);
    if (atomic_load(&p->pressure_rules) == 0 && gen == atomic_load(&p->pressure_generation)) {
        ps->generation = gen;
        return;
    }

    mmt__policy_lock(p);
    ps->generation = atomic_load(&p->pressure_generation); /* the one cur was switched in with */
    pstate_t *s = p->cur;
    for (size_t i = 0; s && i < s->nrules; i++) {
        rule_t *r = &s->rules[i];
        if (!r->pressure) continue;
        r->pressure_mode = MMT__PSI_WAITING;
        if (sd && strcmp(r->name, SYSTEMD_RULE) == 0) {
            snprintf(sd->rule, sizeof sd->rule, "%s", r->name);
            r->pressure_mode = MMT__PSI_ARMED;
            continue;
        }
        trigger_t *t = &ps->t[ps->n];
        *t = (trigger_t){.fd = {.fd = -1}, .events = POLLPRI, .window = r->window,
                         .last = -INFINITY};
        char file[1024];
        int err = ps->n < MMT__PRESSURE_MAX + 1
                      ? arm_psi(r->pressure, r->above / 100, r->window, &t->fd, file, sizeof file)
                      : EMFILE;
        if (err == 0) {
            snprintf(t->rule, sizeof t->rule, "%s", r->name);
            ps->n++;
            r->pressure_mode = MMT__PSI_ARMED;
            mmt__policy_log(p, MMT_LOG_DEBUG, "pressure rule \"%s\": trigger armed on %s",
                            r->name, file);
            continue;
        }
        r->pressure_mode = MMT__PSI_POLLING;
        if (p->opts.interval_ms)
            mmt__policy_log(p, MMT_LOG_WARN, "pressure rule \"%s\": cannot arm a PSI trigger on "
                            "%s: %s; it is judged at each tick instead (%s10 above %g%%)",
                            r->name, file, strerror(err),
                            r->pressure == MMT__PSI_FULL ? "full" : "some", r->above);
        else
            mmt__policy_log(p, MMT_LOG_WARN, "pressure rule \"%s\": cannot arm a PSI trigger on "
                            "%s: %s; without a timer (interval_ms) it is never judged",
                            r->name, file, strerror(err));
    }
    /* A rule carried over firing resolves in time: the next wake works out when. */
    atomic_store_explicit(&p->pressure_due, -INFINITY, memory_order_relaxed);
    mmt__policy_unlock(p);
}

/* A trigger whose descriptor the program closed (and may have put a file of its own on):
 * forgotten, never closed, and everything armed anew at the next wake. */
static void lost(struct mmt_policy *p, trigger_t *t)
{
    pressure_t *ps = &p->pressure;
    mmt__policy_log(p, MMT_LOG_DEBUG, "a pressure trigger's descriptor %d is no longer the "
                    "engine's (closed by the program?); armed again", t->fd.fd);
    t->fd.fd = -1;
    if (t->systemd) ps->systemd_tried = false;
    ps->generation--; /* differs from the engine's: sync again */
}

size_t mmt__pressure_fds(struct mmt_policy *p, struct pollfd *fds)
{
    pressure_t *ps = &p->pressure;
    size_t n = 0;
    for (size_t i = 0; i < ps->n; i++) {
        trigger_t *t = &ps->t[i];
        /* A descriptor the program closed (and may have reused) is not polled: the
         * policy is armed again, on new descriptors, at the next wake. */
        if (!mmt__fd_is_own(&t->fd)) {
            lost(p, t);
            fds[n++] = (struct pollfd){.fd = -1};
            continue;
        }
        fds[n++] = (struct pollfd){.fd = t->fd.fd, .events = t->events};
    }
    return n;
}

/* The default action on a report of systemd's watch when the policy has no rule for it: a
 * trim, at most once a second; in a dry run, the line that says it would trim. */
static void systemd_default(struct mmt_policy *p, trigger_t *t, double now)
{
    pressure_t *ps = &p->pressure;
    if (now - ps->systemd_trimmed < 1.0) return;
    ps->systemd_trimmed = now;
    if (p->opts.dry_run) {
        mmt__policy_log(p, MMT_LOG_INFO, "memory pressure reported by $MEMORY_PRESSURE_WATCH "
                        "(%s), and no rule \"%s\": dry run: would trim", ps->systemd_path,
                        SYSTEMD_RULE);
        return;
    }
    size_t freed = mmt_trim();
    mmt__policy_log(p, MMT_LOG_INFO, "memory pressure reported by $MEMORY_PRESSURE_WATCH (%s), "
                    "and no rule \"%s\": trimmed, %zu bytes given back", ps->systemd_path,
                    SYSTEMD_RULE, freed);
    (void)t;
}

/* A rule whose trigger broke is judged by polling from now on, as one never armed. */
static void poll_instead(struct mmt_policy *p, const char *rule)
{
    mmt__policy_lock(p);
    long i = p->cur ? mmt__rule_find(p->cur, rule) : -1;
    if (i >= 0 && p->cur->rules[i].pressure) p->cur->rules[i].pressure_mode = MMT__PSI_POLLING;
    mmt__policy_unlock(p);
}

void mmt__pressure_events(struct mmt_policy *p, const struct pollfd *fds, size_t n)
{
    pressure_t *ps = &p->pressure;
    double now = mmt__now();
    bool any_broken = false;
    for (size_t i = 0; i < n && i < ps->n; i++) {
        trigger_t *t = &ps->t[i];
        short got = fds[i].revents;
        if (fds[i].fd < 0 || fds[i].fd != t->fd.fd || !got) continue;
        if (!mmt__fd_is_own(&t->fd)) { /* taken by the program since the poll began */
            lost(p, t);
            continue;
        }
        /* A PSI file reports with POLLPRI alone; POLLERR (with POLLPRI) says its trigger
         * is gone: the cgroup removed, or its pressure switched off. A FIFO or socket
         * reports with bytes: its end (or an error) is no report. */
        bool report = false, broken = (got & (POLLERR | POLLNVAL)) != 0;
        if (t->events == POLLPRI) {
            report = !broken && (got & POLLPRI);
        } else if (!broken) {
            bool ended;
            report = drain(&t->fd, &ended) > 0;
            broken = ended;
        }
        if (report) {
            mmt__policy_log(p, MMT_LOG_DEBUG, "pressure trigger of %s reported (revents %#x)",
                            t->systemd ? "$MEMORY_PRESSURE_WATCH" : t->rule, (unsigned)got);
            t->last = now;
            if (t->rule[0]) mmt__policy_pressure(p, t->rule, true, now);
            else if (t->systemd) systemd_default(p, t, now);
        }
        if (broken) {
            /* The cgroup went away, the service manager closed its end: nothing more
             * will come. */
            mmt__policy_log(p, MMT_LOG_WARN, "pressure trigger %s%s%s: its descriptor reports an "
                            "error or its end; no longer watched%s",
                            t->systemd ? "$MEMORY_PRESSURE_WATCH=" : "of rule \"",
                            t->systemd ? ps->systemd_path : t->rule, t->systemd ? "" : "\"",
                            t->rule[0] ? "; the rule is judged at each tick instead" : "");
            if (t->rule[0]) poll_instead(p, t->rule);
            close_trigger(t);
            t->fd.fd = -2; /* removed below, once every report of this poll is handled */
            any_broken = true;
        }
    }
    if (!any_broken) return;
    size_t kept = 0;
    for (size_t i = 0; i < ps->n; i++)
        if (ps->t[i].fd.fd != -2) ps->t[kept++] = ps->t[i];
    ps->n = kept;
}

void mmt__pressure_release(struct mmt_policy *p, bool forget_systemd)
{
    pressure_t *ps = &p->pressure;
    bool fifo = false;
    for (size_t i = 0; i < ps->n; i++) {
        fifo = fifo || (ps->t[i].systemd && ps->t[i].fifo);
        close_trigger(&ps->t[i]);
    }
    ps->n = 0;
    ps->generation = 0;
    /* In a child, a FIFO's watch stays the parent's: two readers of one FIFO would take
     * each other's reports (a PSI file or a socket gives each opener its own). */
    ps->systemd_tried = fifo && !forget_systemd;
    if (forget_systemd && ps->systemd_claimed) {
        struct mmt_policy *self = p;
        atomic_compare_exchange_strong(&systemd_owner, &self, NULL);
        ps->systemd_claimed = false;
    }
}
