"""Batch-1 CPU latency of the RetinaNet-LSNet detector: our LiteRT exports vs litert-torch's.

For each variant (LSNet-T by default), input size and thread count, in one process and one run:

* ours: `lsnet_keras.lsnet_{t,s,b}_retinanet`, `reparameterize`d, exported fp32, fp16 and int8
  (`--precisions`) for the cpu target and run by ai_edge_litert (XNNPACK, `num_threads`), as
  three parts:
    backbone  the Keras backbone alone (`model.backbone`, the features-only LSNet), exported
              the way the classifier is (`export_tflite`: ImageNet-normalized float input, the
              four stage outputs; int8 full-integer with float I/O);
    network   `export_detector(..., network_only=True)`: pixels in (float 0..255, uint8 for
              int8), normalization, backbone, neck, head, sigmoid, the box encodings;
    full      `export_detector(...)`: the same ending in TFLite_Detection_PostProcess (regular
              NMS), the file MediaPipe's ObjectDetector runs.
  The post-processing cost is reported as full minus network (medians; and mins).
* litert-torch: the route a user would otherwise take, the official RetinaNet on the same
  architecture in plain PyTorch (the backbone and neck of `tests/torch_lsnet_dense.py`, a plain
  RetinaHead here: 4 + 4 3x3 convs of 256 channels with ReLU, retina_cls and retina_reg,
  shared over the 5 levels), with every Conv+BN folded as `benchmarks/litert_torch_routes.py`
  folds the classifier and the stage-4 attention's bicubically resized bias precomputed at the
  export size as a buffer (the official code resizes it on every call; nothing else changed),
  converted by `litert_torch.convert` (fp32) and its PT2E int8 route (as `litert_torch_routes`:
  per-channel symmetric static int8), NCHW MMDetection-normalized input, the network's raw
  per-level outputs (no NMS), as two parts: backbone and network.

Both sides run the same weights: `--weights` (an MMDetection checkpoint) or
`torch_lsnet_dense.random_detector_state` (random but well-behaved, seeded; its classifier
scores pass the 0.05 threshold often enough for NMS to have work). Both int8 routes calibrate
on the same `--calibration-images` built-in images (a handful: this measures speed, not
accuracy). Every network's class scores on one image are compared with the official PyTorch
model's (eager, per-call bias resize, BatchNorm separate): the float ones must agree; the
int8 ones are only reported (random weights are far more sensitive to quantization than trained
ones). The post-processing cost depends on how many scores pass 0.05 (recorded per network as
`scores_above_threshold`): with random weights that count, and so the NMS cost, can be far from
a trained model's (at 640x640 the random state passes about a fifth of all anchor-class pairs),
so take the post-processing row from `--weights` for a representative figure.

The contenders of one (variant, size, threads) group are timed interleaved in rounds
(`contenders.run_interleaved`), so machine load hits them alike; compare the ratios within one
run, not absolute numbers across machines. Targets (1 thread, medians): our backbone at most
0.5x theirs (checked at fp32 and int8), our int8 network at most 0.8x their int8 network, our
fp32 network faster than theirs.

Usage:
    python benchmarks/detector_latency.py                         # LSNet-T, 320 and 640, 1 thread
    python benchmarks/detector_latency.py --quick                 # 128x128, few runs (smoke check)
    python benchmarks/detector_latency.py --variants t s --sizes 320 --threads 1 2

Writes `benchmarks/results/detector_latency.json` (or --json) and prints markdown tables;
progress goes to stderr. Conversions run in litert-torch's own venv (`litert_torch_routes.
litert_torch_python`), this file being run there as a script (`--convert ...`).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import contenders as c  # noqa: E402
import litert_torch_routes as routes  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "detector_latency.json"
PRECISIONS = ("fp32", "fp16", "int8")
THEIR_PRECISIONS = ("fp32", "int8")  # litert-torch: fp32 and its PT2E int8
OURS, THEIRS = "ours", "litert-torch"
PARTS = {OURS: ("backbone", "network", "full"), THEIRS: ("backbone", "network")}
# (name, part, our precision, their precision, ratio limit); pass/fail on 1-thread medians
TARGETS = (
    ("backbone_fp32", "backbone", "fp32", "fp32", 0.5),
    ("backbone_int8", "backbone", "int8", "int8", 0.5),
    ("network_int8", "network", "int8", "int8", 0.8),
    ("network_fp32", "network", "fp32", "fp32", 1.0),
)
DESCRIPTIONS = {
    OURS: "lsnet_keras RetinaNet, reparameterize, cpu target; backbone: export_tflite of "
    "model.backbone (features-only LSNet, normalized float input); network: export_detector("
    "network_only=True) (pixels in, normalization inside, box encodings and sigmoid scores out); "
    "full: export_detector() ending in TFLite_Detection_PostProcess; ai_edge_litert + XNNPACK",
    THEIRS: "official RetinaNet-LSNet in plain PyTorch (tests/torch_lsnet_dense.py backbone and "
    "neck, plain RetinaHead), Conv+BN folded, stage-4 attention bias resized once at the export "
    "size; litert_torch.convert (fp32) or its PT2E int8 (get_symmetric_quantization_config("
    "is_per_channel=True), static); NCHW normalized input, raw per-level outputs (no NMS); "
    "ai_edge_litert + XNNPACK",
}


def parse_size(text):
    """ "320" -> (320, 320); "256x384" -> (256, 384)."""
    h, _, w = text.lower().partition("x")
    return int(h), int(w or h)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["t"], help="t, s, b (or lsnet_t ...)")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=None, help="320 or HxW")
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--runs", type=int, help="timed invokes per contender (default 30)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaving rounds")
    parser.add_argument("--quick", action="store_true", help="128x128 only, 5 runs")
    parser.add_argument("--weights", help="an MMDetection RetinaNet-LSNet checkpoint (both sides)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--calibration-images", type=int, default=8, help="int8 calibration set")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--models-dir", type=Path, help="keep the exported models here")
    parser.add_argument(
        "--no-install", action="store_true", help="skip litert-torch if its venv is missing"
    )
    args = parser.parse_args(argv)
    args.variants = [v if v.startswith("lsnet_") else f"lsnet_{v}" for v in args.variants]
    if args.quick:
        args.sizes = args.sizes or [(128, 128)]
        args.runs = args.runs or 5
        args.rounds = min(args.rounds, 2)
    args.sizes = args.sizes or [(320, 320), (640, 640)]
    args.runs = args.runs or 30
    args.rounds = max(1, min(args.rounds, args.runs))
    return args


def log(message):
    print(f"[detector_latency {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the PyTorch RetinaNet (also run in the litert-torch venv) -------------------------------


def _dense():
    if str(REPO / "tests") not in sys.path:
        sys.path.insert(0, str(REPO / "tests"))
    import torch_lsnet_dense

    return torch_lsnet_dense


def torch_retinanet(variant, num_classes=80):
    """The official RetinaNet-LSNet in plain PyTorch: backbone, neck, RetinaHead; its forward
    returns the 5 levels' class logits then the 5 levels' box deltas, NCHW."""
    import torch.nn.functional as F
    from torch import nn

    dense = _dense()

    class ConvModule(nn.Module):  # mmcv's ConvModule(3x3, no norm, ReLU): keys `*.conv.*`
        def __init__(self, channels):
            super().__init__()
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

        def forward(self, x):
            return F.relu(self.conv(x))

    class RetinaHead(nn.Module):
        """MMDetection's RetinaHead (stacked_convs 4, 256 channels, 9 anchors), shared."""

        def __init__(self, channels=dense.FPN_CHANNELS, anchors=dense.NUM_ANCHORS):
            super().__init__()
            self.cls_convs = nn.ModuleList(ConvModule(channels) for _ in range(4))
            self.reg_convs = nn.ModuleList(ConvModule(channels) for _ in range(4))
            self.retina_cls = nn.Conv2d(channels, anchors * num_classes, 3, padding=1)
            self.retina_reg = nn.Conv2d(channels, anchors * 4, 3, padding=1)

        def forward(self, feats):
            scores, deltas = [], []
            for x in feats:
                cls, reg = x, x
                for conv in self.cls_convs:
                    cls = conv(cls)
                for conv in self.reg_convs:
                    reg = conv(reg)
                scores.append(self.retina_cls(cls))
                deltas.append(self.retina_reg(reg))
            return (*scores, *deltas)

    class RetinaNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = dense.build_backbone(variant)
            self.neck = dense.build_neck(variant)
            self.bbox_head = RetinaHead()

        def forward(self, x):
            return self.bbox_head(self.neck(self.backbone(x)))

    return RetinaNet()


