#!/bin/sh
# Checks real output of ps_metrics_render() with `promtool check metrics`
# (Debian package prometheus; scripts/deps installs it) and with the rules
# promtool does not enforce: one HELP and one TYPE per family, a family's
# samples together, no series twice. Reports in TAP, one case per check.
#
#   usage: check-metrics.sh METRICS_SAMPLE
#
# A missing promtool is a failure, not a skip: CI must run this check.
set -u

sample=${1:?usage: check-metrics.sh METRICS_SAMPLE}
promtool=${PROMTOOL:-promtool}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
        n=$((n + 1))
        failed=$((failed + 1))
        echo "not ok $n - $1"
        [ -s "$tmp/why" ] && sed 's/^/# /' "$tmp/why"
        :
}

# The exposition rules promtool's parser lets through.
structure() {
        awk '
        /^# HELP / { if (help[$3]++) { print "second HELP line for " $3; bad = 1 }
                     if (($3 in type)) { print "HELP after TYPE for " $3; bad = 1 }
                     next }
        /^# TYPE / { if (type[$3]++) { print "second TYPE line for " $3; bad = 1 }
                     if (!($3 in help)) { print "TYPE without HELP for " $3; bad = 1 }
                     family = $3; kind = $4; next }
        /^#/ { next }
        /^$/ { print "empty line " NR; bad = 1; next }
        {
                name = $0; sub(/[{ ].*/, "", name)
                ok = name == family
                if (kind == "histogram")
                        ok = ok || name == family "_bucket" || name == family "_sum" || name == family "_count"
                if (!ok) { print "line " NR ": " name " outside its family (" family ")"; bad = 1 }
                series = $0; sub(/ [^ ]*$/, "", series)
                if (seen[series]++) { print "line " NR ": series twice: " series; bad = 1 }
                samples++
        }
        END { if (samples == 0 && need_samples) { print "no samples"; bad = 1 }
              exit bad }' need_samples="$2" "$1" >"$tmp/why" 2>&1
}

echo "1..13"

if command -v "$promtool" >/dev/null 2>&1; then
        have_promtool=1
        ok "promtool is installed ($("$promtool" --version 2>&1 | head -n 1))"
else
        have_promtool=0
        echo "promtool not found: install the Debian package prometheus (scripts/deps installs it)" >"$tmp/why"
        not_ok "promtool is installed"
fi

# The checkers themselves: each must reject a scrape that breaks its rules,
# or a pass below would mean nothing.
printf '# HELP x_total a\n# TYPE x_total counter\nx_total 1\n# HELP x_total a\n# TYPE x_total counter\n' >"$tmp/bad.prom"
: >"$tmp/why"
if [ "$have_promtool" = 0 ]; then
        echo "promtool not found: install the Debian package prometheus" >"$tmp/why"
        not_ok "promtool rejects a family written twice"
elif "$promtool" check metrics <"$tmp/bad.prom" >/dev/null 2>&1; then
        echo "promtool accepted:" >"$tmp/why"
        cat "$tmp/bad.prom" >>"$tmp/why"
        not_ok "promtool rejects a family written twice"
else
        ok "promtool rejects a family written twice"
fi
printf '# HELP a_total a\n# TYPE a_total counter\na_total{x="1"} 1\n# HELP b_total b\n# TYPE b_total counter\nb_total 1\na_total{x="2"} 1\n' >"$tmp/bad.prom"
if structure "$tmp/bad.prom" 1; then
        echo "the structure check accepted a family split in two" >"$tmp/why"
        not_ok "the structure check rejects a family split in two"
else
        ok "the structure check rejects a family split in two"
fi

for state in rich empty engines; do
        : >"$tmp/why"
        if "$sample" "$state" >"$tmp/$state.prom" 2>"$tmp/why" && grep -q '^pool_managerd_build_info{' "$tmp/$state.prom"; then
                ok "$state: metrics rendered ($(wc -l <"$tmp/$state.prom") lines)"
        else
                not_ok "$state: metrics rendered"
                continue
        fi

        : >"$tmp/why"
        if [ "$have_promtool" = 0 ]; then
                echo "promtool not found: install the Debian package prometheus" >"$tmp/why"
                not_ok "$state: promtool check metrics"
        elif "$promtool" check metrics <"$tmp/$state.prom" >"$tmp/why" 2>&1 && [ ! -s "$tmp/why" ]; then
                ok "$state: promtool check metrics"
        else
                not_ok "$state: promtool check metrics"
        fi

        need=0
        [ "$state" = empty ] || need=1
        if structure "$tmp/$state.prom" "$need"; then
                ok "$state: one HELP and TYPE per family, samples together, no series twice"
        else
                not_ok "$state: one HELP and TYPE per family, samples together, no series twice"
        fi
done

# Engines' families come after ours and never repeat one of them.
: >"$tmp/why"
if [ -s "$tmp/engines.prom" ] &&
   grep -q '^llamacpp_prompt_tokens_total{pool_id="qwen-7b",replica_id="r1"} 1536$' "$tmp/engines.prom" &&
   grep -q '^vllm_time_to_first_token_seconds_bucket{le="0.02",' "$tmp/engines.prom" &&
   ! grep -q '^pool_managerd_up' "$tmp/engines.prom"; then
        ok "engines: relabelled samples of every replica, no engine family named like ours"
else
        grep -n 'pool_managerd_up\|llamacpp_prompt_tokens_total' "$tmp/engines.prom" >"$tmp/why" 2>&1
        not_ok "engines: relabelled samples of every replica, no engine family named like ours"
fi
[ "$failed" -eq 0 ]
