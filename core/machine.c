/*
 * The memory cgroup, PSI and /proc/meminfo (memory.h, "The machine around the program").
 *
 * Finding the cgroup: /proc/self/cgroup names the process's cgroup in each hierarchy
 * ("0::/system.slice/x.service" on v2; "4:memory:/docker/abc" on v1's memory hierarchy),
 * relative to the root of its cgroup namespace; /proc/self/mountinfo says where each
 * hierarchy is mounted and which of its folders the mount shows (its root field: "/"
 * usually, the container's own folder where a v1 hierarchy is bind-mounted into one).
 * The folder is the mount point plus the path below the mount's root. A path the mount
 * does not show (outside it, or "/.." from a moved cgroup namespace) is not guessed at.
 *
 * Everything is read afresh at each call: the process may be moved to another cgroup at
 * any time (systemd, a test), and a mount table can change. It costs a handful of small
 * reads; the policy engine reads it only when a rule or policy code asks, once an
 * evaluation.
 */
#include "machine.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { PATH_LEN = 1024 };

/* Reads a file line by line through a fixed buffer: a line longer than the buffer is
 * skipped whole. */
enum { LINES_MAX_BYTES = 16 << 20 }; /* a file longer than this is read no further */

typedef struct lines {
    int fd;
    size_t start, end, total;
    bool eof, skipping;
    char buf[4096];
} lines_t;

static bool lines_open(lines_t *l, const char *path)
{
    l->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    l->start = l->end = l->total = 0;
    l->eof = l->skipping = false;
    return l->fd >= 0;
}

static void lines_close(lines_t *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
}

/* The next line, NUL-terminated, without its newline; NULL at the end of the file. */
static char *next_line(lines_t *l)
{
    for (;;) {
        char *nl = memchr(l->buf + l->start, '\n', l->end - l->start);
        if (nl || (l->eof && l->start < l->end)) {
            char *line = l->buf + l->start;
            size_t end = nl ? (size_t)(nl - l->buf) : l->end;
            l->buf[end] = '\0';
            l->start = nl ? end + 1 : l->end;
            if (!l->skipping) return line;
            l->skipping = false; /* the tail of a line too long to keep */
            continue;
        }
        if (l->eof) return NULL;
        memmove(l->buf, l->buf + l->start, l->end - l->start);
        l->end -= l->start;
        l->start = 0;
        if (l->end == sizeof l->buf - 1) { /* no newline in a whole buffer: drop the line */
            l->end = 0;
            l->skipping = true;
        }
        ssize_t n = read(l->fd, l->buf + l->end, sizeof l->buf - 1 - l->end);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || l->total > LINES_MAX_BYTES) l->eof = true; /* not /dev/zero for ever */
        else l->end += (size_t)n, l->total += (size_t)n;
    }
}

long mmt__read_small(const char *path, char *buf, size_t len)
{
    if (len == 0) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return -1;
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fd, buf + used, len - 1 - used);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0) break;
        used += (size_t)n;
        if (used == len - 1) { /* full: one more byte means too long */
            char extra;
            ssize_t more;
            do more = read(fd, &extra, 1);
            while (more < 0 && errno == EINTR);
            close(fd);
            if (more != 0) return -1;
            buf[used] = '\0';
            return (long)used;
        }
    }
    close(fd);
    buf[used] = '\0';
    return (long)used;
}

/* s into out of len bytes, cut to fit. */
static void cut_copy(char *out, size_t len, const char *s)
{
    size_t n = strnlen(s, len - 1);
    memcpy(out, s, n);
    out[n] = '\0';
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool mmt__parse_u64(const char *s, uint64_t *out)
{
    while (blank(*s)) s++;
    uint64_t v = 0;
    if (strncmp(s, "max", 3) == 0) {
        v = UINT64_MAX;
        s += 3;
    } else {
        if (*s < '0' || *s > '9') return false;
        for (; *s >= '0' && *s <= '9'; s++) {
            unsigned d = (unsigned)(*s - '0');
            v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        }
    }
    while (blank(*s)) s++;
    if (*s) return false;
    *out = v;
    return true;
}

/* A number like "12.34" at *s, up to the first character that is not part of it; no
 * locale (strtod would read "12,34" under a decimal comma, and stop at the point). */
static bool parse_fixed(const char **s, double *out)
{
    const char *p = *s;
    if (*p < '0' || *p > '9') return false;
    double v = 0;
    for (; *p >= '0' && *p <= '9'; p++) v = v * 10 + (*p - '0');
    if (*p == '.') {
        double scale = 0.1;
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10) v += (*p - '0') * scale;
    }
    *s = p;
    *out = v;
    return true;
}

