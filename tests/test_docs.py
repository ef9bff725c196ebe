"""The docs stay true: the commands they show run, their links lead somewhere.

README.md, docs/*.md and bench/README.md (those that exist) are checked for

* every ``python -m tfmri.<app>`` command, in a fenced code block or in inline code:
  the application exists (``tfmri/<app>.py`` with a ``main``) and defines every flag
  the command gives it (absl's own flags count for every application; a flag that
  carries a flag for another application, ``tfmri.demo --train_flag=--epochs=1``, is
  checked against that one too); a ``--flagfile=configs/...`` exists;
* every relative link ``[text](path#anchor)``: the path exists, relative to the file
  that links, and an anchor into a Markdown file is one of its headings (GitHub's
  slugs);

and the comment headers of ``configs/*.cfg`` for the same (their ``docs/x.md#anchor``
references relative to the repository root, their indented example commands). README.md
stays under 12 KB: the details belong in docs/.

Which flags each application defines comes from absl itself, in a subprocess (the
applications cannot share one process: ``tfmri.demo`` defines a ``--data_consistency``
of its own, as the training flags do): ``FLAGS.flags_by_module_dict()`` gives the
flags of every module, and the tfmri modules each application imports (its import
closure, from its source) say which of them it sees.
"""

import ast
import glob
import html
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_LIMIT = 12 * 1024

# Flags whose value is a flag for another application: (app, flag) -> that application.
PASS_THROUGH = {("demo", "train_flag"): "train"}
# absl's own flags, defined for every application: those of these modules, and the
# two that absl's parser handles itself.
ABSL_MODULES = ("absl.app", "absl.logging", "absl.flags")
ABSL_SPECIAL = {"flagfile": False, "undefok": False}

# Imports the applications named on its command line, each after the others; one whose
# flags clash with those already defined is left for another process. Prints the flags
# of every module that it imported whole (those of absl's too): JSON.
FLAGS_OF_MODULES = """
import importlib, json, sys
from absl import app, flags
app.define_help_flags()
imported, deferred = [], []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        imported.append(name)
    except flags.DuplicateFlagError:
        deferred.append(name)
modules = {
    module: [[flag.name, flag.short_name, bool(flag.boolean)] for flag in defined]
    for module, defined in flags.FLAGS.flags_by_module_dict().items()
    if module in sys.modules
}
print(json.dumps({"imported": imported, "deferred": deferred, "modules": modules}))
"""


# --- applications and their flags --------------------------------------------------


