"""The README's code blocks, read for the tests that run them (test_readme_*.py).

Shell blocks give one command per line (comments dropped); Python blocks are run as they are.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
README = REPOSITORY / "README.md"
#: the set-up commands that CI itself is (``.ci/run`` runs ``make test``; ``make reproduce`` is
#: the main job at full parameters): not rerun from inside the suite
SETUP_COMMANDS = (["make", "reproduce"], ["make", "test"])
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def code_blocks(language: str, text: str | None = None) -> list[str]:
    """The bodies of the README's fenced blocks in ``language`` (``bash`` or ``python``)."""
    text = README.read_text() if text is None else text
    return [body for lang, body in _FENCE.findall(text) if lang == language]


def shell_commands(text: str | None = None) -> list[list[str]]:
    """Every command line of the README's ``bash`` blocks as an argument list."""
    commands = []
    for block in code_blocks("bash", text):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands
