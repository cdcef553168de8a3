"""Keeps the README's code honest (issue 14).

Every fenced block right after a `<!-- file: PATH -->` line must be the whole of the
file PATH in the tree, and the lines of a block after `<!-- excerpt: PATH -->` must
appear in PATH in the same order (a line that is only `…` stands for lines left out). A C++ block with a `main` or a CMake block with a
`project()` claims to be a whole program, so it must be a `file:` block.

usage: check_readme.py README            the comparisons above
       check_readme.py README --build BUILD_DIR SANITIZE
                                         also writes the README's tests/package blocks
                                         to a directory of their own and builds and runs
                                         them against the installed package (check.sh)
"""

import os
import re
import subprocess
import sys
import tempfile

MARK = re.compile(r"^<!-- (file|excerpt): (\S+) -->$")
FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(text):
    """(line number, language, mark kind or None, mark path or None, body) of every fenced block."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            start = i
            j = i + 1
            while j < len(lines) and lines[j] != "```":
                j += 1
            mark = MARK.match(lines[start - 1]) if start > 0 else None
            out.append((start + 1, m.group(1), mark.group(1) if mark else None, mark.group(2) if mark else None,
                        "\n".join(lines[start + 1:j]) + "\n"))
            i = j + 1
        else:
            i += 1
    return out


def claims_program(lang, body):
    if lang == "cpp":
        return re.search(r"^int main\(", body, re.M) is not None
    if lang == "cmake":
        return re.search(r"^project\(", body, re.M) is not None
    return False


def first_line_not_in_order(excerpt, text):
    """The first line of `excerpt` (other than `…`) not found in `text` after the previous
    ones, or None when they all are."""
    lines = text.split("\n")
    at = 0
    for want in excerpt.rstrip("\n").split("\n"):
        if want.strip() == "…":
            continue
        while at < len(lines) and lines[at] != want:
            at += 1
        if at == len(lines):
            return want
        at += 1
    return None


def check(readme, root):
    with open(readme, encoding="utf-8") as f:
        found = blocks(f.read())
    problems = []
    files = 0
    for line, lang, kind, path, body in found:
        where = "README.md:%d" % line
        if claims_program(lang, body) and kind != "file":
            problems.append("%s: a whole program, but not marked <!-- file: PATH --> (so no test builds it)" % where)
            continue
        if not kind:
            continue
        full = os.path.join(root, path)
        if not os.path.isfile(full):
            problems.append("%s: marked %s: %s, which is not a file of the tree" % (where, kind, path))
            continue
        with open(full, encoding="utf-8") as f:
            tree = f.read()
        if kind == "file":
            files += 1
            if body != tree:
                problems.append("%s: differs from %s (copy the file into the README, or the README into the file)"
                                % (where, path))
        else:
            missing = first_line_not_in_order(body, tree)
            if missing is not None:
                problems.append("%s: not an excerpt of %s: %r is not there (after the lines before it)"
                                % (where, path, missing))
    if files == 0:
        problems.append("README.md: no <!-- file: PATH --> block at all; the marks are gone?")
    return found, problems


def main():
    readme = os.path.abspath(sys.argv[1])
    root = os.path.dirname(readme)
    found, problems = check(readme, root)
    for p in problems:
        print(p)
    if problems:
        return 1
    print("README: %d blocks, every program among them is a file of the tree" % len(found))
    if len(sys.argv) > 2 and sys.argv[2] == "--build":
        build_dir, sanitize = sys.argv[3], sys.argv[4]
        with tempfile.TemporaryDirectory() as tmp:
            written = []
            for _, _, kind, path, body in found:
                if kind == "file" and path.startswith("tests/package/"):
                    with open(os.path.join(tmp, os.path.basename(path)), "w", encoding="utf-8") as f:
                        f.write(body)
                    written.append(path)
            print("building the README's own text of: " + ", ".join(written))
            check_sh = os.path.join(root, "tests", "package", "check.sh")
            return subprocess.run([check_sh, build_dir, sanitize, tmp]).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
