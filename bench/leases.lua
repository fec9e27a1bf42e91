-- wrk script for bench/leases: each connection allocates a lease
-- (POST .../leases) and releases it (DELETE .../leases/{id}) with its
-- next request, so the run is a stream of allocate+release pairs. The
-- pool is named by the POOL environment variable. wrk's -H headers (the
-- bearer token: the TCP API takes no change without one) go with every
-- request, wrk.format() adding wrk.headers.
local base = "/v2/pools/" .. (os.getenv("POOL") or "bench") .. "/leases"
local ids = {}
local threads = {}

granted, released, refused, other = 0, 0, 0, 0

function setup(thread)
        table.insert(threads, thread)
end

function request()
        local id = table.remove(ids)
        if id then
                return wrk.format("DELETE", base .. "/" .. id)
        end
        return wrk.format("POST", base)
end

function response(status, headers, body)
        if status == 201 then
                granted = granted + 1
                table.insert(ids, body:match('"lease_id":"(%x+)"'))
        elseif status == 204 then
                released = released + 1
        elseif status == 429 then
                refused = refused + 1
        else
                other = other + 1
        end
end

function done(summary, latency, requests)
        local g, r, f, o = 0, 0, 0, 0
        for _, t in ipairs(threads) do
                g = g + t:get("granted")
                r = r + t:get("released")
                f = f + t:get("refused")
                o = o + t:get("other")
        end
        local secs = summary.duration / 1e6
        io.write(string.format("granted %d released %d refused %d other %d errors %d\n", g, r, f, o,
                               summary.errors.connect + summary.errors.read + summary.errors.write +
                               summary.errors.status + summary.errors.timeout))
        io.write(string.format("pairs/s %.0f requests/s %.0f p50 %.3f ms p99 %.3f ms\n",
                               r / secs, summary.requests / secs,
                               latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
