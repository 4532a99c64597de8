"""Where our TFLite spends time (`benchmarks/mobile_latency.py --breakdown`).

`layer_breakdown` times pieces of the deployed model (segments, and the parts of the first
block of each kind), each converted alone with the cpu target's fp32 and int8 settings;
`cache_sweep_effect` times the whole model after another invoke vs after a cache sweep;
`breakdown_markdown` renders the rows.
"""

import time
from pathlib import Path

import numpy as np
from contenders import Timer, latency_stats, run_interleaved, tflite_macs, tflite_timer


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


def _scoped(scope, function):
    """`function` with its ops under the TensorFlow name scope `scope`."""
    import tensorflow as tf

    def scoped(*args):
        with tf.name_scope(scope):
            return function(*args)

    return scoped


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
        # the name scopes of the whole model, which the cpu int8 export keeps float by name
        # (`lsnet_keras.litert.xnnpack.FLOAT_SCOPES`)
        w = part("lkp group norm", _scoped("mixer/lkp", lkp.group_norm), a)
        y = part("ska", _scoped("mixer", lambda x, w: mixer.ska([x, w])), x, w)
        mixed = part("bn + residual", _scoped("mixer", lambda y, x: mixer.bn(y) + x), y, x)
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


def breakdown_markdown(rows, int8_mac_per_s):
    """Per-kind sums and the parts of one block of each kind, fp32 and int8, 1 thread; int8
    also against its floor (MACs over the run's int8 GEMM rate)."""
    kinds = {}
    for row in rows:
        if "part" in row:
            continue
        total = kinds.setdefault(row["kind"], {"n": 0, "macs": 0, "fp32_ms": 0.0, "int8_ms": 0.0})
        total["n"] += 1
        for key in ("macs", "fp32_ms", "int8_ms"):
            total[key] += row[key]
    lines = [
        "| kind | count | MMACs | fp32 ms | fp32 GMAC/s | int8 ms | int8 / fp32 "
        "| int8 floor ms | int8 / floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, t in kinds.items():
        floor = t["macs"] / int8_mac_per_s * 1e3
        lines.append(
            f"| {kind} | {t['n']} | {t['macs'] / 1e6:.1f} | {t['fp32_ms']:.3f} "
            f"| {t['macs'] / t['fp32_ms'] / 1e6:.1f} | {t['int8_ms']:.3f} "
            f"| {t['int8_ms'] / t['fp32_ms']:.2f} | {floor:.3f} | {t['int8_ms'] / floor:.1f}x |"
        )
    fp32, int8, macs = (sum(t[k] for t in kinds.values()) for k in ("fp32_ms", "int8_ms", "macs"))
    floor = macs / int8_mac_per_s * 1e3
    lines += [
        f"| sum | | | {fp32:.3f} | | {int8:.3f} | {int8 / fp32:.2f} | {floor:.3f} "
        f"| {int8 / floor:.1f}x |",
        "",
    ]
    lines += [
        "| block | part | MMACs | fp32 ms | int8 ms | int8 / fp32 | int8 / floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "part" in row:
            floor = row["macs"] / int8_mac_per_s * 1e3
            versus = f"{row['int8_ms'] / floor:.1f}x" if floor else "-"
            lines.append(
                f"| {row['segment']} ({row['kind']}) | {row['part']} | {row['macs'] / 1e6:.2f} "
                f"| {row['fp32_ms']:.3f} | {row['int8_ms']:.3f} "
                f"| {row['int8_ms'] / row['fp32_ms']:.2f} | {versus} |"
            )
    return "\n".join(lines)
