"""The MMDetection 2.28.2 reference of tests/test_parity_mmdet.py: runs INSIDE the virtualenv that
build_env.sh makes (torch, mmcv 1.7.2, mmdet 2.28.2; no TensorFlow), never in the main one.

The detector is MMDetection's own ``RetinaNet`` (``mmdet.models.build_detector``) with the
released ``retinanet_lsnet_*_fpn_1x_coco`` head and test settings, and MMDetection's real
``RetinaHead`` forward and ``simple_test`` (anchors, top-k, decoding, mmcv's ``batched_nms``),
whose NMS is mmcv's own CPU kernel (mmcv/ops/csrc/pytorch/cpu/nms.cpp, compiled alone by
build_env.sh). Its backbone and neck are the PyTorch renderings in tests/torch_lsnet_dense.py,
registered in MMDetection's registries. mmcv.ops asks for its compiled ``mmcv._ext`` when
imported: a stand-in module is registered first, whose ``nms`` is that kernel and whose other
ops raise; mmcv.runner imports torchvision (only for ``torchvision://`` checkpoints), whose
PyPI build is CUDA-only, so an empty stand-in takes its place when it is not installed.

    python run_mmdet.py --check              # imports and a toy NMS: the environment works
    python run_mmdet.py MANIFEST.json        # every case of the manifest, one process

The manifest is {"cases": [{"name", "variant" (lsnet_t/s/b), "input", "output", "dtypes"}]}.
Each input .npz holds ``input`` (1, 3, H, W) float32, already normalized, and the state_dict as
``state/<official key>``. Each output .npz holds, per dtype (float32, or float64: model and input
converted to double, the final NMS run in float32 as the kernel only takes float32),
``<dtype>/cls_score_{0..4}`` (1, 720, h, w), ``<dtype>/bbox_pred_{0..4}`` (1, 36, h, w) and
``<dtype>/det_boxes`` (n, 4), ``det_scores`` (n,), ``det_labels`` (n,), for an identity image
meta (scale factor 1, img_shape = pad_shape = the input size).
"""

import argparse
import importlib.util
import json
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent.parent
NMS_LIBRARY = Path(sys.prefix) / "mmcv_nms" / "mmcv_nms_cpu.so"

# retinanet_lsnet_*_fpn_1x_coco.py, as released (its _base_/models/retinanet_lsnet_fpn.py)
BBOX_HEAD = dict(
    type="RetinaHead",
    num_classes=80,
    in_channels=256,
    stacked_convs=4,
    feat_channels=256,
    anchor_generator=dict(
        type="AnchorGenerator",
        octave_base_scale=4,
        scales_per_octave=3,
        ratios=[0.5, 1.0, 2.0],
        strides=[8, 16, 32, 64, 128],
    ),
    bbox_coder=dict(
        type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0] * 4
    ),
    loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type="L1Loss", loss_weight=1.0),
)
TEST_CFG = dict(
    nms_pre=1000,
    min_bbox_size=0,
    score_thr=0.05,
    nms=dict(type="nms", iou_threshold=0.5),
    max_per_img=100,
)


class _StandInExt(types.ModuleType):
    """``mmcv._ext`` without its compiled ops: ``nms`` is mmcv's CPU kernel, the rest raise."""

    def __init__(self, kernel):
        super().__init__("mmcv._ext")
        self._kernel = kernel

    def nms(self, boxes, scores, iou_threshold, offset):
        return self._kernel.nms(boxes.float(), scores.float(), float(iou_threshold), int(offset))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise NotImplementedError(f"mmcv._ext.{name} is not compiled in this environment")

        return missing


def install_stand_ins():
    """Register the stand-in ``mmcv._ext`` (and ``torchvision`` if absent); return the kernel."""
    import torch  # noqa: F401 - the kernel links against libtorch

    if not NMS_LIBRARY.is_file():
        raise SystemExit(f"mmcv's NMS kernel is not built: {NMS_LIBRARY} (run build_env.sh)")
    spec = importlib.util.spec_from_file_location("mmcv_nms_cpu", NMS_LIBRARY)
    kernel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernel)
    sys.modules["mmcv._ext"] = _StandInExt(kernel)
    if importlib.util.find_spec("torchvision") is None:
        sys.modules["torchvision"] = types.ModuleType("torchvision")
    warnings.filterwarnings("ignore", module="mmcv")
    return kernel