def _module_file(module, root=ROOT):
    """The source file of tfmri module ``module`` (a package's __init__.py), or None."""
    base = os.path.join(root, *module.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _module_level(nodes):
    """The statements that run on import: not those of function bodies."""
    for node in nodes:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from _module_level(getattr(node, field, []))


def applications(root=ROOT):
    """The names of the applications: tfmri/<app>.py defining a module-level ``main``."""
    apps = set()
    for path in glob.glob(os.path.join(root, "tfmri", "*.py")):
        with open(path) as handle:
            tree = ast.parse(handle.read())
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            apps.add(os.path.basename(path)[: -len(".py")])
    return apps


def _imports(module, root=ROOT):
    """The tfmri modules that importing ``module`` imports directly (parents included)."""
    path = _module_file(module, root)
    with open(path) as handle:
        tree = ast.parse(handle.read())
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in _module_level(tree.body):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            for end in range(1, len(parts) + 1):
                candidate = ".".join(parts[:end])
                if parts[0] == "tfmri" and _module_file(candidate, root):
                    found.add(candidate)
    return found


def import_closure(module, root=ROOT):
    """``module`` and every tfmri module importing it imports, transitively."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_imports(name, root) - seen)
    return seen


def _flags_of_modules(apps):
    """{module: [[name, short name, boolean]]}: absl's record of the flags each module
    defines, for every module that importing the applications ``apps`` imports."""
    modules = [f"tfmri.{app}" for app in sorted(apps)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def start(order):
        return subprocess.Popen(
            [sys.executable, "-c", FLAGS_OF_MODULES, *order],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(process):
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr[-3000:]
        return json.loads(stdout.strip().splitlines()[-1])

    # Two orders at once (two cores): an application that clashes with an earlier one
    # in one order comes before it in the other. Any still left gets a process of its own.
    results = [finish(process) for process in [start(modules), start(modules[::-1])]]
    imported = {name for result in results for name in result["imported"]}
    results += [finish(start([name])) for name in modules if name not in imported]
    flags_of = {}
    for result in results:
        flags_of.update(result["modules"])
    return flags_of


def app_flags_of(flags_of, root=ROOT):
    """{app: {flag name or short name: boolean}}: the flags each application defines,
    those of the tfmri modules it imports and absl's own."""
    builtin = dict(ABSL_SPECIAL)
    for module in ABSL_MODULES:
        for name, short, boolean in flags_of.get(module, []):
            builtin[name] = boolean
            if short:
                builtin[short] = boolean
    mapping = {}
    for app in applications(root):
        known = dict(builtin)
        for module in import_closure(f"tfmri.{app}", root):
            for name, short, boolean in flags_of.get(module, []):
                known[name] = boolean
                if short:
                    known[short] = boolean
        mapping[app] = known
    return mapping


@pytest.fixture(scope="module")
def app_flags():
    return app_flags_of(_flags_of_modules(applications()))


# --- Markdown ------------------------------------------------------------------------

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^()\s]*)(?:\s+[^)]*)?\)")
REFERENCE = re.compile(r"^ {0,3}\[(?!\^)[^\]\n]+\]:[ \t]*(<[^>\n]*>|\S+)", re.M)
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
HTML_ID = re.compile(r"<[a-zA-Z][^>]*?\s(?:id|name)\s*=\s*[\"']([^\"']+)[\"']")


