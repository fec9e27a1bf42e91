/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/inotify.h"
#include "supervise/logcopy.h"
#include "pool-domain/cause.h"
#include "pool-services/supervise/logtail.h"

#define LINE_MAX_BYTES (16 * 1024)
#define READ_CHUNK (64 * 1024)
/* What one wake of the loop may read of one file: an engine writing
 * faster than that is read over several turns (a zero timer), so the
 * loop serves everything else in between. */
#define WAKE_BUDGET (64 * 1024)
/* Right before an exit is handled, the rest is read at once, unless more
 * than DRAIN_MAX waits: then only its last DRAIN_TAIL bytes (the last
 * words are what the exit needs). */
#define DRAIN_MAX (1024 * 1024)
#define DRAIN_TAIL (64 * 1024)
/* Rotation copies this much per turn. */
#define ROTATE_CHUNK (1024 * 1024)

#define FILE_MASK (IN_MODIFY | IN_MOVE_SELF | IN_DELETE_SELF | IN_ATTRIB)
#define DIR_MASK (IN_CREATE | IN_MOVED_TO | IN_ONLYDIR)

/*
 * All tails on one event_base share one inotify instance: the default limit
 * is 128 instances per user, far below the number of pools a node may run.
 * The kernel hands out one watch descriptor per inode and instance, so
 * watches are reference-counted (every engine log lives in the same
 * runtime_dir, and two tails may follow the same file).
 */
typedef struct hub_watch {
        int wd;
        unsigned refs;
} hub_watch;

typedef struct hub {
        struct event_base *base;
        ps_inotify *inotify;
        ps_logtail **tails;
        size_t n_tails, cap_tails;
        hub_watch *watches;
        size_t n_watches, cap_watches;
        unsigned busy;            /* > 0 while callbacks may run: frees wait */
        struct hub *next;
} hub;

static hub *hubs;

struct ps_logtail {
        hub *hub;
        char *path;
        char *dir;
        char *name;               /* basename, matched in directory events */
        int fd;
        dev_t dev;
        ino_t ino;
        int file_wd;
        int dir_wd;
        int64_t offset;
        char *line;               /* the partial line, up to LINE_MAX_BYTES; NULL
                                     while no line waits for its newline  */
        size_t line_len;
        size_t line_cap;
        bool want_read;
        bool want_check;          /* the file may have been replaced */
        bool reading;
        bool skip_to_newline;     /* bytes were skipped: drop the rest of that line */
        size_t budget;            /* what this wake may still read */
        int64_t max_bytes;        /* rotate above it; 0: never */
        int64_t rotate_after;     /* after a failed rotation: not below this size */
        ps_logcopy *rotation;     /* a copy in progress */
        ps_logtail_rotate_fn on_rotate;
        bool dead;                /* freed while busy: swept later */
        struct event *kick;
        char *recent[PS_LOGTAIL_RECENT];  /* ring of the last lines      */
        size_t recent_len[PS_LOGTAIL_RECENT];
        unsigned recent_next, recent_n;
        ps_logtail_line_fn on_line;
        void *userdata;
};

/* ---- the shared inotify instance ----------------------------------------- */

static int hub_watch_add(hub *h, const char *path, uint32_t mask) {
        int wd = ps_inotify_add(h->inotify, path, mask);

        if (wd < 0)
                return -errno;
        for (size_t i = 0; i < h->n_watches; i++)
                if (h->watches[i].wd == wd) {
                        h->watches[i].refs++;
                        return wd;
                }
        if (h->n_watches == h->cap_watches) {
                size_t cap = h->cap_watches ? h->cap_watches * 2 : 8;
                hub_watch *w = realloc(h->watches, cap * sizeof(*w));

                if (!w) {
                        ps_inotify_rm(h->inotify, wd);
                        return -ENOMEM;
                }
                h->watches = w;
                h->cap_watches = cap;
        }
        h->watches[h->n_watches++] = (hub_watch) { .wd = wd, .refs = 1 };
        return wd;
}

static void hub_watch_forget(hub *h, size_t i) {
        h->watches[i] = h->watches[--h->n_watches];
}

