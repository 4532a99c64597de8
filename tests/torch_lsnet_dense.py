"""Pure-PyTorch rendering of the official LSNet *detection* backbone and LSNetFPN neck, used only by
the tests (tests/mmdet_reference/run_mmdet.py puts MMDetection's real RetinaHead behind them).

Module and parameter names follow jameslahm/lsnet's ``detection/model/lsnet.py`` and
``detection/model/lsnet_fpn.py``, so an MMDetection checkpoint's ``backbone.*`` / ``neck.*`` keys
load unchanged. Everything the classification backbone shares is reused from tests/torch_lsnet.py;
what the detection form changes:

* every stage-4 Attention is built for a fixed 14x14 grid (``attention_biases`` (heads, 196),
  ``attention_bias_idxs`` (196, 196)); at run time the gathered (heads, 196, 196) bias is resized
  to the real token count N = h * w with ``F.interpolate(mode='bicubic')`` (align_corners False);
* there is no classifier head: the backbone returns the outputs of blocks1..blocks4.

The neck is LSNetFPN as the released RetinaNet configs build it (start level 0, 5 outputs,
``add_extra_convs='on_input'``, no norm, no activation; the Semantic FPN configs: 4 outputs, no
extra conv): 1x1 lateral convs, a top-down path adding
each coarser lateral, nearest-resized to the finer one's size, 3x3 fpn convs, and one stride-2
3x3 conv (padding 1) on the raw last backbone level. mmcv's ConvModule without norm and
activation is its ``conv`` alone, so each is a module holding a ``conv``.

Also here: ``synthetic_images`` (seeded, MMDetection-normalized picture-like inputs) and
``random_detector_state`` / ``random_segmenter_state`` (random but well-behaved RetinaNet- and
Semantic FPN-LSNet weights, as MMDetection / MMSegmentation state_dicts of NumPy arrays).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
import torch_lsnet
from torch import nn

DETECTION_TABLE = 14  # the official detection backbone's Attention(resolution=14)
MMDET_MEAN = (123.675, 116.28, 103.53)
MMDET_STD = (58.395, 57.12, 57.375)
RETINA_PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)  # MMDetection's bias_prob 0.01: -4.59512
NUM_ANCHORS = 9
NUM_CLASSES = 80
FPN_CHANNELS = 256


class DetectionAttention(torch_lsnet.Attention):
    """Stage-4 attention of the detection backbone: a 14x14 bias table, its gathered
    (heads, 196, 196) bias bicubically resized to (N, N) on every call."""

    def __init__(self, dim, key_dim, num_heads, attn_ratio):
        super().__init__(dim, key_dim, num_heads, attn_ratio, DETECTION_TABLE)

    def forward(self, x):
        b, _, h, w = x.shape
        n = h * w
        q, k, v = self.qkv(x).split([self.nh_kd, self.nh_kd, self.dh], dim=1)
        q = self.dw(q)
        q, k, v = (t.reshape(b, self.num_heads, -1, n) for t in (q, k, v))
        attn = (q.transpose(-2, -1) @ k) * self.scale + self.resized_bias(n)
        attn = attn.softmax(dim=-1)
        return self.proj((v @ attn.transpose(-2, -1)).reshape(b, -1, h, w))

    def resized_bias(self, n):
        """The gathered (heads, 196, 196) bias bicubically resized to (1, heads, n, n)."""
        bias = self.attention_biases[:, self.attention_bias_idxs]
        return F.interpolate(bias.unsqueeze(0), size=(n, n), mode="bicubic")


class DetectionLSNet(nn.Module):
    """The official detection backbone (``lsnet_t`` / ``lsnet_s`` / ``lsnet_b`` of
    detection/model/lsnet.py): patch_embed, blocks1..blocks4; returns the 4 stage outputs."""

    def __init__(self, embed_dim, depth, num_heads, key_dim=(16, 16, 16, 16)):
        super().__init__()
        e0 = embed_dim[0]
        self.patch_embed = nn.Sequential(
            torch_lsnet.Conv2d_BN(3, e0 // 4, 3, 2, 1),
            nn.ReLU(),
            torch_lsnet.Conv2d_BN(e0 // 4, e0 // 2, 3, 2, 1),
            nn.ReLU(),
            torch_lsnet.Conv2d_BN(e0 // 2, e0, 3, 2, 1),
        )
        stages = []
        for i, (dim, kd, nh) in enumerate(zip(embed_dim, key_dim, num_heads)):
            stage = nn.Sequential()
            if i > 0:
                prev = embed_dim[i - 1]
                stage.append(torch_lsnet.Conv2d_BN(prev, prev, 3, 2, 1, groups=prev))
                stage.append(torch_lsnet.Conv2d_BN(prev, dim, 1))
            ratio = dim / (kd * nh)
            for d in range(depth[i]):
                block = torch_lsnet.Block(dim, kd, nh, ratio, DETECTION_TABLE, i, d)
                if i == 3 and d % 2 == 1:
                    block.mixer = torch_lsnet.Residual(DetectionAttention(dim, kd, nh, ratio))
                stage.append(block)
            stages.append(stage)
        self.blocks1, self.blocks2, self.blocks3, self.blocks4 = stages

    def forward(self, x):
        x = self.patch_embed(x)
        outs = []
        for stage in (self.blocks1, self.blocks2, self.blocks3, self.blocks4):
            x = stage(x)
            outs.append(x)
        return tuple(outs)


class ConvModule(nn.Module):
    """mmcv's ConvModule with norm_cfg and act_cfg None: its ``conv`` (with bias) alone."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)

    def forward(self, x):
        return self.conv(x)