/* One PSI line after its "some "/"full ": avg10=... avg60=... avg300=... total=... in any
 * order; all four must be there. */
static bool parse_psi_line(const char *s, double avg[3], uint64_t *total)
{
    static const char *const keys[] = {"avg10=", "avg60=", "avg300=", "total="};
    unsigned seen = 0;
    while (*s) {
        while (blank(*s)) s++;
        if (!*s) break;
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (strncmp(s, keys[i], strlen(keys[i])) == 0) k = i;
        if (k < 0) { /* a field a later kernel adds: skipped */
            while (*s && !blank(*s)) s++;
            continue;
        }
        s += strlen(keys[k]);
        if (k < 3) {
            if (!parse_fixed(&s, &avg[k])) return false;
        } else {
            char digits[24];
            size_t n = 0;
            while (s[n] >= '0' && s[n] <= '9' && n < sizeof digits - 1) digits[n] = s[n], n++;
            digits[n] = '\0';
            if (n == 0 || !mmt__parse_u64(digits, total)) return false;
            s += n;
            while (*s >= '0' && *s <= '9') s++; /* past 23 digits: UINT64_MAX already */
        }
        if (*s && !blank(*s)) return false;
        seen |= 1u << k;
    }
    return seen == 15;
}

bool mmt__parse_psi(const char *text, struct mmt_psi *psi)
{
    bool some = false;
    while (*text) {
        const char *end = strchr(text, '\n');
        size_t n = end ? (size_t)(end - text) : strlen(text);
        char line[256];
        if (n < sizeof line) {
            memcpy(line, text, n);
            line[n] = '\0';
            double avg[3] = {0, 0, 0};
            uint64_t total = 0;
            if (strncmp(line, "some ", 5) == 0 && parse_psi_line(line + 5, avg, &total)) {
                psi->some10 = avg[0], psi->some60 = avg[1], psi->some300 = avg[2];
                psi->some_total = total;
                some = true;
            } else if (strncmp(line, "full ", 5) == 0 && parse_psi_line(line + 5, avg, &total)) {
                psi->full10 = avg[0], psi->full60 = avg[1], psi->full300 = avg[2];
                psi->full_total = total;
            }
        }
        text += n + (end != NULL);
    }
    return some;
}

/* root + a + b into out; false if it does not fit. */
static bool join(char *out, const char *root, const char *a, const char *b)
{
    int n = snprintf(out, PATH_LEN, "%s%s%s", root, a, b);
    return n > 0 && n < PATH_LEN;
}

/* mountinfo escapes a space, tab, newline and backslash in a path as \ooo: decoded in
 * place. */
static void unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* The part of cgroup path `path` below a mount's root `mroot`: NULL if the mount does not
 * show it. */
static const char *below(const char *path, const char *mroot)
{
    if (strcmp(mroot, "/") == 0) return path;
    size_t n = strlen(mroot);
    if (strncmp(path, mroot, n) != 0 || (path[n] != '/' && path[n] != '\0')) return NULL;
    return path + n;
}

/* True if the comma-separated list has `word`. */
static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; p; p = strchr(p, ',')) {
        if (*p == ',') p++;
        if (strncmp(p, word, n) == 0 && (p[n] == ',' || p[n] == '\0')) return true;
    }
    return false;
}

/* Where the process's memory cgroup is. */
typedef struct where {
    int version; /* 0: none */
    uint64_t current; /* read when it was found: it reads, so the cgroup is one */
    char dir[PATH_LEN];
    char top[PATH_LEN]; /* the hierarchy's mount point: its ancestors end there */
} where_t;

/* The best mount of a hierarchy for a cgroup path: the one whose root shows it, the
 * deepest such root. */
typedef struct mount_pick {
    const char *path; /* the cgroup's, from /proc/self/cgroup; NULL: none in this hierarchy */
    size_t root_len;  /* of the mount picked so far */
    bool found;
    char top[PATH_LEN], dir[PATH_LEN];
} mount_pick_t;