static void hub_watch_drop(hub *h, int *wd) {
        if (*wd < 0)
                return;
        for (size_t i = 0; i < h->n_watches; i++)
                if (h->watches[i].wd == *wd) {
                        if (--h->watches[i].refs == 0) {
                                ps_inotify_rm(h->inotify, *wd);
                                hub_watch_forget(h, i);
                        }
                        break;
                }
        *wd = -1;
}

/* The kernel removed the watch (IN_IGNORED): nobody holds it any more. */
static void hub_watch_gone(hub *h, int wd) {
        for (size_t i = 0; i < h->n_watches; i++)
                if (h->watches[i].wd == wd) {
                        hub_watch_forget(h, i);
                        break;
                }
        for (size_t i = 0; i < h->n_tails; i++) {
                if (h->tails[i]->file_wd == wd) {
                        h->tails[i]->file_wd = -1;
                        h->tails[i]->want_check = true;
                }
                if (h->tails[i]->dir_wd == wd)
                        h->tails[i]->dir_wd = -1;
        }
}

static void tail_destroy(ps_logtail *tail);
static void tail_poll(ps_logtail *tail, size_t budget);

static void hub_free(hub *h) {
        for (hub **p = &hubs; *p; p = &(*p)->next)
                if (*p == h) {
                        *p = h->next;
                        break;
                }
        ps_inotify_free(h->inotify);
        free(h->tails);
        free(h->watches);
        free(h);
}

static void hub_enter(hub *h) {
        h->busy++;
}

/* Ends a section in which callbacks ran: tails freed meanwhile go now, and
 * the hub with the last of them. Touches nothing afterwards. */
static void hub_leave(hub *h) {
        size_t i = 0;

        if (--h->busy > 0)
                return;
        while (i < h->n_tails) {
                ps_logtail *t = h->tails[i];

                if (t->dead) {
                        h->tails[i] = h->tails[--h->n_tails];
                        tail_destroy(t);
                } else {
                        i++;
                }
        }
        if (h->n_tails == 0)
                hub_free(h);
}

static void hub_mark(const struct inotify_event *ev, void *userdata) {
        hub *h = userdata;

        if (ev->mask & IN_Q_OVERFLOW) {
                /* Events were lost: look at everything. */
                for (size_t i = 0; i < h->n_tails; i++)
                        h->tails[i]->want_read = h->tails[i]->want_check = true;
                return;
        }
        for (size_t i = 0; i < h->n_tails; i++) {
                ps_logtail *t = h->tails[i];

                if (ev->wd == t->file_wd) {
                        t->want_read = true;
                        if (ev->mask & (IN_MOVE_SELF | IN_DELETE_SELF | IN_ATTRIB | IN_IGNORED))
                                t->want_check = true;
                }
                if (ev->wd == t->dir_wd && ev->len > 0 && strcmp(ev->name, t->name) == 0)
                        t->want_read = t->want_check = true;
        }
        if (ev->mask & IN_IGNORED)
                hub_watch_gone(h, ev->wd);
}

/* After a batch of events: read what they marked. */
static void hub_batch(void *userdata) {
        hub *h = userdata;

        hub_enter(h);
        /* By index: a callback may add tails (they have nothing pending)
         * or free them (they are only marked dead until hub_leave). */
        for (size_t i = 0; i < h->n_tails; i++) {
                ps_logtail *t = h->tails[i];

                if (!t->dead && (t->want_read || t->want_check))
                        tail_poll(t, WAKE_BUDGET);
        }
        hub_leave(h);
}

static hub *hub_get(struct event_base *base) {
        hub *h;

        for (h = hubs; h; h = h->next)
                if (h->base == base)
                        return h;
        h = calloc(1, sizeof(*h));
        if (!h)
                return NULL;
        h->base = base;
        h->inotify = ps_inotify_new(base, hub_mark, hub_batch, h);
        if (!h->inotify) {
                int r = errno;

                free(h);
                errno = r;
                return NULL;
        }
        h->next = hubs;
        hubs = h;
        return h;
}

static int hub_attach(hub *h, ps_logtail *tail) {
        if (h->n_tails == h->cap_tails) {
                size_t cap = h->cap_tails ? h->cap_tails * 2 : 8;
                ps_logtail **t = realloc(h->tails, cap * sizeof(*t));

                if (!t)
                        return -ENOMEM;
                h->tails = t;
                h->cap_tails = cap;
        }
        h->tails[h->n_tails++] = tail;
        tail->hub = h;
        return 0;
}