class LSNetFPN(nn.Module):
    """The official LSNetFPN as the released RetinaNet configs build it (see the module doc)."""

    def __init__(self, in_channels, out_channels=FPN_CHANNELS, num_outs=5):
        super().__init__()
        if num_outs not in (len(in_channels), len(in_channels) + 1):
            raise ValueError("the RetinaNet neck has one extra level, Semantic FPN's none")
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )
        if num_outs > len(in_channels):
            self.fpn_convs.append(ConvModule(in_channels[-1], out_channels, 3, stride=2, padding=1))

    def forward(self, inputs):
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            size = laterals[i - 1].shape[2:]
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=size, mode="nearest"
            )
        outs = [self.fpn_convs[i](x) for i, x in enumerate(laterals)]
        if len(self.fpn_convs) > len(laterals):
            outs.append(self.fpn_convs[len(laterals)](inputs[-1]))
        return tuple(outs)


def build_backbone(variant):
    return DetectionLSNet(**torch_lsnet.VARIANTS[variant])


def build_neck(variant, num_outs=5):
    return LSNetFPN(torch_lsnet.VARIANTS[variant]["embed_dim"], num_outs=num_outs)


def synthetic_images(size, seed, count=1):
    """(count, 3, H, W) float32, MMDetection-normalized RGB pictures made from ``seed``: a
    gradient background, a few dozen flat rectangles and discs, mild noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype("float64")
    images = []
    for _ in range(count):
        a, b = rng.uniform(-1, 1, (2, 3))
        image = 128 + 60 * (a * ys[..., None] / h + b * xs[..., None] / w)
        for _ in range(rng.integers(20, 40)):
            colour = rng.uniform(0, 255, 3)
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(4, h / 4), rng.uniform(4, w / 4)
            if rng.random() < 0.5:
                inside = (np.abs(ys - cy) < ry) & (np.abs(xs - cx) < rx)
            else:
                inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 < 1
            image[inside] = colour
        image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).round()
        images.append((image - np.array(MMDET_MEAN)) / np.array(MMDET_STD))
    return np.stack(images).transpose(0, 3, 1, 2).astype("float32")


def _residual_ends(backbone):
    """The norms whose output is added to a skip path: each residual branch's last BN."""
    ends = []
    for module in backbone.modules():
        if isinstance(module, torch_lsnet.FFN):
            ends.append(module.pw2.bn)
        elif isinstance(module, torch_lsnet.RepVGGDW):
            ends += [module.conv.bn, module.conv1.bn]
        elif isinstance(module, torch_lsnet.LSConv):
            ends.append(module.bn)
        elif isinstance(module, torch_lsnet.Attention):
            ends.append(module.proj[1].bn)
    return ends


@torch.no_grad()
def _random_backbone_and_neck(variant, size, seed, num_outs, calibration_images):
    """``backbone.*`` and ``neck.*`` of a random but well-behaved dense model (see
    ``random_detector_state``) and the generator of NumPy draws for its head."""
    gen = torch.Generator().manual_seed(seed)
    backbone, neck = build_backbone(variant), build_neck(variant, num_outs)
    for module in neck.modules():
        if isinstance(module, nn.Conv2d):
            fan_in, fan_out = (module.weight[0].numel(), module.weight[:, 0].numel())
            bound = math.sqrt(6 / (fan_in + fan_out))
            module.weight.uniform_(-bound, bound, generator=gen)
            module.bias.normal_(0, 0.05, generator=gen)
    for module in backbone.modules():
        if isinstance(module, nn.Conv2d):
            bound = 1 / math.sqrt(module.weight[0].numel())
            module.weight.uniform_(-bound, bound, generator=gen)
            if module.bias is not None:
                module.bias.uniform_(-bound, bound, generator=gen)
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
            module.weight.uniform_(-1.5, 1.5, generator=gen)
            module.bias.normal_(0, 0.2, generator=gen)
            if isinstance(module, nn.GroupNorm):
                module.weight.mul_(0.05)
        elif isinstance(module, torch_lsnet.Attention):
            module.attention_biases.normal_(0, 1, generator=gen)
    for bn in _residual_ends(backbone):
        bn.weight.mul_(0.2)
        bn.bias.mul_(0.2)
    bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # one batch sets its exact statistics
    backbone.train()
    backbone(torch.from_numpy(synthetic_images(size, seed + 1, calibration_images)))
    backbone.eval()
    for bn in bns:
        bn.momentum = 0.1
    state = {f"backbone.{k}": v.numpy() for k, v in backbone.state_dict().items()}
    state.update({f"neck.{k}": v.numpy() for k, v in neck.state_dict().items()})
    return state, np.random.default_rng(seed + 2)


