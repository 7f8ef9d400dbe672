"""Probes: pure functions and hook recorders that look inside a network (see ARCHITECTURE.md)."""

from .boundary import Boundary2D, data_extent, decision_boundary, grid_points
from .evaluation import (
    Confusion,
    Mistake,
    Prediction,
    class_probs,
    confusion,
    most_confident_mistakes,
    predict,
    probs_from_outputs,
)
from .feature_maps import LayerFeatureMaps, feature_maps
from .hooks import ActivationRecorder, evaluating, no_grad_eval
from .stats import (
    GradStats,
    LayerActivationStats,
    TensorStats,
    UpdateRatio,
    activation_name,
    activation_stats,
    gradient_stats,
    snapshot_params,
    stats_many,
    tensor_stats,
    update_ratios,
)
from .weights import (
    FilterGrid,
    FilterNormalizer,
    LayerWeightHistogram,
    filter_images,
    layer_weight,
    pixels_to_weights,
    tile_grid,
    weight_histograms,
)
from .attention import AttentionMask, attention_masks
from .backprop_trace import Node, ParamUpdate, Trace, backprop_trace
from .doctor import DoctorEvidence, Hint, LayerActivity, MetricPoint, RunDoctor, diagnose
from .gradcam import CAM, GradCAM, conv_layers, gradcam
from .gradcheck import GradCheckEntry, GradCheckReport, gradient_check
from .saliency import Attribution, saliency
