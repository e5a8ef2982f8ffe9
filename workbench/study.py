"""A blinded, randomized interpretability study of explanation bases: its database and rules.

Dey et al. (arXiv 2011.03043, TMLR) ask people whether the directions of a basis (neurons,
principal components, ...) are interpretable; Borowski et al. (ICLR 2021, "Exemplary natural
images explain CNN activations better than state-of-the-art feature visualization") measure it
with a forced choice: shown the images that activate a direction most (the references), which
of two query images activates it more? A coherence rating (1-5: how much the references share
one concept) is the second task.

Everything a participant does goes through this module, and every rule is enforced here, not
in the browser:

- a participant is an unguessable token (``secrets.token_urlsafe``); trials are drawn for them
  in a random order, balanced over directions and tasks, the basis never shown;
- the trial shown is the first unanswered one: leaving and coming back resumes there;
- an answer is accepted only for that trial, from its participant, once, with values in range;
  it is committed (SQLite: WAL journal, ``synchronous=FULL``) before the call returns, so the
  next trial is shown only after the answer is on disk;
- the schema is created on first use and carries its version (``SCHEMA_VERSION``); a database
  from a newer version is refused rather than misread.

The database is any SQLAlchemy URL: SQLite by default (one file, fine for one server), e.g.
PostgreSQL for a shared deployment.
"""
from __future__ import annotations

import io
import json
import math
import os
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

SCHEMA_VERSION = 1
TASKS = ("forced_choice", "coherence")
#: the longest token accepted (``token_urlsafe(24)`` has 32 characters)
MAX_TOKEN_LENGTH = 64
MAX_SECONDS = 3600.0
#: the environment variable holding the researcher's secret: when set (``workbench serve`` sets
#: it on a non-loopback address), the researcher's page needs ``?researcher=<secret>``
RESEARCHER_SECRET_VARIABLE = "WORKBENCH_STUDY_SECRET"

metadata = sa.MetaData()
schema_version = sa.Table("schema_version", metadata,
                          sa.Column("version", sa.Integer, nullable=False))
studies = sa.Table(
    "studies", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False))
images = sa.Table(
    "images", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("study_id", sa.ForeignKey("studies.id"), nullable=False, index=True),
    sa.Column("png", sa.LargeBinary, nullable=False))
directions = sa.Table(
    "directions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("study_id", sa.ForeignKey("studies.id"), nullable=False, index=True),
    sa.Column("basis", sa.String(100), nullable=False),
    sa.Column("direction", sa.Integer, nullable=False),
    sa.Column("references", sa.Text, nullable=False),  # image ids, most activating first
    sa.Column("positives", sa.Text, nullable=False),   # query images that activate it strongly
    sa.Column("negatives", sa.Text, nullable=False))   # query images that activate it weakly
participants = sa.Table(
    "participants", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("study_id", sa.ForeignKey("studies.id"), nullable=False, index=True),
    sa.Column("token", sa.String(MAX_TOKEN_LENGTH), nullable=False, unique=True),
    sa.Column("created", sa.Float, nullable=False))
