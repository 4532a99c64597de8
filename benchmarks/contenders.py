"""Helpers of `benchmarks/mobile_latency.py`: contenders, timers, MAC counter, GEMM rate.

Every contender runs the same weights: the PyTorch reference (`tests/torch_lsnet.py`) with
`randomize_` weights, in eval mode. The Keras model loads its state_dict.

Contenders:
    tflite-{fp32,fp16,dynamic,int8}  ours: `lsnet_keras.export_tflite` (reparameterized,
                                     NHWC input), run by `ai_edge_litert` with XNNPACK.
    torch-eager                      the reference as written (BatchNorm separate), eager CPU.
    torch-eager-folded               the same with every Conv+BN folded into one conv
                                     (`torch.nn.utils.fusion.fuse_conv_bn_eval`), eager CPU.
    onnxruntime                      ONNX export of the folded reference (TorchScript exporter,
                                     opset 17), ORT CPU provider with all graph optimizations.
    onnxruntime-int8                 that ONNX model quantized by ONNX Runtime's static int8
                                     (QDQ, per-channel int8 weights, uint8 activations) on the
                                     calibration images our int8 export uses.
    litert-torch, litert-torch-int8, aeq-int8
                                     litert-torch's fp32 conversion of the folded reference,
                                     its PT2E int8, and ai-edge-quantizer's static int8 of the
                                     fp32 .tflite; converted in litert-torch's own venv and run
                                     by `ai_edge_litert` with XNNPACK exactly like ours (see
                                     `benchmarks/litert_torch_routes.py`).

The torch-side helpers also run in the litert-torch venv, so the module imports nothing heavy
at import time.
"""

import collections
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import litert_torch_routes
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
OURS = tuple(f"tflite-{p}" for p in PRECISIONS)
THEIRS = (
    "torch-eager",
    "torch-eager-folded",
    "onnxruntime",
    "onnxruntime-int8",
    *litert_torch_routes.NAMES,
)
# The other int8 routes, against which ours is measured.
INT8_ROUTES = ("onnxruntime-int8", "litert-torch-int8", "aeq-int8")
DESCRIPTIONS = {
    "tflite-fp32": "ours: export_tflite(precision='fp32'), ai_edge_litert + XNNPACK",
    "tflite-fp16": "ours: export_tflite(precision='fp16') (fp16 weights; the model's "
    "reduced_precision_support metadata lets XNNPACK compute in fp16), ai_edge_litert + XNNPACK",
    "tflite-dynamic": "ours: export_tflite(precision='dynamic') (int8 weights; XNNPACK quantizes "
    "activations on the fly), ai_edge_litert + XNNPACK",
    "tflite-int8": "ours: export_tflite(precision='int8') (full-integer, float32 I/O, built-in "
    "calibration set), ai_edge_litert + XNNPACK",
    "torch-eager": "PyTorch reference (tests/torch_lsnet.py), eval, eager CPU, inference_mode",
    "torch-eager-folded": "the same with every Conv+BN folded (fuse_conv_bn_eval), eager CPU",
    "onnxruntime": "ONNX export (TorchScript exporter, opset 17) of the Conv+BN-folded "
    "reference, ONNX Runtime CPU, ORT_ENABLE_ALL, sequential, inter-op 1",
    "onnxruntime-int8": "onnxruntime.quantization.quantize_static of that ONNX model (QDQ, "
    "per-channel, int8 weights, uint8 activations, MinMax on our 32 built-in calibration images), "
    "ONNX Runtime CPU like onnxruntime",
    **litert_torch_routes.DESCRIPTIONS,
}
GEMM_SIZE = 1024


# --- the PyTorch reference -----------------------------------------------------------------


def _torch_lsnet():
    sys.path.insert(0, str(REPO / "tests"))
    import torch_lsnet

    return torch_lsnet


def reference_model(variant, seed=0, img_size=224):
    """The PyTorch reference LSNet with `randomize_(seed)` weights, in eval mode."""
    torch_lsnet = _torch_lsnet()
    model = torch_lsnet.build_variant(variant, img_size=img_size)
    return torch_lsnet.randomize_(model, seed).eval()


