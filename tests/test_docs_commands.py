"""Docs that cannot drift: every ``bench3d2d ...`` command in the docs parses with the real CLI, a
sweep in them says how long it takes, and every option of every sub-command is documented."""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench3d2d.cli import build_parser, walk_parsers
from bench3d2d.engine.profiles import list_profiles

ROOT = Path(__file__).resolve().parents[1]
#: Where users read commands: the README, docs/, each published leaderboard's README (and the
#: contributors' guide).
DOC_FILES = sorted(
    [
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        ROOT / "leaderboard" / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "leaderboard").glob("*/README.md"),
    ]
)
#: Words that may stand before ``bench3d2d`` on a command line (prompts, wrappers, shell operators).
_LEADERS = {"$", "&&", "||", ";", "|", "-v", "-m", "time", "nice", "exec"}
_SHELL_STOP = {"&&", "||", ";", "|", ">", ">>", "2>", "2>&1", "&"}
#: How a doc says how long a sweep takes: "16 min", "5 h 20 min", "0:14:52", "many hours", ...
_DURATION = re.compile(r"\b\d+(\.\d+)?\s*(s|min|minutes?|h|hours?)\b|\b\d+:\d\d:\d\d\b|\bhours\b", re.I)
_NEARBY = 10  # lines either side of a sweep command where its duration must be stated


#: Parse errors that prose may leave (it names commands and options, it need not spell a full call).
_PROSE_ONLY = r"the following arguments are required|expected (one|at least one) argument"