static void consider(mount_pick_t *m, const char *root, const char *mroot, const char *mpoint)
{
    if (!m->path) return;
    const char *rel = below(m->path, mroot);
    if (!rel || (m->found && strlen(mroot) <= m->root_len)) return;
    char top[PATH_LEN], dir[PATH_LEN]; /* a mount picked before stays whole if these fail */
    if (!join(top, root, mpoint, "") || !join(dir, root, mpoint, rel)) return;
    size_t n = strlen(dir); /* "/sys/fs/cgroup" + "/" for the hierarchy's root */
    if (n > 1 && dir[n - 1] == '/') dir[n - 1] = '\0';
    memcpy(m->top, top, sizeof top);
    memcpy(m->dir, dir, sizeof dir);
    m->found = true;
    m->root_len = strlen(mroot);
}


/* A number from file `name` in `dir`; false if it cannot be read. */
static bool read_number(const char *dir, const char *name, uint64_t *out)
{
    char path[PATH_LEN], text[64];
    return join(path, "", dir, name) && mmt__read_small(path, text, sizeof text) >= 0 &&
           mmt__parse_u64(text, out);
}

/* True if a cgroup path has a ".." component: from outside the process's cgroup
 * namespace (it was moved out of it), which no mount here shows. */
static bool outside(const char *path)
{
    for (const char *p = strstr(path, "/.."); p; p = strstr(p + 1, "/.."))
        if (p[3] == '/' || p[3] == '\0') return true;
    return false;
}

/* The process's cgroup paths, from /proc/self/cgroup: on v2, and on v1's memory
 * hierarchy. */
typedef struct cgroup_paths {
    bool has2, has1;
    char v2[PATH_LEN], v1[PATH_LEN];
} cgroup_paths_t;

/* One line of /proc/self/cgroup, "ID:controllers:path" (the path is the rest of the
 * line), taken apart in place; a path too long to keep is not kept. */
static void cgroup_line(char *line, cgroup_paths_t *c)
{
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) return;
    *c2 = '\0';
    char *controllers = c1 + 1, *cpath = c2 + 1;
    size_t n = strlen(cpath);
    if (cpath[0] != '/' || outside(cpath) || n >= PATH_LEN) return;
    *c1 = '\0';
    if (strcmp(line, "0") == 0 && controllers[0] == '\0') {
        memcpy(c->v2, cpath, n + 1);
        c->has2 = true;
    } else if (has_word(controllers, "memory")) {
        memcpy(c->v1, cpath, n + 1);
        c->has1 = true;
    }
}

/* Finds the cgroup of those paths from the mount table. */
static void resolve_cgroup(const char *root, const cgroup_paths_t *c, where_t *w)
{
    char path[PATH_LEN];
    const char *v2 = c->has2 ? c->v2 : NULL, *v1 = c->has1 ? c->v1 : NULL;
    if (!v2 && !v1) return;

    mount_pick_t m2 = {.path = v2}, m1 = {.path = v1};
    lines_t l;
    if (!join(path, root, "/proc/self/mountinfo", "") || !lines_open(&l, path)) return;
    for (char *line; (line = next_line(&l));) {
        /* id parent major:minor root mount-point options [optional...] - type source super */
        char *field[6] = {0};
        int nf = 0;
        char *save = NULL;
        while (nf < 6 && (field[nf] = strtok_r(nf ? NULL : line, " ", &save))) nf++;
        if (nf < 6) continue;
        char *dash = NULL, *t;
        while ((t = strtok_r(NULL, " ", &save)))
            if (strcmp(t, "-") == 0) {
                dash = t;
                break;
            }
        if (!dash) continue;
        char *type = strtok_r(NULL, " ", &save);
        char *source = type ? strtok_r(NULL, " ", &save) : NULL;
        char *super = source ? strtok_r(NULL, " ", &save) : NULL;
        if (!type) continue;
        unescape(field[3]);
        unescape(field[4]);
        if (strcmp(type, "cgroup2") == 0) consider(&m2, root, field[3], field[4]);
        else if (strcmp(type, "cgroup") == 0 && super && has_word(super, "memory"))
            consider(&m1, root, field[3], field[4]);
    }
    lines_close(&l);

    /* v2 where its memory controller is on for the process's cgroup (the root cgroup has
     * no memory.current: there, the controller may serve others but not this one). A
     * cgroup whose current cannot be read is not one. */
    if (m2.found && read_number(m2.dir, "/memory.current", &w->current)) {
        w->version = 2;
        memcpy(w->dir, m2.dir, sizeof w->dir);
        memcpy(w->top, m2.top, sizeof w->top);
    } else if (m1.found && read_number(m1.dir, "/memory.usage_in_bytes", &w->current)) {
        w->version = 1;
        memcpy(w->dir, m1.dir, sizeof w->dir);
        memcpy(w->top, m1.top, sizeof w->top);
    }
}