def split_markdown(text):
    """(fenced blocks as [(first line number, [lines])], the text outside them: the same
    lines, fenced ones blanked)."""
    blocks, outside, fence, block = [], [], None, None
    for number, line in enumerate(text.split("\n"), start=1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence, block = opening.group(1), (number + 1, [])
            blocks.append(block)
            outside.append("")
        elif fence is not None:
            closing = FENCE.match(line)
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
                if line.strip() == closing.group(1):
                    fence = None
                    outside.append("")
                    continue
            block[1].append(line)
            outside.append("")
        else:
            outside.append(line)
    return blocks, "\n".join(outside)


def _line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def inline_code(prose):
    """[(line number, content)] of the inline code spans (lines joined by spaces)."""
    return [
        (_line_of(prose, match.start()), " ".join(match.group(2).split()))
        for match in INLINE_CODE.finditer(prose)
    ]


def _without_inline_code(prose):
    return INLINE_CODE.sub(lambda match: re.sub(r"[^\n]", " ", match.group(0)), prose)


def shell_lines(lines, first):
    """[(line number, logical line)] of shell text: backslash continuations joined."""
    joined, start, parts = [], None, []
    for number, line in enumerate(lines, start=first):
        if start is None:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            parts.append(stripped[:-1])
            continue
        parts.append(line)
        joined.append((start, " ".join(parts)))
        start, parts = None, []
    if parts:
        joined.append((start, " ".join(parts)))
    return joined


def _shell_words(line):
    """The words of one shell line: comments dropped, ``$(...)`` substitutions one
    placeholder word, ``;``, ``&&``, ``|``, parentheses words of their own."""
    out, quote, depth, index = [], None, 0, 0
    while index < len(line):
        char = line[index]
        if depth:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if not depth:
                out.append("SUBSTITUTION")
        elif quote:
            out.append(char)
            quote = None if char == quote else quote
        elif char in "'\"":
            out.append(char)
            quote = char
        elif line.startswith("$(", index):
            depth, index = 1, index + 1
        elif char == "#" and (not out or out[-1] in " \t;&|("):
            break
        else:
            out.append(char)
        index += 1
    lexer = shlex.shlex("".join(out), posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: split as it comes
        return "".join(out).split()


def commands_in(line):
    """[(app, args)] of the ``python -m tfmri.<app>`` commands of one shell line."""
    commands, segment = [], []
    for word in [*_shell_words(line), ";"]:
        if word and set(word) <= set(";&|()"):
            for index in range(len(segment) - 2):
                program, option, module = segment[index : index + 3]
                if (
                    re.fullmatch(r"(.*/)?python[\d.]*", program)
                    and option == "-m"
                    and module.startswith("tfmri.")
                ):
                    app = module[len("tfmri.") :]
                    if re.fullmatch(r"[\w.]+", app):  # not a placeholder: tfmri.<app>
                        commands.append((app, segment[index + 3 :]))
                    break
            segment = []
        else:
            segment.append(word)
    return commands


def flag_problems(app, args, app_flags, root=ROOT):
    """What is wrong with the flags ``args`` given to ``app``: [message]."""
    if app not in app_flags:
        return [f"there is no application tfmri.{app} (tfmri/{app}.py with a main)"]
    known, problems, index = app_flags[app], [], 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            break  # absl parses no flags after it
        if arg.startswith("[-"):
            arg = arg[1:].removesuffix("]")  # [--flag=value]: an optional flag
        if not arg.startswith("-") or arg.strip("-.…") == "":
            continue  # a positional argument, or "..." for more flags
        name, equals, value = arg.lstrip("-").partition("=")
        if not re.fullmatch(r"\w+|\?", name):
            continue  # a placeholder such as --<flag>, or a negative number
        if name in known:
            if not equals and not known[name] and index < len(args):
                value, equals = args[index], "="  # --name value
                index += 1
        elif name.startswith("no") and known.get(name[2:]) is True and not equals:
            continue
        else:
            problems.append(f"tfmri.{app} defines no --{name}")
            continue
        if name == "flagfile" and re.fullmatch(r"configs/[\w./-]+", value):
            if not os.path.isfile(os.path.join(root, value)):
                problems.append(f"--flagfile={value}: no such file")
        target = PASS_THROUGH.get((app, name))
        if target and equals:
            problems += [
                f"--{name}={value}: {problem}"
                for problem in flag_problems(target, [value], app_flags, root)
            ]
    return problems


def command_problems(label, text, app_flags, root=ROOT):
    """['<label>:<line>: <command>: <problem>'] for the commands of Markdown ``text``."""
    blocks, prose = split_markdown(text)
    lines = [line for first, block in blocks for line in shell_lines(block, first)]
    lines += inline_code(prose)
    return numbered_command_problems(label, lines, app_flags, root)


def numbered_command_problems(label, lines, app_flags, root):
    """The problems of the commands in ``lines``, (line number, shell line) pairs."""
    problems = []
    for number, line in sorted(lines):
        for app, args in commands_in(line):
            shown = " ".join(["python -m", f"tfmri.{app}", *args])
            for problem in flag_problems(app, args, app_flags, root):
                problems.append(f"{label}:{number}: `{shown}`: {problem}")
    return problems


def github_slug(heading):
    """The anchor GitHub gives a heading: its text lower-cased, punctuation but hyphens
    and underscores dropped, each space a hyphen."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text)
    parts = re.split(r"(`+[^`]*`+)", text)
    # Outside code an underscore at a word's edge is emphasis, not text.
    text = "".join(
        part.strip("`") if index % 2 else re.sub(r"(?<!\w)_+|_+(?!\w)", "", part)
        for index, part in enumerate(parts)
    )
    text = html.unescape(text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text):
    """The anchors of Markdown ``text``: its headings' slugs (repeats numbered as
    GitHub numbers them) and its HTML ids and names."""
    _, prose = split_markdown(text)
    found, counts, previous = set(), {}, ""
    headings = []
    for line in prose.split("\n"):
        atx = ATX.match(line)
        if atx:
            headings.append(atx.group(2) or "")
        elif (
            re.fullmatch(r" {0,3}(=+|-+)[ \t]*", line)
            and previous.strip()
            and not re.match(r" {0,3}([#>|*+-]|\d+[.)])", previous)
        ):
            headings.append(previous.strip())
        previous = line
    for heading in headings:
        slug = github_slug(heading)
        count = counts.get(slug, 0)
        counts[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    found.update(HTML_ID.findall(prose))
    return found


def _anchors_of(path, cache):
    if path not in cache:
        with open(path, encoding="utf-8") as handle:
            cache[path] = anchors(handle.read())
    return cache[path]


def target_problem(target, base_dir, root, cache):
    """What is wrong with link target ``target`` (relative to ``base_dir``; to ``root``
    when it starts with /), as it is written in ``base_dir``'s file; or None."""
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1]
    if not target or re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|//", target):
        return None  # http(s)://, mailto: and the like
    path, _, anchor = target.partition("#")
    path = urllib.parse.unquote(path)
    resolved = os.path.normpath(
        os.path.join(root, path.lstrip("/"))
        if path.startswith("/")
        else os.path.join(base_dir, path)
    )
    if not os.path.exists(resolved):
        return f"{path}: no such file or directory"
    anchor = urllib.parse.unquote(anchor)
    if anchor and resolved.endswith(".md") and os.path.isfile(resolved):
        if anchor not in _anchors_of(resolved, cache):
            return f"#{anchor}: no such heading in {os.path.relpath(resolved, root)}"
    return None


