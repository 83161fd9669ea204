"""The command line: workflow order, hidden internals, help and defaults everywhere, one list syntax."""

from __future__ import annotations

import argparse

import pytest

from bench3d2d.cli import build_parser, main, walk_parsers
from bench3d2d.commands._options import ListAction
from bench3d2d.commands.report import reproduce_command
from bench3d2d.harness.sweep import split_list

WORKFLOW = ["models", "data", "train", "pretrain", "run", "status", "tune", "report", "compare"]


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skip = (argparse._HelpAction, argparse._SubParsersAction)
    return [a for a in parser._actions if not isinstance(a, skip)]


def test_commands_are_listed_in_workflow_order_and_run_one_is_hidden():
    text = build_parser().format_help()
    listed = [line.split()[0] for line in text.split("COMMAND\n", 1)[1].split("\noptions:")[0].splitlines()
              if line.startswith("    ") and not line.startswith("     ")]  # fmt: skip
    assert listed == WORKFLOW
    assert "run-one" not in text
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "run-one" in sub.choices  # still a command: the subprocess executor's workers call it


def test_every_option_of_every_command_has_help_and_shows_its_default():
    missing, no_default = [], []
    for parser, _ in walk_parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in _options(parser):
            name = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            if not (action.help or "").strip():
                missing.append(name)
                continue
            shown = formatter._expand_help(action) if action.help else ""
            takes_value = action.nargs != 0 and not isinstance(action, argparse._VersionAction)
            optional = bool(action.option_strings) and not action.required
            if takes_value and optional and "default" not in shown:
                no_default.append(f"{name}: {shown}")
    assert not missing, f"options without help text: {missing}"
    assert not no_default, f"options whose help shows no default: {no_default}"


def test_every_list_option_takes_commas_spaces_and_mixes():
    list_options = [(p, a) for p, _ in walk_parsers(build_parser()) for a in _options(p)
                    if isinstance(a, ListAction)]  # fmt: skip
    flags = {a.option_strings[0] for _, a in list_options if a.option_strings}
    assert {"--models", "--fractions", "--datasets", "--pretrain", "--seeds", "--metrics", "--formats",
            "--test-sets", "--exclude"} <= flags  # fmt: skip
    for parser, action in list_options:
        assert "comma-separated" in action.help, (parser.prog, action.dest)
        ns = argparse.Namespace()
        for given in (["a,b", "c"], ["a", "b,c"], ["a,b,c"], ["a", "b", "c"]):
            action(parser, ns, given)
            assert getattr(ns, action.dest) == ["a", "b", "c"]
    # Through the real parser, for the sweep's lists:
    args = build_parser().parse_args(["run", "--models", "ipn*", "fpbnet,lachinov", "--fractions", "5,10",
                                      "20", "--seeds", "0-2,5"])  # fmt: skip
    assert args.models == ["ipn*", "fpbnet", "lachinov"] and args.fractions == ["5", "10", "20"]
    assert args.seeds == ["0-2", "5"] and args.datasets == ["ga", "rpd"]
    assert split_list("a, b,,c") == ["a", "b", "c"]


def test_the_cli_and_the_harness_share_one_list_parser():
    """The options' list syntax is the sweep plan's: one parser (spaces inside an item split too)."""
    from bench3d2d.commands import _options

    assert not [name for name in vars(_options) if name.startswith("split")]
    ns = argparse.Namespace()
    ListAction(["--x"], "x")(argparse.ArgumentParser(), ns, ["a b,c", " d"])
    assert ns.x == split_list(["a b,c", " d"]) == ["a", "b", "c", "d"]


def test_report_reproduce_command_uses_the_documented_list_form():
    args = build_parser().parse_args(["report", "res", "--out", "o", "--metrics", "dice", "hd95",
                                      "--formats", "md,csv"])  # fmt: skip
    assert reproduce_command(args) == "bench3d2d report res --out o --metrics dice,hd95 --formats md,csv"


@pytest.mark.parametrize("argv", [["--plugin", "x.py", "models"], ["models", "--plugin", "x.py"]])
def test_a_missing_plugin_file_is_one_clear_line(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench3d2d: error: plugin file ") and "x.py does not exist" in err


def test_run_defaults_are_the_converged_benchmark():
    """`bench3d2d run` with no options: the standard (plateau) profile, the tuned recipes, three seeds."""
    from bench3d2d.harness.sweep import DEFAULT_SEEDS, parse_seeds

    args = build_parser().parse_args(["run"])
    assert args.profile == "standard" and args.recipe == "tuned"
    assert parse_seeds(args.seeds) == DEFAULT_SEEDS == (0, 1, 2)


def test_the_python_api_defaults_to_the_command_lines_profile_and_recipe_set():
    """One set of defaults: DEFAULT_PROFILE and DEFAULT_RECIPE are what run, train, pretrain and tune
    use without options, and what the API's settings objects and plan use when not given."""
    import inspect

    from bench3d2d._defaults import DEFAULT_PROFILE, DEFAULT_RECIPE
    from bench3d2d.commands.tune import fill_budget
    from bench3d2d.engine import PretrainTarget, RunSettings, ssl
    from bench3d2d.harness.sweep import PlanOptions, expand_plan
    from bench3d2d.harness.tune import TuneSettings

    assert (DEFAULT_PROFILE, DEFAULT_RECIPE) == ("standard", "tuned")
    parser = build_parser()
    train = ["train", "--model", "fpbnet", "--dataset", "rpd", "--out", "x"]
    pretrain = ["pretrain", "--model", "fpbnet", "--source", "synthetic-ga-m", "--modality", "faf"]
    for argv in (["run"], train, pretrain):
        args = parser.parse_args(argv)
        assert (args.profile, args.recipe) == (DEFAULT_PROFILE, DEFAULT_RECIPE), argv
    tune = parser.parse_args(["tune", "--models", "fpbnet", "--trials", "1"])
    fill_budget(tune, None)  # without a shipped table's budget to follow
    assert tune.profile == DEFAULT_PROFILE
    assert (RunSettings().profile, RunSettings().recipe) == (DEFAULT_PROFILE, DEFAULT_RECIPE)
    assert PretrainTarget("fpbnet", "synthetic-ga-m", "faf").recipe == DEFAULT_RECIPE
    assert inspect.signature(ssl.pretrain).parameters["profile"].default == DEFAULT_PROFILE
    assert PlanOptions().recipe == DEFAULT_RECIPE and TuneSettings("fpbnet").profile == DEFAULT_PROFILE
    plan = expand_plan("fpbnet", "100", "rpd", "none", "0")
    assert {(s.profile, s.recipe) for s in plan.runs} == {(DEFAULT_PROFILE, DEFAULT_RECIPE)}
