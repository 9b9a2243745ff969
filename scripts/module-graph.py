#!/usr/bin/env python3
"""Prints each crate's graph of top-level modules (who refers to whom through `crate::` or
`super::` paths) and exits 1 if any crate has an import cycle among them.

Usage: scripts/module-graph.py [--dot] [CRATE_DIR ...]   (default: every workspace crate)
"""
import os
import re
import sys

CRATES = [".", "proto", "sys", "fastpath", "slowpath", "bench", "tools"]
PATH_RE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def top_module(src, path):
    rel = os.path.relpath(path, src)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def strip_tests(text):
    # Unit-test modules may reach anywhere; only production code counts.
    i = text.find("#[cfg(test)]\nmod tests")
    text = text if i < 0 else text[:i]
    # Comments name modules without depending on them.
    return re.sub(r"//[^\n]*", "", text)


def graph(crate):
    src = os.path.join(crate, "src")
    edges = {}
    if not os.path.isdir(src):
        return edges
    roots = {f[:-3] if f.endswith(".rs") else f for f in os.listdir(src)}
    roots -= {"lib", "main", "bin"}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            me = top_module(src, path)
            if me in ("lib", "main", "bin"):
                continue
            text = strip_tests(open(path, encoding="utf-8").read())
            for m in PATH_RE.findall(text):
                if m in roots and m != me:
                    edges.setdefault(me, set()).add(m)
            # `use crate::{a, b::c}` groups.
            for group in re.findall(r"use crate::\{([^;]*)\};", text, re.S):
                for m in re.findall(r"(?:^|[,{\s])([a-z_][a-z0-9_]*)(?:::|\s*[,}]|$)", group):
                    if m in roots and m != me:
                        edges.setdefault(me, set()).add(m)
    return edges


def cycles(edges):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    dot = "--dot" in sys.argv
    bad = False
    for crate in args or CRATES:
        edges = graph(crate)
        name = os.path.basename(os.path.abspath(crate))
        if dot:
            print(f"// {name}")
            for a in sorted(edges):
                for b in sorted(edges[a]):
                    print(f'  "{name}::{a}" -> "{name}::{b}";')
        for c in cycles(edges):
            bad = True
            print(f"{name}: import cycle among modules {', '.join(c)}")
            for a in c:
                print(f"  {a} -> {', '.join(sorted(set(edges.get(a, ())) & set(c)))}")
    if not bad:
        print("no import cycles among top-level modules")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
