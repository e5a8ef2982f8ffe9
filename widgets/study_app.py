"""The interpretability study as an app: a participant's page and the researcher's page.

Both pages only call ``workbench.study`` (every rule lives there). The participant's page shows
the trial the database says is current; each trial gets new buttons bound to its trial id, so
a late or repeated click can only reach the trial it was made on, which the database then
refuses (nothing is written). An answer is committed before the next trial is drawn.

The notebook ``05_interpretability_study`` serves both: a page opened with
``?participant=<token>`` is that participant's, any other the researcher's.
"""
from __future__ import annotations

import html
import os
import time
import urllib.parse
from collections.abc import Callable

import ipywidgets as widgets
import plotly.graph_objects as go
from sqlalchemy.engine import Engine

from widgets._common import ErrorArea
from workbench import study
from workbench.study_results import compare_bases, study_results

PROMPTS = {
    "forced_choice": "The images on top activate one unit of the network most. Which of the two "
                     "images below activates it more?",
    "coherence": "How much do the images on top share one visual concept? "
                 "(1: nothing in common, 5: clearly one concept)",
}


def participant_from_environment(environ: dict | None = None) -> str | None:
    """The ``participant`` query parameter of the page (Voilà passes the query string to the
    kernel as ``QUERY_STRING``), or None."""
    query = (os.environ if environ is None else environ).get("QUERY_STRING", "")
    values = urllib.parse.parse_qs(query).get("participant")
    return values[0] if values else None


def page_url_from_environment(environ: dict | None = None) -> str:
    """The URL of the page the kernel serves (Voilà passes ``SERVER_NAME``, ``SERVER_PORT``
    and ``SCRIPT_NAME``), or "" outside Voilà."""
    env = os.environ if environ is None else environ
    if not env.get("SERVER_NAME"):
        return ""
    port = f":{env['SERVER_PORT']}" if env.get("SERVER_PORT") else ""
    return f"http://{env['SERVER_NAME']}{port}{env.get('SCRIPT_NAME', '')}"


def _image(engine: Engine, token: str, image_id: int, width: int) -> widgets.Image:
    return widgets.Image(value=study.image_png(engine, token, image_id), format="png",
                         width=width, layout=widgets.Layout(margin="2px"))


class ParticipantApp(widgets.VBox):
    """One participant's trials, one at a time, until all are answered."""

    def __init__(self, engine: Engine, token: str, image_width: int = 96) -> None:
        super().__init__()
        self.add_class("wb-study-participant")
        self.engine, self.token, self.image_width = engine, token, image_width
        self.error = ErrorArea()
        self.progress = widgets.HTML().add_class("wb-study-progress")
        self.body = widgets.VBox()
        self.children = [self.progress, self.body, self.error]
        self.trial: study.ShownTrial | None = None
        self._shown_at = time.monotonic()
        self.error.guard(self.show_current)()

    def show_current(self) -> None:
        """Draw the trial the database says is current (or the end)."""
        self.trial = study.current_trial(self.engine, self.token)
        answered, total = study.progress(self.engine, self.token)
        if self.trial is None:
            self.progress.value = f"<b>All {total} trials done. Thank you!</b>"
            self.body.children = [widgets.HTML("You can close this page.")
                                  .add_class("wb-study-done")]
            return
        trial = self.trial
        references = widgets.HBox([_image(self.engine, self.token, i, self.image_width)
                                   for i in trial.references]).add_class("wb-study-references")
        prompt = widgets.HTML(f"<p>{html.escape(PROMPTS[trial.task])}</p>")
        if trial.task == "forced_choice":
            answers = self._choice(trial)
        else:
            answers = self._buttons([str(v) for v in range(1, 6)], range(1, 6), trial,
                                    "wb-study-rating")
        # the position names the answers (pages and tests tell a new trial's buttons apart)
        answers.add_class(f"wb-study-position-{trial.position}")
        self.body.children = [references, prompt, answers]
        self.progress.value = f"Trial {answered + 1} of {total}"
        self._shown_at = time.monotonic()

    def _choice(self, trial: study.ShownTrial) -> widgets.Widget:
        self.confidence = widgets.ToggleButtons(
            options=[("unsure", 1), ("2", 2), ("3", 3), ("4", 4), ("sure", 5)], value=3,
            description="Confidence")
        options = []
        for position, image_id in enumerate(trial.queries):
            button = self._button(f"This one ({position + 1})", position, trial,
                                  "wb-study-choice")
            options.append(widgets.VBox([_image(self.engine, self.token, image_id,
                                                self.image_width * 2), button]))
        return widgets.VBox([widgets.HBox(options), self.confidence])

    def _buttons(self, labels, values, trial, css_class) -> widgets.HBox:
        return widgets.HBox([self._button(label, value, trial, css_class)
                             for label, value in zip(labels, values)])

    def _button(self, label: str, value: int, trial: study.ShownTrial,
                css_class: str) -> widgets.Button:
        button = widgets.Button(description=label).add_class(css_class)
        button.on_click(self.error.guard(lambda _b: self.answer(trial.trial_id, value)))
        return button

    def answer(self, trial_id: int, value: int) -> None:
        """Record ``value`` for ``trial_id`` (committed), then show the next trial. A click on a
        trial that is no longer current is ignored (the database refuses it)."""
        if self.trial is None or trial_id != self.trial.trial_id:
            return
        confidence = self.confidence.value if self.trial.task == "forced_choice" else None
        seconds = min(time.monotonic() - self._shown_at, study.MAX_SECONDS)
        study.record_answer(self.engine, self.token, trial_id, value, confidence, seconds)
        self.error.clear()
        self.show_current()