/* ---- one tail ------------------------------------------------------------- */

/* Keeps a copy of a non-empty line in the ring (none when memory is
 * short: the ring is a help for last_error, not a record). */
static void remember(ps_logtail *tail, const char *p, size_t n) {
        unsigned slot = tail->recent_next;
        char *copy;

        if (n == 0)
                return;
        if (n > PS_LOGTAIL_RECENT_LINE_MAX)
                n = PS_LOGTAIL_RECENT_LINE_MAX;
        copy = realloc(tail->recent[slot], n + 1);
        if (!copy)
                return;
        memcpy(copy, p, n);
        copy[n] = '\0';
        tail->recent[slot] = copy;
        tail->recent_len[slot] = n;
        tail->recent_next = (slot + 1) % PS_LOGTAIL_RECENT;
        if (tail->recent_n < PS_LOGTAIL_RECENT)
                tail->recent_n++;
}

static void deliver(ps_logtail *tail, const char *p, size_t n) {
        if (tail->dead)
                return;
        remember(tail, p, n);
        tail->on_line(p, n, tail->userdata);
}

/* The partial line is handed over as it is: its file has ended, so no
 * newline will come for it. */
static void flush_partial(ps_logtail *tail) {
        if (tail->line_len > 0) {
                size_t n = tail->line_len;
                char *line = tail->line;

                tail->line = NULL;
                tail->line_len = tail->line_cap = 0;
                deliver(tail, line, n);
                free(line);
        }
}

/* Room for need bytes of unfinished line (need <= LINE_MAX_BYTES). */
static bool line_reserve(ps_logtail *tail, size_t need) {
        size_t cap = tail->line_cap ? tail->line_cap : 256;
        char *p;

        if (need <= tail->line_cap)
                return true;
        while (cap < need)
                cap *= 2;
        if (cap > LINE_MAX_BYTES)
                cap = LINE_MAX_BYTES;
        p = realloc(tail->line, cap);
        if (!p)
                return false;
        tail->line = p;
        tail->line_cap = cap;
        return true;
}

/* Splits bytes into lines. The buffer holds only an unfinished line: it
 * is allocated when one waits for its newline and freed once the line is
 * whole, so a thousand quiet engines hold no buffers. */
static void consume(ps_logtail *tail, const char *p, size_t n) {
        if (tail->skip_to_newline) {
                const char *nl = memchr(p, '\n', n);

                if (!nl)
                        return;
                tail->skip_to_newline = false;
                n -= (size_t) (nl + 1 - p);
                p = nl + 1;
        }
        while (n > 0 && !tail->dead) {
                const char *nl = memchr(p, '\n', n);
                size_t seg = nl ? (size_t) (nl - p) : n;
                size_t room = LINE_MAX_BYTES - tail->line_len;
                size_t take = seg > room ? room : seg;
                size_t skip = seg > room ? room : seg + 1;

                if (!nl && seg <= room) {
                        /* unfinished: wait for the rest */
                        if (!line_reserve(tail, tail->line_len + n)) {
                                deliver(tail, p, n);    /* no memory: as it is */
                                return;
                        }
                        memcpy(tail->line + tail->line_len, p, n);
                        tail->line_len += n;
                        return;
                }
                /* a whole line, or the most of a long one the cap allows */
                if (tail->line_len == 0) {
                        deliver(tail, p, take);
                } else {
                        size_t len = tail->line_len + take;
                        char *line = tail->line;

                        if (!line_reserve(tail, len)) {
                                /* no memory: both parts, as they are */
                                deliver(tail, tail->line, tail->line_len);
                                deliver(tail, p, take);
                                free(tail->line);
                                tail->line = NULL;
                                tail->line_len = tail->line_cap = 0;
                                p += skip;
                                n -= skip;
                                continue;
                        }
                        line = tail->line;
                        memcpy(line + tail->line_len, p, take);
                        tail->line = NULL;
                        tail->line_cap = 0;
                        tail->line_len = 0;
                        deliver(tail, line, len);
                        free(line);
                }
                p += skip;
                n -= skip;
        }
}

