/* SPDX-License-Identifier: MIT */
/*
 * A replica's leases, counted per engine instance (the records are the
 * owner's), and what they mean for the lifecycle machine.
 */
#include "lifecycle/replica-private.h"
#include "pool-domain/lease.h"

uint32_t ps_replica_slots(const ps_replica *r) {
        return r->current->slots;
}

uint32_t ps_replica_leases(const ps_replica *r) {
        return pd_sat_add_u32(r->inst[PD_INSTANCE_PRIMARY].leases,
                              r->inst[PD_INSTANCE_SURGE].leases);
}

uint32_t ps_replica_inst_leases(const ps_replica *r, pd_instance_id inst) {
        return r->inst[inst].leases;
}

int ps_replica_lease_add(ps_replica *r, pd_instance_id inst) {
        pd_slots slots = { .total = r->current->slots, .leased = r->inst[inst].leases };

        if (pd_slots_acquire(&slots) != 0)
                return PS_E_NO_SLOT;
        r->inst[inst].leases = slots.leased;
        return 0;
}

void ps_replica_lease_remove(ps_replica *r, pd_instance_id inst) {
        if (r->inst[inst].leases > 0)
                r->inst[inst].leases--;
}

uint32_t ps_replica_take_leases_dropped(ps_replica *r) {
        uint32_t n = r->leases_dropped;

        r->leases_dropped = 0;
        return n;
}

/* Ends the leases held on one engine instance by force (drain deadline,
 * engine gone); they count as dropped. */
void ps_replica_drop_leases(ps_replica *r, pd_instance_id inst) {
        uint32_t counted = r->inst[inst].leases;
        const ps_field fields[] = {
                PS_FIELD_STR("lease", "dropped"),
                PS_FIELD_STR("reason", NULL),
                PS_FIELD_INT("leases", counted),
        };
        ps_event ev = {
                .type = PS_EVENT_LEASE,
                .level = PS_LOG_WARN,
                .pool_id = r->pool_id,
                .replica_id = r->replica_id,
                .message = "leases ended by force",
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };

        if (r->owner.drop_leases)
                r->owner.drop_leases(r, inst, r->owner.userdata);
        r->inst[inst].leases = 0;
        if (counted == 0)
                return;
        r->leases_dropped = pd_sat_add_u32(r->leases_dropped, counted);
        ps_event_emit(&r->ctx->sink, &ev);
}

/*
 * What the leases mean for the machine once the queue is empty: an
 * instance it drains may have none left, and a stopped replica serves none
 * (a crashed engine's leases stay until then: the control plane may still
 * release them). Returns whether an event was queued.
 */
bool ps_replica_queue_lease_events(ps_replica *r) {
        pd_instance_id id;

        if (r->lc.state == PD_STATE_STOPPED && ps_replica_leases(r) > 0)
                for (int i = 0; i < PD_INSTANCE_MAX; i++)
                        ps_replica_drop_leases(r, (pd_instance_id) i);
        if (!pd_lifecycle_awaits_leases(&r->lc, &id) || r->inst[id].leases > 0)
                return false;
        ps_replica_enqueue_simple(r, PD_EV_LEASES_ZERO, id, NULL);
        return true;
}
