"""`effnet completion bash|zsh`: the script lists every subcommand and flag, and completes in a real bash."""

import shutil
import subprocess

import pytest

from effnet.cli import build_parser, main
from effnet.commands.completion import completion_script


def _complete(script: str, *words: str, cwd=None) -> list[str]:
    """What bash offers after `words` (the last one being completed), through the script's own function."""
    line = " ".join(f"'{word}'" for word in words)
    call = f'COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _effnet_complete; printf "%s\\n" "${{COMPREPLY[@]}}"'
    program = f"{script}\n{call}"
    done = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return [word for word in done.stdout.splitlines() if word]


def test_the_script_names_every_subcommand_and_flag(capsys):
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    assert {"train", "eval", "predict", "export", "bench", "search", "study", "serve", "completion"} <= set(commands)
    for name, sub in commands.items():
        assert f"        {name}) opts=" in script
        for action in sub._actions:
            assert all(flag in script for flag in action.option_strings)
    assert script.rstrip().endswith("complete -o default -o bashdefault -F _effnet_complete effnet")
    zsh = completion_script(parser, "zsh")
    assert "bashcompinit" in zsh.splitlines()[1] and zsh.endswith(script)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_flags_choices_models_and_files(tmp_path):
    script = completion_script(build_parser(), "bash")
    assert _complete(script, "effnet", "st") == ["study"]
    assert _complete(script, "effnet", "train", "--checkpoint-every") == ["--checkpoint-every-steps"]
    assert _complete(script, "effnet", "train", "--recipe", "") == ["paper", "finetune", "quick"]
    assert _complete(script, "effnet", "export", "--int8-backend", "o") == ["onnxruntime", "openvino"]
    assert _complete(script, "effnet", "completion", "") == ["bash", "zsh"]
    assert "efficientnet_lite0" in _complete(script, "effnet", "predict", "x.jpg", "--model", "efficientnet_l")
    (tmp_path / "lite0.int8.xml").write_text("")
    assert _complete(script, "effnet", "eval", "lite0.i", cwd=tmp_path) == ["lite0.int8.xml"]