class ResearcherApp(widgets.VBox):
    """Participant links and the results of one study: accuracy and ratings per basis with
    their intervals, and a test of the first two bases against each other."""

    def __init__(self, engine: Engine, study_id: int, base_url: str = "",
                 link: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.add_class("wb-study-researcher")
        self.engine, self.study_id = engine, study_id
        self.link = link or (lambda token: f"{base_url}?participant={token}")
        self.error = ErrorArea()
        self.links = widgets.HTML().add_class("wb-study-links")
        self.table = widgets.HTML().add_class("wb-study-table")
        self.figure = go.FigureWidget()
        new_link = widgets.Button(description="New participant link")
        new_link.on_click(self.error.guard(lambda _b: self.add_participant()))
        refresh = widgets.Button(description="Refresh results")
        refresh.on_click(self.error.guard(lambda _b: self.refresh()))
        self.tokens: list[str] = []
        self._controls = widgets.HBox([new_link, refresh])
        self.children = [self._controls, self.links, self.table, self.error]
        self.error.guard(self.refresh)()

    def add_participant(self) -> str:
        token = study.join(self.engine, self.study_id)
        self.tokens.append(token)
        self.links.value = "<br>".join(
            f'<a href="{html.escape(self.link(t))}" target="_blank">{html.escape(self.link(t))}'
            "</a>" for t in self.tokens)
        return token

    def refresh(self) -> None:
        results = study_results(self.engine, self.study_id)
        if results.empty:
            self.table.value = "<i>No answers yet.</i>"
            return
        self.table.value = results.round(3).to_html(index=False)
        bases = list(dict.fromkeys(results["basis"]))
        figure = go.Figure()
        for task in dict.fromkeys(results["task"]):
            part = results[results["task"] == task]
            figure.add_bar(x=part["basis"], y=part["score"], name=task,
                           error_y=dict(type="data", symmetric=False,
                                        array=part["high"] - part["score"],
                                        arrayminus=part["score"] - part["low"]))
        title = "Score per basis (accuracy; mean rating), 95% intervals"
        if len(bases) >= 2:
            try:
                test = compare_bases(self.engine, self.study_id, bases[0], bases[1])
                title += (f"; {bases[0]} - {bases[1]} accuracy: {test['difference']:+.2f}, "
                          f"p = {test['p_value']:.3g} ({test['participants']} participants)")
            except ValueError as reason:
                title += f" ({reason})"
        figure.update_layout(title=title, barmode="group", height=380)
        with self.figure.batch_update():
            self.figure.data = []
            self.figure.add_traces(figure.data)
            self.figure.layout = figure.layout
        # shown once there are answers (a batch export of an empty study has no figure)
        self.children = [self._controls, self.links, self.table, self.figure, self.error]
