"""Pure-PyTorch reference implementation of LSNet (CVPR 2025), used only by the tests.

Module and parameter names follow the official ``jameslahm/lsnet`` ``model/lsnet.py``, so its
state_dicts load unchanged. Deliberate differences from the official code:

* SKA is plain PyTorch (shifted slices) instead of the Triton kernel, summing taps in the same
  order, so it is bit-identical in float32.
* The attention bias is gathered from ``attention_biases`` on every call, never cached.
* ``build_variant`` honours ``img_size``, and the attention resolution is the real stage-4
  feature size (the official ``img_size // patch_size`` formula agrees for multiples of 8).
* No drop path, official weight init or BN fusion: this is an inference reference.
"""

import math

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

VARIANTS = {
    "lsnet_t": dict(embed_dim=(64, 128, 256, 384), depth=(0, 2, 8, 10), num_heads=(3, 3, 3, 4)),
    "lsnet_s": dict(embed_dim=(96, 192, 320, 448), depth=(1, 2, 8, 10), num_heads=(3, 3, 3, 4)),
    "lsnet_b": dict(embed_dim=(128, 256, 384, 512), depth=(4, 6, 8, 10), num_heads=(3, 3, 3, 4)),
}


def _halve(size):
    """Output size of a 3x3 stride-2 convolution with padding 1."""
    return (size - 1) // 2 + 1


def stage_resolutions(img_size):
    """Feature-map sizes of stages 1-4 for a square input of ``img_size`` pixels."""
    sizes = [_halve(_halve(_halve(img_size)))]
    for _ in range(3):
        sizes.append(_halve(sizes[-1]))
    return sizes


def attention_bias_idxs(resolution):
    """(N, N) index into an (nh, R*R) bias table: entry |dy| * R + |dx| for each pair of
    positions of an R x R grid, the same numbering as the official offset dictionary."""
    ys, xs = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :]).abs() * resolution + (xs[:, None] - xs[None, :]).abs()


class Conv2d_BN(nn.Sequential):  # noqa: N801 - official name
    def __init__(self, in_ch, out_ch, ks=1, stride=1, pad=0, groups=1):
        super().__init__()
        self.c = nn.Conv2d(in_ch, out_ch, ks, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)


class BN_Linear(nn.Sequential):  # noqa: N801 - official name
    def __init__(self, in_features, out_features):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.l = nn.Linear(in_features, out_features)  # noqa: E741 - official name