def _float32(state):
    return {k: v.astype("float32") if v.dtype == np.float64 else v for k, v in state.items()}


def random_detector_state(variant, size, seed, calibration_images=4):
    """An MMDetection RetinaNet-LSNet state_dict ({key: NumPy array}) drawn from ``seed``, in
    the spirit of the shared dense goldens: random convs (PyTorch's default init, the neck's
    Xavier), BN scales U(-1.5, 1.5) except the last BN of each residual branch (x0.2) and LKP's
    GroupNorm (x0.05), attention biases N(0, 1), BN statistics calibrated on synthetic images of
    ``size``, head convs Kaiming-normal, classifier bias MMDetection's prior (-4.59512) and
    classifier / regressor weights N(0, 0.012) / N(0, 0.01) (MMDetection's own 0.01 init yields
    almost no score above 0.05)."""
    state, rng = _random_backbone_and_neck(variant, size, seed, 5, calibration_images)
    for branch in ("cls_convs", "reg_convs"):
        for i in range(4):
            shape = (FPN_CHANNELS, FPN_CHANNELS, 3, 3)
            std = math.sqrt(2 / (FPN_CHANNELS * 9))
            state[f"bbox_head.{branch}.{i}.conv.weight"] = rng.normal(0, std, shape)
            state[f"bbox_head.{branch}.{i}.conv.bias"] = rng.normal(0, 0.05, FPN_CHANNELS)
    cls_out, reg_out = NUM_ANCHORS * NUM_CLASSES, NUM_ANCHORS * 4
    state["bbox_head.retina_cls.weight"] = rng.normal(0, 0.012, (cls_out, FPN_CHANNELS, 3, 3))
    state["bbox_head.retina_cls.bias"] = np.full(cls_out, RETINA_PRIOR_BIAS)
    state["bbox_head.retina_reg.weight"] = rng.normal(0, 0.01, (reg_out, FPN_CHANNELS, 3, 3))
    state["bbox_head.retina_reg.bias"] = rng.normal(0, 0.05, reg_out)
    return _float32(state)


# FPNHead's ConvModules: `scale_heads.<level>.<index>` (Upsample modules take the odd indices).
SEMFPN_CONVS = ((0, 0), (1, 0), (2, 0), (2, 2), (3, 0), (3, 2), (3, 4))
SEMFPN_CHANNELS = 128
ADE20K_CLASSES = 150


def random_segmenter_state(variant, size, seed, calibration_images=4):
    """An MMSegmentation Semantic FPN-LSNet state_dict drawn from ``seed``: backbone and neck as
    ``random_detector_state``'s; head convs Kaiming-normal, their BN scales U(0.5, 1.5), shifts
    and running means N(0, 0.1), running variances U(0.5, 2); classifier N(0, 0.05) with bias
    N(0, 0.5), so classes differ and ties are rare."""
    state, rng = _random_backbone_and_neck(variant, size, seed, 4, calibration_images)
    for level, index in SEMFPN_CONVS:
        prefix = f"decode_head.scale_heads.{level}.{index}"
        in_channels = FPN_CHANNELS if index == 0 else SEMFPN_CHANNELS
        std = math.sqrt(2 / (in_channels * 9))
        state[f"{prefix}.conv.weight"] = rng.normal(0, std, (SEMFPN_CHANNELS, in_channels, 3, 3))
        state[f"{prefix}.bn.weight"] = rng.uniform(0.5, 1.5, SEMFPN_CHANNELS)
        state[f"{prefix}.bn.bias"] = rng.normal(0, 0.1, SEMFPN_CHANNELS)
        state[f"{prefix}.bn.running_mean"] = rng.normal(0, 0.1, SEMFPN_CHANNELS)
        state[f"{prefix}.bn.running_var"] = rng.uniform(0.5, 2.0, SEMFPN_CHANNELS)
        state[f"{prefix}.bn.num_batches_tracked"] = np.array(1000, "int64")
    classes = (ADE20K_CLASSES, SEMFPN_CHANNELS, 1, 1)
    state["decode_head.conv_seg.weight"] = rng.normal(0, 0.05, classes)
    state["decode_head.conv_seg.bias"] = rng.normal(0, 0.5, ADE20K_CLASSES)
    return _float32(state)