def link_problems(path, root=ROOT, cache=None):
    """['<file>:<line>: [link target]: <problem>'] for the relative links of the
    Markdown file ``path`` (a bare #anchor is into the file itself)."""
    cache = {} if cache is None else cache
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    _, prose = split_markdown(text)
    prose = _without_inline_code(prose)
    label = os.path.relpath(path, root)
    problems = []
    matches = [*LINK.finditer(prose), *REFERENCE.finditer(prose)]
    for match in sorted(matches, key=lambda match: match.start()):
        target = match.group(1)
        if target.startswith("#"):
            target = os.path.basename(path) + target
        problem = target_problem(target, os.path.dirname(path), root, cache)
        if problem:
            problems.append(
                f"{label}:{_line_of(prose, match.start())}: ({match.group(1)}): {problem}"
            )
    return problems


def config_headers(root=ROOT):
    """{config file: [(line number, comment text)]} of the comment lines that open
    each configs/*.cfg."""
    headers = {}
    for path in sorted(glob.glob(os.path.join(root, "configs", "*.cfg"))):
        with open(path, encoding="utf-8") as handle:
            lines = []
            for number, line in enumerate(handle, start=1):
                if not line.startswith("#"):
                    break
                lines.append((number, line[1:].rstrip("\n")))
        headers[os.path.relpath(path, root)] = lines
    return headers


