/* SPDX-License-Identifier: MIT */
/* The configured replicas registered a batch per loop turn (register.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "register.h"
#include "pool-services/base/clock.h"

struct pm_register {
        ps_registry *reg;
        struct event *turn;
        ps_config_replica *list;
        size_t n, next;
        ps_done_fn done;
        void *userdata;
};

/* One batch: 0, or the refusal (a PS_E_* or a negative errno, err
 * filled). Whether every replica is in: g->next == g->n. */
static int batch(pm_register *g, char *err, size_t errlen) {
        int64_t began = ps_clock_mono_ms(ps_clock_system());

        for (unsigned k = 0; g->next < g->n && k < PM_REGISTER_PER_TURN; k++) {
                int rc;

                if (k > 0 && ps_clock_mono_ms(ps_clock_system()) - began >= PM_REGISTER_TURN_MS)
                        break;
                rc = ps_registry_add(g->reg, g->list[g->next].spec, g->list[g->next].policy,
                                     NULL, err, errlen);
                if (rc != 0) {
                        if (!err[0])
                                snprintf(err, errlen, "pool %s replica %s: cannot register it: %s",
                                         g->list[g->next].spec->pool_id,
                                         g->list[g->next].spec->replica_id,
                                         rc < 0 ? strerror(-rc) : "refused");
                        return rc;
                }
                g->next++;
        }
        return 0;
}

/* Runs a batch; answers when the work is over, else asks for a turn. */
static void step(pm_register *g) {
        struct timeval now = { 0, 0 };
        char err[512] = "";
        int rc = batch(g, err, sizeof(err));

        if (rc == 0 && g->next < g->n) {
                evtimer_add(g->turn, &now);
                return;
        }
        g->list = ps_config_replicas_free(g->list, g->n);
        if (rc == 0)
                g->done(0, "registered", g->userdata);
        else
                g->done(rc, err, g->userdata);
}

static void on_turn(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        step(userdata);
}

int pm_register_start(struct event_base *base, ps_registry *reg, const ps_config *config,
                      ps_done_fn done, void *userdata, pm_register **ret, char *err,
                      size_t errlen) {
        pm_register *g;
        int rc;

        if (!base || !reg || !config || !done || !ret)
                return -EINVAL;
        g = calloc(1, sizeof(*g));
        if (!g || !(g->turn = evtimer_new(base, on_turn, g))) {
                free(g);
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
        }
        rc = ps_config_replicas(config, &g->list, &g->n, err, errlen);
        if (rc != 0) {
                event_free(g->turn);
                free(g);
                return rc < 0 ? rc : -EINVAL;
        }
        g->reg = reg;
        g->done = done;
        g->userdata = userdata;
        *ret = g;
        step(g);
        return 0;
}

pm_register *pm_register_free(pm_register *g) {
        if (!g)
                return NULL;
        event_free(g->turn);
        ps_config_replicas_free(g->list, g->n);
        free(g);
        return NULL;
}

size_t pm_register_done_count(const pm_register *g) {
        return g ? g->next : 0;
}

size_t pm_register_total(const pm_register *g) {
        return g ? g->n : 0;
}
