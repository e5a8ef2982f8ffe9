"""The interpretability study's database and rules (``workbench.study``) and its analysis
(``workbench.study_results``): blinded randomized trials, resuming, refusals with nothing
written, concurrent participants, a killed writer, and the statistics against independent
code or closed forms."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats

from workbench import study
from workbench.study_results import (
    compare_bases,
    export_csv,
    responses_table,
    sign_flip_p_value,
    study_results,
    wilson_interval,
)


def _image(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, dtype=np.uint8)


def _stimuli(bases=("pca", "neurons"), per_basis=2) -> list[study.DirectionStimuli]:
    return [study.DirectionStimuli(basis, d, [_image(10 * d + i) for i in range(3)],
                                   [_image(200 + d), _image(201 + d)], [_image(5), _image(6)])
            for basis in bases for d in range(per_basis)]


@pytest.fixture
def database(tmp_path):
    return study.open_database(tmp_path / "study.sqlite")


@pytest.fixture
def study_id(database):
    config = study.StudyConfig("test", trials_per_participant=12, references_shown=3)
    return study.create_study(database, config, _stimuli())


def _answer_all(engine, token, choose):
    while (trial := study.current_trial(engine, token)) is not None:
        study.record_answer(engine, token, trial.trial_id, choose(trial), confidence=3,
                            seconds=1.5)


def _row_count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_the_database_is_sqlite_in_wal_mode_with_a_versioned_schema(database, tmp_path):
    with database.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assert study.migrate(database) == study.SCHEMA_VERSION
    with database.begin() as connection:
        connection.execute(study.schema_version.update().values(version=99))
    with pytest.raises(RuntimeError, match="schema version 99, newer"):
        study.open_database(tmp_path / "study.sqlite")


def test_trials_are_balanced_randomized_and_blinded(database, study_id):
    first, second = study.join(database, study_id, seed=1), study.join(database, study_id, seed=2)
    assert first != second and len(first) >= 32
    shown = study.current_trial(database, first)
    assert set(vars(shown)) == {"trial_id", "position", "total", "task", "references", "queries"}
    with database.connect() as connection:
        rows = connection.execute(sa.select(study.trials.c.participant_id,
                                            study.trials.c.direction_id, study.trials.c.task)
                                  .order_by(study.trials.c.id)).all()
    orders = {}
    for participant, direction, task in rows:
        orders.setdefault(participant, []).append((direction, task))
    first_order, second_order = orders.values()
    assert first_order != second_order  # each participant's own random order
    for order in (first_order, second_order):  # 4 directions x 2 tasks = 8 pairs per round
        assert len(set(order[:8])) == 8 and len(order) == 12


def test_forced_choice_key_points_at_the_strong_query(database, study_id):
    token = study.join(database, study_id, seed=3)
    with database.connect() as connection:
        for trial in connection.execute(sa.select(study.trials, study.directions.c.positives)
                                        .join(study.directions)).all():
            if trial.task == "forced_choice":
                queries = json.loads(trial.queries)
                assert queries[trial.correct] in json.loads(trial.positives)
                assert queries[1 - trial.correct] not in json.loads(trial.positives)
    assert study.progress(database, token) == (0, 12)


def test_a_participant_resumes_where_they_stopped(database, study_id, tmp_path):
    token = study.join(database, study_id, seed=4)
    for _ in range(5):
        trial = study.current_trial(database, token)
        study.record_answer(database, token, trial.trial_id, 1 if trial.task == "coherence"
                            else 0, seconds=0.5)
    reopened = study.open_database(tmp_path / "study.sqlite")  # a restarted server
    assert study.progress(reopened, token) == (5, 12)
    assert study.current_trial(reopened, token).position == 5


@pytest.mark.parametrize("tamper, error", [
    (lambda ids, mine: ("x" * 10_000, mine[0], 0), study.UnknownParticipant),
    (lambda ids, mine: ("not-a-token", mine[0], 0), study.UnknownParticipant),
    (lambda ids, mine: (None, mine[0], 0), study.UnknownParticipant),
    (lambda ids, mine: (ids, -5, 0), study.UnknownParticipant),
    (lambda ids, mine: (ids, "1 OR 1=1", 0), study.UnknownParticipant),
    (lambda ids, mine: (ids, mine[1], 0), study.StudyError),  # not shown yet
    (lambda ids, mine: (ids, mine[0], 7), study.StudyError),  # out of range
    (lambda ids, mine: (ids, mine[0], "0" * 5000), study.StudyError),
])
def test_bad_requests_are_refused_with_nothing_written(database, study_id, tamper, error):
    token = study.join(database, study_id, seed=5)
    shown = study.current_trial(database, token)
    with database.connect() as connection:
        mine = [shown.trial_id] + [row.id for row in connection.execute(
            sa.select(study.trials.c.id).where(study.trials.c.id != shown.trial_id))]
    before = _row_count(database, study.responses)
    with pytest.raises(error):
        study.record_answer(database, *tamper(token, mine))
    assert _row_count(database, study.responses) == before


def test_another_participants_trial_answer_or_image_is_out_of_reach(database, study_id):
    alice, bob = study.join(database, study_id, seed=6), study.join(database, study_id, seed=7)
    alice_trial = study.current_trial(database, alice)
    study.current_trial(database, bob)
    with pytest.raises(study.UnknownParticipant):
        study.record_answer(database, bob, alice_trial.trial_id, 0)
    with pytest.raises(study.UnknownParticipant):  # an image bob has not been shown
        unseen = set(range(1, 100)) - set(alice_trial.references + alice_trial.queries)
        study.image_png(database, bob, max(unseen))
    png = study.image_png(database, alice, alice_trial.references[0])
    assert png.startswith(b"\x89PNG")
    study.record_answer(database, alice, alice_trial.trial_id, 1 if alice_trial.task ==
                        "coherence" else 0)
    with pytest.raises(study.StudyError, match="not the trial shown"):  # twice
        study.record_answer(database, alice, alice_trial.trial_id, 1)
    assert _row_count(database, study.responses) == 1


def test_eight_concurrent_participants_lose_and_duplicate_nothing(tmp_path):
    engine = study.open_database(tmp_path / "busy.sqlite")
    config = study.StudyConfig("busy", trials_per_participant=30, references_shown=3)
    study_id = study.create_study(engine, config, _stimuli())
    tokens = [study.join(engine, study_id, seed=i) for i in range(8)]
    given = {token: 0 for token in tokens}
    errors = []

    def participant(token):
        try:
            while (trial := study.current_trial(engine, token)) is not None:
                study.record_answer(engine, token, trial.trial_id,
                                    2 if trial.task == "coherence" else 1, seconds=0.1)
                given[token] += 1
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=participant, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    table = responses_table(engine, study_id)
    assert len(table) == 240 and set(given.values()) == {30}
    assert (table.groupby("participant").size() == 30).all()
    assert not table.duplicated(["participant", "position"]).any()


WRITER = """
import sys
from workbench import study
engine = study.open_database(sys.argv[1])
token = sys.argv[2]
while (trial := study.current_trial(engine, token)) is not None:
    study.record_answer(engine, token, trial.trial_id, 2 if trial.task == "coherence" else 0)
    print(trial.trial_id, flush=True)  # acknowledged: committed