@dataclass(frozen=True)
class DocCommand:
    """One ``bench3d2d`` command found in a doc: its words after ``bench3d2d``, where, and how."""

    argv: tuple[str, ...]
    path: Path
    line: int  # 1-based
    in_code_block: bool

    def where(self) -> str:
        """``file:line`` for error messages."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _is_leader(token: str | None) -> bool:
    return (
        token is None
        or token in _LEADERS
        or token.endswith("time")
        or re.fullmatch(r"\w+=\S*", token) is not None
    )


def _plain(token: str) -> str:
    """A synopsis or shell word as a user would type it: ``[--seed`` -> ``--seed``, ``a|b|c`` -> ``a``
    (the first alternative), ``$SLURM_ARRAY_TASK_ID`` -> ``1`` (a shell variable holds a value)."""
    if token in _SHELL_STOP:
        return token
    token = token.strip("[]")
    if re.fullmatch(r"\$\{?\w+\}?", token):
        return "1"
    return token.split("|")[0] if "|" in token and not token.startswith("|") else token


def _commands_in(text: str) -> list[tuple[str, ...]]:
    """The ``bench3d2d`` commands of one shell line (comments and shell operators stripped)."""
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote: not a shell line
        return []
    tokens = [_plain(t) for t in tokens]
    found = []
    for i, tok in enumerate(tokens):
        if (tok == "bench3d2d" or tok.endswith("/bench3d2d")) and _is_leader(tokens[i - 1] if i else None):
            rest = tokens[i + 1 :]
            stop = next((j for j, t in enumerate(rest) if t in _SHELL_STOP), len(rest))
            if rest[:stop] and rest[0][:1].isalpha():  # "bench3d2d run ...", not "bench3d2d is MIT-licensed"
                found.append(tuple(rest[:stop]))
    return found


def _code_block_commands(path: Path, lines: list[str]) -> list[DocCommand]:
    out: list[DocCommand] = []
    fence = None
    logical, first = "", 0
    for n, line in enumerate(lines, start=1):
        if line.lstrip().startswith("```"):
            fence = None if fence is not None else line.strip()[3:].strip().lower()
            continue
        if fence is None or fence in ("python", "py", "json", "toml", "yaml"):
            continue
        if not logical:
            first = n
        logical += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        out += [DocCommand(argv, path, first, True) for argv in _commands_in(logical.strip())]
        logical = ""
    return out


def _inline_commands(path: Path, text: str) -> list[DocCommand]:
    out = []
    for block in re.split(r"^```.*?^```", text, flags=re.M | re.S):  # code blocks are read above
        for m in re.finditer(r"`([^`]+)`", block):
            span = " ".join(m.group(1).split())
            if not re.match(r"(\w+=\S+\s+)*(/usr/bin/time -v\s+)?bench3d2d\s+[a-z]", span):
                continue
            line = text.count("\n", 0, text.find(m.group(0))) + 1
            out += [DocCommand(argv, path, line, False) for argv in _commands_in(span)]
    return out


def doc_commands() -> list[DocCommand]:
    """Every ``bench3d2d`` command in the docs, in code blocks and in inline code."""
    out = []
    for path in DOC_FILES:
        text = path.read_text()
        out += _code_block_commands(path, text.splitlines()) + _inline_commands(path, text)
    return out


class _ParseError(Exception):
    pass


def parse_problem(parser: argparse.ArgumentParser, cmd: DocCommand) -> str | None:
    """Why ``cmd`` does not parse with the real CLI, or names a profile that does not exist (None:
    it parses). Prose may name a command without its positional arguments (``bench3d2d status
    --verify``) or an option without its value (``bench3d2d run --models``); a code block may not."""
    try:
        args = parser.parse_args(list(cmd.argv))
    except _ParseError as exc:
        if not cmd.in_code_block and re.search(_PROSE_ONLY, str(exc)):
            return None
        return str(exc)
    except SystemExit as exc:  # --help / --version
        return None if exc.code == 0 else f"exit {exc.code}"
    profile = getattr(args, "profile", None)
    if isinstance(profile, str) and profile not in list_profiles():
        return f"--profile {profile}: no such profile (the CLI refuses it when it runs)"
    return None


class _StrictParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise _ParseError(message)


def _strict_parser() -> argparse.ArgumentParser:
    """The real parser, raising instead of printing usage and exiting, and taking no abbreviations
    (a doc must spell an option out: ``--seed`` is not ``--seeds``)."""
    parser = build_parser()
    for sub, _ in walk_parsers(parser):
        sub.__class__ = _StrictParser
        sub.allow_abbrev = False
    return parser


@pytest.fixture()
def strict_parser() -> argparse.ArgumentParser:
    """See :func:`_strict_parser`."""
    return _strict_parser()


def test_the_docs_have_commands_to_check():
    """The extraction finds commands in code blocks and in prose (a broken extractor checks nothing)."""
    cmds = doc_commands()
    assert len(cmds) > 40
    assert any(c.in_code_block for c in cmds) and any(not c.in_code_block for c in cmds)
    assert {c.argv[0] for c in cmds} >= {"run", "report", "models", "data", "train", "tune", "status"}


def test_every_documented_command_parses(strict_parser):
    """Every ``bench3d2d ...`` in README.md, docs/ and the leaderboard READMEs parses with the real CLI."""
    bad = [f"{c.where()}: bench3d2d {shlex.join(c.argv)}: {p}" for c in doc_commands()
           if (p := parse_problem(strict_parser, c))]  # fmt: skip
    assert not bad, "\n".join(bad)


def test_a_renamed_option_is_caught(strict_parser):
    """The check refuses an option the CLI does not have (what a rename leaves behind in the docs)."""
    cmd = DocCommand(("run", "--profile", "smoke", "--seed", "0"), ROOT / "README.md", 1, False)
    assert "unrecognized arguments: --seed 0" in (parse_problem(strict_parser, cmd) or "")
    cmd = DocCommand(("run", "--profile", "quick"), ROOT / "README.md", 1, True)
    assert "no such profile" in (parse_problem(strict_parser, cmd) or "")
    cmd = DocCommand(("report",), ROOT / "README.md", 1, True)
    assert "required" in (parse_problem(strict_parser, cmd) or "")  # a code block spells a full call


def _is_sweep(argv: tuple[str, ...]) -> bool:
    """A sweep to run: ``run`` with options (a bare ``bench3d2d run`` in prose names the command)."""
    return argv[0] == "run" and len(argv) > 1 and not {"--dry-run", "-h", "--help"} & set(argv)


def test_every_documented_sweep_says_how_long_it_takes():
    """A ``bench3d2d run`` without ``--dry-run`` in the docs states its duration within a few lines."""
    missing = []
    strict = _strict_parser()
    for c in doc_commands():
        if not _is_sweep(c.argv) or parse_problem(strict, DocCommand(c.argv, c.path, c.line, True)):
            continue  # not a command to run as written (prose naming an option, or one that fails above)
        lines = c.path.read_text().splitlines()
        nearby = "\n".join(lines[max(0, c.line - 1 - _NEARBY) : c.line + _NEARBY])
        if not _DURATION.search(nearby):
            missing.append(f"{c.where()}: bench3d2d {shlex.join(c.argv)}")
    assert not missing, "sweeps without a stated duration nearby:\n" + "\n".join(missing)


def test_every_profile_the_docs_name_exists():
    """``--profile NAME`` anywhere in the docs (a shell comment too) names a profile the CLI accepts."""
    bad = [f"{path.relative_to(ROOT)}: --profile {m.group(1)}" for path in DOC_FILES
           for m in re.finditer(r"--profile[ =]([a-z][\w-]*)", path.read_text())
           if m.group(1) not in list_profiles()]  # fmt: skip
    assert not bad, "\n".join(bad)


def test_every_stored_result_the_docs_cite_exists():
    """A ``benchmarks/results/*.json`` a doc cites is in the repository (``NAME.json`` is a placeholder)."""
    cited = {(path.relative_to(ROOT), m.group(0)) for path in DOC_FILES
             for m in re.finditer(r"benchmarks/results/[\w.-]+\.json", path.read_text())}  # fmt: skip
    missing = [f"{doc}: {name}" for doc, name in sorted(cited)
               if not (ROOT / name).exists() and "NAME" not in name]  # fmt: skip
    assert not missing, "\n".join(missing)


def _visible_sub_commands(parser: argparse.ArgumentParser) -> set[str]:
    names = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            names |= {a.dest for a in action._choices_actions}
    return names


def cli_options() -> dict[str, set[str]]:
    """``{"data prepare": {"--no-flatten", ...}, ...}``: the options of every visible sub-command."""
    parser = build_parser()
    out: dict[str, set[str]] = {}

    def visit(p: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        opts = {s for a in p._actions for s in a.option_strings if s.startswith("--")}
        if path:
            out[" ".join(path)] = opts - {"--help", "--plugin"}
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                visible = _visible_sub_commands(p)
                for name, sub in action.choices.items():
                    if name in visible:
                        visit(sub, (*path, name))

    visit(parser, ())
    assert len(out) == len([1 for _ in walk_parsers(parser)]) - 1 - 1  # all but the top and run-one
    return out


def _documented(command: str, option: str, sections: list[str], used: set[tuple[str, str]]) -> bool:
    if (command, option) in used:
        return True
    words = [rf"\b{re.escape(w)}\b" for w in command.split()]
    named = rf"{re.escape(option)}(?![\w-])"  # "--seed" is not "--seeds"
    return any(re.search(named, s) and all(re.search(w, s) for w in words) for s in sections)


def test_every_option_of_every_sub_command_is_documented():
    """Each option appears in a documented command of its sub-command, or in a section of the docs
    (heading to heading) that also names the sub-command."""
    used = {(" ".join(c.argv[:2]) if c.argv[0] == "data" else c.argv[0], tok.split("=")[0])
            for c in doc_commands() for tok in c.argv if tok.startswith("--")}  # fmt: skip
    sections = [s for path in DOC_FILES for s in re.split(r"^#+ ", path.read_text(), flags=re.M)]
    missing = [f"bench3d2d {cmd} {opt}" for cmd, opts in sorted(cli_options().items()) for opt in sorted(opts)
               if not _documented(cmd, opt, sections, used)]  # fmt: skip
    assert not missing, "options no doc mentions:\n" + "\n".join(missing)
