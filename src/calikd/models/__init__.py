"""Model zoo: CIFAR-style KD benchmark architectures and small fast families, behind one registry.

>>> model = create_model("resnet20", num_classes=10, in_channels=1)   # doctest: +SKIP
>>> with FeatureHooks(model) as hooks:                                 # doctest: +SKIP
...     logits = model(x)                      # plain logits (B, num_classes)
...     hooks.features["layer3"], hooks.features["pool"]

Every model's ``forward(x)`` returns logits; its final linear layer is ``fc``; ``feature_stage_names`` (see
:func:`feature_stages`) lists the standard feature taps, the last being the pooled embedding fed to ``fc``.
Inputs may have any number of channels and any resolution >= 8 px.
"""

from calikd.models import cnn, mlp, mobilenetv2, resnet, shufflenetv1, shufflenetv2, vgg, wrn
from calikd.models.features import FeatureHooks, feature_stages, preact_feature_stages
from calikd.models.registry import (
    count_parameters,
    create_model,
    list_models,
    model_info,
    register_alias,
    register_model,
    register_pattern,
)

del cnn, mlp, mobilenetv2, resnet, shufflenetv1, shufflenetv2, vgg, wrn  # imported to register their models

__all__ = [
    "FeatureHooks",
    "count_parameters",
    "create_model",
    "feature_stages",
    "list_models",
    "model_info",
    "preact_feature_stages",
    "register_alias",
    "register_model",
    "register_pattern",
]
