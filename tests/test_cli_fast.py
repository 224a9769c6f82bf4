"""`effnet --help`, `--version` and most commands' `--help` answer without importing torch (issue 19, item 6): the
parsers are built from argparse-level modules and each command imports its engine when it runs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from effnet.cli import COMMANDS, build_parser, main
from effnet.commands._flags import INT8_FIXED, INT8_FLAGS, inputs_before_pretrained, with_tag

# Runs the CLI in a fresh interpreter and reports, after it returned, whether torch was imported.
RUNNER = (
    "import sys; from effnet.cli import main; code = main(sys.argv[1:]); "
    "print('IMPORTED', sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules), code)"
)
# Commands whose flags come from torch-importing modules (TrainConfig, QuantizeConfig, the dataset names, the
# search runner): their `--help` still imports torch; `effnet --help` lists them without it.
FLAGS_NEED_TORCH = ("export", "train", "eval", "search", "study")


def _run(*argv: str) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("argv", [("--help",), ("--version",), ()])
def test_top_level_help_and_version_import_no_torch(argv):
    out, imported = _run(*argv)
    assert imported == ("IMPORTED [] 0" if argv else "IMPORTED [] 2")
    if argv == ("--version",):
        from effnet import __version__

        assert out.splitlines()[0] == __version__
    else:
        assert all(name in out for name in COMMANDS)  # every command listed, with its help line


@pytest.mark.parametrize("command", [name for name in COMMANDS if name not in FLAGS_NEED_TORCH])
def test_command_help_imports_no_torch(command):
    out, imported = _run(command, "--help")
    assert imported == "IMPORTED [] 0"
    assert f"usage: effnet {command}" in out


def test_the_entry_module_imports_no_torch():
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "effnet.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "usage: effnet" in done.stdout
    modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert {"effnet.commands._flags", "argparse"} <= modules  # the report lists what was imported
    assert not {name for name in modules if name.split(".")[0] in ("torch", "torchvision")}


def test_import_effnet_is_lazy_and_keeps_every_public_name():
    code = (
        "import sys, effnet; lazy = 'torch' not in sys.modules; "
        "from effnet import create_model; names = [getattr(effnet, n) for n in effnet.__all__]; "
        "print(lazy, 'torch' in sys.modules, create_model is effnet.create_model, len(names) == len(effnet.__all__))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "True", "True", "True"], done.stderr
    import effnet

    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        effnet.not_a_name  # noqa: B018


def test_a_command_parser_built_alone_matches_the_full_one():
    full = build_parser()
    for command in COMMANDS:
        alone = build_parser(command)
        assert _flags(alone, command) == _flags(full, command)


def _flags(parser, command):
    sub = next(action for action in parser._actions if action.dest == "command").choices[command]
    return [(action.option_strings, action.dest, action.default, action.nargs) for action in sub._actions]


def test_pretrained_takes_a_tag_everywhere_and_the_old_form_still_works():
    parser = build_parser()
    for argv in (["predict", "a.jpg"], ["cam", "a.jpg"], ["export"], ["serve"], ["train"]):
        assert parser.parse_args([*argv, "--pretrained", "ra_in1k"]).pretrained == "ra_in1k"
        assert parser.parse_args([*argv, "--pretrained"]).pretrained is True
    assert with_tag("efficientnet_b0", "ra_in1k") == ("efficientnet_b0.ra_in1k", True)
    assert with_tag(None, "in1k") == ("efficientnet_lite0.in1k", True)
    assert with_tag("efficientnet_b0.ra_in1k", True) == ("efficientnet_b0.ra_in1k", True)
    assert with_tag("x", "efficientnet_b0.ra_in1k") == ("efficientnet_b0.ra_in1k", True)
    assert with_tag("x", False) == ("x", False)
    # photos written after --pretrained stay inputs (as before it took a TAG)
    args = parser.parse_args(["predict", "--pretrained", "cat.jpg", "dogs/", "--top-k", "2"])
    assert args.pretrained is True and args.inputs == ["cat.jpg", "dogs/"] and args.top_k == 2
    assert inputs_before_pretrained(parser, ["--pretrained", "x.png"]) == ["--pretrained", "x.png"]  # no inputs


def test_every_quantize_config_field_is_a_flag_or_kept_fixed():
    from effnet.deploy.quantize import QuantizeConfig

    names = {field.name for field in dataclasses.fields(QuantizeConfig)}
    assert names == set(INT8_FLAGS) | set(INT8_FIXED)
    args = build_parser().parse_args(["export", "--int8", "--float-ops", "add", "--calibration-size", "7"])
    from effnet.commands._flags import int8_config

    config = int8_config(args)
    assert config == QuantizeConfig(float_ops=("add",), calibration_size=7)
    assert main(["export", "--calibration-size", "0"]) == 2  # the generated flags keep their bounds
