"""The presets' lesson blocks (issue 11): every lesson of the curriculum has a preset, and every step's button works.

A step's button edits the document (``apply``), loads the lesson's last run (``load_from_last_run``),
starts side-by-side runs (``compare``) or asks for an on-demand view (``probe``). The schema refuses a
path that names no field and a step that leaves an invalid document; these tests check that, and that
every document a button can produce builds a network that fits its data.
"""

from __future__ import annotations

import math
import re

import pydantic
import pytest
from lesson_helpers import preset, step_docs

from server import live
from server.api.ws import PROBE_ARGS
from server.builder import infer_shapes
from server.datasets.catalog import describe_data
from server.lessons.guide import compare_documents, step_document
from server.presets import MODELS_DIR
from server.schemas import LESSON_LAST_RUN, Experiment, LessonChange, apply_changes

PRESETS = sorted(p.stem for p in MODELS_DIR.glob("*.json"))
CURRICULUM = range(1, 22)  # shared/CURRICULUM.md has 21 lessons


def lessons_section() -> str:
    text = (MODELS_DIR / "README.md").read_text(encoding="utf-8")
    start = text.index("## Lessons: which preset teaches what")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_every_preset_teaches_a_lesson_and_every_lesson_has_a_preset():
    numbers = {stem: preset(stem).lesson for stem in PRESETS}
    assert all(lesson is not None for lesson in numbers.values()), [s for s, lesson in numbers.items() if lesson is None]
    assert {lesson.number for lesson in numbers.values()} == set(CURRICULUM)


def test_the_readme_maps_lessons_1_to_21_to_the_presets_that_teach_them():
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| (.+) \|$", lessons_section(), re.M)
    assert [int(number) for number, _ in rows] == list(CURRICULUM)
    listed = []
    for number, cell in rows:
        stems = re.findall(r"`(\w+)\.json`", cell)
        assert stems, f"lesson {number} lists no preset"
        for stem in stems:
            assert preset(stem).lesson.number == int(number), f"{stem}.json teaches lesson {preset(stem).lesson.number}"
        listed += stems
    assert sorted(listed) == PRESETS


def check_builds(document: Experiment, where: str) -> None:
    """The document's network builds for its data and ends with as many outputs as the data has classes."""
    data = describe_data(document.data)
    summary = infer_shapes(document.network, data.input_shape, data.num_classes)
    outputs = math.prod(summary.output_shape)
    assert outputs == data.num_classes or (outputs == 1 and data.num_classes == 2), where
    names = {layer.name for layer in document.network.layers}
    assert set(document.train.freeze) <= names, where
    if document.train.init_from is not None and document.train.init_from.layers:
        assert set(document.train.init_from.layers) <= names, where


@pytest.mark.parametrize("stem", PRESETS)
def test_every_button_of_every_step_leaves_a_network_that_fits_its_data(stem):
    documents = step_docs(stem)
    lesson = documents[0].lesson
    for k, document in enumerate(documents):
        check_builds(document, f"{stem} after step {k}")
    for k, step in enumerate(lesson.steps, start=1):
        if step.compare is None:
            continue
        runs = compare_documents(documents[k], step.compare)
        assert len(runs) == len(step.compare.values)
        for run, label in zip(runs, step.compare.labels):
            check_builds(run, f"{stem} step {k}, {label}")
            assert run.train.seed == documents[k].train.seed  # same initial weights and batches
            assert label in run.name


@pytest.mark.parametrize("stem", [s for s in PRESETS if any(step.probe for step in preset(s).lesson.steps)])
def test_every_probe_a_step_asks_for_is_an_on_demand_view_with_valid_arguments(stem):
    documents = step_docs(stem)
    for k, step in enumerate(documents[0].lesson.steps, start=1):
        if step.probe is None:
            continue
        view = live.VIEWS.get(step.probe.view)
        assert view is not None and view.compute is not None, f"step {k}: {step.probe.view!r} is not an on-demand view"
        # The page sends the args as `probe` command fields; the websocket forwards them, renamed for the runner.
        assert set(step.probe.args) <= set(PROBE_ARGS), f"step {k}: the websocket drops {set(step.probe.args) - set(PROBE_ARGS)}"
        view.check_arguments({PROBE_ARGS[key]: value for key, value in step.probe.args.items()})
        if view.kinds is not None:
            assert describe_data(documents[k].data).kind in view.kinds, f"step {k}: {view.name} on the wrong data"