def register_parts():
    """The renderings of tests/torch_lsnet_dense.py in MMDetection's registries."""
    sys.path.insert(0, str(TESTS))
    import torch_lsnet_dense
    from mmdet.models.builder import BACKBONES, NECKS

    if "LSNetDetectionBackbone" not in BACKBONES.module_dict:
        BACKBONES.register_module("LSNetDetectionBackbone", module=torch_lsnet_dense.build_backbone)
        NECKS.register_module("LSNetFPNRendering", module=torch_lsnet_dense.build_neck)


def build(variant, state, dtype):
    import torch
    from mmcv import Config
    from mmdet.models import build_detector

    register_parts()
    config = Config(  # attribute access, as a config file read by Config.fromfile gives
        dict(
            model=dict(
                type="RetinaNet",
                backbone=dict(type="LSNetDetectionBackbone", variant=variant),
                neck=dict(type="LSNetFPNRendering", variant=variant),
                bbox_head=BBOX_HEAD,
                train_cfg=None,
                test_cfg=TEST_CFG,
            )
        )
    )
    model = build_detector(config.model)
    own = model.state_dict()
    for key, value in state.items():
        if key.endswith("attention_bias_idxs") and not np.array_equal(value, own[key].numpy()):
            raise SystemExit(f"{key} differs from the official 14x14 offset table")
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model.double() if dtype == "float64" else model


def run(model, image, dtype):
    """Raw per-level outputs and the final detections for one (1, 3, H, W) image."""
    import torch

    x = torch.from_numpy(image).to(torch.float64 if dtype == "float64" else torch.float32)
    h, w = image.shape[2:]
    meta = dict(
        img_shape=(h, w, 3),
        pad_shape=(h, w, 3),
        ori_shape=(h, w, 3),
        batch_input_shape=(h, w),
        scale_factor=np.ones(4, "float32"),
        flip=False,
    )
    with torch.no_grad():
        feats = model.extract_feat(x)
        cls_scores, bbox_preds = model.bbox_head(feats)
        ((boxes, labels),) = model.bbox_head.simple_test(feats, [meta], rescale=False)
    out = {}
    for i, (score, delta) in enumerate(zip(cls_scores, bbox_preds)):
        out[f"{dtype}/cls_score_{i}"] = score.numpy()
        out[f"{dtype}/bbox_pred_{i}"] = delta.numpy()
    out[f"{dtype}/det_boxes"] = boxes[:, :4].numpy()
    out[f"{dtype}/det_scores"] = boxes[:, 4].numpy()
    out[f"{dtype}/det_labels"] = labels.numpy()
    return out


def check():
    import torch

    kernel = install_stand_ins()
    import mmcv
    import mmcv.ops
    import mmdet
    import mmdet.models  # noqa: F401

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    keep = mmcv.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)[1]
    assert keep.tolist() == [0, 2], keep
    assert torch.version.cuda is None, "a CUDA build of torch"
    print(f"torch {torch.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}")
    print(f"nms kernel {kernel.__file__}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", nargs="?", help="JSON list of cases")
    parser.add_argument("--check", action="store_true", help="only check the environment")
    args = parser.parse_args(argv)
    if args.check:
        check()
        return 0
    install_stand_ins()
    import torch

    torch.set_grad_enabled(False)
    for case in json.loads(Path(args.manifest).read_text())["cases"]:
        data = np.load(case["input"])
        state = {k.removeprefix("state/"): data[k] for k in data.files if k.startswith("state/")}
        out = {}
        for dtype in case["dtypes"]:
            start = time.perf_counter()
            model = build(case["variant"], state, dtype)
            out.update(run(model, data["input"], dtype))
            out[f"{dtype}/seconds"] = np.float64(time.perf_counter() - start)
        np.savez(case["output"], **out)
        found = [len(out[f"{dtype}/det_scores"]) for dtype in case["dtypes"]]
        print(f"{case['name']}: {found} detections ({', '.join(case['dtypes'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
