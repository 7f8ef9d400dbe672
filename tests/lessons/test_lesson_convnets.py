"""Transfer learning (19) and fooling a convnet (20), proven with PyTorch on one LeNet-5 trained on MNIST.

Both lesson presets start from the same document (the classic LeNet-5: tanh, average pooling), so the
module trains it once: 4 epochs of momentum SGD, about 6 s on one core.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lesson_helpers import preset, train

from server import protocol
from server.export.weights import document_state_dict
from server.lessons.guide import step_document
from server.messages import validate_message
from server.probes.adversarial import accuracy_vs_epsilon, fgsm, fgsm_perturb
from server.runner import RunSession

EPSILON = 0.1  # a tenth of the pixel range


@pytest.fixture(scope="module")
def lenet():
    """The fool_lenet preset trained to its end: (its Run, its weights under document names)."""
    run = train(preset("fool_lenet"))
    return run, document_state_dict(run.trainer.model)


def test_both_lessons_start_from_the_same_mnist_lenet():
    own = {"name", "description", "lesson"}
    assert preset("transfer_learning").model_dump(exclude=own) == preset("fool_lenet").model_dump(exclude=own)


# ---------------------------------------------------------------------------
# Lesson 20: FGSM
# ---------------------------------------------------------------------------


def raw_validation(trainer):
    data = trainer.dataset
    return data.denormalize(data.x_val), data.y_val


def test_fgsm_at_0_1_takes_lenet5_from_over_95_to_under_30_percent(lenet):
    run, _ = lenet
    trainer = run.trainer
    clean = trainer.evaluate()
    assert clean.accuracy >= 0.95
    raw, labels = raw_validation(trainer)
    sweep = accuracy_vs_epsilon(trainer.eval_model(), raw, labels, [0.0, EPSILON], preprocess=trainer.dataset.normalize)
    assert sweep.n == clean.n and sweep.accuracy[0] == pytest.approx(clean.accuracy)
    assert sweep.accuracy[1] <= 0.30, sweep.accuracy
    # The oracle: FGSM written out in PyTorch, on the preprocessed input's raw pixels.
    model = trainer.eval_model().eval()
    x = raw.clone().requires_grad_(True)
    loss = F.cross_entropy(model(trainer.dataset.normalize(x)), labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    with torch.no_grad():
        adversarial = (raw + EPSILON * grad.sign()).clamp(0, 1)
        expected = (model(trainer.dataset.normalize(adversarial)).argmax(1) == labels).float().mean().item()
    model.train()
    assert sweep.accuracy[1] == pytest.approx(expected, abs=1e-6)


def test_fgsm_moves_no_pixel_by_more_than_epsilon_and_keeps_images_valid(lenet):
    run, _ = lenet
    trainer = run.trainer
    raw, labels = raw_validation(trainer)
    adversarial = fgsm_perturb(trainer.model, raw[:64], labels[:64], EPSILON, preprocess=trainer.dataset.normalize)
    assert (adversarial - raw[:64]).abs().max() <= EPSILON + 1e-6
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    assert trainer.model.training  # the probe ran in eval mode and gave the model back as it found it
    assert all(p.requires_grad for p in trainer.model.parameters())


def test_a_targeted_attack_pushes_towards_its_target(lenet):
    run, _ = lenet
    trainer = run.trainer
    raw, labels = raw_validation(trainer)
    for index in range(12):
        target = (int(labels[index]) + 1) % 10
        example = fgsm(trainer.model, raw[index:index + 1], int(labels[index]), EPSILON, target=target,
                       preprocess=trainer.dataset.normalize)
        assert example.adversarial_probs[target] > example.original_probs[target], index
        assert example.fooled == (example.adversarial_predicted == target)


def test_the_fgsm_views_send_valid_messages_from_a_run(lenet):
    _, weights = lenet
    session = RunSession(preset("fool_lenet"), run_id="fool", device="cpu", init_weights=weights)
    stamper = protocol.Stamper("fool")
    (message,) = session.probe("fgsm", index=0, epsilon=EPSILON)
    validate_message(stamper.stamp(message))
    assert message["label"] == int(session.dataset.y_val[0]) and message["target"] is None
    assert message["fooled"] == (message["adversarial_prediction"]["predicted"] != message["label"])
    original, delta, adversarial = (protocol.decode_image(message[k]).astype(int)
                                    for k in ("original", "perturbation", "adversarial"))
    assert original.shape == delta.shape == adversarial.shape == (28, 28)
    assert np.abs(adversarial - original).max() <= round(255 * EPSILON) + 1  # invisible: at most 26 grey levels
    # The perturbation image is the difference stretched so that +-epsilon spans the grey range (128 = unchanged);
    # both images are rounded to whole grey levels, so the stretched difference is known to within 5 levels.
    stretched = 127.5 + (adversarial - original) / (255 * EPSILON) * 127.5
    assert np.abs(delta - stretched).max() <= 6
    assert abs(sum(message["original_prediction"]["probs"]) - 1) < 1e-4

    (targeted,) = session.probe("fgsm", index=0, target=3, epsilon=EPSILON)
    validate_message(stamper.stamp(targeted))
    assert targeted["target"] == 3

    (sweep,) = session.probe("fgsm_sweep")
    validate_message(stamper.stamp(sweep))
    assert sweep["epsilons"] == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3] and sweep["n"] == len(session.dataset.y_val)
    assert sweep["accuracy"][0] >= 0.95 and sweep["accuracy"][2] <= 0.30 and sweep["accuracy"][-1] < 0.1

    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\]"):
        session.probe("fgsm", epsilon=1.5)
    with pytest.raises(ValueError, match="out of range"):
        session.probe("fgsm", index=10_000)
    with pytest.raises(ValueError, match="fgsm: epsilon must be a float"):
        session.probe("fgsm", epsilon="0.1")
    session.close()


def test_fgsm_needs_image_data():
    session = RunSession(preset("spiral_mlp"), run_id="points", device="cpu")
    with pytest.raises(ValueError, match="fgsm needs image data"):
        session.probe("fgsm")
    session.close()


# ---------------------------------------------------------------------------
# Lesson 19: MNIST's convolutions, frozen or fine-tuned, beat training from scratch on 100 drawn shapes
# ---------------------------------------------------------------------------


def test_fine_tuning_from_mnist_weights_beats_training_from_scratch_at_an_equal_step_count(lenet):
    _, weights = lenet
    experiment = preset("transfer_learning")
    frozen_doc, finetune_doc, scratch_doc = (step_document(experiment, k, last_run_id="mnist-run") for k in (2, 3, 4))
    assert frozen_doc.train.init_from.layers == ["conv1", "conv2"] and frozen_doc.train.freeze == ["conv1", "conv2"]
    assert finetune_doc.train.init_from is not None and finetune_doc.train.freeze == []
    assert scratch_doc.train.init_from is None
    frozen = train(frozen_doc, init_weights=weights)
    finetuned = train(finetune_doc, init_weights=weights)
    scratch = train(scratch_doc)
    assert frozen.trainer.n_train == 100 and frozen.trainer.dataset.num_classes == 4
    assert len(frozen.losses) == len(finetuned.losses) == len(scratch.losses) == 60
    # Frozen layers kept MNIST's weights exactly; fine-tuned ones moved from them.
    conv1 = weights["conv1.weight"]
    assert torch.equal(frozen.trainer.model.blocks["conv1"].core.weight.detach(), conv1)
    assert not torch.equal(finetuned.trainer.model.blocks["conv1"].core.weight.detach(), conv1)
    accuracy = {name: run.val_acc() for name, run in (("frozen", frozen), ("finetuned", finetuned), ("scratch", scratch))}
    assert accuracy["finetuned"] > accuracy["scratch"] + 0.05, accuracy
    assert accuracy["frozen"] > accuracy["scratch"] + 0.05, accuracy


def test_fgsm_on_a_one_logit_linear_model_moves_each_pixel_against_its_weights_sign():
    """The closed form: for z = w.x + b and true class 1, the loss grows fastest along -sign(w) (and along
    +sign(w) for class 0); a targeted attack towards class 1 moves along +sign(w). Clipped to [0, 1]."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))
    generator = torch.Generator().manual_seed(0)
    raw = torch.rand(8, 1, 4, 4, generator=generator)
    labels = torch.tensor([0, 1] * 4)
    sign = model[1].weight.detach().sign().reshape(1, 1, 4, 4)
    away = fgsm_perturb(model, raw, labels, EPSILON)
    expected = (raw + EPSILON * torch.where(labels.reshape(-1, 1, 1, 1) == 1, -sign, sign)).clamp(0, 1)
    assert torch.allclose(away, expected)
    towards_one = fgsm_perturb(model, raw, labels, EPSILON, targets=torch.ones(8, dtype=torch.long))
    assert torch.allclose(towards_one, (raw + EPSILON * sign).clamp(0, 1))
    example = fgsm(model, raw[:1], 0, EPSILON, target=1)
    assert len(example.original_probs) == 2 and example.adversarial_probs[1] > example.original_probs[1]