def fold_conv_bn(model):
    """A copy of the reference with every `Conv2d_BN` (conv then BatchNorm) as one biased conv.

    The BatchNorm of `BN_Linear` (before the linear) and of `LSConv` (after SKA) stay.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if type(module).__name__ == "Conv2d_BN":
            module.c = fuse_conv_bn_eval(module.c, module.bn)
            module.bn = nn.Identity()
    return folded


def count_macs(model, img_size=224):
    """Multiply-accumulates of one image through the deployed model, by kind.

    Counted: every convolution (dense, pointwise, depthwise, the SE convs) as output elements
    x (input channels / groups) x kernel area; the linear head; the two attention matmuls
    (N^2 x key channels for q^T k, N^2 x value channels for attn @ v, N tokens); SKA as 9 MACs
    per output element. Not counted: the RepVGG 1x1 depthwise branch (fused into the 3x3 when
    deployed), BatchNorm (folded), GroupNorm, softmax, residual adds, SE gating, pooling.
    """
    import torch

    macs = collections.Counter()

    def conv_hook(module, _inputs, output):
        k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        kind = "depthwise conv" if module.groups > 1 else "conv"
        macs[kind] += output.numel() * k

    def linear_hook(module, _inputs, output):
        macs["linear"] += output.numel() * module.in_features

    def attention_hook(module, inputs, _output):
        _, _, h, w = inputs[0].shape
        macs["attention matmuls"] += (h * w) ** 2 * (module.nh_kd + module.dh)

    def ska_hook(_module, _inputs, output):
        macs["ska"] += output.numel() * 9

    hooks = []
    for name, module in model.named_modules():
        kind = type(module).__name__
        if kind == "Conv2d" and not name.endswith("mixer.conv1.c"):
            hooks.append(module.register_forward_hook(conv_hook))
        elif kind == "Linear":
            hooks.append(module.register_forward_hook(linear_hook))
        elif kind == "Attention":
            hooks.append(module.register_forward_hook(attention_hook))
        elif kind == "SKA":
            hooks.append(module.register_forward_hook(ska_hook))
    with torch.inference_mode():
        model(torch.zeros(1, 3, img_size, img_size))
    for hook in hooks:
        hook.remove()
    return dict(macs)


def module_counts(model):
    """{module type: count} of the leaf modules of a torch model (its "op counts")."""
    leaves = [m for m in model.modules() if not list(m.children())]
    names = (type(m).__name__ for m in leaves)
    return dict(collections.Counter(n for n in names if n not in ("Identity", "Sequential")))


def state_bytes(model):
    """Bytes of a torch model's state_dict (parameters and buffers)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


# --- exports -----------------------------------------------------------------------------------


def export_ours(state, variant, precision, path):
    """Load the reference state_dict into Keras and export it with `export_tflite`."""
    import lsnet_keras
    from lsnet_keras.litert.export import export_tflite

    model = lsnet_keras.build_variant(variant, input_shape=224)
    lsnet_keras.load_weights(model, state, source="torch reference")
    Path(path).write_bytes(export_tflite(model, precision=precision))
    return path


def export_onnx(model, path):
    """ONNX export of a torch model (TorchScript exporter, opset 17, static batch 1)."""
    import torch

    x = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["image"])
    return path


def export_onnx_int8(onnx_path, path, calibration_nchw):
    """ONNX Runtime's static int8 quantization of an ONNX model: QDQ, per-channel int8 weights,
    uint8 activations (its fast x86 setting), MinMax ranges over `calibration_nchw`."""
    from onnxruntime import quantization as q

    class Images(q.CalibrationDataReader):
        def __init__(self):
            self.images = iter(calibration_nchw)

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {"image": image[None].astype("float32")}

    q.quantize_static(
        str(onnx_path),
        str(path),
        Images(),
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
    )
    return path


def tflite_partitions(path):
    """{"partitions": XNNPACK partitions, "outside": {op: count} left to TFLite's kernels}."""
    from lsnet_keras.litert.xnnpack import xnnpack_partitions

    report = xnnpack_partitions(Path(path).read_bytes())
    return {"partitions": report.partitions, "outside": report.outside}