MD_REFERENCE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)(#[\w-]+)?")


def header_link_problems(root=ROOT, cache=None):
    """['<config>:<line>: <reference>: <problem>'] for the ``x.md#anchor`` references
    of the configs' comment headers (relative to the root)."""
    problems, cache = [], {} if cache is None else cache
    for label, lines in config_headers(root).items():
        for number, comment in lines:
            for match in MD_REFERENCE.finditer(comment):
                target = match.group(1) + (match.group(2) or "")
                problem = target_problem(target, root, root, cache)
                if problem:
                    problems.append(f"{label}:{number}: {target}: {problem}")
    return problems


def header_command_problems(app_flags, root=ROOT):
    """['<config>:<line>: <command>: <problem>'] for the example commands of the
    configs' comment headers (lines of a command, continued by a backslash, or inline
    code)."""
    problems = []
    for label, lines in config_headers(root).items():
        text = "\n".join(comment for _, comment in lines)
        first = lines[0][0] if lines else 1
        commands = [(first + n - 1, c) for n, c in inline_code(text)]
        # A line that is a command: indented, or after a label ("Command: python ...").
        for index, (number, comment) in enumerate(lines):
            if re.match(r"\s*(?:[\w ]+:\s*)?python\b", comment):
                rest = [line for _, line in lines[index:]]
                commands.append((number, shell_lines(rest, number)[0][1]))
        problems += numbered_command_problems(label, commands, app_flags, root)
    return problems


def doc_files(root=ROOT):
    """The docs that are checked: README.md, docs/*.md, bench/README.md (those there)."""
    candidates = [os.path.join(root, "README.md")]
    candidates += sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    candidates.append(os.path.join(root, "bench", "README.md"))
    return [path for path in candidates if os.path.isfile(path)]


def _report(problems, what):
    return f"{len(problems)} {what}:\n" + "\n".join(problems)


# --- the real docs -------------------------------------------------------------------


def test_app_flags_come_from_each_applications_own_imports(app_flags):
    """The mapping the command checks use: each application sees its own flags and
    absl's, not those of applications it does not import."""
    assert set(app_flags) >= {"train", "evaluate", "export", "report", "demo", "convert"}
    for app, known in app_flags.items():
        assert {"flagfile", "helpfull", "verbosity", "v", "logtostderr"} <= set(known), app
    assert {"epochs", "data_dir", "model", "data_consistency"} <= set(app_flags["train"])
    assert {"workdir", "train_flag", "num_volumes"} <= set(app_flags["demo"])
    assert "epochs" not in app_flags["demo"] and "epochs" not in app_flags["convert"]
    assert "workdir" not in app_flags["train"]
    assert app_flags["demo"]["with_4x"] is True and app_flags["train"]["epochs"] is False
    for (app, flag), target in PASS_THROUGH.items():
        assert flag in app_flags[app] and target in app_flags, (app, flag, target)


def test_doc_commands_name_applications_and_flags_they_define(app_flags):
    problems = []
    for path in doc_files():
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        problems += command_problems(os.path.relpath(path, ROOT), text, app_flags)
    problems += header_command_problems(app_flags)
    assert not problems, _report(problems, "commands in the docs that would not run")


def test_doc_links_and_anchors_resolve():
    problems, cache = [], {}
    for path in doc_files():
        problems += link_problems(path, ROOT, cache)
    problems += header_link_problems(ROOT, cache)
    assert not problems, _report(problems, "broken links in the docs")


def test_readme_is_at_most_12_kb():
    size = os.path.getsize(os.path.join(ROOT, "README.md"))
    assert size <= README_LIMIT, (
        f"README.md is {size} bytes, over {README_LIMIT}: move details into docs/"
    )


# --- the checks can fail -------------------------------------------------------------

FAKE_FLAGS = {
    "train": {"epochs": False, "data_consistency": True, "flagfile": False, "v": False},
    "demo": {"workdir": False, "train_flag": False, "with_4x": True, "flagfile": False},
}

MADE_UP = """\
# Quick start

Run `python -m tfmri.demo --workdir=runs/demo --with_4x` or
`python -m tfmri.trian --epochs=1`.

```sh
pip install -e . && TF_CPP_MIN_LOG_LEVEL=2 python -m tfmri.train --epochs 3 \\
    --nodata_consistency -v 0 --bogus=1 ...   # a comment --not_a_flag
python -m tfmri.demo --train_flag=--epochs=1 --train_flag=--nope=2 [--with_4x] [--bad] | tee
python -m tfmri.train --flagfile=configs/missing.cfg --epochs=$(cat n) --epochs=<n>
python -m tfmri.<app> --anything
```

See [the results](docs/results.md#at-8x), [missing](docs/gone.md),
[a bad anchor](docs/results.md#at-16x), [here](#quick-start), [there](#nowhere),
[web](https://example.com/x.md#y) and `[not a link](nowhere.md)`.
"""


def test_the_command_check_reports_bad_apps_and_undefined_flags():
    problems = command_problems("README.md", MADE_UP, FAKE_FLAGS)
    assert problems == [
        "README.md:4: `python -m tfmri.trian --epochs=1`: there is no application "
        "tfmri.trian (tfmri/trian.py with a main)",
        "README.md:7: `python -m tfmri.train --epochs 3 --nodata_consistency -v 0 "
        "--bogus=1 ...`: tfmri.train defines no --bogus",
        "README.md:9: `python -m tfmri.demo --train_flag=--epochs=1 --train_flag=--nope=2 "
        "[--with_4x] [--bad]`: --train_flag=--nope=2: tfmri.train defines no --nope",
        "README.md:9: `python -m tfmri.demo --train_flag=--epochs=1 --train_flag=--nope=2 "
        "[--with_4x] [--bad]`: tfmri.demo defines no --bad",
        "README.md:10: `python -m tfmri.train --flagfile=configs/missing.cfg "
        "--epochs=SUBSTITUTION --epochs=<n>`: --flagfile=configs/missing.cfg: no such file",
    ]


def test_commands_are_found_across_lines_joins_and_inline_code():
    assert commands_in("a=1 python -m tfmri.train --x && python3 -m tfmri.demo | tee") == [
        ("train", ["--x"]),
        ("demo", []),
    ]
    assert commands_in("for n in a b; do python -m tfmri.train --f=c/$n.cfg; done") == [
        ("train", ["--f=c/$n.cfg"])
    ]
    blocks, prose = split_markdown("x `python -m\ntfmri.demo --a` y\n```\nz \\\n  w\n```\n")
    assert inline_code(prose) == [(1, "python -m tfmri.demo --a")]
    assert [shell_lines(lines, first) for first, lines in blocks] == [[(4, "z    w")]]


def test_the_link_check_reports_missing_files_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text("# Results\n\n## At 8x\n\nAt 4x\n-----\n")
    (tmp_path / "README.md").write_text(MADE_UP)
    assert link_problems(str(tmp_path / "README.md"), str(tmp_path)) == [
        "README.md:14: (docs/gone.md): docs/gone.md: no such file or directory",
        "README.md:15: (docs/results.md#at-16x): #at-16x: no such heading in docs/results.md",
        "README.md:15: (#nowhere): #nowhere: no such heading in README.md",
    ]
    assert anchors((tmp_path / "docs" / "results.md").read_text()) == {
        "results",
        "at-8x",
        "at-4x",
    }


def test_the_config_header_check_reports_missing_docs_anchors_and_flags(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text("## The knee (real data)\n")
    (tmp_path / "configs" / "a.cfg").write_text(
        "# See docs/results.md#the-knee-real-data and docs/results.md#the-brain,\n"
        "# docs/missing.md.\n"
        "#   python -m tfmri.train --flagfile=configs/a.cfg --epochz=1\n"
        "# Command: python -m tfmri.train --flagfile=configs/a.cfg \\\n"
        "#   --epochs=1 --bogus=2\n"
        "# It trains (python -m tfmri.train --not_a_command) in `python -m tfmri.x`.\n"
        "--epochs=1\n"
        "# docs/after_the_header.md\n"
    )
    assert header_link_problems(str(tmp_path)) == [
        "configs/a.cfg:1: docs/results.md#the-brain: #the-brain: no such heading in "
        "docs/results.md",
        "configs/a.cfg:2: docs/missing.md: docs/missing.md: no such file or directory",
    ]
    assert header_command_problems(FAKE_FLAGS, str(tmp_path)) == [
        "configs/a.cfg:3: `python -m tfmri.train --flagfile=configs/a.cfg --epochz=1`: "
        "tfmri.train defines no --epochz",
        "configs/a.cfg:4: `python -m tfmri.train --flagfile=configs/a.cfg --epochs=1 "
        "--bogus=2`: tfmri.train defines no --bogus",
        "configs/a.cfg:6: `python -m tfmri.x`: there is no application tfmri.x "
        "(tfmri/x.py with a main)",
    ]


@pytest.mark.parametrize(
    "heading, slug",
    [
        (
            "The tables at 4x and 8x, and on real anatomy",
            "the-tables-at-4x-and-8x-and-on-real-anatomy",
        ),
        ("`tfmri.train` flags: `--data_dir` & co.", "tfmritrain-flags---data_dir--co"),
        ("What __init__ does, with snake_case", "what-init-does-with-snake_case"),
        ("[Serving](docs/serving.md) (TF Serving)", "serving-tf-serving"),
    ],
)
def test_github_slugs(heading, slug):
    assert github_slug(heading) == slug