trials = sa.Table(
    "trials", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("participant_id", sa.ForeignKey("participants.id"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("direction_id", sa.ForeignKey("directions.id"), nullable=False),
    sa.Column("task", sa.String(20), nullable=False),
    sa.Column("queries", sa.Text, nullable=False),  # image ids in the order shown
    sa.Column("correct", sa.Integer),  # forced choice: position of the stronger query
    sa.Column("shown_at", sa.Float),
    sa.UniqueConstraint("participant_id", "position"))
responses = sa.Table(
    "responses", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.ForeignKey("trials.id"), nullable=False, unique=True),
    sa.Column("participant_id", sa.ForeignKey("participants.id"), nullable=False, index=True),
    sa.Column("answer", sa.Integer, nullable=False),
    sa.Column("confidence", sa.Integer),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("answered_at", sa.Float, nullable=False))


class StudyError(ValueError):
    """An answer or request that the study refuses (nothing was written)."""


class UnknownParticipant(PermissionError):
    """A token, trial or image that does not belong to the caller (nothing was written)."""


def _sqlite_settings(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def default_database() -> str:
    """``$WORKBENCH_STUDY_DB`` if set, else ``study.sqlite`` beside the model cache
    (``data/``)."""
    from workbench.paths import cache_dir

    return os.environ.get("WORKBENCH_STUDY_DB") or str(cache_dir().parent / "study.sqlite")


def open_database(url: str | Path = "sqlite:///study.sqlite") -> Engine:
    """An engine for the study database at ``url`` (a SQLAlchemy URL, or a path to a SQLite
    file), its schema created or checked (``migrate``)."""
    if isinstance(url, Path) or "://" not in str(url):
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_settings)
    migrate(engine)
    return engine


def migrate(engine: Engine) -> int:
    """Create the schema if the database is empty; refuse one written by a newer version.
    Returns the schema version in force."""
    with engine.begin() as connection:
        metadata.create_all(connection)
        found = connection.execute(sa.select(schema_version.c.version)).scalar()
        if found is None:
            connection.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            return SCHEMA_VERSION
        if found > SCHEMA_VERSION:
            raise RuntimeError(f"the study database has schema version {found}, newer than this "
                               f"workbench's {SCHEMA_VERSION}; upgrade the workbench")
        # versions below SCHEMA_VERSION would be upgraded here, one step per version
        return found


# --- a study -------------------------------------------------------------------------------

@dataclass
class DirectionStimuli:
    """The images of one direction of one basis: ``references`` (the most activating, shown as
    the explanation), ``positives`` and ``negatives`` (query candidates that activate it
    strongly / weakly, none of them a reference). Images are uint8 arrays (H, W) or (H, W, 3)."""

    basis: str
    direction: int
    references: list[np.ndarray]
    positives: list[np.ndarray]
    negatives: list[np.ndarray]


@dataclass(frozen=True)
class StudyConfig:
    """``trials_per_participant`` trials drawn from every (direction, task) pair in turn."""

    name: str
    trials_per_participant: int = 30
    tasks: tuple[str, ...] = TASKS
    references_shown: int = 6
    details: dict = field(default_factory=dict)  # model, layer, bases: for the record

    def __post_init__(self) -> None:
        if not 1 <= self.trials_per_participant <= 1000:
            raise StudyError(f"trials_per_participant must be in 1..1000, got "
                             f"{self.trials_per_participant}")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise StudyError(f"tasks must be some of {TASKS}, got {self.tasks}")
        if self.references_shown < 1:
            raise StudyError(f"references_shown must be positive, got {self.references_shown}")


def png_bytes(image: np.ndarray) -> bytes:
    """``image`` (uint8, (H, W) or (H, W, 3)) as PNG."""
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise StudyError(f"images must be uint8 arrays (H, W) or (H, W, 3), got {array.dtype} "
                         f"{array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def create_study(engine: Engine, config: StudyConfig,
                 stimuli: Sequence[DirectionStimuli]) -> int:
    """Store a study and its images; returns its id."""
    if not stimuli:
        raise StudyError("a study needs at least one direction")
    for s in stimuli:
        if len(s.references) < config.references_shown or not s.positives or not s.negatives:
            raise StudyError(f"direction {s.direction} of {s.basis} needs "
                             f"{config.references_shown} references and at least one positive "
                             "and one negative query image")
    with engine.begin() as connection:
        study_id = connection.execute(studies.insert().values(
            name=config.name, created=time.time(),
            config=_config_text(config))).inserted_primary_key[0]

        def store(pictures: list[np.ndarray]) -> str:
            ids = [connection.execute(images.insert().values(
                study_id=study_id, png=png_bytes(p))).inserted_primary_key[0] for p in pictures]
            return json.dumps(ids)

        for s in stimuli:
            connection.execute(directions.insert().values(
                study_id=study_id, basis=s.basis, direction=int(s.direction),
                references=store(s.references[:config.references_shown]),
                positives=store(s.positives), negatives=store(s.negatives)))
    return study_id


def _config_text(config: StudyConfig) -> str:
    return json.dumps({"trials_per_participant": config.trials_per_participant,
                       "tasks": list(config.tasks), "references_shown": config.references_shown,
                       "details": config.details}, sort_keys=True)


def find_or_create_study(engine: Engine, config: StudyConfig,
                         build: Callable[[], Sequence[DirectionStimuli]]) -> int:
    """The id of the study with ``config``'s name and settings, created from ``build()`` (the
    stimuli, computed only then) if there is none: opening the researcher's page again
    continues the same study. Two pages preparing it at the same time may each store one; both
    then use the first stored, so their participant links belong to one study."""
    found = _first_study(engine, config)
    if found is None:
        create_study(engine, config, build())
        found = _first_study(engine, config)
    return found


def _first_study(engine: Engine, config: StudyConfig) -> int | None:
    with engine.connect() as connection:
        return connection.execute(sa.select(studies.c.id).where(
            studies.c.name == config.name, studies.c.config == _config_text(config))
            .order_by(studies.c.id)).scalar()


def _config(connection, study_id: int) -> dict:
    text = connection.execute(sa.select(studies.c.config).where(studies.c.id == study_id)).scalar()
    if text is None:
        raise StudyError(f"no study {study_id}")
    return json.loads(text)


def join(engine: Engine, study_id: int, seed: int | None = None) -> str:
    """A new participant of ``study_id``: their trials drawn and stored; returns their token
    (the only way to reach their trials)."""
    rng = random.Random(seed if seed is not None else secrets.randbits(64))
    token = secrets.token_urlsafe(24)
    with engine.begin() as connection:
        config = _config(connection, study_id)
        rows = connection.execute(sa.select(directions).where(
            directions.c.study_id == study_id)).all()
        pairs = [(row, task) for row in rows for task in config["tasks"]]
        participant = connection.execute(participants.insert().values(
            study_id=study_id, token=token, created=time.time())).inserted_primary_key[0]
        order: list = []
        while len(order) < config["trials_per_participant"]:  # each pair once per round
            order += rng.sample(pairs, len(pairs))
        for position, (row, task) in enumerate(order[:config["trials_per_participant"]]):
            queries, correct = [], None
            if task == "forced_choice":
                strong = rng.choice(json.loads(row.positives))
                queries = [strong, rng.choice(json.loads(row.negatives))]
                rng.shuffle(queries)
                correct = queries.index(strong)
            connection.execute(trials.insert().values(
                participant_id=participant, position=position, direction_id=row.id, task=task,
                queries=json.dumps(queries), correct=correct))
    return token


# --- what a participant sees and does ------------------------------------------------------

@dataclass(frozen=True)
class ShownTrial:
    """What the participant's page shows: no basis, no answer key."""

    trial_id: int
    position: int
    total: int
    task: str
    references: list[int]  # image ids
    queries: list[int]


def _participant(connection, token: str) -> sa.Row:
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise UnknownParticipant("unknown participant")
    row = connection.execute(sa.select(participants).where(participants.c.token == token)).first()
    if row is None:
        raise UnknownParticipant("unknown participant")
    return row


def _current(connection, participant_id: int) -> sa.Row | None:
    answered = sa.select(responses.c.trial_id)
    return connection.execute(
        sa.select(trials).where(trials.c.participant_id == participant_id,
                                trials.c.id.not_in(answered))
        .order_by(trials.c.position).limit(1)).first()


def current_trial(engine: Engine, token: str) -> ShownTrial | None:
    """The participant's first unanswered trial (marked as shown), or None when all are done."""
    with engine.begin() as connection:
        participant = _participant(connection, token)
        trial = _current(connection, participant.id)
        if trial is None:
            return None
        if trial.shown_at is None:
            connection.execute(trials.update().where(trials.c.id == trial.id)
                               .values(shown_at=time.time()))
        total = connection.execute(sa.select(sa.func.count()).where(
            trials.c.participant_id == participant.id)).scalar()
        references = connection.execute(sa.select(directions.c.references).where(
            directions.c.id == trial.direction_id)).scalar()
        return ShownTrial(trial.id, trial.position, total, trial.task, json.loads(references),
                          json.loads(trial.queries))


def progress(engine: Engine, token: str) -> tuple[int, int]:
    """``(answered, total)`` trials of the participant."""
    with engine.connect() as connection:
        participant = _participant(connection, token)
        total = connection.execute(sa.select(sa.func.count()).where(
            trials.c.participant_id == participant.id)).scalar()
        answered = connection.execute(sa.select(sa.func.count()).where(
            responses.c.participant_id == participant.id)).scalar()
        return answered, total


def _check_answer(task: str, answer: object, confidence: object, seconds: object) -> None:
    accepted = (0, 1) if task == "forced_choice" else (1, 2, 3, 4, 5)
    if not isinstance(answer, int) or isinstance(answer, bool) or answer not in accepted:
        raise StudyError(f"answer must be one of {accepted} for a {task} trial, got {answer!r}")
    if confidence is not None and (not isinstance(confidence, int) or isinstance(confidence, bool)
                                   or not 1 <= confidence <= 5):
        raise StudyError(f"confidence must be None or an integer 1..5, got {confidence!r}")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) \
            or not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise StudyError(f"seconds must be a number in [0, {MAX_SECONDS:g}], got {seconds!r}")


