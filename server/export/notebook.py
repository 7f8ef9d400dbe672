"""Experiment -> a Jupyter notebook (nbformat 4): the PyTorch script's blocks, each explained, and plots.

The cells are the sections of :func:`server.export.pytorch_code.script_sections`
(one markdown cell explaining a block, then its code), so the notebook and the
script cannot disagree. The script's command-line ``main`` is replaced by a cell
that calls ``train()``, and one that plots the loss, accuracy and learning-rate
curves (with matplotlib when it is installed; otherwise it says so and prints
the figures).
"""

from __future__ import annotations

from pathlib import Path

from server import schemas
from server.export.pytorch_code import script_sections

_RUN = '''model, history = train()'''

_RUN_WITH_DATA = '''DATA_FILE_OVERRIDE = None  # the path of your data file, if it is not where DATA_FILE says
model, history = train(data_file=DATA_FILE_OVERRIDE)'''

_PLOTS = '''try:
    import matplotlib.pyplot as plt
except ImportError:  # the plots need matplotlib: pip install matplotlib
    plt = None
    print("matplotlib is not installed (pip install matplotlib); the curves in numbers:")
    for point in history["val"]:
        print(f"step {point['step']:6d}  validation loss {point['loss']:.4f}  accuracy {point['accuracy']:.3f}")
else:
    steps = range(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(15, 4))
    ax_loss.plot(steps, history["loss"], color="0.75", linewidth=0.8, label="training loss, per step")
    ax_loss.plot([p["step"] for p in history["train"]], [p["loss"] for p in history["train"]],
                 label="training loss, mean per interval")
    ax_loss.plot([p["step"] for p in history["val"]], [p["loss"] for p in history["val"]], "o-",
                 label="validation loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_acc.plot([p["step"] for p in history["train"]], [p["accuracy"] for p in history["train"]], label="training")
    ax_acc.plot([p["step"] for p in history["val"]], [p["accuracy"] for p in history["val"]], "o-",
                label="validation")
    ax_acc.set_xlabel("step")
    ax_acc.set_title("accuracy")
    ax_acc.legend()
    ax_lr.plot(steps, history["lr"])
    ax_lr.set_xlabel("step")
    ax_lr.set_title("learning rate")
    plt.tight_layout()
    plt.show()'''


def notebook_json(experiment: schemas.Experiment, *, run_id: str | None = None,
                  uploads_dir: Path | None = None, data_url: str | None = None) -> str:
    """The notebook as JSON text (nbformat 4, validated).

    Raises:
        ImportError: without nbformat (``check_format`` reports it first, with the fix).
        NetworkError / DataError: a document that cannot be built.
    """
    import nbformat
    from nbformat import v4

    sections = script_sections(experiment, run_id=run_id, uploads_dir=uploads_dir, filename="experiment.py",
                               data_url=data_url)
    cells = []
    for section in sections:
        if section.key == "main":
            continue
        if section.markdown:
            cells.append(v4.new_markdown_cell(section.markdown))
        code = section.code
        if section.key == "imports":
            # A notebook has no module docstring: the first markdown cell says it all.
            code = code.split('"""\n\n', 1)[1] if code.startswith('"""') else code
        cells.append(v4.new_code_cell(code))
    data_file = experiment.data.name == "mnist" or experiment.data.name.startswith("upload:")
    cells.append(v4.new_markdown_cell(
        "## Train\n\nThis runs the whole training as configured and prints the metrics as it goes. To try it "
        "quickly, pass `max_steps=50`."))
    cells.append(v4.new_code_cell(_RUN_WITH_DATA if data_file else _RUN))
    cells.append(v4.new_markdown_cell(
        "## Curves\n\nThe training loss of every step (grey), its mean over each logging interval, and the "
        "validation loss and accuracy at each evaluation; on the right, the learning rate each step used."))
    cells.append(v4.new_code_cell(_PLOTS))
    notebook = v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "dlplay": {"experiment": experiment.name, **({"run_id": run_id} if run_id else {})},
    })
    nbformat.validate(notebook)
    return nbformat.writes(notebook)


__all__ = ["notebook_json"]