static void tail_close_file(ps_logtail *tail) {
        tail->rotation = ps_logcopy_abort(tail->rotation);
        hub_watch_drop(tail->hub, &tail->file_wd);
        if (tail->fd >= 0) {
                close(tail->fd);
                tail->fd = -1;
        }
}

/* Opens the path (when it is there) and watches the file it names. */
static int tail_open_file(ps_logtail *tail) {
        struct stat st;
        int fd, wd;

        fd = open(tail->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        wd = hub_watch_add(tail->hub, tail->path, FILE_MASK);
        if (wd < 0) {
                close(fd);
                return wd;
        }
        tail->fd = fd;
        tail->file_wd = wd;
        tail->dev = st.st_dev;
        tail->ino = st.st_ino;
        return 0;
}

/* Reads what the budget allows: true when it ran out (more may wait). */
static bool tail_read(ps_logtail *tail) {
        char *buf;
        struct stat st;
        bool more = false;

        if (tail->fd < 0)
                return false;
        if (fstat(tail->fd, &st) == 0 && st.st_size < tail->offset) {
                /* truncated in place (copytruncate): start over */
                flush_partial(tail);
                tail->offset = 0;
                tail->skip_to_newline = false;
        }
        buf = malloc(READ_CHUNK);
        if (!buf)
                return false;
        while (!tail->dead) {
                size_t want = tail->budget < READ_CHUNK ? tail->budget : READ_CHUNK;
                ssize_t n;

                if (want == 0) {
                        more = true;
                        break;
                }
                n = pread(tail->fd, buf, want, (off_t) tail->offset);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                tail->offset += n;
                tail->budget -= (size_t) n;
                consume(tail, buf, (size_t) n);
        }
        free(buf);
        return more;
}

/* Has the path come to name another file (or reappeared)? Then the old one
 * is finished: read its last bytes and switch to the new one from 0. true
 * when the old one still has more than this wake may read. */
static bool tail_check_path(ps_logtail *tail) {
        struct stat st;

        if (stat(tail->path, &st) < 0)
                return false;  /* gone: the directory watch tells us when it is back */
        if (tail->fd >= 0 && st.st_dev == tail->dev && st.st_ino == tail->ino) {
                if (tail->file_wd < 0) {
                        int wd = hub_watch_add(tail->hub, tail->path, FILE_MASK);

                        if (wd >= 0)
                                tail->file_wd = wd;
                }
                return false;
        }
        if (tail->fd >= 0) {
                if (tail_read(tail))
                        return true;
                if (tail->dead)
                        return false;
                flush_partial(tail);
                tail_close_file(tail);
        }
        if (tail_open_file(tail) == 0) {
                tail->offset = 0;
                tail->skip_to_newline = false;
        }
        return false;
}

static void rotate_end(ps_logtail *tail, int rc, int64_t size) {
        tail->rotation = ps_logcopy_abort(tail->rotation);
        /* after a failure, the next try waits for another max_bytes */
        tail->rotate_after = rc < 0 ? size + tail->max_bytes : 0;
        if (tail->on_rotate && !tail->dead)
                tail->on_rotate(rc, tail->path, tail->userdata);
}

/* One step of copy-then-truncate above the cap: a chunk of the copy per
 * turn; once what is left is small, the follower reads up to the end, the
 * rest is copied, and the live file is cut to 0. true: more steps. */
static bool rotate_step(ps_logtail *tail) {
        struct stat st;
        int64_t n;
        int r;

        if (tail->fd < 0 || fstat(tail->fd, &st) < 0)
                return false;
        if (!tail->rotation) {
                if (st.st_size <= tail->max_bytes || st.st_size < tail->rotate_after)
                        return false;
                r = ps_logcopy_start(&tail->rotation, tail->path, st.st_mode);
                if (r < 0) {
                        rotate_end(tail, r, st.st_size);
                        return false;
                }
        }
        if (st.st_size - ps_logcopy_done(tail->rotation) > ROTATE_CHUNK ||
            st.st_size - tail->offset > ROTATE_CHUNK) {
                n = ps_logcopy_chunk(tail->rotation, tail->fd, ROTATE_CHUNK);
                if (n < 0)
                        rotate_end(tail, (int) n, st.st_size);
                return n >= 0;
        }
        n = ps_logcopy_chunk(tail->rotation, tail->fd, 2 * ROTATE_CHUNK);
        if (n >= 0) {
                tail->budget = SIZE_MAX;
                tail_read(tail);           /* the follower misses nothing */
                if (tail->dead)
                        return false;
                n = ps_logcopy_commit(tail->rotation, tail->path, tail->dev, tail->ino);
                tail->rotation = NULL;
                if (n == 0)
                        tail->offset = 0;  /* the partial line goes on at 0 */
        }
        rotate_end(tail, (int) n, st.st_size);
        return false;
}

/* Reads at most `budget` bytes; what is left waits for the next turn of
 * the loop (the kick timer), not for the next write. */
static void tail_poll(ps_logtail *tail, size_t budget) {
        static const struct timeval now = { 0, 0 };
        bool more = false;

        if (tail->reading)
                return;        /* drain from inside our own callback */
        tail->reading = true;
        tail->budget = budget;
        do {
                bool check = tail->want_check;

                tail->want_read = tail->want_check = false;
                more = tail_read(tail);
                if (check && !tail->dead) {
                        if (more)
                                tail->want_check = true;  /* the old file first */
                        else if (!(more = tail_check_path(tail)))
                                more = tail_read(tail);
                }
        } while (!tail->dead && !more && (tail->want_read || tail->want_check));
        if (!tail->dead && tail->max_bytes > 0 && rotate_step(tail))
                more = true;
        if (more && !tail->dead && tail->kick) {
                tail->want_read = true;
                evtimer_add(tail->kick, &now);
        }
        tail->reading = false;
}

static void on_kick(evutil_socket_t fd, short what, void *userdata) {
        ps_logtail *tail = userdata;
        hub *h = tail->hub;

        (void) fd;
        (void) what;
        hub_enter(h);
        tail->want_read = true;
        tail_poll(tail, WAKE_BUDGET);
        hub_leave(h);
}

static void tail_destroy(ps_logtail *tail) {
        if (tail->kick)
                event_free(tail->kick);
        if (tail->hub) {
                tail_close_file(tail);
                hub_watch_drop(tail->hub, &tail->dir_wd);
        }
        free(tail->path);
        free(tail->dir);
        free(tail->name);
        free(tail->line);
        for (unsigned i = 0; i < PS_LOGTAIL_RECENT; i++)
                free(tail->recent[i]);
        free(tail);
}

ps_logtail *ps_logtail_new(struct event_base *base, const char *path, int64_t offset,
                           ps_logtail_line_fn on_line, void *userdata) {
        static const struct timeval now = { 0, 0 };
        ps_logtail *tail;
        const char *slash;
        hub *h;
        int r;

        if (!base || !path || !path[0] || !on_line || offset < 0) {
                errno = EINVAL;
                return NULL;
        }
        tail = calloc(1, sizeof(*tail));
        if (!tail) {
                errno = ENOMEM;
                return NULL;
        }
        tail->fd = tail->file_wd = tail->dir_wd = -1;
        tail->offset = offset;
        tail->on_line = on_line;
        tail->userdata = userdata;
        tail->path = strdup(path);
        slash = strrchr(path, '/');
        if (slash) {
                tail->dir = slash == path ? strdup("/") : strndup(path, (size_t) (slash - path));
                tail->name = strdup(slash + 1);
        } else {
                tail->dir = strdup(".");
                tail->name = strdup(path);
        }
        if (!tail->path || !tail->dir || !tail->name) {
                tail_destroy(tail);
                errno = ENOMEM;
                return NULL;
        }
        if (!tail->name[0]) {
                tail_destroy(tail);
                errno = EINVAL;
                return NULL;
        }

        h = hub_get(base);
        if (!h) {
                r = errno;
                tail_destroy(tail);
                errno = r;
                return NULL;
        }
        r = hub_attach(h, tail);
        if (r < 0) {
                tail_destroy(tail);
                if (h->n_tails == 0 && h->busy == 0)
                        hub_free(h);
                errno = -r;
                return NULL;
        }
        /* the directory first: a file created meanwhile is not missed */
        r = hub_watch_add(h, tail->dir, DIR_MASK);
        if (r >= 0) {
                tail->dir_wd = r;
                r = tail_open_file(tail);
                if (r == -ENOENT)
                        r = 0;         /* not there yet: wait for it */
        }
        if (r >= 0) {
                /* Bytes written before the watch existed raise no event: a
                 * first read right after this call returns (not inside it). */
                tail->want_check = true;
                tail->kick = evtimer_new(base, on_kick, tail);
                if (!tail->kick || evtimer_add(tail->kick, &now) < 0)
                        r = -ENOMEM;
        }
        if (r < 0) {
                ps_logtail_free(tail);
                errno = -r;
                return NULL;
        }
        return tail;
}

void ps_logtail_drain(ps_logtail *tail) {
        struct stat st;
        hub *h;

        if (!tail || tail->dead)
                return;
        h = tail->hub;
        if (tail->fd >= 0 && !tail->reading && fstat(tail->fd, &st) == 0 &&
            st.st_size - tail->offset > DRAIN_MAX) {
                /* Too much to read now: its last lines only. */
                free(tail->line);
                tail->line = NULL;
                tail->line_len = tail->line_cap = 0;
                tail->offset = st.st_size - DRAIN_TAIL;
                tail->skip_to_newline = true;
        }
        hub_enter(h);
        tail->want_check = true;
        tail_poll(tail, DRAIN_MAX);
        hub_leave(h);
}

void ps_logtail_set_max_bytes(ps_logtail *tail, int64_t max_bytes, ps_logtail_rotate_fn on_rotate) {
        static const struct timeval now = { 0, 0 };

        if (!tail || tail->dead)
                return;
        tail->max_bytes = max_bytes > 0 ? max_bytes : 0;
        tail->rotate_after = 0;
        tail->on_rotate = on_rotate;
        if (tail->max_bytes > 0 && tail->kick) {
                tail->want_read = true;      /* already above it: rotate soon */
                evtimer_add(tail->kick, &now);
        }
}

int64_t ps_logtail_offset(const ps_logtail *tail) {
        return tail ? tail->offset : 0;
}

void ps_logtail_set_userdata(ps_logtail *tail, void *userdata) {
        tail->userdata = userdata;
}

size_t ps_logtail_recent(const ps_logtail *tail, const char **lines, size_t *lens, size_t max) {
        size_t n;
        unsigned first;

        if (!tail)
                return 0;
        n = tail->recent_n < max ? tail->recent_n : max;
        /* the newest n of them, oldest first */
        first = (tail->recent_next + PS_LOGTAIL_RECENT - (unsigned) n) % PS_LOGTAIL_RECENT;
        for (size_t i = 0; i < n; i++) {
                unsigned slot = (first + (unsigned) i) % PS_LOGTAIL_RECENT;

                lines[i] = tail->recent[slot];
                lens[i] = tail->recent_len[slot];
        }
        return n;
}

bool ps_logtail_cause(const ps_logtail *tail, char *buf, size_t size) {
        const char *text[PS_LOGTAIL_RECENT];
        size_t lens[PS_LOGTAIL_RECENT];
        pd_log_line lines[PS_LOGTAIL_RECENT];
        size_t n = ps_logtail_recent(tail, text, lens, PS_LOGTAIL_RECENT);

        for (size_t i = 0; i < n; i++)
                lines[i] = (pd_log_line) { .text = text[i], .len = lens[i] };
        return pd_log_cause_pick(lines, n, buf, size) >= 0;
}

ps_logtail *ps_logtail_free(ps_logtail *tail) {
        hub *h;

        if (!tail || tail->dead)
                return NULL;
        h = tail->hub;
        if (!h) {
                tail_destroy(tail);
                return NULL;
        }
        /* Stop watching at once; the memory goes when no callback can
         * still be running on it. */
        tail->dead = true;
        if (tail->kick) {
                event_free(tail->kick);
                tail->kick = NULL;
        }
        tail_close_file(tail);
        hub_watch_drop(h, &tail->dir_wd);
        hub_enter(h);
        hub_leave(h);
        return NULL;
}