/* The last cgroup found, and the text of /proc/self/cgroup it was found from: while that
 * text stays the same, the mount table (the dearest read: about 50 us here, more where
 * containers mount many file systems) is not read again. A folder that no longer reads
 * is looked for again. Process-wide; a thread that finds the lock taken, or a child
 * forked while another thread held it, does without. */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    bool valid;
    size_t len;
    char key[4096];
    where_t where;
} cache;

static void find_cgroup(const char *root, where_t *w)
{
    w->version = 0;
    char path[PATH_LEN], text[4096];
    cgroup_paths_t c = {.has2 = false};
    if (!join(path, root, "/proc/self/cgroup", "")) return;
    long n = mmt__read_small(path, text, sizeof text);
    if (n < 0) {
        /* Longer than the buffer (a process in many v1 hierarchies with long paths), or
         * unreadable: line by line, and not kept. */
        lines_t l;
        if (!lines_open(&l, path)) return;
        for (char *line; (line = next_line(&l));) cgroup_line(line, &c);
        lines_close(&l);
        resolve_cgroup(root, &c, w);
        return;
    }
    bool cached = root[0] == '\0'; /* the real files only, not a test's tree */
    if (cached && pthread_mutex_trylock(&cache_lock) == 0) {
        bool hit = cache.valid && cache.len == (size_t)n && memcmp(cache.key, text, (size_t)n) == 0;
        if (hit) *w = cache.where;
        pthread_mutex_unlock(&cache_lock);
        if (hit && read_number(w->dir, w->version == 2 ? "/memory.current"
                                                       : "/memory.usage_in_bytes",
                               &w->current))
            return;
        w->version = 0;
    }
    char key[sizeof text];
    memcpy(key, text, (size_t)n + 1);
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        cgroup_line(line, &c);
    }
    resolve_cgroup(root, &c, w);
    /* Only a cgroup found: a process in none may be given one (a v2 controller turned on
     * for its cgroup) without its /proc/self/cgroup changing. */
    if (cached && w->version && pthread_mutex_trylock(&cache_lock) == 0) {
        cache.valid = true;
        cache.len = (size_t)n;
        memcpy(cache.key, key, (size_t)n);
        cache.where = *w;
        pthread_mutex_unlock(&cache_lock);
    }
}

/* The values of n keys in one read of a file of "key value" lines (memory.events,
 * memory.stat, memory.oom_control): each found into *outs[i]; returns how many were. */
static size_t read_keys(const char *dir, const char *name, const char *const keys[],
                        uint64_t *const outs[], size_t n)
{
    char path[PATH_LEN];
    lines_t l;
    if (!join(path, "", dir, name) || !lines_open(&l, path)) return 0;
    size_t found = 0;
    for (char *line; found < n && (line = next_line(&l));)
        for (size_t i = 0; i < n; i++) {
            size_t k = strlen(keys[i]);
            if (strncmp(line, keys[i], k) == 0 && line[k] == ' ' &&
                mmt__parse_u64(line + k + 1, outs[i])) {
                found++;
                break;
            }
        }
    lines_close(&l);
    return found;
}

/* The value of key `key` in such a file; false if it has none. */
static bool read_keyed(const char *dir, const char *name, const char *key, uint64_t *out)
{
    return read_keys(dir, name, &key, &out, 1) == 1;
}

/* v1 has no "max": a limit that is not set reads as the largest page count the kernel
 * keeps (2^63 - 4096 on 64-bit). */
static uint64_t v1_limit(uint64_t v)
{
    return v >= (UINT64_C(1) << 62) ? MMT_UNLIMITED : v;
}

