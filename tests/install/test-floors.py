#!/usr/bin/env python3
"""The layers and floors point one way.

Layers: pool-managerd -> pool-api -> pool-services -> pool-domain; a layer
includes the public headers of the layer right below it and never one
above (pool-api sees pool-domain only through pool-services).

Floors inside pool-services: every file lives on a floor (its directory
under src/ or include/pool-services/) and includes only its own floor or
a lower one. cloud/ and observe/ share the top floor. Include directories
alone would not stop '#include "../pool/x.h"', so this reads every
'#include "..."' line and also refuses paths that climb with '..'.

    test-floors.py SOURCE_ROOT
"""
import os
import re
import sys

FLOORS = {
    "base": 0,
    "placement": 1,
    "conf": 2,
    "supervise": 3,
    "pool": 4,
    "observe": 5,
    "cloud": 5,
}

# which layers' public headers each layer may include
LAYERS = {
    "pool-domain": {"pool-domain"},
    "pool-services": {"pool-domain", "pool-services"},
    "pool-api": {"pool-services", "pool-api"},
    "pool-managerd": {"pool-services", "pool-api"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def floor_of_file(layer_dir, path):
    """The floor of a pool-services file from its place in the tree."""
    rel = os.path.relpath(path, layer_dir).split(os.sep)
    if rel[0] == "src":
        return rel[1]
    if rel[0] == "include" and rel[1] == "pool-services":
        return rel[2]
    return None


def floor_of_include(name):
    """The floor an include names: "pool-services/<floor>/x.h" or "<floor>/x.h"."""
    parts = name.split("/")
    if parts[0] == "pool-services" and len(parts) >= 3:
        return parts[1]
    if parts[0] in FLOORS and len(parts) >= 2:
        return parts[0]
    return None


def sources(root, layer):
    for top, _, names in os.walk(os.path.join(root, layer)):
        for n in sorted(names):
            if n.endswith((".c", ".h")):
                yield os.path.join(top, n)


def check(root):
    problems = []
    counted = 0
    for layer, allowed in LAYERS.items():
        layer_dir = os.path.join(root, layer)
        for path in sources(root, layer):
            rel = os.path.relpath(path, root)
            floor = floor_of_file(layer_dir, path) if layer == "pool-services" else None
            if layer == "pool-services" and floor not in FLOORS:
                problems.append(f"{rel}: not on a floor ({', '.join(FLOORS)})")
                continue
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    name = m.group(1)
                    counted += 1
                    where = f"{rel}:{lineno}: #include \"{name}\""
                    if ".." in name.split("/"):
                        problems.append(f"{where} climbs with '..'")
                        continue
                    top = name.split("/")[0]
                    if top in LAYERS and top not in allowed:
                        problems.append(f"{where}: {layer} may not include {top}")
                        continue
                    if layer != "pool-services":
                        continue
                    target = floor_of_include(name)
                    if target is None:
                        if top not in LAYERS:
                            problems.append(f"{where}: names no floor")
                        continue
                    if target not in FLOORS:
                        problems.append(f"{where}: no floor '{target}'")
                    elif FLOORS[target] > FLOORS[floor]:
                        problems.append(f"{where}: {floor}/ includes up to {target}/")
    return counted, problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    counted, problems = check(root)
    if counted == 0:
        print("no includes found under", root, file=sys.stderr)
        return 1
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print(f"{counted} includes, all down or level")
    return 0


if __name__ == "__main__":
    sys.exit(main())
