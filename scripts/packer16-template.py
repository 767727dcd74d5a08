#!/usr/bin/env python3
"""Copy an HCL2 template for Packer 1.6, which has no `required_plugins`.

Usage: packer16-template.py IN.pkr.hcl OUT.pkr.hcl

Packer 1.6 rejects `required_plugins` inside the top-level `packer {}` block
(it arrived in 1.7). A plugin installed under the legacy name
`packer-builder-amazon-chroot` is found without it, so the copy simply drops
every top-level `packer {}` block; everything else is kept byte for byte.
"""

import re
import sys


def top_level_blocks(text: str):
    """(start, end) of every top-level `packer { ... }` block, braces matched
    outside strings and comments."""
    spans = []
    depth = 0
    i = 0
    block_start = None
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "#" or text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        elif c == "{":
            if depth == 0:
                line_start = text.rfind("\n", 0, i) + 1
                if re.fullmatch(r"\s*packer\s*", text[line_start:i]):
                    block_start = line_start
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and block_start is not None:
                end = i + 1
                if text.startswith("\n", end):
                    end += 1
                spans.append((block_start, end))
                block_start = None
        i += 1
    return spans


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as f:
        text = f.read()
    for start, end in reversed(top_level_blocks(text)):
        text = text[:start] + text[end:]
    with open(argv[2], "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
