"""Hook recorders: what each named layer produced, and the loss gradient that came back.

Probes never keep hooks on a model between probe steps: a recorder is created
for one forward (and backward) pass and released right after, so training
without probes runs the bare model at full speed. Hooks own their handles
(as in pytorch-grad-cam's ``ActivationsAndGradients``), and ``release()``
removes every one of them; ``__exit__`` calls it and never swallows an
exception.

Typical use::

    with ActivationRecorder(model.blocks) as rec:
        loss = loss_fn(model(x), y)
        loss.backward()
    rec.activations["conv1"]   # (N, C, H, W), detached
    rec.output_grads["conv1"]  # d loss / d output, same shape
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["ActivationRecorder", "evaluating", "first_tensor", "no_grad_eval"]


def first_tensor(output: Any) -> Tensor | None:
    """The tensor a module produced: the output itself, or the first tensor of a tuple/list output."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, Tensor):
                return item
    return None


class ActivationRecorder:
    """Records each named layer's output during a forward pass and, optionally, d loss/d output.

    The hooks are registered when the recorder is created and removed by
    :meth:`release` (or by leaving the ``with`` block); a recorder that is never
    released stays hooked (the modules hold it), so always use ``with``. The
    recorded tensors stay readable after the release; :meth:`clear` drops them.

    Args:
        layers: name -> module whose output is recorded (e.g. ``GraphModel.blocks``:
            a LayerBlock's output is its post-activation value).
        grads: also register a tensor hook on each output that requires grad, so a
            later ``backward()`` fills :attr:`output_grads`. Outputs computed under
            ``torch.no_grad()`` (or from frozen layers fed by data) have no gradient
            and are skipped silently.
        detach: store ``output.detach()`` (the default; keeps no autograd graph
            alive, but shares storage with the output, so an in-place op applied to
            the output later would show in the recording; no builder layer does one).
            ``detach=False`` stores the live output, for probes that differentiate
            with respect to an activation (Grad-CAM, saliency).
        training_only: record only calls made in training mode. A probed training
            step may end with an evaluation pass (in eval mode) on the updated
            weights; this keeps the training batch's activations instead of the
            evaluation's.

    Attributes:
        activations: name -> output of the last call of that module, e.g. ``(N, F)``
            or ``(N, C, H, W)``. A module called twice in one forward keeps the last.
        output_grads: name -> d loss / d output, same shape as the activation.
    """

    def __init__(
        self, layers: Mapping[str, nn.Module], *, grads: bool = True, detach: bool = True, training_only: bool = False
    ) -> None:
        self.grads = grads
        self.detach = detach
        self.training_only = training_only
        self.activations: dict[str, Tensor] = {}
        self.output_grads: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = []
        for name, module in layers.items():
            self._handles.append(module.register_forward_hook(self._forward_hook(name)))

    # The hooks are closures over ``name`` and a bound method of ``self``: the
    # module holds the closure only until release(), so a released recorder is
    # collectable (tested: no growth over hundreds of cycles).
    def _forward_hook(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if self.training_only and not module.training:
                return
            out = first_tensor(output)
            if out is None:
                return
            self.activations[name] = out.detach() if self.detach else out
            if self.grads and out.requires_grad:
                self._handles.append(out.register_hook(self._grad_hook(name)))

        return hook

    def _grad_hook(self, name: str):
        def hook(grad: Tensor) -> None:
            self.output_grads[name] = grad.detach() if self.detach else grad

        return hook

    @property
    def handles_count(self) -> int:
        """How many hooks (module forward hooks and tensor gradient hooks) are still registered."""
        return len(self._handles)

    def release(self) -> None:
        """Remove every hook this recorder registered; idempotent. The recordings stay."""
        while self._handles:
            self._handles.pop().remove()

    def clear(self) -> None:
        """Drop the recorded tensors (the hooks, if any remain, keep recording)."""
        self.activations.clear()
        self.output_grads.clear()

    def __enter__(self) -> "ActivationRecorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Returning None (falsy) lets any exception from the block propagate.
        self.release()


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore each submodule's own mode.

    Restoring per module (rather than ``model.train(was_training)``) keeps a
    deliberately frozen submodule (e.g. a BatchNorm held in eval) as it was.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


@contextlib.contextmanager
def no_grad_eval(model: nn.Module) -> Iterator[nn.Module]:
    """``evaluating(model)`` under ``torch.no_grad()``: the setting of every read-only probe pass."""
    with evaluating(model), torch.no_grad():
        yield model
