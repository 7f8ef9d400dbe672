"""A lesson preset's guided steps as the documents their buttons produce (what the page does, in Python).

The lesson block is part of the experiment document (``schemas.LessonSpec``); the schema
checks that every step's changes apply. This module turns a step into the runs it starts:

- ``step_document``: the document after pressing the buttons of steps 1..k in order, with
  ``train.init_from`` pointing at a real run where a step loaded the lesson's last run;
- ``compare_documents``: the side-by-side runs of a step's ``compare`` (one per value, same seed,
  so the same initial weights and batch order: only the compared field differs).
"""

from __future__ import annotations

from server.schemas import LESSON_LAST_RUN, Experiment, LessonChange, LessonCompare, apply_changes, lesson_documents


def step_document(experiment: Experiment, step: int, *, last_run_id: str | None = None) -> Experiment:
    """The document once the buttons of steps 1..``step`` (1-based) have been pressed in order.

    ``last_run_id``: the run the lesson trained last, which a step with ``load_from_last_run``
    starts from (required for such a step; ignored otherwise).
    """
    if experiment.lesson is None:
        raise ValueError(f"{experiment.name!r} has no lesson block")
    count = len(experiment.lesson.steps)
    if not 1 <= step <= count:
        raise ValueError(f"the lesson has steps 1..{count}, not {step}")
    document = lesson_documents(experiment)[step - 1]
    init_from = document.train.init_from
    if init_from is not None and init_from.run_id == LESSON_LAST_RUN:
        if last_run_id is None:
            raise ValueError(f"step {step} starts from the weights of the lesson's last run: pass its id as last_run_id")
        document = document.model_copy(deep=True)
        document.train.init_from.run_id = last_run_id  # type: ignore[union-attr]
    return document


def compare_documents(document: Experiment, compare: LessonCompare) -> list[Experiment]:
    """One document per value of ``compare.path``, named "<name> — <label>", everything else (the seed too) equal."""
    base = document.model_dump(mode="json", exclude={"lesson"})
    runs = []
    for value, label in zip(compare.values, compare.labels):
        changed = apply_changes(base, [LessonChange(path=compare.path, value=value)])
        changed["name"] = f"{document.name} — {label}"[:200]
        runs.append(Experiment.model_validate(changed))
    return runs


__all__ = ["compare_documents", "step_document"]