def gemm_int8_tflite(path, size=GEMM_SIZE):
    """The int8 twin of `gemm_tflite`: the same FULLY_CONNECTED, int8 weights and activations
    (post-training quantized on normal data), int8 input and output."""
    import tensorflow as tf

    weights = tf.constant(np.random.default_rng(0).normal(size=(size, size)).astype("float32"))
    spec = tf.TensorSpec((size, size), tf.float32)
    function = tf.function(lambda x: tf.matmul(x, weights), input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(1)
    converter.representative_dataset = lambda: (
        [rng.normal(size=(size, size)).astype("float32")] for _ in range(4)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    Path(path).write_bytes(converter.convert())
    return path


def gemm_tflite(path, size=GEMM_SIZE):
    """A TFLite model of one (size x size) @ (size x size) FULLY_CONNECTED with fp32 weights."""
    import tensorflow as tf

    weights = tf.constant(np.random.default_rng(0).normal(size=(size, size)).astype("float32"))
    spec = tf.TensorSpec((size, size), tf.float32)
    function = tf.function(lambda x: tf.matmul(x, weights), input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
    Path(path).write_bytes(converter.convert())
    return path


def numpy_gemm_rate(size=GEMM_SIZE, runs=20):
    """Single-thread NumPy (OpenBLAS) fp32 GEMM rate in MAC/s, measured in a subprocess."""
    code = (
        "import json, time, numpy as np\n"
        f"a = np.random.rand({size}, {size}).astype('float32'); b = a.copy(); a @ b\n"
        "t = []\n"
        f"for _ in range({runs}):\n"
        "    s = time.perf_counter(); a @ b; t.append(time.perf_counter() - s)\n"
        "print(json.dumps(t))\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    seconds = json.loads(out.stdout)
    return {"median": size**3 / float(np.median(seconds)), "best": size**3 / min(seconds)}


def read_bandwidth(megabytes=256, runs=10):
    """Single-thread DRAM read bandwidth in bytes/s (NumPy sum over a large array)."""
    code = (
        "import json, time, numpy as np\n"
        f"a = np.ones({megabytes} * 2**18, dtype='float32'); a.sum()\n"
        "t = []\n"
        f"for _ in range({runs}):\n"
        "    s = time.perf_counter(); a.sum(); t.append(time.perf_counter() - s)\n"
        "print(json.dumps(t))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    seconds = json.loads(out.stdout)
    nbytes = megabytes * 2**20
    return {"median": nbytes / float(np.median(seconds)), "best": nbytes / min(seconds)}


def tflite_macs(graph):
    """MACs of a parsed TFLite graph: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, BATCH_MATMUL
    (output elements x reduction length); elementwise ops (SKA's MULs) are not counted."""
    total = 0
    for op in graph.operators:
        out = int(np.prod(graph.tensors[op.outputs[0]].shape))
        weights = graph.tensors[op.inputs[1]].shape if len(op.inputs) > 1 else ()
        if op.name == "CONV_2D":
            total += out * int(np.prod(weights[1:]))  # (out, kh, kw, in)
        elif op.name == "DEPTHWISE_CONV_2D":
            total += out * weights[1] * weights[2]  # (1, kh, kw, channels)
        elif op.name == "FULLY_CONNECTED":
            total += out * weights[-1]  # (units, in)
        elif op.name == "BATCH_MATMUL":
            lhs = graph.tensors[op.inputs[0]].shape
            adj_x = getattr(op.options, "adjX", False)
            total += out * (lhs[-2] if adj_x else lhs[-1])
    return total


def tflite_op_counts(path):
    from lsnet_keras.litert.graph import read_graph

    return read_graph(Path(path).read_bytes()).op_counts()


def onnx_op_counts(path):
    import onnx

    return dict(collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node))


# --- timers ------------------------------------------------------------------------------------


class Timer:
    """One contender at one thread count: `call()` runs one batch-1 inference."""

    def __init__(self, name, call, before=None):
        self.name = name
        self.call = call
        self.before = before or (lambda: None)  # e.g. torch.set_num_threads before a chunk
        self.times_ms = []

    def output(self):
        self.before()
        return np.asarray(self.call(), dtype="float32").reshape(-1)


def tflite_timer(name, path, threads, x_nchw=None):
    """XNNPACK (the default delegate) with `threads`, fed `x_nchw` (NHWC or NCHW, as the model
    takes) or, when None, random data of the model's input shape."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    shape = tuple(detail["shape"])
    if x_nchw is None:
        x = np.random.default_rng(0).normal(size=shape)
    else:
        x = x_nchw if shape == x_nchw.shape else x_nchw.transpose(0, 2, 3, 1)
    interpreter.set_tensor(detail["index"], np.ascontiguousarray(x, dtype=detail["dtype"]))
    output = interpreter.get_output_details()[0]["index"]

    def call():
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return Timer(name, call)


def onnx_timer(name, path, threads, x_nchw):
    """ONNX Runtime CPU: intra-op `threads`, inter-op 1, sequential, all optimizations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x_nchw}
    return Timer(name, lambda: session.run(None, feed)[0])


def torch_timer(name, model, threads, x_nchw):
    """Eager PyTorch on CPU under `inference_mode` with `torch.set_num_threads(threads)`."""
    import torch

    x = torch.from_numpy(x_nchw)

    def call():
        with torch.inference_mode():
            return model(x).numpy()

    return Timer(name, call, before=lambda: torch.set_num_threads(threads))


def run_interleaved(timers, runs, rounds, warmup=3):
    """Time every timer `runs` times, interleaved in `rounds` chunks (rotating order).

    Each chunk starts with one untimed call, so a previous contender's spinning worker
    threads or cold caches are not charged to the next one. Fills `timer.times_ms`.
    """
    for timer in timers:
        timer.before()
        for _ in range(warmup):
            timer.call()
    per_round = [runs // rounds + (i < runs % rounds) for i in range(rounds)]
    for r, count in enumerate(per_round):
        order = timers[r % len(timers) :] + timers[: r % len(timers)]
        for timer in order:
            timer.before()
            timer.call()
            for _ in range(count):
                start = time.perf_counter()
                timer.call()
                timer.times_ms.append((time.perf_counter() - start) * 1e3)
    return {t.name: latency_stats(t.times_ms) for t in timers}


def latency_stats(times_ms):
    t = np.asarray(times_ms)
    return {
        "median_ms": float(np.median(t)),
        "min_ms": float(t.min()),
        "p90_ms": float(np.percentile(t, 90)),
        "runs": int(t.size),
    }
