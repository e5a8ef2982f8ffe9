"""``workbench audit`` from the command line on a torchvision ResNet-18 with random weights
saved to a file and an image folder written from scikit-image's shipped photos: the report's
structure, and every figure of its page drawn by Chromium with no network."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench import cli
from workbench.auditing import verdicts

METHODS = ("gradient", "guided_backprop", "grad_cam", "lrp_epsilon")
STATUSES = {"pass", "fail", "inconclusive", "pass (1 seed)", "fail (1 seed)",
            verdicts.NOT_APPLICABLE}


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data as photos
    from torchvision.models import resnet18

    tmp = tmp_path_factory.mktemp("audit")
    torch.manual_seed(0)
    torch.save(resnet18(weights=None).state_dict(), tmp / "resnet18.pt")
    for label, names in {"animals": ("chelsea", "astronaut"), "things": ("coffee", "rocket")
                         }.items():
        (tmp / "photos" / label).mkdir(parents=True)
        for name in names:
            image = np.asarray(getattr(photos, name)())
            Image.fromarray(image).save(tmp / "photos" / label / f"{name}.png")
    code = cli.main(["audit", "--model", "torchvision:resnet18", "--weights",
                     str(tmp / "resnet18.pt"), "--data", str(tmp / "photos"), "--size", "32",
                     "--images", "2", "--methods", *METHODS, "--seeds", "0", "--smoke",
                     "--out", str(tmp / "out")])
    assert code == 0
    return tmp / "out"


def test_the_report_has_a_verdict_for_every_method_and_test(audited):
    results = json.loads((audited / "results.json").read_text())
    assert results["model"]["model"].startswith("torchvision resnet18")
    assert results["model"]["data"].startswith("image folder")
    rows = results["verdicts"]
    assert {(r["method"], r["test"]) for r in rows} == {
        (m, t) for m in METHODS for t in verdicts.TESTS}
    assert {r["status"] for r in rows} <= STATUSES
    for row in rows:
        if row["status"] != verdicts.NOT_APPLICABLE:
            assert row["threshold"] and row["why this threshold"]
            assert row["values"] == [pytest.approx(row["mean"])] and row["seeds"] == [0]
    # cascading randomization compared every metric of the paper at each stage it explained
    cascade = results["cascading_randomization"]
    assert {r["metric"] for r in cascade} == {"spearman_abs", "spearman", "ssim", "hog"}
    # the smoke budget's two stages: the top layer, and every one of ResNet-18's 41 layers with
    # parameters (20 convolutions, 20 batch norms, the classifier)
    assert sorted({r["stage_index"] for r in cascade}) == [1, 41]
    csv = (audited / "verdicts.csv").read_text().splitlines()
    assert len(csv) == 1 + len(rows)


@pytest.mark.slow
def test_every_figure_of_the_report_draws_offline(audited):
    from test_figures_offline import CHROMIUM, OfflinePage

    from playwright.sync_api import sync_playwright

    expected = len(json.loads((audited / "results.json").read_text())["report_figures"])
    assert expected >= 4
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = OfflinePage(browser)
            page.page.goto((audited / "report.html").as_uri(), timeout=60_000)
            drawn = page.drawn(expected, timeout_ms=30_000)
            assert drawn["plots"] == expected, drawn
            assert not page.blocked and not page.errors, (page.blocked, page.errors)
            page.close()
        finally:
            browser.close()
