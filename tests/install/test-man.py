#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The man pages cannot drift: pool-managerd(8)'s OPTIONS are exactly the
options `pool-managerd --help` lists, and pool-managerd.json(5)'s KEYS
and ENVIRONMENT are exactly the rows of docs/configuration.md's tables,
section by section (test-config-doc holds those rows to the
configuration's tables in pool-services/src/conf/).

pool-managerctl(1)'s COMMANDS and OPTIONS are exactly the commands and
options `pool-managerctl --help` names.

    test-man.py DAEMON MAN8_SCD MAN5_SCD CONFIGURATION_MD [CTL MAN1_SCD]
"""

import re
import subprocess
import sys

TOP = "Top level"


def help_options(daemon):
    out = subprocess.run([daemon, "--help"], capture_output=True, text=True, check=True).stdout
    opts = set()
    for line in out.splitlines():
        m = re.match(r"^\s+(?:(-\w), )?(--[\w-]+)", line)
        if m:
            opts.update(o for o in m.groups() if o)
    return opts


def scd_sections(path):
    """{(chapter, section): [item, ...]}: the items are the lines that
    start with a bold word, '# CHAPTER' and '## section' headings."""
    out, chapter, section = {}, None, None
    for line in open(path):
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if line.startswith("# "):
            chapter, section = line[2:].strip(), None
            continue
        if line.startswith("*"):
            out.setdefault((chapter, section), []).append(line.rstrip("\n"))
    return out


def man_options(path):
    opts = set()
    for item in scd_sections(path).get(("OPTIONS", None), []):
        opts.update(re.findall(r"\*(--?[\w-]+)\*", item))
    return opts


def unescape(s):
    return s.replace("\\_", "_").replace("\\*", "*").replace("\\\\", "\\")


def man_keys(path):
    """{section: [key, ...]}, the ENVIRONMENT chapter as "Environment"."""
    keys = {}
    for (chapter, section), items in scd_sections(path).items():
        if chapter == "KEYS" and section:
            name = section
        elif chapter == "ENVIRONMENT" and section is None:
            name = "Environment"
        else:
            continue
        for item in items:
            m = re.match(r"^\*((?:[^*\\]|\\.)+)\*", item)
            if m:
                keys.setdefault(name, []).append(unescape(m.group(1)))
    return keys


def doc_keys(path):
    """The same from the markdown: sections are headings naming one in
    `code` (or Top level, Environment); keys the first cell of a row."""
    keys, section = {}, None
    for line in open(path):
        if line.startswith("#"):
            text = line.lstrip("#").strip()
            if text.startswith(TOP):
                section = TOP
            elif text.startswith("Environment"):
                section = "Environment"
            elif text.startswith("`"):
                section = text.split("`")[1]
            else:
                section = None
            continue
        if section is None or not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) < 3 or cells[0] in ("key", "variable"):
            continue
        keys.setdefault(section, []).append(cells[0].strip("`"))
    return keys


def ctl_help(ctl):
    """The commands (the first word of each line under Commands:) and
    every option named anywhere in `pool-managerctl --help`."""
    out = subprocess.run([ctl, "--help"], capture_output=True, text=True, check=True).stdout
    commands, section = set(), None
    for line in out.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            section = line[:-1]
            continue
        m = re.match(r"^  ([a-z][\w-]*)\b", line)
        if section == "Commands" and m:
            commands.add(m.group(1))
    opts = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[a-zA-Z])\b", out))
    return commands, opts


def ctl_problems(ctl, man1):
    want_cmds, want_opts = ctl_help(ctl)
    sections = scd_sections(man1)
    have_cmds = set()
    for item in sections.get(("COMMANDS", None), []):
        m = re.match(r"^\*([a-z][\w-]*)\*", item)
        if m:
            have_cmds.add(m.group(1))
    have_opts = set()
    for item in sections.get(("OPTIONS", None), []):
        have_opts.update(re.findall(r"\*(--?[\w-]+)\*", item))
    problems = []
    for c in sorted(want_cmds ^ have_cmds):
        problems.append("pool-managerctl.1: command %s is %s" %
                        (c, "missing" if c in want_cmds else "not in --help"))
    for o in sorted(want_opts ^ have_opts):
        problems.append("pool-managerctl.1: option %s is %s" %
                        (o, "missing from OPTIONS" if o in want_opts else "not in --help"))
    if len(want_cmds) < 10:
        problems.append("--help of pool-managerctl names only %d commands" % len(want_cmds))
    return problems


def main(argv):
    if len(argv) not in (5, 7):
        sys.stderr.write(__doc__)
        return 2
    daemon, man8, man5, config_md = argv[1:5]
    problems = ctl_problems(*argv[5:7]) if len(argv) == 7 else []

    want, have = help_options(daemon), man_options(man8)
    for o in sorted(want - have):
        problems.append("pool-managerd.8: option %s of --help is not in OPTIONS" % o)
    for o in sorted(have - want):
        problems.append("pool-managerd.8: OPTIONS has %s, which --help does not list" % o)
    if len(want) < 10:
        problems.append("--help lists only %d options: %r" % (len(want), sorted(want)))

    want, have = doc_keys(config_md), man_keys(man5)
    for section in sorted(set(want) | set(have)):
        w, h = want.get(section, []), have.get(section, [])
        for k in w:
            if k not in h:
                problems.append("pool-managerd.json.5: section %r lacks key %s" % (section, k))
        for k in h:
            if k not in w:
                problems.append("pool-managerd.json.5: section %r has key %s, which the "
                                "configuration does not" % (section, k))
        if len(h) != len(set(h)):
            problems.append("pool-managerd.json.5: section %r lists a key twice" % section)
    n = sum(map(len, want.values()))
    if n < 50:
        problems.append("only %d keys read from %s" % (n, config_md))

    for p in problems:
        print(p)
    if problems:
        return 1
    print("ok: %d options, %d keys in %d sections" % (len(help_options(daemon)), n, len(want)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