def load_torch_state(model, state):
    """Load an MMDetection {key: array} state_dict (other keys, e.g. `ema_*`, ignored)."""
    import torch

    own = model.state_dict()
    model.load_state_dict({k: torch.as_tensor(np.asarray(state[k])) for k in own})
    return model.eval()


def prepare_for_export(model, size):
    """The export form of the official model: every Conv2d_BN folded (`contenders.fold_conv_bn`)
    and each stage-4 attention's bicubically resized bias precomputed for `size` (a buffer)."""
    import torch

    dense = _dense()
    stage4 = [dense.torch_lsnet.stage_resolutions(side)[3] for side in size]
    tokens = stage4[0] * stage4[1]

    class FixedBiasAttention(dense.DetectionAttention):
        """DetectionAttention with its resized (heads, N, N) bias computed once."""

        def resized_bias(self, n):
            return self.fixed_bias

    folded = c.fold_conv_bn(model)
    with torch.no_grad():
        for module in folded.modules():
            if isinstance(module, dense.DetectionAttention):
                module.register_buffer("fixed_bias", module.resized_bias(tokens).clone())
                module.__class__ = FixedBiasAttention
    return folded.eval()


def _convert_main(precision, part, variant, height, width, state_path, output, calibration=None):
    """In the litert-torch venv: build, load, prepare, convert (fp32 or PT2E int8), export."""
    import litert_torch
    import torch

    size = (int(height), int(width))
    state = {k: v.numpy() for k, v in torch.load(state_path).items()}
    model = prepare_for_export(load_torch_state(torch_retinanet(variant), state), size)
    model = model.backbone if part == "backbone" else model
    args = (torch.zeros(1, 3, *size),)
    if precision == "fp32":
        litert_torch.convert(model, args).export(output)
        return
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    prepared = quantize_pt2e.prepare_pt2e(torch.export.export(model, args).module(), quantizer)
    with torch.no_grad():
        for image in np.load(calibration):
            prepared(torch.from_numpy(image[None]))
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    config = QuantConfig(pt2e_quantizer=quantizer)
    litert_torch.convert(converted, args, quant_config=config).export(output)