# ---------------------------------------------------------------------------
# What the schema refuses
# ---------------------------------------------------------------------------


def with_steps(*steps: dict) -> dict:
    document = preset("spiral_mlp").model_dump(mode="json", exclude={"lesson"})
    document["lesson"] = {"number": 2, "title": "t", "steps": list(steps)}
    return document


@pytest.mark.parametrize("change, message", [
    ({"path": "train.optimizer.momentum", "value": 0.9}, r"lesson step 2: 'train.optimizer.momentum': train.optimizer "
                                                         r"has no field 'momentum' \(it has kind, lr, beta1"),
    ({"path": "network.layers.2.out_features", "value": 8}, r"network.layers is a list of 2 items; '2' is not an index"),
    ({"path": "network.layers.0.out_features", "value": "many"}, r"lesson step 2 leaves an invalid document "
                                                                 r"\(network.layers.0.linear.out_features: Input should be"),
    ({"path": "train.batch_size", "value": 0}, r"lesson step 2 leaves an invalid document"),
])
def test_a_step_whose_change_names_no_field_or_breaks_the_document_is_refused(change, message):
    document = with_steps({"text": "Press Train."}, {"text": "Change it.", "apply": [change]})
    with pytest.raises(pydantic.ValidationError, match=message):
        Experiment.model_validate(document)


def test_steps_apply_in_order_so_a_field_may_appear_after_an_earlier_step_creates_it():
    document = with_steps(
        {"text": "Momentum.", "apply": [{"path": "train.optimizer", "value": {"kind": "momentum", "lr": 0.1}}]},
        {"text": "More of it.", "apply": [{"path": "train.optimizer.momentum", "value": 0.99}]},
    )
    assert Experiment.model_validate(document).lesson.steps[1].apply[0].value == 0.99
    document["lesson"]["steps"].reverse()
    with pytest.raises(pydantic.ValidationError, match="has no field 'momentum'"):
        Experiment.model_validate(document)


def test_compare_needs_a_label_per_value_and_values_that_validate():
    with pytest.raises(pydantic.ValidationError, match="3 values but 2 labels"):
        Experiment.model_validate(with_steps(
            {"text": "Race.", "compare": {"path": "train.batch_size", "values": [1, 32, "full"], "labels": ["a", "b"]}}))
    with pytest.raises(pydantic.ValidationError, match="lesson step 1 leaves an invalid document"):
        Experiment.model_validate(with_steps(
            {"text": "Race.", "compare": {"path": "train.batch_size", "values": [1, -5], "labels": ["a", "b"]}}))


def test_loading_the_last_run_names_layers_the_network_has():
    with pytest.raises(pydantic.ValidationError, match="load_from_last_run names 'conv9'"):
        Experiment.model_validate(with_steps({"text": "Transfer.", "load_from_last_run": ["hidden", "conv9"]}))


def test_apply_changes_copies_the_document_and_replaces_whole_objects():
    document = preset("spiral_mlp").model_dump(mode="json", exclude={"lesson"})
    changed = apply_changes(document, [LessonChange(path="train.optimizer", value={"kind": "sgd", "lr": 0.5})])
    assert changed["train"]["optimizer"] == {"kind": "sgd", "lr": 0.5}
    assert document["train"]["optimizer"]["kind"] == "adam"  # the input is untouched


def test_a_step_that_loads_the_last_run_gets_its_id_filled_in_and_later_steps_keep_it():
    experiment = preset("transfer_learning")
    k = next(i for i, step in enumerate(experiment.lesson.steps, start=1) if step.load_from_last_run)
    with pytest.raises(ValueError, match="pass its id as last_run_id"):
        step_document(experiment, k)
    document = step_document(experiment, k, last_run_id="a1b2c3")
    assert document.train.init_from.run_id == "a1b2c3"
    assert document.train.init_from.layers == experiment.lesson.steps[k - 1].load_from_last_run
    assert step_document(experiment, k + 1, last_run_id="a1b2c3").train.init_from.run_id == "a1b2c3"
    assert LESSON_LAST_RUN not in step_document(experiment, k + 1, last_run_id="a1b2c3").model_dump_json()
    with pytest.raises(ValueError, match="steps 1..4, not 9"):
        step_document(experiment, 9)
