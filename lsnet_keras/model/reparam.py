"""The deployment form: BatchNorm folded, RepVGG branches fused, distillation heads merged.

Folding runs in float64 and stores float32. The deployed model computes the same function as the
training form (up to float32 rounding) with fewer ops, and saves and loads like any model.

Example:
    >>> import lsnet_keras
    >>> deploy = lsnet_keras.reparameterize(lsnet_keras.lsnet_t(num_classes=10, input_shape=128))
    >>> deploy.deploy, deploy.count_params() < 11_000_000
    (True, True)
"""

import numpy as np

from lsnet_keras.model.lsnet import LSNet
from lsnet_keras.model.ops import BN_EPSILON

# How each target computes attention (see layers.Attention): Edge TPU has no BATCH_MATMUL.
TARGET_ATTENTION = {"cpu": "matmul", "gpu": "matmul", "edgetpu": "elementwise"}
# Which targets compute in float16 (the GPU, even for fp32 models): see LSNet's `fp16_safe`.
TARGET_FP16_SAFE = {"cpu": False, "gpu": True, "edgetpu": False}


def _f64(variable):
    return np.asarray(variable, dtype="float64")


def _bn_scale_shift(bn):
    """Per-channel (scale, shift) with bn(x) == x * scale + shift."""
    scale = _f64(bn.gamma) / np.sqrt(_f64(bn.moving_variance) + BN_EPSILON)
    return scale, _f64(bn.beta) - _f64(bn.moving_mean) * scale


def _folded_conv_bn(layer):
    """Kernel and bias of a training-form Conv2dBN with its BatchNorm folded in."""
    scale, shift = _bn_scale_shift(layer.bn)
    kernel = _f64(layer.conv.kernel)
    if layer.depthwise:  # (kh, kw, channels, 1)
        return kernel * scale[None, None, :, None], shift
    return kernel * scale, shift  # (kh, kw, in, out)


def _assign(conv, kernel, bias):
    conv.kernel.assign(kernel.astype(conv.kernel.dtype))
    conv.bias.assign(bias.astype(conv.bias.dtype))


def _fold_conv_bn(source, target):
    _assign(target.conv, *_folded_conv_bn(source))


def _fuse_repvgg(source, target):
    """3x3 dw + 1x1 dw + identity -> one 3x3 depthwise kernel."""
    kernel, bias = _folded_conv_bn(source.conv)
    kernel1, bias1 = _folded_conv_bn(source.conv1)
    kernel = kernel.copy()
    kernel[1, 1] += kernel1[0, 0] + 1.0
    _assign(target.conv.conv, kernel, bias + bias1)


def _copy(source_layer, target_layer):
    target_layer.set_weights(source_layer.get_weights())


def _fuse_block(source, target):
    if source.kind == "repvgg":
        _fuse_repvgg(source.mixer, target.mixer)
        _copy(source.se, target.se)
    elif source.kind == "lsconv":
        lkp, fused_lkp = source.mixer.lkp, target.mixer.lkp
        for name in ("cv1", "cv2", "cv3"):
            _fold_conv_bn(getattr(lkp, name), getattr(fused_lkp, name))
        _copy(lkp.cv4, fused_lkp.cv4)
        # NumPy copies: under JAX, assigning a variable shares its buffer with the source
        # model, and the deployed model's first jitted call may donate (delete) it.
        fused_lkp.norm_gamma.assign(np.array(lkp.norm_gamma))
        fused_lkp.norm_beta.assign(np.array(lkp.norm_beta))
        _copy(source.mixer.bn, target.mixer.bn)
    else:
        for name in ("qkv", "dw", "proj"):
            _fold_conv_bn(getattr(source.mixer, name), getattr(target.mixer, name))
        if target.mixer.stores_expanded:  # the detection form: its resize done once here
            target.mixer.expanded_biases.assign(np.array(source.mixer.expanded_bias()))
        else:
            target.mixer.attention_biases.assign(np.array(source.mixer.attention_biases))
    _fold_conv_bn(source.ffn.pw1, target.ffn.pw1)
    _fold_conv_bn(source.ffn.pw2, target.ffn.pw2)


def _folded_head(head):
    """Dense kernel and bias of BatchNorm1d + Linear with the BatchNorm folded in."""
    scale, shift = _bn_scale_shift(head.bn)
    kernel = _f64(head.linear.kernel)  # (in, out)
    return kernel * scale[:, None], shift @ kernel + _f64(head.linear.bias)


def _fuse_head(model, deployed):
    kernel, bias = _folded_head(model.get_layer("head"))
    if model.distillation:
        kernel_dist, bias_dist = _folded_head(model.get_layer("head_dist"))
        kernel, bias = (kernel + kernel_dist) / 2, (bias + bias_dist) / 2
    _assign(deployed.get_layer("head").linear, kernel, bias)


def _target_config(model, target, **changes):
    config = model.get_config()
    config.update(
        attention_formulation=TARGET_ATTENTION[target],
        fp16_safe=TARGET_FP16_SAFE[target],
        **changes,
    )
    return config


def _reparameterize_dense(model, target):
    """A detector / segmenter: its backbone reparameterized, its neck and head copied."""
    deployed = type(model).from_config(_target_config(model, target, deploy=True))
    fused = reparameterize(model.backbone, target)
    deployed.backbone.set_weights(fused.get_weights())
    for prefix, part in model.parts().items():
        if part is not model.backbone:
            deployed.parts()[prefix].set_weights(part.get_weights())
    return deployed


def with_target_layout(model, target):
    """The same model (same weights) laid out for `target`: cpu, gpu or edgetpu.

    Example:
        >>> import lsnet_keras
        >>> model = lsnet_keras.reparameterize(lsnet_keras.lsnet_t(input_shape=64))
        >>> with_target_layout(model, "edgetpu").attention_formulation
        'elementwise'
    """
    layout = {
        "attention_formulation": TARGET_ATTENTION[target],
        "fp16_safe": TARGET_FP16_SAFE[target],
    }
    if all(getattr(model, key) == value for key, value in layout.items()):
        return model
    laid_out = type(model).from_config(_target_config(model, target))
    laid_out.set_weights(model.get_weights())
    return laid_out


def reparameterize(model, target="cpu"):
    """Return the deployment form of a training-form LSNet, with the same outputs.

    `target` (cpu, gpu, edgetpu) picks the graph layout the deployed model computes with.
    A detector's backbone is reparameterized and its neck and head (plain convolutions) copied.

    Example:
        >>> import numpy as np, lsnet_keras
        >>> model = lsnet_keras.lsnet_t(num_classes=10, input_shape=128)
        >>> x = np.random.rand(1, 128, 128, 3).astype("float32")
        >>> deployed = lsnet_keras.reparameterize(model)
        >>> bool(np.allclose(model(x), deployed(x), atol=1e-4))
        True
    """
    if model.deploy:
        raise ValueError(f"{model.name} is already reparameterized (deploy=True)")
    if hasattr(model, "parts"):
        return _reparameterize_dense(model, target)
    deployed = LSNet.from_config(_target_config(model, target, deploy=True, distillation=False))
    for name, prefix in model.official_prefixes.items():
        source = model.get_layer(name)
        if prefix.startswith("head"):
            continue
        if hasattr(source, "kind"):
            _fuse_block(source, deployed.get_layer(name))
        else:
            _fold_conv_bn(source, deployed.get_layer(name))
    if model.include_top and not model.features_only:
        _fuse_head(model, deployed)
    return deployed
