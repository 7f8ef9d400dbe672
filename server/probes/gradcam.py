"""Class activation maps from a convolutional layer: Grad-CAM (Selvaraju et al. 2017).

A CAM answers "where in the image is the evidence for this class?" using one
layer's feature maps A_k (K channels, h x w) and the gradients of the class
score with respect to them: cam = ReLU(sum_k w_k A_k). The methods differ only
in how the channel weights w_k are computed, so each is a small subclass of
``BaseCAM`` overriding ``channel_weights`` (pytorch-grad-cam's layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from server.probes._attribution import (
    OutputCapture,
    check_single_example,
    class_score,
    inference_state,
    resolve_target,
    scale_to_unit,
    upsample,
)


@dataclass
class CAM:
    """A class activation map for one image.

    map: float32 (H, W) in [0, 1]: the CAM upsampled bilinearly to the input
        size and divided by its maximum (all zeros when there is no positive evidence).
    raw: float32 (h, w): the CAM at the layer's own resolution, after the ReLU, unscaled.
    layer: the block whose output was used.
    target: the class explained. predicted: the class the network predicts.
    """

    map: np.ndarray
    raw: np.ndarray
    layer: str
    target: int
    predicted: int


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the model's conv2d blocks, in forward (document) order.

    For a GraphModel these are the ``model.blocks`` of kind "conv2d"; for any
    other module, the names of its ``nn.Conv2d`` submodules.
    """
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.ModuleDict):
        return [name for name, block in blocks.items() if getattr(block, "kind", None) == "conv2d"]
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _layer_module(model: nn.Module, layer: str) -> nn.Module:
    """The module whose output is the feature map: a GraphModel block (post-activation), else a submodule."""
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.ModuleDict):
        if layer in blocks:
            return blocks[layer]
        names = list(blocks.keys())
    else:
        modules = dict(model.named_modules())
        if layer and layer in modules:
            return modules[layer]
        names = [n for n in modules if n]
    raise ValueError(
        f"unknown layer {layer!r} for Grad-CAM. Conv layers (the usual choice): {_listing(conv_layers(model))}; "
        f"all layers: {_listing(names)}"
    )


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "(none)"


class BaseCAM:
    """Gradient-weighted class activation maps from one layer; subclasses choose the channel weights.

    Args:
        model: maps (N, C, H, W) to logits (N, K), or (N, 1) for two classes.
        layer: name of the block whose output A (N, K, h, w) is used; default
            the last conv2d block. The last conv layer is the right default
            because it still has a spatial layout (h x w) while its channels are
            the most semantic of the network; the classic mistake is a layer
            after global pooling or flattening, which has no "where" left.
    """

    def __init__(self, model: nn.Module, layer: str | None = None):
        if layer is None:
            convs = conv_layers(model)
            if not convs:
                raise ValueError(
                    "this network has no conv2d layer, so there is no feature map to explain; "
                    "Grad-CAM needs a convolutional network (use saliency for an MLP)"
                )
            layer = convs[-1]
        self.model = model
        self.layer = layer
        self.module = _layer_module(model, layer)

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """Weights w_k of the K channels: (1, K, h, w), (1, K, h, w) -> (K,)."""
        raise NotImplementedError

    def activations_and_gradients(self, x: Tensor, target: int | None) -> tuple[Tensor, Tensor, int, int]:
        """Run ``x`` (1, C, H, W); return A (1, K, h, w), dS/dA (1, K, h, w), target, predicted."""
        check_single_example(x)
        if x.dim() != 4:
            raise ValueError(f"Grad-CAM needs an image input (1, C, H, W), got {tuple(x.shape)}")
        device = next(self.model.parameters(), x).device
        x = x.detach().to(device=device, dtype=torch.float32).requires_grad_(True)
        with inference_state(self.model), OutputCapture(self.module) as capture:
            logits = self.model(x)
            acts = capture.output
            if not isinstance(acts, Tensor) or acts.dim() != 4:
                shape = tuple(acts.shape) if isinstance(acts, Tensor) else type(acts).__name__
                raise ValueError(
                    f"layer {self.layer!r} outputs {shape}, not a (N, C, h, w) feature map: after global pooling "
                    f"or flattening there is no spatial layout left. Choose a conv layer: {_listing(conv_layers(self.model))}"
                )
            target, predicted = resolve_target(logits.detach(), target)
            score = class_score(logits, target)
            grads = None
            if acts.requires_grad:  # False only for a layer that does not depend on the input
                (grads,) = torch.autograd.grad(score, acts, allow_unused=True)  # None: a side branch the score ignores
            grads = torch.zeros_like(acts) if grads is None else grads
        return acts.detach(), grads.detach(), target, predicted

    def __call__(self, x: Tensor, target: int | None = None) -> CAM:
        """Explain ``target`` (default: the predicted class) for one image x (1, C, H, W)."""
        acts, grads, target, predicted = self.activations_and_gradients(x, target)
        weights = self.channel_weights(acts, grads)                      # (K,)
        raw = torch.relu((weights[:, None, None] * acts[0]).sum(dim=0))  # (h, w)
        heat = upsample(raw, tuple(x.shape[-2:]))
        return CAM(
            map=scale_to_unit(heat),
            raw=raw.cpu().numpy().astype(np.float32),
            layer=self.layer,
            target=target,
            predicted=predicted,
        )


class GradCAM(BaseCAM):
    """Grad-CAM: a channel's weight is its gradient averaged over positions (global-average-pooled)."""

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients[0].mean(dim=(1, 2))


def gradcam(model: nn.Module, x: Tensor, *, layer: str | None = None, target: int | None = None) -> CAM:
    """Grad-CAM of one image x (1, C, H, W); see ``BaseCAM`` for ``layer`` and ``CAM`` for the result.

    Raises ValueError for an unknown layer, a layer without a (N, C, h, w)
    output, or a network without conv layers; the message lists the valid layers.
    """
    return GradCAM(model, layer)(x, target)
