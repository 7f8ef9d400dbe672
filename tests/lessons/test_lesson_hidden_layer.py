"""Lesson 2: one hidden layer of tanh units separates the two spiral arms; make it narrower and capacity runs out.

The spiral_mlp preset as it ships, and the same document with its hidden layer cut to 2 units, each trained for
the same number of steps; the accuracies are recomputed in plain PyTorch from the trained weights (the oracle).
"""

from __future__ import annotations

import torch
from lesson_helpers import preset, train

STEPS = 1500  # about a second of training each on a laptop CPU


def torch_val_accuracy(run) -> float:
    """Validation accuracy of the trained weights, by a plain forward pass of the model over the split."""
    model = run.trainer.model
    data = run.trainer.dataset
    model.eval()
    with torch.no_grad():
        predicted = model(data.x_val).argmax(dim=1)
    return float((predicted == data.y_val).float().mean())


def test_one_hidden_layer_separates_the_spiral_and_a_narrow_one_runs_out_of_capacity():
    document = preset("spiral_mlp")
    assert [layer.kind for layer in document.network.layers] == ["linear", "linear"]  # one hidden layer
    narrow = document.model_copy(deep=True)
    narrow.network.layers[0].out_features = 2

    wide_run, narrow_run = train(document, STEPS), train(narrow, STEPS)
    wide_acc, narrow_acc = torch_val_accuracy(wide_run), torch_val_accuracy(narrow_run)
    assert abs(wide_acc - wide_run.val_acc()) < 1e-6 and abs(narrow_acc - narrow_run.val_acc()) < 1e-6
    assert wide_acc >= 0.95, wide_acc  # 32 tanh units: the arms are separated
    assert narrow_acc <= 0.75, narrow_acc  # 2 units draw at most a couple of straight-ish cuts through the arms
    assert min(wide_run.losses[-100:]) < 0.5 * min(narrow_run.losses[-100:])
