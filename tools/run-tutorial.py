#!/usr/bin/env python3
"""Runs the manual's tutorial (docs/src/tutorial.md) as a reader would, and fails where it lies.

Every fenced block that follows a `<!-- tested: tutorial -->` line is run, line by line, in
order, from the repository's root, each line by `bash -c` (so one line is one command). A line
whose comment says `# → exit N` must exit with N, and otherwise it must exit 0; one whose comment
says `# → prints "TEXT"` must print TEXT (standard output or error). Whatever a failing step
leaves running is the page's own last block's business: on a failure the runner runs the last
block (the clean-up) before it exits.

Usage: tools/run-tutorial.py [PAGE]   (default: docs/src/tutorial.md)
Exit status: 0 every command did what the page says, 1 one did not, 2 the page has no tested block.
Python 3 standard library only.
"""

import pathlib
import re
import subprocess
import sys
import time

MARKER = "<!-- tested: tutorial -->"
EXPECT = re.compile(r'#\s*→\s*(?:exit\s+(?P<code>\d+)|prints\s+"(?P<text>[^"]*)")\s*$')


def blocks(page):
    lines = page.splitlines()
    found = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER:
            i += 1
            assert lines[i].startswith("```"), f"line {i + 1}: a tested block follows its marker"
            body = []
            i += 1
            while not lines[i].startswith("```"):
                body.append((i + 1, lines[i]))
                i += 1
            found.append(body)
        i += 1
    return found


def run(number, line, root):
    expect = EXPECT.search(line)
    code = int(expect.group("code")) if expect and expect.group("code") else 0
    text = expect.group("text") if expect and expect.group("text") else None
    started = time.monotonic()
    done = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=root, capture_output=True, text=True)
    printed = done.stdout + done.stderr
    took = time.monotonic() - started
    ok = done.returncode == code and (text is None or text in printed)
    print(f"tutorial: line {number}: exit {done.returncode} in {took:.1f} s: {'ok' if ok else 'NOT AS THE PAGE SAYS'}")
    if not ok:
        print(f"  {line}\n  expected exit {code}" + (f" and {text!r} printed" if text else ""), file=sys.stderr)
        print("  it printed (last 40 lines):\n    " + "\n    ".join(printed.splitlines()[-40:]), file=sys.stderr)
    return ok


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    page_path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs" / "src" / "tutorial.md"
    steps = blocks(page_path.read_text(encoding="utf-8"))
    if not steps:
        print(f"run-tutorial: {page_path} has no {MARKER} block", file=sys.stderr)
        return 2
    clean_up = steps[-1]
    for block in steps:
        for number, line in block:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not run(number, line, root):
                if block is not clean_up:
                    for n, l in clean_up:
                        if l.strip():
                            run(n, l, root)
                return 1
    print(f"tutorial: every command of {page_path.name} did what the page says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
