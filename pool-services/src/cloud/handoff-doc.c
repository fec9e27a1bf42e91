/* SPDX-License-Identifier: MIT */
/*
 * The JSON of a handoff file, read into what the registry takes. The
 * registry sees only the claim; the file's shape is this edge's concern.
 */
#include <stdint.h>

#include "base/errfmt.h"
#include "pool-domain/ids.h"
#include "pool-services/cloud/handoff-doc.h"

static const char *str_field(const json_t *doc, const char *key) {
        const json_t *v = json_object_get(doc, key);

        return json_is_string(v) ? json_string_value(v) : NULL;
}

static int check_type(const json_t *doc, const char *key, json_type type, const char *what,
                      char *err, size_t errlen) {
        const json_t *v = json_object_get(doc, key);

        if (!v || json_is_null(v) || json_typeof(v) == type)
                return 0;
        return ps_errf(err, errlen, PS_E_INVALID, "handoff %s: must be %s", key, what);
}

/* A slot count given as an integer must lie in min..UINT32_MAX. */
static int check_count(const json_t *v, const char *key, json_int_t min, char *err, size_t errlen) {
        if (!json_is_integer(v))
                return 0;
        if (json_integer_value(v) < min || json_integer_value(v) > UINT32_MAX)
                return ps_errf(err, errlen, PS_E_INVALID, "handoff %s: must be between %lld and %lu, "
                               "got %" JSON_INTEGER_FORMAT, key, (long long) min,
                               (unsigned long) UINT32_MAX, json_integer_value(v));
        return 0;
}

/*
 * The slots a handoff claims. The count is slots_total, else the llama-orch
 * reader's "slots", else 1 (that reader's registry assumes one slot when a
 * file says nothing); both given must agree; 0 is no count. slots_free,
 * when given, is at most the count; when absent the free slots follow the
 * leases (the count while none is held).
 */
static int handoff_slots(const json_t *doc, ps_handoff_claim *c, char *err, size_t errlen) {
        const json_t *t = json_object_get(doc, "slots_total");
        const json_t *s = json_object_get(doc, "slots");
        const json_t *f = json_object_get(doc, "slots_free");
        int rc;

        if ((rc = check_count(t, "slots_total", 1, err, errlen)) ||
            (rc = check_count(s, "slots", 1, err, errlen)) ||
            (rc = check_count(f, "slots_free", 0, err, errlen)))
                return rc;
        if (json_is_integer(t) && json_is_integer(s) && json_integer_value(t) != json_integer_value(s))
                return ps_errf(err, errlen, PS_E_INVALID, "handoff slots: %" JSON_INTEGER_FORMAT
                               " disagrees with slots_total %" JSON_INTEGER_FORMAT,
                               json_integer_value(s), json_integer_value(t));
        c->slots = json_is_integer(t) ? (uint32_t) json_integer_value(t) :
                   json_is_integer(s) ? (uint32_t) json_integer_value(s) : 1;
        c->has_slots_free = json_is_integer(f);
        c->slots_free = c->has_slots_free ? (uint32_t) json_integer_value(f) : 0;
        if (c->has_slots_free && c->slots_free > c->slots)
                return ps_errf(err, errlen, PS_E_INVALID, "handoff slots_free: %u is above the "
                               "slot count %u", c->slots_free, c->slots);
        return 0;
}

int ps_handoff_claim_from_json(const json_t *doc, ps_handoff_claim *out,
                               char *err, size_t errlen) {
        ps_handoff_claim c = { 0 };
        const json_t *model;
        pd_error perr;
        int rc;

        if (!json_is_object(doc))
                return ps_errf(err, errlen, PS_E_INVALID, "handoff: must be a JSON object");
        c.pool_id = str_field(doc, "pool_id");
        c.replica_id = str_field(doc, "replica_id");
        c.engine_version = str_field(doc, "engine_version");
        if (pd_id_validate(c.pool_id, "handoff pool_id", &perr) != 0 ||
            pd_id_validate(c.replica_id, "handoff replica_id", &perr) != 0)
                return ps_errf(err, errlen, PS_E_INVALID, "%s", perr.msg);
        if (!c.engine_version || !c.engine_version[0])
                return ps_errf(err, errlen, PS_E_INVALID, "handoff engine_version: required string");
        if ((rc = check_type(doc, "url", JSON_STRING, "a string", err, errlen)) ||
            (rc = check_type(doc, "engine", JSON_STRING, "a string", err, errlen)) ||
            (rc = check_type(doc, "device_mask", JSON_STRING, "a string", err, errlen)) ||
            (rc = check_type(doc, "slots", JSON_INTEGER, "an integer", err, errlen)) ||
            (rc = check_type(doc, "slots_total", JSON_INTEGER, "an integer", err, errlen)) ||
            (rc = check_type(doc, "slots_free", JSON_INTEGER, "an integer", err, errlen)) ||
            (rc = check_type(doc, "model", JSON_OBJECT, "an object", err, errlen)) ||
            (rc = handoff_slots(doc, &c, err, errlen)))
                return rc;
        model = json_object_get(doc, "model");
        c.engine = str_field(doc, "engine");
        c.device_mask = str_field(doc, "device_mask");
        c.url = str_field(doc, "url");
        c.model_id = json_is_object(model) ? str_field(model, "id") : NULL;
        *out = c;
        return 0;
}

int ps_registry_register_ready_from_handoff(ps_registry *reg, const json_t *doc,
                                            char *err, size_t errlen) {
        ps_handoff_claim c;
        int rc = ps_handoff_claim_from_json(doc, &c, err, errlen);

        return rc ? rc : ps_registry_register_handoff(reg, &c, err, errlen);
}
