/* SPDX-License-Identifier: MIT */
/* Who waits for a replica's answers (supervise/replies.h). */
#include <stdio.h>
#include <stdlib.h>

#include "supervise/replies.h"
#include "supervise/report.h"

typedef struct pending_reply {
        ps_done_fn fn;
        void *userdata;
} pending_reply;

struct ps_replies {
        pending_reply pending[PD_REPLY_MAX];
};

ps_replies *ps_replies_new(void) {
        return calloc(1, sizeof(ps_replies));
}

ps_replies *ps_replies_free(ps_replies *w, const char *text) {
        if (!w)
                return NULL;
        for (int i = 0; i < PD_REPLY_MAX; i++) {
                pending_reply to = w->pending[i];

                w->pending[i] = (pending_reply) { 0 };
                if (to.fn)
                        to.fn(ps_report_reply_code((pd_reply) i, PD_OUTCOME_STOPPED, 0),
                              text, to.userdata);
        }
        free(w);
        return NULL;
}

void ps_replies_expect(ps_replies *w, pd_reply reply, ps_done_fn fn, void *userdata) {
        w->pending[reply] = (pending_reply) { .fn = fn, .userdata = userdata };
}

void ps_replies_forget(ps_replies *w, pd_reply reply) {
        if (reply < PD_REPLY_MAX)
                w->pending[reply] = (pending_reply) { 0 };
}

void ps_replies_take(ps_replies *w, const pd_action *a, ps_reply_batch *b) {
        if (a->reply < PD_REPLY_MAX && w->pending[a->reply].fn && b->n < PS_REPLY_BATCH_MAX) {
                pending_reply to = w->pending[a->reply];

                b->out[b->n].fn = to.fn;
                b->out[b->n].userdata = to.userdata;
                b->out[b->n].rc = ps_report_reply_code(a->reply, a->outcome, a->refusal);
                snprintf(b->out[b->n].text, sizeof(b->out[b->n].text), "%s", a->text + a->reason_at);
                b->n++;
                w->pending[a->reply] = (pending_reply) { 0 };
        }
}

void ps_reply_batch_send(const ps_reply_batch *b) {
        for (size_t i = 0; i < b->n; i++)
                b->out[i].fn(b->out[i].rc, b->out[i].text, b->out[i].userdata);
}
