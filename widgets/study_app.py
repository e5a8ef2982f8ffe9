"""The interpretability study as an app: a participant's page and the researcher's page.

Both pages only call ``workbench.study`` (every rule lives there). The participant's page shows
the trial the database says is current; each trial gets new buttons bound to its trial id, so
a late or repeated click can only reach the trial it was made on, which the database then
refuses (nothing is written). An answer is committed before the next trial is drawn.

The notebook ``05_interpretability_study`` serves both: a page opened with
``?participant=<token>`` is that participant's, any other the researcher's. Participants'
links carry only their own unguessable token, so the study is served without Voilà's token
(which would cover every page); the researcher's page is guarded by the app instead
(``researcher_allowed``): where a secret is set (``workbench serve`` sets one on a non-loopback
address), the page shows nothing of the study without ``?researcher=<secret>``.

A participant can answer with the keyboard (``keyboard_shortcuts``): 1 / 2 or the left / right
arrow for the first / second query image, 1-5 for a rating. A key only clicks the button on the
page, so the same rules apply.
"""
from __future__ import annotations

import base64
import hmac
import html
import os
import time
import urllib.parse
from collections.abc import Callable

import ipywidgets as widgets
from IPython.display import HTML
from sqlalchemy.engine import Engine

from widgets._common import ErrorArea
from workbench import study

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


def researcher_allowed(environ: dict | None = None) -> bool:
    """Whether the page may show the researcher's view: always where no researcher secret is
    set (``study.RESEARCHER_SECRET_VARIABLE``), else only with ``?researcher=<secret>`` in the
    page's query string (compared in constant time)."""
    env = os.environ if environ is None else environ
    secret = env.get(study.RESEARCHER_SECRET_VARIABLE, "")
    if not secret:
        return True
    given = urllib.parse.parse_qs(env.get("QUERY_STRING", "")).get("researcher", [""])[0]
    return hmac.compare_digest(given.encode(), secret.encode())


REFUSAL = ('<p class="wb-study-refused">This study page needs a participant link, or the '
           "researcher's link (<code>?researcher=...</code>).</p>")

#: keys to buttons: the query images' buttons (``wb-study-choice``) or the ratings'
#: (``wb-study-rating``), whichever the current trial shows; typing in a field is left alone
KEYBOARD_SCRIPT = """<script>
(function () {
  if (window.wbStudyKeys) { return; }
  window.wbStudyKeys = true;
  var choiceKeys = {"1": 0, "ArrowLeft": 0, "2": 1, "ArrowRight": 1};
  document.addEventListener("keydown", function (event) {
    var target = event.target && event.target.tagName;
    if (event.repeat || event.ctrlKey || event.altKey || event.metaKey
        || target === "INPUT" || target === "TEXTAREA") { return; }
    var choices = document.querySelectorAll(".wb-study-choice");
    var buttons = choices.length ? choices : document.querySelectorAll(".wb-study-rating");
    var index = choices.length ? choiceKeys[event.key] : "12345".indexOf(event.key);
    if (index === undefined || index < 0 || index >= buttons.length) { return; }
    event.preventDefault();
    buttons[index].click();
  });
})();
</script>
<p class="wb-study-keys"><small>Keys: 1 / 2 (or &larr; / &rarr;) pick an image; 1-5 give a
rating.</small></p>"""


def keyboard_shortcuts() -> HTML:
    """The page's keyboard answers (``KEYBOARD_SCRIPT``), displayed once beside the app."""
    return HTML(KEYBOARD_SCRIPT)


def page_url_from_environment(environ: dict | None = None) -> str:
    """The URL of the page the kernel serves (Voilà passes ``SERVER_NAME``, ``SERVER_PORT``
    and ``SCRIPT_NAME``), or "" outside Voilà."""
    env = os.environ if environ is None else environ
    if not env.get("SERVER_NAME"):
        return ""
    port = f":{env['SERVER_PORT']}" if env.get("SERVER_PORT") else ""
    return f"http://{env['SERVER_NAME']}{port}{env.get('SCRIPT_NAME', '')}"


