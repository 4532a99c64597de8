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
    litert-torch                     `litert_torch.convert` of the folded reference (fp32,
                                     NCHW input), run by `ai_edge_litert` with XNNPACK exactly
                                     like ours. Converted in a venv (see `litert_torch_python`).

Only this module's top level and the torch-side helpers run in the litert-torch venv, so the
module imports nothing heavy at import time.
"""

import collections
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LITERT_TORCH_SPEC = "litert-torch==0.10.0"
VENV = Path.home() / ".cache" / "lsnet-keras" / "litert-torch-venv"
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
OURS = tuple(f"tflite-{p}" for p in PRECISIONS)
THEIRS = ("torch-eager", "torch-eager-folded", "onnxruntime", "onnxruntime-int8", "litert-torch")
INT8_ROUTES = ("onnxruntime-int8",)  # the other int8 routes, against which ours is measured
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
    "litert-torch": "litert_torch.convert of the Conv+BN-folded reference (fp32, NCHW input), "
    "ai_edge_litert + XNNPACK like ours",
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


def litert_torch_python(install=True):
    """The Python of a venv with `litert-torch` (created under ~/.cache/lsnet-keras if missing).

    The venv sees the main environment's packages (`--system-site-packages`) but installs
    litert-torch and the versions it pins (older typing_extensions and pydantic, jax) inside
    itself only, so the main environment is never changed. Returns None if unavailable.
    """
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import litert_torch"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    if not install:
        return None
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", LITERT_TORCH_SPEC]
    if subprocess.run(pip).returncode != 0:
        return None
    return python if subprocess.run(probe, capture_output=True).returncode == 0 else None


def export_litert_torch(model, variant, path, python):
    """`litert_torch.convert` of a torch model, run by this module in the venv's Python."""
    import torch

    state_path = Path(path).with_suffix(".state.pt")
    torch.save(model.state_dict(), state_path)
    command = [str(python), __file__, "litert-torch-export", variant, str(state_path), str(path)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    state_path.unlink()
    if result.returncode != 0:
        raise RuntimeError(f"litert-torch export failed:\n{result.stderr[-3000:]}")
    return path


def _litert_torch_export_main(variant, state_path, output):
    """Entry point in the litert-torch venv: rebuild the folded reference and convert it."""
    import litert_torch
    import torch

    model = fold_conv_bn(_torch_lsnet().build_variant(variant)).eval()
    model.load_state_dict(torch.load(state_path))
    litert_torch.convert(model, (torch.zeros(1, 3, 224, 224),)).export(output)


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


def cache_sweep_effect(path, runs, sweep_megabytes=128):
    """Whole-model 1-thread latency right after another invoke vs right after a cache sweep.

    The sweep reads `sweep_megabytes` (more than the L3) between invokes, so nothing of the
    model is cached. Equal medians mean nothing survives from one inference to the next
    either: the model streams all its weights from memory every time.

    Example: `cache_sweep_effect("lsnet_t-tflite-fp32.tflite", runs=40)`
    """
    timer = tflite_timer("model", path, 1)
    sweep = np.ones(sweep_megabytes * 2**18, dtype="float32")
    consecutive, after_sweep = [], []
    for _ in range(3):
        timer.call()
    for _ in range(runs):
        for times in (consecutive, after_sweep):
            if times is after_sweep:
                sweep.sum()
            start = time.perf_counter()
            timer.call()
            times.append((time.perf_counter() - start) * 1e3)
    return {
        "sweep_megabytes": sweep_megabytes,
        "consecutive": latency_stats(consecutive),
        "after_sweep": latency_stats(after_sweep),
    }


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


# --- where our TFLite spends time --------------------------------------------------------------


def _convert(function, precision, calibration):
    """TFLite bytes of a concrete function, with `export_tflite`'s cpu-target conversion
    (int8: calibrated on `calibration`, one array per input, float32 I/O, float islands)."""
    import tensorflow as tf

    from lsnet_keras.litert.export import convert_for_cpu

    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        count = len(calibration[0])
        converter.representative_dataset = lambda: (
            [x[i : i + 1] for x in calibration] for i in range(count)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return convert_for_cpu(converter, precision)


def _segments(deployed):
    """[(label, kind, layers)]: the stem, each downsampling pair, each block, the head."""
    import keras

    segments = []
    for layer in deployed.layers:
        if isinstance(layer, keras.layers.InputLayer | keras.layers.Identity):
            continue
        if layer.name.startswith("patch_embed"):
            label, kind = "stem", "stem"
        elif hasattr(layer, "kind"):
            label, kind = layer.name, layer.kind
        elif layer.name in ("pool", "head"):
            label, kind = "head", "head"
        else:  # blocksN_0 (3x3 stride-2 depthwise) and blocksN_1 (1x1)
            label, kind = layer.name.rsplit("_", 1)[0] + "_downsample", "downsample"
        if segments and segments[-1][0] == label:
            segments[-1][2].append(layer)
        else:
            segments.append((label, kind, [layer]))
    return segments


def _block_parts(block, x):
    """[(part, function, inputs)] of one deployed block, inputs computed from its input `x`."""
    from keras import ops

    parts = []

    def part(label, function, *inputs):
        parts.append((label, function, [np.asarray(a) for a in inputs]))
        return np.asarray(function(*inputs))

    if block.kind == "lsconv":
        lkp, mixer = block.mixer.lkp, block.mixer
        a = part("lkp cv1 1x1 + relu", lambda x: ops.relu(lkp.cv1(x)), x)
        a = part("lkp cv2 7x7 depthwise", lambda a: lkp.cv2(a), a)
        a = part("lkp cv3 1x1 + relu, cv4 1x1", lambda a: lkp.cv4(ops.relu(lkp.cv3(a))), a)
        w = part("lkp group norm", lambda a: lkp.group_norm(a), a)
        y = part("ska", lambda x, w: mixer.ska([x, w]), x, w)
        mixed = part("bn + residual", lambda y, x: mixer.bn(y) + x, y, x)
    elif block.kind == "attention":
        mixed = part("attention + residual", lambda x: x + block.mixer(x), x)
    else:
        a = part("repvgg 3x3 depthwise", lambda x: block.mixer(x), x)
        mixed = part("squeeze-excite", lambda a: block.se(a), a)
    part("ffn + residual", lambda x: x + block.ffn(x), mixed)
    return parts


def layer_breakdown(state, variant, workdir, precisions=("fp32", "int8"), runs=20):
    """Where our TFLite spends time: pieces of the deployed model, each its own 1-thread model.

    Each segment (stem, downsampling, every block, head) and the parts of the first block of
    each kind (LKP convs, group norm, SKA, FFN, ...) is converted alone with `export_tflite`'s
    settings (int8 calibrated on the piece's real inputs from 8 built-in calibration images)
    and timed interleaved with XNNPACK at 1 thread. Sums approximate the whole model, with a
    per-invoke overhead per piece and warmer caches (a piece's weights stay in cache).
    """
    import keras
    import tensorflow as tf

    import lsnet_keras
    from lsnet_keras.litert.calibration import builtin_images
    from lsnet_keras.litert.graph import read_graph
    from lsnet_keras.preprocess import normalize

    model = lsnet_keras.build_variant(variant, input_shape=224)
    lsnet_keras.load_weights(model, state, source="torch reference")
    deployed = lsnet_keras.reparameterize(model)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    segments = _segments(deployed)
    capture = keras.Model(deployed.input, [layers[0].input for _, _, layers in segments])
    images = normalize(builtin_images(8, 224, seed=0))
    inputs = [np.asarray(x) for x in capture.predict(images, verbose=0)]

    pieces = []  # (row, function, calibration inputs)
    for (label, kind, layers), x in zip(segments, inputs):

        def chain(t, layers=layers):
            for layer in layers:
                t = layer(t)
            return t

        pieces.append(({"segment": label, "kind": kind}, chain, [x]))
    seen = set()
    for (label, kind, layers), x in zip(segments, inputs):
        if kind in ("repvgg", "lsconv", "attention") and kind not in seen:
            seen.add(kind)
            for part, function, arrays in _block_parts(layers[0], x):
                pieces.append(({"segment": label, "kind": kind, "part": part}, function, arrays))

    timers = []
    for i, (row, function, arrays) in enumerate(pieces):
        specs = [tf.TensorSpec((1, *a.shape[1:]), tf.float32) for a in arrays]
        concrete = tf.function(function, input_signature=specs).get_concrete_function()
        for precision in precisions:
            model_bytes = _convert(concrete, precision, arrays)
            if precision == "fp32":
                row["macs"] = tflite_macs(read_graph(model_bytes))
            path = Path(workdir) / f"piece{i}-{precision}.tflite"
            path.write_bytes(model_bytes)
            timers.append(_multi_input_timer(f"{i}/{precision}", path))
    stats = run_interleaved(timers, runs, rounds=4)
    for i, (row, _, _) in enumerate(pieces):
        for precision in precisions:
            row[f"{precision}_ms"] = stats[f"{i}/{precision}"]["median_ms"]
    return [row for row, _, _ in pieces]


def _multi_input_timer(name, path):
    """A 1-thread XNNPACK timer of a model with any number of inputs, fed random data."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        data = rng.normal(size=detail["shape"]).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], data)
    return Timer(name, interpreter.invoke)


if __name__ == "__main__" and sys.argv[1:2] == ["litert-torch-export"]:
    _litert_torch_export_main(*sys.argv[2:5])
