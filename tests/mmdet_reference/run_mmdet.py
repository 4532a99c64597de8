"""The MMDetection 2.28.2 / MMSegmentation 0.30.0 reference of tests/test_parity_mmdet.py and
tests/test_parity_mmseg.py: runs INSIDE the virtualenv that build_env.sh makes (torch, mmcv 1.7.2,
mmdet 2.28.2, mmsegmentation 0.30.0; no TensorFlow), never in the main one.

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

The segmenter is MMSegmentation's own ``EncoderDecoder`` (``mmseg.models.build_segmentor``)
with the released ``fpn_lsnet_*_ade20k_40k`` decode head (``FPNHead``) and its ``whole``
inference (``simple_test``: logits resized to the image, softmax, argmax), on the same backbone
and neck renderings (the neck with 4 outputs).

A ``loss`` case runs MMDetection's ``RetinaHead.loss`` on given outputs (see ``head_loss``).

The manifest is {"cases": [{"name", "task" (detect, default, segment or loss), "variant"
(lsnet_t/s/b), "input", "output", "dtypes"}]}.
Each input .npz holds ``input`` (1, 3, H, W) float32, already normalized, and the state_dict as
``state/<official key>``. Each output .npz holds, per dtype (float32, or float64: model and input
converted to double, the final NMS run in float32 as the kernel only takes float32),
``<dtype>/cls_score_{0..4}`` (1, 720, h, w), ``<dtype>/bbox_pred_{0..4}`` (1, 36, h, w) and
``<dtype>/det_boxes`` (n, 4), ``det_scores`` (n,), ``det_labels`` (n,), for an identity image
meta (scale factor 1, img_shape = pad_shape = the input size). A segmentation case's output
holds ``<dtype>/seg_logits_head`` (1, 150, H/8, W/8), ``<dtype>/seg_pred`` (H, W) and
``<dtype>/seg_margin`` (H, W: top-1 minus top-2 of the resized logits).
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
# fpn_lsnet_*_ade20k_40k.py, as released (its _base_/models/fpn_r50.py decode head)
DECODE_HEAD = dict(
    type="FPNHead",
    in_channels=[256, 256, 256, 256],
    in_index=[0, 1, 2, 3],
    feature_strides=[4, 8, 16, 32],
    channels=128,
    dropout_ratio=0.1,
    num_classes=150,
    norm_cfg=dict(type="SyncBN", requires_grad=True),
    align_corners=False,
    loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
)
# retinanet_lsnet_fpn.py's train_cfg
TRAIN_CFG = dict(
    assigner=dict(
        type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1
    ),
    allowed_border=-1,
    pos_weight=-1,
    debug=False,
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


def register_parts(builder):
    """The renderings of tests/torch_lsnet_dense.py in MMDetection's or MMSegmentation's
    registries (`builder`: mmdet.models.builder or mmseg.models.builder)."""
    sys.path.insert(0, str(TESTS))
    import torch_lsnet_dense

    if "LSNetDetectionBackbone" not in builder.BACKBONES.module_dict:
        builder.BACKBONES.register_module(
            "LSNetDetectionBackbone", module=torch_lsnet_dense.build_backbone
        )
        builder.NECKS.register_module("LSNetFPNRendering", module=torch_lsnet_dense.build_neck)


def build(task, variant, state, dtype):
    import torch
    from mmcv import Config

    backbone = dict(type="LSNetDetectionBackbone", variant=variant)
    if task == "segment":
        import mmseg.models.builder
        from mmseg.models import build_segmentor

        register_parts(mmseg.models.builder)
        model = dict(
            type="EncoderDecoder",
            backbone=backbone,
            neck=dict(type="LSNetFPNRendering", variant=variant, num_outs=4),
            decode_head=DECODE_HEAD,
            train_cfg=dict(),
            test_cfg=dict(mode="whole"),
        )
        model = build_segmentor(Config(dict(model=model)).model)
    else:
        import mmdet.models.builder
        from mmdet.models import build_detector

        register_parts(mmdet.models.builder)
        model = dict(
            type="RetinaNet",
            backbone=backbone,
            neck=dict(type="LSNetFPNRendering", variant=variant),
            bbox_head=BBOX_HEAD,
            train_cfg=None,
            test_cfg=TEST_CFG,
        )
        # attribute access, as a config file read by Config.fromfile gives
        model = build_detector(Config(dict(model=model)).model)
    own = model.state_dict()
    for key, value in state.items():
        if key.endswith("attention_bias_idxs") and not np.array_equal(value, own[key].numpy()):
            raise SystemExit(f"{key} differs from the official 14x14 offset table")
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model.double() if dtype == "float64" else model


def segment(model, image, dtype):
    """The head's logits, MMSegmentation's class map and its top-2 margin for one image."""
    import torch

    x = torch.from_numpy(image).to(torch.float64 if dtype == "float64" else torch.float32)
    h, w = image.shape[2:]
    meta = dict(img_shape=(h, w, 3), ori_shape=(h, w, 3), pad_shape=(h, w, 3), flip=False)
    with torch.no_grad():
        logits = model.decode_head.forward_test(model.extract_feat(x), [meta], None)
        (pred,) = model.simple_test(x, [meta], rescale=True)
        top2 = model.encode_decode(x, [meta]).topk(2, dim=1).values[0]
    return {
        f"{dtype}/seg_logits_head": logits.numpy(),
        f"{dtype}/seg_pred": np.asarray(pred),
        f"{dtype}/seg_margin": (top2[0] - top2[1]).numpy(),
    }


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


def head_loss(data):
    """MMDetection's ``RetinaHead.loss`` (assignment, targets, focal and L1 losses) of given
    head outputs and ground truth: the input .npz holds ``cls_score_{0..4}`` (B, 9C, h, w),
    ``bbox_pred_{0..4}``, ``image_shape`` (H, W) and per image ``gt_bboxes_{b}`` (n, 4),
    ``gt_labels_{b}`` (n,)."""
    import torch
    from mmcv import Config
    from mmdet.models import build_head

    levels = len([k for k in data.files if k.startswith("cls_score_")])
    scores = [torch.from_numpy(data[f"cls_score_{i}"]) for i in range(levels)]
    deltas = [torch.from_numpy(data[f"bbox_pred_{i}"]) for i in range(levels)]
    batch, channels = scores[0].shape[:2]
    head = dict(BBOX_HEAD, num_classes=channels // 9, train_cfg=TRAIN_CFG, test_cfg=TEST_CFG)
    head = build_head(Config(dict(head=head)).head)
    h, w = (int(v) for v in data["image_shape"])
    metas = [dict(img_shape=(h, w, 3), pad_shape=(h, w, 3), batch_input_shape=(h, w))] * batch
    boxes = [torch.from_numpy(data[f"gt_bboxes_{b}"]) for b in range(batch)]
    labels = [torch.from_numpy(data[f"gt_labels_{b}"]).long() for b in range(batch)]
    losses = head.loss(scores, deltas, boxes, labels, metas)
    return {
        "loss_cls": np.float64(sum(float(v) for v in losses["loss_cls"])),
        "loss_bbox": np.float64(sum(float(v) for v in losses["loss_bbox"])),
    }


def check():
    import torch

    kernel = install_stand_ins()
    import mmcv
    import mmcv.ops
    import mmdet
    import mmdet.models  # noqa: F401
    import mmseg
    import mmseg.models  # noqa: F401

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    keep = mmcv.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)[1]
    assert keep.tolist() == [0, 2], keep
    assert torch.version.cuda is None, "a CUDA build of torch"
    versions = f"mmdet {mmdet.__version__}, mmseg {mmseg.__version__}"
    print(f"torch {torch.__version__}, mmcv {mmcv.__version__}, {versions}")
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
        task = case.get("task", "detect")
        if task == "loss":
            np.savez(case["output"], **head_loss(data))
            print(f"{case['name']}: loss")
            continue
        out = {}
        for dtype in case["dtypes"]:
            start = time.perf_counter()
            model = build(task, case["variant"], state, dtype)
            out.update((segment if task == "segment" else run)(model, data["input"], dtype))
            out[f"{dtype}/seconds"] = np.float64(time.perf_counter() - start)
        np.savez(case["output"], **out)
        print(f"{case['name']}: {task} ({', '.join(case['dtypes'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
