#!/bin/sh
# Rooms, not apartments: no function over 100 lines and no .c file over
# 1,000 lines in the four layers, except the lifecycle machine
# (pool-domain/src/lifecycle.c), whose transition table reads best whole.
# Function lengths are pmccabe's count of a function's lines.
#   test-sizes.sh SOURCE_ROOT
set -eu
root=$1
exempt=pool-domain/src/lifecycle.c
command -v pmccabe >/dev/null || { echo "pmccabe is missing (scripts/deps installs it)" >&2; exit 1; }
cd "$root"
files=$(find pool-domain pool-services pool-api pool-managerd pool-managerctl -name '*.c' 2>/dev/null | sort)
[ -n "$files" ] || { echo "no sources under $root" >&2; exit 1; }
bad=0
for f in $files; do
        [ "$f" = "$exempt" ] && continue
        n=$(wc -l <"$f")
        if [ "$n" -gt 1000 ]; then
                echo "$f: $n lines (more than 1,000)" >&2
                bad=1
        fi
done
# pmccabe: modified-cc cc statements first-line lines file(line): name
long=$(pmccabe $files 2>/dev/null | awk -v ex="$exempt" '$5 > 100 && index($6, ex "(") != 1 { print $6, $7, "(" $5 " lines)" }')
if [ -n "$long" ]; then
        echo "functions over 100 lines:" >&2
        printf '  %s\n' "$long" >&2
        bad=1
fi
[ "$bad" -eq 0 ] || exit 1
echo "$(echo "$files" | wc -w) files, none over 1,000 lines, no function over 100 lines (outside $exempt)"