def export_theirs(python, precision, part, variant, size, state_path, path, calibration_path):
    """Run `_convert_main` in litert-torch's venv; RuntimeError with the tail of its stderr."""
    command = [str(python), __file__, "--convert", precision, part, variant, *map(str, size)]
    command += [str(state_path), str(path)]
    if precision == "int8":
        command.append(str(calibration_path))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"litert-torch {precision} {part}: {' | '.join(lines[-3:])[-1500:]}")
    return path


# --- ours ------------------------------------------------------------------------------------


def export_ours(deployed, precision, part, path, calibration):
    """One of our exports of the reparameterized detector `deployed`."""
    from lsnet_keras.litert.detector_export import export_detector
    from lsnet_keras.litert.export import export_tflite

    images = calibration if precision == "int8" else None
    if part == "backbone":
        export_tflite(
            deployed.backbone, path, precision=precision, calibration=images, overwrite=True
        )
    else:
        export_detector(
            deployed,
            path,
            precision=precision,
            calibration=images,
            network_only=part == "network",
            overwrite=True,
        )
    return path


# --- running ---------------------------------------------------------------------------------


def all_outputs(path, x):
    """Every output of one 1-thread invoke of a .tflite fed `x` (transposed to its layout)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != x.shape:
        x = x.transpose(0, 2, 3, 1)
    interpreter.set_tensor(detail["index"], np.ascontiguousarray(x, dtype=detail["dtype"]))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x.astype("float64")))


def class_scores(outputs, num_classes):
    """(anchors, classes) sigmoid scores, anchor order of `normalized_anchors`, from our network's
    outputs (one (1, N, classes) tensor of scores) or the raw NCHW per-level logits."""
    ours = [o for o in outputs if o.ndim == 3 and o.shape[-1] == num_classes]
    if ours:
        return ours[0][0].astype("float64")
    levels = [
        o for o in outputs if o.ndim == 4 and o.shape[1] % num_classes == 0 and o.shape[1] > 36
    ]
    levels.sort(key=lambda o: -o.shape[2] * o.shape[3])
    return np.concatenate(
        [_sigmoid(o[0].transpose(1, 2, 0).reshape(-1, num_classes)) for o in levels]
    )


def detector_state(variant, size, weights, seed):
    """The MMDetection state_dict both sides load: `weights` read, or seeded random weights."""
    if weights is not None:
        from lsnet_keras.weights.checkpoint import read_state_dict

        return read_state_dict(weights), f"checkpoint {weights}"
    state = _dense().random_detector_state(variant, size, seed)
    return state, f"torch_lsnet_dense.random_detector_state({variant!r}, {size}, seed={seed})"


def bench_group(variant, size, args, workdir, litert_python):
    """Export, check and time every contender of one (variant, size); its JSON record."""
    import torch

    import lsnet_keras
    from lsnet_keras.config import MMDET_MEAN, MMDET_STD
    from lsnet_keras.detection.postprocess import MMDET_TEST
    from lsnet_keras.litert.calibration import builtin_images
    from lsnet_keras.preprocess import normalize

    h, w = size
    tag = f"{variant} {h}x{w}"
    state, weights_source = detector_state(variant, size, args.weights, args.seed)
    log(f"{tag}: building")
    model = getattr(lsnet_keras, f"{variant}_retinanet")(input_shape=(h, w), weights=state)
    deployed = lsnet_keras.reparameterize(model)
    reference = load_torch_state(torch_retinanet(variant), state)

    side = max(h, w)
    calibration = builtin_images(args.calibration_images, side, seed=0)[:, :h, :w]
    pixels = builtin_images(1, side, seed=1000)[:, :h, :w].astype("float32")  # NHWC 0..255
    inputs = {
        (OURS, "backbone"): normalize(pixels),  # ImageNet-normalized, as the classifier's
        (OURS, "network"): pixels,
        (OURS, "full"): pixels,
    }
    their_x = ((pixels - np.array(MMDET_MEAN)) / np.array(MMDET_STD)).transpose(0, 3, 1, 2)
    their_x = np.ascontiguousarray(their_x, dtype="float32")
    inputs[(THEIRS, "backbone")] = inputs[(THEIRS, "network")] = their_x
    with torch.inference_mode():
        raw = reference(torch.from_numpy(their_x))
        expected = class_scores([o.numpy() for o in raw], model.num_classes)
    threshold = float(MMDET_TEST.score_threshold)

    jobs = {}
    for precision in args.precisions:
        for part in PARTS[OURS]:
            jobs[(OURS, precision, part)] = (export_ours, (deployed, precision, part))
    models = {}
    if litert_python is not None:
        state_path = workdir / f"{variant}-{h}x{w}.state.pt"
        torch.save({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()}, state_path)
        calibration_path = workdir / f"{variant}-{h}x{w}.calibration.npy"
        cal = (calibration.astype("float32") - np.array(MMDET_MEAN)) / np.array(MMDET_STD)
        np.save(calibration_path, cal.transpose(0, 3, 1, 2).astype("float32"))
        for precision in THEIR_PRECISIONS:
            if precision not in args.precisions:
                continue
            for part in PARTS[THEIRS]:
                extra = (precision, part, variant, size, state_path)
                jobs[(THEIRS, precision, part)] = (
                    lambda path, extra=extra: export_theirs(
                        litert_python, *extra, path, calibration_path
                    ),
                    (),
                )
    else:
        for precision in THEIR_PRECISIONS:
            for part in PARTS[THEIRS]:
                models[f"{THEIRS}/{precision}/{part}"] = {
                    "skipped": "litert-torch venv unavailable (install failed or --no-install)"
                }
    for (contender, precision, part), (export, extra) in jobs.items():
        name = f"{contender}/{precision}/{part}"
        path = workdir / f"{variant}-{h}x{w}-{contender}-{precision}-{part}.tflite"
        log(f"{tag}: exporting {name}")
        start = time.perf_counter()
        try:
            if contender == OURS:
                export(*extra, path, calibration)
            else:
                export(path)
        except Exception as err:  # one failed contender must not lose the whole run
            models[name] = {"skipped": f"export failed: {type(err).__name__}: {err}"[:2000]}
            log(f"{tag}: {name} FAILED: {models[name]['skipped'][:300]}")
            continue
        seconds = round(time.perf_counter() - start, 1)
        log(f"{tag}: {name} exported in {seconds} s")
        info = {"path": path, "export_s": seconds, "size_bytes": path.stat().st_size}
        info["op_counts"] = c.tflite_op_counts(path)
        info["xnnpack"] = c.tflite_partitions(path)
        outputs = all_outputs(path, inputs[(contender, part)])
        if part == "network":
            scores = class_scores(outputs, model.num_classes)
            info["max_abs_diff_scores"] = float(np.abs(scores - expected).max())
            info["scores_above_threshold"] = int((scores > threshold).sum())
        elif part == "full":
            info["detections"] = int(next(o for o in outputs if o.size == 1).reshape(()))
        models[name] = info
    del model, deployed

    latency = {}
    for threads in args.threads:
        log(f"{tag}: timing at {threads} thread(s)")
        timers = []
        for name, info in models.items():
            if "path" in info:
                contender, _, part = name.split("/")
                x = inputs[(contender, part)]
                timers.append(c.tflite_timer(name, info["path"], threads, x))
        latency[str(threads)] = c.run_interleaved(timers, args.runs, args.rounds)
        del timers
    for info in models.values():
        info.pop("path", None)
    return {
        "variant": variant,
        "size": [h, w],
        "weights": weights_source,
        "reference_scores_above_threshold": int((expected > threshold).sum()),
        "models": models,
        "latency": latency,
        "postprocess": postprocess_costs(latency),
        "ratios": ratios(latency),
    }


def postprocess_costs(latency):
    """{threads: {precision: full - network}} of our models, from medians and from mins."""
    costs = {}
    for threads, group in latency.items():
        for precision in PRECISIONS:
            full, net = (
                group.get(f"{OURS}/{precision}/full"),
                group.get(f"{OURS}/{precision}/network"),
            )
            if full and net:
                costs.setdefault(threads, {})[precision] = {
                    "median_ms": full["median_ms"] - net["median_ms"],
                    "min_ms": full["min_ms"] - net["min_ms"],
                }
    return costs


def ratios(latency):
    """{threads: {target name: ours / theirs on medians (and mins), limit, pass}}."""
    found = {}
    for threads, group in latency.items():
        for key, part, mine, theirs, limit in TARGETS:
            a, b = group.get(f"{OURS}/{mine}/{part}"), group.get(f"{THEIRS}/{theirs}/{part}")
            if not (a and b):
                missing = f"{OURS}/{mine}/{part}" if a is None else f"{THEIRS}/{theirs}/{part}"
                found.setdefault(threads, {})[key] = {"skipped": f"{missing} was not timed"}
                continue
            ratio = a["median_ms"] / b["median_ms"]
            found.setdefault(threads, {})[key] = {
                "ratio": ratio,
                "ratio_of_mins": a["min_ms"] / b["min_ms"],
                "target": f"<= {limit}" if limit < 1 else f"< {limit}",
                "pass": ratio <= limit if limit < 1 else ratio < limit,
            }
    return found


def markdown(results):
    """Per (variant, size, threads): the latency table, the ratios and the target checks."""
    lines = []
    order = [(OURS, p, part) for p in PRECISIONS for part in (*PARTS[OURS][:2], "post", "full")]
    order += [(THEIRS, p, part) for p in THEIR_PRECISIONS for part in PARTS[THEIRS]]
    for record in results["groups"]:
        h, w = record["size"]
        for threads, group in record["latency"].items():
            lines += [
                "",
                f"{record['variant']} RetinaNet, {h}x{w}, {threads} thread(s), "
                f"{results['machine']['cpu']}:",
                "",
                "| contender | precision | part | median ms | min ms | p90 ms | size MB |",
                "|---|---|---|---|---|---|---|",
            ]
            post = record["postprocess"].get(threads, {})
            for contender, precision, part in order:
                if part == "post":
                    if precision in post:
                        cost = post[precision]
                        lines.append(
                            f"| {contender} | {precision} | post-processing (full - network) "
                            f"| {cost['median_ms']:.2f} | {cost['min_ms']:.2f} | - | - |"
                        )
                    continue
                name = f"{contender}/{precision}/{part}"
                if name not in group:
                    continue
                s, info = group[name], record["models"][name]
                lines.append(
                    f"| {contender} | {precision} | {part} | {s['median_ms']:.2f} "
                    f"| {s['min_ms']:.2f} | {s['p90_ms']:.2f} | {info['size_bytes'] / 1e6:.1f} |"
                )
            lines += ["", "Ours / litert-torch (medians; ratio of mins in brackets):", ""]
            for key, check in record["ratios"].get(threads, {}).items():
                if "ratio" in check:
                    verdict = "pass" if check["pass"] else "FAIL"
                    lines.append(
                        f"- {key}: {check['ratio']:.2f}x ({check['ratio_of_mins']:.2f}x), "
                        f"target {check['target']}: {verdict}"
                    )
                else:
                    lines.append(f"- {key}: {check['skipped']}")
        skipped = [f"- {n}: {i['skipped']}" for n, i in record["models"].items() if "skipped" in i]
        if skipped:
            lines += ["", "Skipped contenders (not timed):", "", *skipped]
        checks = [
            f"- {n}: class scores max |diff| vs the official PyTorch model "
            f"{i['max_abs_diff_scores']:.2e}, {i['scores_above_threshold']} scores > 0.05"
            for n, i in record["models"].items()
            if "max_abs_diff_scores" in i
        ]
        lines += [
            "",
            f"Outputs ({h}x{w}; reference: "
            f"{record['reference_scores_above_threshold']} scores > 0.05):",
            "",
            *checks,
        ]
        lines += [
            f"- {n}: {i['detections']} detections"
            for n, i in record["models"].items()
            if "detections" in i
        ]
        lines += [
            "",
            f"XNNPACK delegation and export time ({h}x{w}; best: 1 partition, nothing outside):",
            "",
            "| model | partitions | ops outside XNNPACK | export s |",
            "|---|---|---|---|",
        ]
        for name, info in record["models"].items():
            if "xnnpack" in info:
                outside = info["xnnpack"]["outside"]
                ops = ", ".join(f"{n} {op}" for op, n in sorted(outside.items())) or "none"
                lines.append(
                    f"| {name} | {info['xnnpack']['partitions']} | {ops} | {info['export_s']} |"
                )
    return "\n".join(lines).strip()


def main(argv=None):
    from mobile_latency import machine_info, versions, write_results

    args = parse_args(argv)
    started = time.time()
    litert_python = routes.litert_torch_python(install=not args.no_install)
    log(f"litert-torch venv: {litert_python}")
    results = {
        "machine": machine_info(),
        "versions": versions(litert_python),
        "settings": {
            "batch": 1,
            "variants": args.variants,
            "sizes": args.sizes,
            "threads": args.threads,
            "precisions": args.precisions,
            "runs": args.runs,
            "rounds": args.rounds,
            "weights": args.weights or f"random_detector_state, seed {args.seed}",
            "calibration_images": args.calibration_images,
        },
        "contenders": DESCRIPTIONS,
        "groups": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.models_dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for variant in args.variants:
            for size in args.sizes:
                record = bench_group(variant, size, args, workdir, litert_python)
                results["groups"].append(record)
    write_results(results, markdown, args.json, started)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--convert"]:
        _convert_main(*sys.argv[2:])
        sys.exit(0)
    sys.exit(main())