"""


def test_a_killed_writer_leaves_a_sound_database_with_every_acknowledged_answer(tmp_path):
    path = tmp_path / "killed.sqlite"
    engine = study.open_database(path)
    config = study.StudyConfig("killed", trials_per_participant=400, references_shown=3)
    study_id = study.create_study(engine, config, _stimuli())
    token = study.join(engine, study_id, seed=0)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), token],
                              stdout=subprocess.PIPE, text=True)
    acknowledged = [int(writer.stdout.readline()) for _ in range(25)]
    writer.kill()  # SIGKILL mid-run
    writer.wait()
    restarted = study.open_database(path)
    with restarted.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        stored = set(connection.execute(sa.select(study.responses.c.trial_id)).scalars())
    assert set(acknowledged) <= stored
    answered, total = study.progress(restarted, token)
    assert answered == len(stored) and total == 400
    assert study.current_trial(restarted, token).position == answered  # resumes right there


# --- analysis ------------------------------------------------------------------------------

def test_wilson_interval_matches_scipy():
    for successes, n in [(0, 10), (7, 10), (45, 60), (60, 60)]:
        expected = stats.binomtest(successes, n).proportion_ci(0.95, method="wilson")
        assert wilson_interval(successes, n) == pytest.approx(
            (expected.low, expected.high), abs=1e-12)


def test_results_and_the_permutation_test_against_closed_forms(database, study_id, tmp_path):
    """Participants who always pick the strong query for PCs and the weak one for neurons:
    accuracy 1 and 0; the sign-flip test over n participants gives p = 2 / 2^n exactly."""
    with database.connect() as connection:
        basis_of = dict(connection.execute(sa.select(study.trials.c.id, study.directions.c.basis)
                                           .join(study.directions)).all())
    n = 5
    for seed in range(n):
        token = study.join(database, study_id, seed=seed)
        with database.connect() as connection:
            basis_of.update(connection.execute(
                sa.select(study.trials.c.id, study.directions.c.basis).join(study.directions))
                .all())
            keys = dict(connection.execute(sa.select(study.trials.c.id,
                                                     study.trials.c.correct)).all())

        def choose(trial, keys=keys):
            if trial.task == "coherence":
                return 5 if basis_of[trial.trial_id] == "pca" else 1
            key = keys[trial.trial_id]
            return key if basis_of[trial.trial_id] == "pca" else 1 - key

        _answer_all(database, token, choose)
    results = study_results(database, study_id).set_index(["basis", "task"])
    assert results.loc[("pca", "forced_choice"), "score"] == 1.0
    assert results.loc[("neurons", "forced_choice"), "score"] == 0.0
    assert results.loc[("pca", "coherence"), "score"] == 5.0
    assert results.loc[("pca", "forced_choice"), "participants"] == n
    low, high = wilson_interval(int(results.loc[("pca", "forced_choice"), "answers"]),
                                int(results.loc[("pca", "forced_choice"), "answers"]))
    assert results.loc[("pca", "forced_choice"), "low"] == pytest.approx(low)
    test = compare_bases(database, study_id, "pca", "neurons")
    assert test["difference"] == 1.0 and test["exact"]
    assert test["p_value"] == pytest.approx(2 / 2 ** n)
    path = export_csv(database, study_id, tmp_path / "answers.csv")
    exported = np.loadtxt(path, delimiter=",", skiprows=1, usecols=0)
    assert len(exported) == 12 * n and set(exported) == set(range(n))
    assert json.loads(path.with_suffix(".csv.json").read_text())["trials_per_participant"] == 12


def test_the_sign_flip_p_value_matches_brute_force():
    differences = np.array([0.5, -0.25, 0.75, 0.5, 0.0, 0.25])
    observed = differences.mean()
    null = [np.mean(np.array(s) * differences)
            for s in itertools.product((1, -1), repeat=len(differences))]
    expected = np.mean(np.abs(null) >= abs(observed) - 1e-12)
    assert 0 < expected < 1
    assert sign_flip_p_value(differences) == (pytest.approx(expected), True)
    many = np.random.default_rng(0).normal(0.3, 1.0, 40)  # sampled flips: close to exact
    sampled, exact = sign_flip_p_value(many, n_permutations=20000, seed=1)
    assert not exact
    t_test = stats.ttest_1samp(many, 0.0).pvalue  # the t test approximates the flip test
    assert sampled == pytest.approx(t_test, abs=0.03)


def test_bad_configurations_are_refused(database):
    with pytest.raises(study.StudyError, match="trials_per_participant"):
        study.StudyConfig("x", trials_per_participant=0)
    with pytest.raises(study.StudyError, match="tasks"):
        study.StudyConfig("x", tasks=("guess",))
    with pytest.raises(study.StudyError, match="needs 6 references"):
        study.create_study(database, study.StudyConfig("x"), _stimuli())
    with pytest.raises(study.StudyError, match="uint8"):
        study.png_bytes(np.zeros((4, 4)))
    with pytest.raises(study.StudyError, match="no study 42"):
        study.join(database, 42)


def test_pages_preparing_one_study_at_once_share_the_first_stored(database):
    """The researcher's page computes the stimuli, then stores the study unless it exists; a
    second page doing the same meanwhile (here: while the first one's stimuli are built) stores
    another copy, and both pages then use the first one stored."""
    config = study.StudyConfig("same", trials_per_participant=4, references_shown=3)
    other_page = []

    def build_while_another_page_stores_it():
        other_page.append(study.find_or_create_study(database, config, _stimuli))
        return _stimuli()

    first = study.find_or_create_study(database, config, build_while_another_page_stores_it)
    assert other_page == [first] and _row_count(database, study.studies) == 2
    assert study.find_or_create_study(database, config, _stimuli) == first  # the page reopened
    assert study.find_or_create_study(
        database, study.StudyConfig("other", 4, references_shown=3), _stimuli) != first