class Residual(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return x + self.m(x)


class FFN(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.pw1 = Conv2d_BN(dim, hidden)
        self.pw2 = Conv2d_BN(hidden, dim)

    def forward(self, x):
        return self.pw2(F.relu(self.pw1(x)))


class SqueezeExcite(nn.Module):
    """timm's SEModule as used by LSNet: rd_ratio 0.25, divisor 8, ReLU, sigmoid gate."""

    def __init__(self, dim):
        super().__init__()
        hidden = max(8, int(dim * 0.25 + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        s = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * s.sigmoid()


class Attention(nn.Module):
    def __init__(self, dim, key_dim, num_heads, attn_ratio, resolution):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.nh_kd = key_dim * num_heads
        self.dh = int(attn_ratio * key_dim) * num_heads
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", attention_bias_idxs(resolution))
        self.qkv = Conv2d_BN(dim, self.dh + 2 * self.nh_kd)
        self.proj = nn.Sequential(nn.ReLU(), Conv2d_BN(self.dh, dim))
        self.dw = Conv2d_BN(self.nh_kd, self.nh_kd, 3, 1, 1, groups=self.nh_kd)

    def forward(self, x):
        b, _, h, w = x.shape
        q, k, v = self.qkv(x).split([self.nh_kd, self.nh_kd, self.dh], dim=1)
        q = self.dw(q)
        q, k, v = (t.reshape(b, self.num_heads, -1, h * w) for t in (q, k, v))
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = ((q.transpose(-2, -1) @ k) * self.scale + bias).softmax(dim=-1)
        return self.proj((v @ attn.transpose(-2, -1)).reshape(b, -1, h, w))


class RepVGGDW(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv = Conv2d_BN(dim, dim, 3, 1, 1, groups=dim)
        self.conv1 = Conv2d_BN(dim, dim, 1, 1, 0, groups=dim)

    def forward(self, x):
        return self.conv(x) + self.conv1(x) + x


class LKP(nn.Module):
    """Large-kernel perception: predicts a 3x3 kernel per pixel for each of dim/8 weight
    channels, shaped (B, dim/8, 9, H, W)."""

    def __init__(self, dim):
        super().__init__()
        half = dim // 2
        self.cv1 = Conv2d_BN(dim, half)
        self.cv2 = Conv2d_BN(half, half, 7, 1, 3, groups=half)
        self.cv3 = Conv2d_BN(half, half)
        self.cv4 = nn.Conv2d(half, 9 * dim // 8, 1)
        self.norm = nn.GroupNorm(dim // 8, 9 * dim // 8)

    def forward(self, x):
        x = F.relu(self.cv3(self.cv2(F.relu(self.cv1(x)))))
        w = self.norm(self.cv4(x))
        b, _, h, width = w.shape
        return w.view(b, -1, 9, h, width)


class SKA(nn.Module):
    """Small-kernel aggregation: a per-pixel depthwise 3x3 correlation with zero padding.
    Channel c of x uses weight channel c % wc, where w has shape (B, wc, 9, H, W)."""

    def forward(self, x, w):
        b, c, h, width = x.shape
        wc, taps = w.shape[1], w.shape[2]
        ks = math.isqrt(taps)
        pad = ks // 2
        xp = F.pad(x, (pad, pad, pad, pad)).view(b, c // wc, wc, h + 2 * pad, width + 2 * pad)
        w = w.unsqueeze(1)
        out = torch.zeros_like(xp[..., :h, :width])
        for t in range(taps):
            dy, dx = divmod(t, ks)
            out = out + xp[..., dy : dy + h, dx : dx + width] * w[:, :, :, t]
        return out.reshape(b, c, h, width)


class LSConv(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.lkp = LKP(dim)
        self.ska = SKA()
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x):
        return self.bn(self.ska(x, self.lkp(x))) + x


class Block(nn.Module):
    def __init__(self, dim, key_dim, num_heads, attn_ratio, resolution, stage, index):
        super().__init__()
        if index % 2 == 0:
            self.mixer = RepVGGDW(dim)
            self.se = SqueezeExcite(dim)
        else:
            if stage == 3:
                attn = Attention(dim, key_dim, num_heads, attn_ratio, resolution)
                self.mixer = Residual(attn)
            else:
                self.mixer = LSConv(dim)
            self.se = nn.Identity()
        self.ffn = Residual(FFN(dim, 2 * dim))

    def forward(self, x):
        return self.ffn(self.se(self.mixer(x)))


class LSNet(nn.Module):
    def __init__(
        self,
        img_size=224,
        patch_size=8,
        in_chans=3,
        num_classes=1000,
        embed_dim=(64, 128, 256, 384),
        key_dim=(16, 16, 16, 16),
        depth=(0, 2, 8, 10),
        num_heads=(3, 3, 3, 4),
        distillation=False,
    ):
        super().__init__()
        self.img_size = img_size
        if patch_size != 8:
            raise ValueError("the LSNet stem (three stride-2 convs) always has patch_size 8")
        e0 = embed_dim[0]
        self.patch_embed = nn.Sequential(
            Conv2d_BN(in_chans, e0 // 4, 3, 2, 1),
            nn.ReLU(),
            Conv2d_BN(e0 // 4, e0 // 2, 3, 2, 1),
            nn.ReLU(),
            Conv2d_BN(e0 // 2, e0, 3, 2, 1),
        )
        resolutions = stage_resolutions(img_size)
        stages = []
        for i, (dim, kd, nh) in enumerate(zip(embed_dim, key_dim, num_heads, strict=True)):
            stage = nn.Sequential()
            if i > 0:
                prev = embed_dim[i - 1]
                stage.append(Conv2d_BN(prev, prev, 3, 2, 1, groups=prev))
                stage.append(Conv2d_BN(prev, dim, 1))
            for d in range(depth[i]):
                stage.append(Block(dim, kd, nh, dim / (kd * nh), resolutions[i], i, d))
            stages.append(stage)
        self.blocks1, self.blocks2, self.blocks3, self.blocks4 = stages
        self.head = BN_Linear(embed_dim[-1], num_classes)
        self.distillation = distillation
        if distillation:
            self.head_dist = BN_Linear(embed_dim[-1], num_classes)

    def forward_features(self, x):
        """Return the NCHW outputs of patch_embed and blocks1..blocks4, in that order."""
        feats = [self.patch_embed(x)]
        for stage in (self.blocks1, self.blocks2, self.blocks3, self.blocks4):
            feats.append(stage(feats[-1]))
        return feats

    def forward_head(self, x):
        """Pool the last feature map and classify; distill models average both heads in eval."""
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if not self.distillation:
            return self.head(x)
        out = self.head(x), self.head_dist(x)
        return out if self.training else (out[0] + out[1]) / 2

    def forward(self, x):
        return self.forward_head(self.forward_features(x)[-1])


def build_variant(name, num_classes=1000, img_size=224):
    """Build ``lsnet_t``/``lsnet_s``/``lsnet_b``, optionally suffixed ``_distill``."""
    base = name.removesuffix("_distill")
    return LSNet(
        img_size=img_size,
        num_classes=num_classes,
        distillation=name.endswith("_distill"),
        **VARIANTS[base],
    )


def resize_attention_biases(state_dict, img_size):
    """Return a copy of ``state_dict`` whose ``attention_biases`` tables are bicubically resized
    to the stage-4 resolution of ``img_size`` (as the official detection code does), with
    matching ``attention_bias_idxs``."""
    size = stage_resolutions(img_size)[3]
    out = dict(state_dict)
    for key, table in state_dict.items():
        if not key.endswith("attention_biases"):
            continue
        nh, old = table.shape
        r = math.isqrt(old)
        resized = F.interpolate(
            table.view(1, nh, r, r), size=(size, size), mode="bicubic", align_corners=False
        )
        out[key] = resized.reshape(nh, size * size)
        out[key.removesuffix("attention_biases") + "attention_bias_idxs"] = attention_bias_idxs(
            size
        )
    return out


def load_state_dict_from_safetensors(path):
    """Load a ``.safetensors`` file as a dict of CPU torch tensors."""
    return load_file(str(path))


@torch.no_grad()
def randomize_(model, seed, batch=16):
    """Give an ``LSNet`` realistic random weights drawn from ``seed`` only, in place; return it.

    Conv/linear weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1), norm weights ~ N(1, 0.2) and
    attention biases ~ N(0, 0.5). BatchNorm running statistics are then set to the exact
    statistics of one random N(0, 1) batch of ``batch`` images, as real trained statistics would
    be: arbitrary statistics compound through the residual stack and blow activations up.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, t in model.named_parameters():
        if name.endswith("attention_biases"):
            t.normal_(0.0, 0.5, generator=gen)
        elif name.endswith("bias"):
            t.normal_(0.0, 0.1, generator=gen)
        elif t.ndim == 1:
            t.normal_(1.0, 0.2, generator=gen)
        else:
            t.normal_(0.0, t[0].numel() ** -0.5, generator=gen)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets its exact statistics
    training = model.training
    model.train()
    model(torch.randn(batch, 3, model.img_size, model.img_size, generator=gen))
    model.train(training)
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    return model