def _pictures(pngs: list[bytes], width: int) -> str:
    """PNG images as one line of ``<img>`` tags (one HTML widget draws a trial's images: fewer
    widgets to create per trial, a faster page)."""
    return "".join(
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" width="{width}" '
        'style="margin:2px; image-rendering:pixelated" alt="">' for png in pngs)


class ParticipantApp(widgets.VBox):
    """One participant's trials, one at a time, until all are answered."""

    def __init__(self, engine: Engine, token: str, image_width: int = 96) -> None:
        super().__init__()
        self.add_class("wb-study-participant")
        self.engine, self.token, self.image_width = engine, token, image_width
        self.error = ErrorArea()
        self.progress = widgets.HTML().add_class("wb-study-progress")
        self.references = widgets.HTML().add_class("wb-study-references")
        self.prompt = widgets.HTML()
        self.queries = widgets.HTML().add_class("wb-study-queries")
        self.confidence = widgets.ToggleButtons(
            options=[("unsure", 1), ("2", 2), ("3", 3), ("4", 4), ("sure", 5)], value=3,
            description="Confidence")
        self.body = widgets.VBox()
        # one layout and style for every trial's buttons: a new trial creates only its buttons
        # and their box (3 widget models for a choice, not 8), for a quick next page
        self._button_layout, self._button_style = widgets.Layout(), widgets.ButtonStyle()
        self._box_layout = widgets.Layout()
        self.children = [self.progress, self.body, self.error]
        self.trial: study.ShownTrial | None = None
        self._shown_at = time.monotonic()
        self.error.guard(self.show_current)()

    def show_current(self) -> None:
        """Draw the trial the database says is current (or the end). The images, prompt and
        confidence stay the same widgets; the answer buttons are new for each trial."""
        self.trial = study.current_trial(self.engine, self.token)
        answered, total = study.progress(self.engine, self.token)
        if self.trial is None:
            self.progress.value = f"<b>All {total} trials done. Thank you!</b>"
            self.body.children = [widgets.HTML("You can close this page.")
                                  .add_class("wb-study-done")]
            return
        trial = self.trial
        pngs = study.images_png(self.engine, self.token, trial.references + trial.queries)
        self.references.value = _pictures(pngs[:len(trial.references)], self.image_width)
        self.prompt.value = f"<p>{html.escape(PROMPTS[trial.task])}</p>"
        if trial.task == "forced_choice":
            self.queries.value = _pictures(pngs[len(trial.references):], self.image_width * 2)
            self.confidence.value = 3
            answers = self._buttons([f"This one ({i + 1})" for i in range(len(trial.queries))],
                                    range(len(trial.queries)), trial, "wb-study-choice")
            shown = [self.references, self.prompt, self.queries, answers, self.confidence]
        else:
            answers = self._buttons([str(v) for v in range(1, 6)], range(1, 6), trial,
                                    "wb-study-rating")
            shown = [self.references, self.prompt, answers]
        # the position names the answers (pages and tests tell a new trial's buttons apart)
        answers.add_class(f"wb-study-position-{trial.position}")
        self.body.children = shown
        self.progress.value = f"Trial {answered + 1} of {total}"
        self._shown_at = time.monotonic()

    def _buttons(self, labels, values, trial, css_class) -> widgets.HBox:
        return widgets.HBox([self._button(label, value, trial, css_class)
                             for label, value in zip(labels, values)], layout=self._box_layout)

    def _button(self, label: str, value: int, trial: study.ShownTrial,
                css_class: str) -> widgets.Button:
        button = widgets.Button(description=label, layout=self._button_layout,
                                style=self._button_style).add_class(css_class)
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
        import plotly.graph_objects as go  # here: the participant's page needs no plotly

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
        import plotly.graph_objects as go

        from workbench.study_results import compare_bases, study_results

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
