"""Every Python snippet of the README runs, so an API change that breaks one fails the suite.

Each block runs on its own, after a prelude that defines the names the README leaves to the
reader (``model``, ``x``, ``t``, the data sets): a small CNN on scikit-learn's digits whose layer
names (``features.relu2``, ``classifier.relu1``) are the ones the README uses.
"""
from __future__ import annotations

import pytest
from readme import code_blocks, shell_commands

PRELUDE = '''
import torch
import workbench as wb
from workbench import metrics, models
from workbench import data as datasets
from workbench.rules import EpsilonRule, RatioRule, Rules

digits = datasets.digits()
model = models.cnn(1, 10, 8, seed=0).eval()
x, t = digits.x_test[:2], digits.y_test[:2]  # two samples: `target=[3, 1]`
train_images, held_out_images = digits.x_train[:256], digits.x_test[:128]
loader = torch.utils.data.DataLoader(digits.x_train[:256], batch_size=64)
test_x, test_y = digits.x_test[:64], digits.y_test[:64]
attributions = wb.attribute(model, x, "gradient_x_input", target=t)
a, b = attributions, wb.attribute(model, x, "gradient", target=t)
fresh_net = models.mlp(64, 10, hidden=(64,), seed=0)
data = datasets.ImageData(digits.x_train[:48], digits.y_train[:48], digits.x_test[:16],
                          digits.y_test[:16], digits.classes, "digits (48 images)")
'''


def test_the_readme_has_python_snippets_and_commands():
    assert len(code_blocks("python")) >= 6
    assert len(shell_commands()) >= 8


@pytest.mark.parametrize("snippet", code_blocks("python"),
                         ids=lambda s: s.strip().splitlines()[0][:40])
def test_readme_snippet_runs(snippet, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets may write files (patterns.save)
    namespace: dict = {}
    exec(compile(PRELUDE, "<readme prelude>", "exec"), namespace)
    exec(compile(snippet, "<README.md snippet>", "exec"), namespace)


def test_readme_blocks_are_found_by_language():
    text = "```bash\nworkbench methods  # list\n# a comment\n\nmake test\n```\n" \
           "```python\nprint(1)\n```\n"
    assert shell_commands(text) == [["workbench", "methods"], ["make", "test"]]
    assert code_blocks("python", text) == ["print(1)\n"]