def record_answer(engine: Engine, token: str, trial_id: int, answer: int,
                  confidence: int | None = None, seconds: float = 0.0) -> None:
    """Store the participant's answer to the trial they are shown, committed before returning.

    Refused with nothing written (``UnknownParticipant``, ``StudyError``): an unknown token, a
    trial of another participant, a trial not the one shown (ahead, or answered already), an
    answer out of range (forced choice: 0 or 1, the query picked; coherence: 1..5), a confidence
    outside 1..5, a time outside [0, 1 h].
    """
    with engine.begin() as connection:
        participant = _participant(connection, token)
        owner = connection.execute(sa.select(trials.c.participant_id).where(
            trials.c.id == trial_id)).scalar() if isinstance(trial_id, int) else None
        if owner != participant.id:
            raise UnknownParticipant(f"trial {trial_id!r} is not one of this participant's")
        trial = _current(connection, participant.id)
        if trial is None or trial.id != trial_id or trial.shown_at is None:
            raise StudyError(f"trial {trial_id} is not the trial shown (answered already, or "
                             "not reached yet)")
        _check_answer(trial.task, answer, confidence, seconds)
        connection.execute(responses.insert().values(
            trial_id=trial_id, participant_id=participant.id, answer=answer,
            confidence=confidence, seconds=float(seconds), answered_at=time.time()))


def image_png(engine: Engine, token: str, image_id: int) -> bytes:
    """An image of a trial the participant has been shown (PNG bytes)."""
    return images_png(engine, token, [image_id])[0]


def images_png(engine: Engine, token: str, image_ids: Sequence[int]) -> list[bytes]:
    """Images of trials the participant has been shown (PNG bytes, in the order asked), read
    at once: a page draws a trial's images with one query."""
    with engine.connect() as connection:
        participant = _participant(connection, token)
        shown = connection.execute(
            sa.select(trials.c.queries, directions.c.references)
            .join(directions, directions.c.id == trials.c.direction_id)
            .where(trials.c.participant_id == participant.id, trials.c.shown_at.is_not(None)))
        allowed = {i for queries, references in shown
                   for i in json.loads(queries) + json.loads(references)}
        refused = [i for i in image_ids if i not in allowed]
        if refused:
            raise UnknownParticipant(f"image {refused[0]!r} is not in this participant's trials")
        found = dict(connection.execute(
            sa.select(images.c.id, images.c.png).where(images.c.id.in_(set(image_ids)))).all())
        return [found[i] for i in image_ids]
