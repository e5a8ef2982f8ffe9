"""The study's stimuli from fitted bases and its two pages, driven as a participant and a
researcher would (the buttons clicked in Python; the browser test is in test_study_browser)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from widgets.study_app import ParticipantApp, ResearcherApp, participant_from_environment
from workbench import study
from workbench.study_results import responses_table
from workbench.study_stimuli import direction_scores, stimuli_from_bases, to_uint8


def _buttons(widget, css_class):
    found = []
    stack = [widget]
    while stack:
        node = stack.pop()
        if css_class in getattr(node, "_dom_classes", ()):
            found.append(node)
        stack.extend(getattr(node, "children", ()))
    return found


@pytest.fixture
def net_and_pool():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    return model, torch.rand(40, 3, 6, 6)


def test_stimuli_rank_the_pool_by_each_direction(net_and_pool):
    model, pool = net_and_pool
    bases = {kind: wb.fit_basis(model, pool, "4", kind=kind, progress=False)
             for kind in ("neurons", "pca")}
    stimuli = stimuli_from_bases(model, pool, bases, directions_per_basis=2, references=4,
                                 queries=3)
    assert [(s.basis, s.direction) for s in stimuli] == [("neurons", 0), ("neurons", 1),
                                                         ("pca", 0), ("pca", 1)]
    pictures = to_uint8(pool)
    for s in stimuli:
        scores = direction_scores(model, pool, bases[s.basis], [s.direction])[0]
        order = torch.argsort(scores, descending=True, stable=True).tolist()
        expected = [pictures[i] for i in order]
        assert all(np.array_equal(a, b) for a, b in zip(s.references, expected[:4]))
        assert all(np.array_equal(a, b) for a, b in zip(s.positives, expected[4:7]))
        assert all(np.array_equal(a, b) for a, b in zip(s.negatives, expected[-3:]))
    neuron = direction_scores(model, pool, bases["neurons"], [0])[0]
    with torch.no_grad():  # a neuron's score is its activation minus its mean
        unit = model[:5](pool)[:, bases["neurons"].directions[0].argmax()]
    torch.testing.assert_close(neuron, (unit - unit.mean()).double(), atol=1e-5, rtol=0)


def test_to_uint8_scales_each_image_to_its_range():
    images = torch.stack([torch.linspace(-1, 1, 12).reshape(3, 2, 2), torch.zeros(3, 2, 2)])
    first, constant = to_uint8(images)
    assert first.dtype == np.uint8 and first.shape == (2, 2, 3)
    assert first.min() == 0 and first.max() == 255 and (constant == 128).all()


@pytest.fixture
def running_study(tmp_path):
    engine = study.open_database(tmp_path / "app.sqlite")
    image = lambda v: np.full((4, 4, 3), v, dtype=np.uint8)  # noqa: E731
    stimuli = [study.DirectionStimuli(b, d, [image(i) for i in range(6)], [image(200)],
                                      [image(9)]) for b in ("pca", "neurons") for d in (0, 1)]
    study_id = study.create_study(engine, study.StudyConfig("app", trials_per_participant=6),
                                  stimuli)
    return engine, study_id


def test_a_participant_answers_every_trial_by_clicking(running_study):
    engine, study_id = running_study
    token = study.join(engine, study_id, seed=0)
    app = ParticipantApp(engine, token)
    for step in range(6):
        assert app.progress.value == f"Trial {step + 1} of 6"
        choices, ratings = _buttons(app, "wb-study-choice"), _buttons(app, "wb-study-rating")
        assert len(choices) == 2 or len(ratings) == 5
        (choices or ratings)[-1].click()
    assert not app.error.message
    assert _buttons(app, "wb-study-done") and "All 6 trials done" in app.progress.value
    table = responses_table(engine, study_id)
    assert len(table) == 6 and set(table["position"]) == set(range(6))


def test_a_stale_click_writes_nothing_and_a_reopened_page_resumes(running_study):
    engine, study_id = running_study
    token = study.join(engine, study_id, seed=1)
    app = ParticipantApp(engine, token)
    first = (_buttons(app, "wb-study-choice") or _buttons(app, "wb-study-rating"))[0]
    first.click()
    first.click()  # the old trial's button again: ignored
    assert len(responses_table(engine, study_id)) == 1 and not app.error.message
    again = ParticipantApp(engine, token)  # the page reloaded
    assert again.progress.value == "Trial 2 of 6"


def test_the_researcher_page_makes_links_and_shows_results(running_study):
    engine, study_id = running_study
    app = ResearcherApp(engine, study_id, base_url="http://host/voila/render/05.ipynb")
    assert "No answers yet" in app.table.value
    token = app.add_participant()
    assert f"?participant={token}" in app.links.value
    participant = ParticipantApp(engine, token)
    while not _buttons(participant, "wb-study-done"):
        (_buttons(participant, "wb-study-choice") or _buttons(participant, "wb-study-rating"))[0]\
            .click()
    app.refresh()
    assert "forced_choice" in app.table.value and len(app.figure.data) == 2


def test_the_participant_token_comes_from_the_query_string():
    assert participant_from_environment({"QUERY_STRING": "participant=abc&x=1"}) == "abc"
    assert participant_from_environment({"QUERY_STRING": ""}) is None
    assert participant_from_environment({}) is None


def test_an_unknown_participant_sees_an_error_not_a_trial(running_study):
    engine, _ = running_study
    app = ParticipantApp(engine, "forged-token")
    assert "unknown participant" in app.error.message and app.trial is None