static bool read_cgroup(const where_t *w, struct mmt_cgroup *cg)
{
    cg->current = w->current;
    cg->version = w->version;
    cut_copy(cg->path, sizeof cg->path, w->dir);
    cg->max = cg->high = cg->limit = MMT_UNLIMITED;
    if (w->version == 2) {
        read_number(w->dir, "/memory.max", &cg->max);
        read_number(w->dir, "/memory.high", &cg->high);
        static const char *const events[] = {"high", "max", "oom", "oom_kill"};
        uint64_t *const counts[] = {&cg->events_high, &cg->events_max, &cg->events_oom,
                                    &cg->events_oom_kill};
        read_keys(w->dir, "/memory.events", events, counts, 4);
        /* The lowest max on the way up to the hierarchy's root, which has none. */
        char dir[PATH_LEN];
        memcpy(dir, w->dir, sizeof dir);
        size_t top = strlen(w->top);
        cg->limit = cg->max;
        for (;;) {
            char *slash = strrchr(dir, '/');
            if (!slash || (size_t)(slash - dir) <= top) break;
            *slash = '\0';
            uint64_t v;
            if (read_number(dir, "/memory.max", &v) && v < cg->limit) cg->limit = v;
        }
    } else {
        uint64_t v;
        if (read_number(w->dir, "/memory.limit_in_bytes", &v)) cg->max = v1_limit(v);
        if (read_number(w->dir, "/memory.soft_limit_in_bytes", &v)) cg->high = v1_limit(v);
        read_number(w->dir, "/memory.failcnt", &cg->events_max);
        if (read_keyed(w->dir, "/memory.oom_control", "oom_kill", &v))
            cg->events_oom = cg->events_oom_kill = v;
        cg->limit = cg->max;
        if (read_keyed(w->dir, "/memory.stat", "hierarchical_memory_limit", &v) &&
            v1_limit(v) < cg->limit)
            cg->limit = v1_limit(v);
    }
    return true;
}

/* PSI into *psi, and the whole path of the file read into `file` (psi->source may be cut
 * to its 256 bytes). */
static bool read_psi(const char *root, const where_t *w, struct mmt_psi *psi, char *file)
{
    char text[512];
    /* The cgroup's own on v2; a v2 cgroup whose pressure is switched off
     * (cgroup.pressure 0) refuses the read, and the machine's serves. */
    if (w->version == 2 && join(file, "", w->dir, "/memory.pressure") &&
        mmt__read_small(file, text, sizeof text) > 0 && mmt__parse_psi(text, psi)) {
        psi->valid = 1;
        cut_copy(psi->source, sizeof psi->source, file);
        return true;
    }
    *psi = (struct mmt_psi){0};
    if (join(file, root, "/proc/pressure/memory", "") &&
        mmt__read_small(file, text, sizeof text) > 0 && mmt__parse_psi(text, psi)) {
        psi->valid = 1;
        cut_copy(psi->source, sizeof psi->source, file);
        return true;
    }
    *psi = (struct mmt_psi){0};
    return false;
}

bool mmt__machine_psi_file(char *file, size_t len)
{
    where_t w = {0};
    find_cgroup("", &w);
    struct mmt_psi psi = {0};
    char path[PATH_LEN];
    if (!read_psi("", &w, &psi, path) || strlen(path) >= len) return false;
    memcpy(file, path, strlen(path) + 1);
    return true;
}

static bool read_system(const char *root, struct mmt_system *sys)
{
    char path[PATH_LEN];
    lines_t l;
    if (!join(path, root, "/proc/meminfo", "") || !lines_open(&l, path)) return false;
    for (char *line; (line = next_line(&l));) {
        uint64_t *to = strncmp(line, "MemTotal:", 9) == 0        ? &sys->total
                       : strncmp(line, "MemAvailable:", 13) == 0 ? &sys->available
                                                                 : NULL;
        if (!to) continue;
        char *value = strchr(line, ':') + 1, *unit = strstr(value, " kB");
        if (unit) *unit = '\0';
        uint64_t v;
        if (mmt__parse_u64(value, &v))
            *to = !unit ? v : v <= UINT64_MAX / 1024 ? v * 1024 : UINT64_MAX;
    }
    lines_close(&l);
    if (sys->total == 0) sys->available = 0;
    return sys->total != 0;
}

int mmt__machine_read_at(const char *root, mmt_machine_t *out, unsigned parts)
{
    if (!out) return MMT_EINVAL;
    *out = (mmt_machine_t){0};
    int found = 0;
    where_t w = {0};
    if (parts & (MMT_MACHINE_CGROUP | MMT_MACHINE_PSI)) find_cgroup(root, &w);
    if ((parts & MMT_MACHINE_CGROUP) && w.version) {
        if (read_cgroup(&w, &out->cgroup)) found |= MMT_MACHINE_CGROUP;
        else out->cgroup = (struct mmt_cgroup){0};
    }
    char file[PATH_LEN];
    if ((parts & MMT_MACHINE_PSI) && read_psi(root, &w, &out->psi, file)) found |= MMT_MACHINE_PSI;
    if ((parts & MMT_MACHINE_SYSTEM) && read_system(root, &out->system))
        found |= MMT_MACHINE_SYSTEM;
    return found;
}

int mmt_machine_read(mmt_machine_t *out, unsigned parts)
{
    return mmt__machine_read_at("", out, parts);
}
