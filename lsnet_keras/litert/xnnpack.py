"""What XNNPACK (LiteRT's CPU delegate) runs of a `.tflite`, and the graph edits that keep the
cpu target's int8 and dynamic-range models in one XNNPACK partition.

Facts from the delegate's source (tflite/delegates/xnnpack/xnnpack_delegate.cc): SOFTMAX,
RSQRT and RELU are taken in float only; an int8 BATCH_MATMUL needs a right operand with zero
point 0, which calibrated activations (attention's keys and values) rarely have; an int8 ADD
whose inputs are over 256 or under 1/1024 of the output scale is refused (GroupNorm's
`var + eps`); a
DEPTHWISE_CONV_2D with float input and int8 weights (dynamic-range "hybrid") is refused. Each of
these ran in TFLite's reference kernels, splitting the graph into many partitions.

The int8 model therefore keeps those few ops in float (`float_islands`: a DEQUANTIZE before and
a QUANTIZE after, which XNNPACK runs inside the same partition), and the dynamic-range model keeps
its depthwise weights in float (`float_depthwise_weights`). This module imports neither
TensorFlow nor Keras.

Two more islands are kept float for speed, not because XNNPACK refuses them in int8 (measured on
the x86 CI machine, LSNet-T, 1 thread, whole model interleaved; README "Latency"): the stem's
first convolution (3 input channels: XNNPACK's int8 kernel ran it about 4x slower than fp32),
and LSConv's GroupNorm, SKA and BatchNorm (about 30 elementwise ops on rows of `dim // 8`
channels, each requantized in int8, 1.4-1.9x slower than in float). Together they took the
int8 LSNet-T to 0.75x its time there (2.51 -> 1.89 ms, one interleaved run on a loaded machine);
ARM cores may weigh them differently (see the README's phone recipe).

Example:
    >>> from lsnet_keras.litert.xnnpack import xnnpack_partitions
    >>> report = xnnpack_partitions(open("lsnet_t_int8.tflite", "rb").read())  # doctest: +SKIP
    >>> report.partitions, report.outside  # doctest: +SKIP
    (1, {})
"""

import collections
import re
from dataclasses import dataclass

import numpy as np

from lsnet_keras.litert.graph import read_graph, schema

# Ops the delegate takes in float only (or, for BATCH_MATMUL, not as int8 of two activations).
FLOAT_ONLY_OPS = ("BATCH_MATMUL", "SOFTMAX", "RSQRT", "RELU")
# Elementwise ops that join a float island when every consumer of their output is in it.
ELEMENTWISE_OPS = ("ADD", "MUL", "SUB")
# Data movement that joins an island the same way (the PAD before the stem's convolution).
MOVEMENT_OPS = ("PAD", "RESHAPE", "STRIDED_SLICE")
# A CONV_2D over at most this many input channels is kept float (the stem's RGB convolution).
FEW_CHANNELS = 4
# Ops whose output tensor name lies in these scopes (every part of a fused name: a convolution
# with a fused ReLU is named "lkp/Relu;lkp/cv1/conv/BiasAdd;...") are kept float: an LSConv's
# GroupNorm (LKP's own ops, not its cv1-cv4 convolutions), its SKA and its BatchNorm
# (`lsnet_keras.model.ska`).
# A detector's box encodings (reordered, clamped: MINIMUM / MAXIMUM, which XNNPACK takes in
# float only) feed the float post-processing op anyway.
FLOAT_SCOPES = re.compile(
    r"(^|/)(lkp(_\d+)?/(?!cv\d)|ska(_\d+)?/|mixer(_\d+)?/bn(_\d+)?/|box_encodings/)"
)
# Every op that float_islands may keep float.
ISLAND_OPS = frozenset({*FLOAT_ONLY_OPS, *ELEMENTWISE_OPS, *MOVEMENT_OPS, "CONV_2D", "MEAN"})


@dataclass
class PartitionReport:
    """XNNPACK delegation of one model: `partitions` delegate kernels, `nodes` ops in the
    model, `outside` {op name: count} of ops left to TFLite's own kernels."""

    partitions: int
    nodes: int
    outside: dict

    def summary(self):
        """One line, e.g. "1 XNNPACK partition(s), 0 of 636 ops outside"."""
        left = sum(self.outside.values())
        names = ", ".join(f"{n} {op}" for op, n in sorted(self.outside.items()))
        return f"{self.partitions} XNNPACK partition(s), {left} of {self.nodes} ops outside" + (
            f" ({names})" if names else ""
        )


def xnnpack_partitions(model_bytes, num_threads=1):
    """How ai-edge-litert's default XNNPACK delegate splits a model, read from the interpreter
    after delegation: each DELEGATE node is one partition; an op is inside a partition when it
    lies between that node's inputs and outputs, else it runs in TFLite's own kernels.

    Example:
        >>> xnnpack_partitions(open("model.tflite", "rb").read()).summary()  # doctest: +SKIP
        '1 XNNPACK partition(s), 0 of 606 ops outside'
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes, num_threads=num_threads)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()  # the graph's ops, then one DELEGATE per partition
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    ops = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {t: n["index"] for n in ops for t in n["outputs"]}
    inside = set()
    for delegate in delegates:
        boundary = set(delegate["inputs"])
        pending = list(delegate["outputs"])
        while pending:
            tensor = pending.pop()
            node = producer.get(tensor)
            if tensor in boundary or node is None or node in inside:
                continue
            inside.add(node)
            pending.extend(nodes[node]["inputs"])
    outside = collections.Counter(n["op_name"] for n in ops if n["index"] not in inside)
    return PartitionReport(len(delegates), len(ops), dict(outside))


def in_float_scopes(name):
    """Whether every part of a (fused, ";"-joined) tensor name lies in FLOAT_SCOPES.

    Example:
        >>> in_float_scopes("m/blocks2_3/mixer/ska/mul_1"), in_float_scopes("m/b/mixer/lkp/cv1/x")
        (True, False)
    """
    return all(FLOAT_SCOPES.search(part) for part in name.split(";"))


def float_islands(model_bytes):
    """Output tensor names of the ops an int8 model should keep in float for XNNPACK: every
    FLOAT_ONLY_OPS op, each CONV_2D over at most FEW_CHANNELS input channels, every op in
    FLOAT_SCOPES (LSConv's GroupNorm, SKA and BatchNorm), plus each ADD / MUL / SUB / PAD /
    RESHAPE / STRIDED_SLICE all of whose consumers are already float (attention's scale and
    position bias, the stem's PAD).

    The names are what the TFLite quantizer's `denylisted_nodes` takes. Example:
        >>> float_islands(calibrated_bytes)[:2]  # doctest: +SKIP
        ['lsnet_t_1/blocks2_3_1/mixer_1/lkp_1/add', 'lsnet_t_1/blocks2_3_1/mixer_1/lkp_1/Rsqrt']
    """
    graph = read_graph(model_bytes, "calibrated model")
    consumers = collections.defaultdict(list)
    for op in graph.operators:
        for tensor in op.inputs:
            consumers[tensor].append(op.index)

    def few_channels(op):
        return op.name == "CONV_2D" and graph.tensors[op.inputs[1]].shape[-1] <= FEW_CHANNELS

    chosen = {
        op.index
        for op in graph.operators
        if op.name in FLOAT_ONLY_OPS
        or few_channels(op)
        or in_float_scopes(graph.tensors[op.outputs[0]].name)
    }
    grown = True
    while grown:
        grown = False
        for op in graph.operators:
            if op.index in chosen or op.name not in (*ELEMENTWISE_OPS, *MOVEMENT_OPS):
                continue
            users = [user for tensor in op.outputs for user in consumers[tensor]]
            if users and all(user in chosen for user in users):
                chosen.add(op.index)
                grown = True
    return [graph.tensors[graph.operators[i].outputs[0]].name for i in sorted(chosen)]


def float_depthwise_weights(model_bytes):
    """The model with each hybrid DEPTHWISE_CONV_2D (float input, int8 weights) given float32
    weights, the int8 values times their per-channel scales: the same weights, which XNNPACK runs
    in float instead of leaving the op to TFLite's hybrid kernel. Weights are a few KB each.

    Example:
        >>> dynamic = float_depthwise_weights(dynamic_range_bytes)  # doctest: +SKIP
    """
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    subgraph = model.subgraphs[0]
    int8_data = {}  # buffer index -> its int8 bytes, kept for tensors sharing the buffer
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin != schema.BuiltinOperator.DEPTHWISE_CONV_2D:
            continue
        source, weights = subgraph.tensors[op.inputs[0]], subgraph.tensors[op.inputs[1]]
        if source.type != schema.TensorType.FLOAT32 or weights.type != schema.TensorType.INT8:
            continue
        shared = weights.buffer in int8_data  # the converter shares identical int8 data
        if not shared:
            int8_data[weights.buffer] = np.asarray(model.buffers[weights.buffer].data, "uint8")
        values = int8_data[weights.buffer].view("int8").reshape(weights.shape)
        shape = [1] * values.ndim
        shape[weights.quantization.quantizedDimension] = -1
        scale = np.asarray(weights.quantization.scale, dtype="float32").reshape(shape)
        if shared:
            model.buffers.append(schema.BufferT())
            weights.buffer = len(model.buffers) - 1
        model.buffers[weights.buffer].data = np.frombuffer(
            (values * scale).astype("<f4").tobytes(), dtype="uint8"
        )
        weights.type = schema.TensorType.FLOAT32
        weights.quantization = None
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def float_islands_in_integer_model(model_bytes):
    """A full-integer model (e.g. an exported QAT model) with the FLOAT_ONLY_OPS ops, and each
    ADD / MUL / SUB all of whose consumers are among them, computed in float: a DEQUANTIZE
    before each island's int8 inputs, a QUANTIZE back to the same int8 tensor (same scale and
    zero point) after each output used outside it. XNNPACK then runs the whole graph in one
    partition. Each island computes on the dequantized values and rounds to the trained output
    range, as the QAT model's fake-quant does. `export_tflite` does not apply it (its QAT graphs
    stay full-integer); call it on the bytes.

    Example:
        >>> one = float_islands_in_integer_model(qat_int8_bytes)  # doctest: +SKIP
        >>> xnnpack_partitions(one).partitions  # doctest: +SKIP
        1
    """
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    subgraph, codes = model.subgraphs[0], model.operatorCodes
    graph = read_graph(model_bytes, "integer model")
    integer = (schema.TensorType.INT8, schema.TensorType.UINT8)
    consumers = collections.defaultdict(list)
    for op in graph.operators:
        for tensor in op.inputs:
            consumers[tensor].append(op.index)
    chosen = {
        op.index
        for op in graph.operators
        if op.name in FLOAT_ONLY_OPS and graph.tensors[op.outputs[0]].dtype in ("int8", "uint8")
    }
    grown = True
    while grown:
        grown = False
        for op in graph.operators:
            users = [user for tensor in op.outputs for user in consumers[tensor]]
            if op.index not in chosen and op.name in ELEMENTWISE_OPS and users:
                if all(user in chosen for user in users):
                    chosen.add(op.index)
                    grown = True
    if not chosen:
        return model_bytes

    def opcode(builtin):
        for index, code in enumerate(codes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
                return index
        code = schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
        codes.append(code)
        return len(codes) - 1

    def float_twin(index, suffix):
        source, twin = subgraph.tensors[index], schema.TensorT()
        twin.shape, twin.shapeSignature = source.shape, source.shapeSignature
        twin.type, twin.buffer = schema.TensorType.FLOAT32, 0
        twin.name = (source.name or b"") + suffix
        subgraph.tensors.append(twin)
        return len(subgraph.tensors) - 1

    def convert(builtin, source, target):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode(builtin), [source], [target]
        return op

    graph_outputs = set(subgraph.outputs)
    twins = {}  # integer tensor -> its float twin (an island's output, or a DEQUANTIZE's)
    operators = []
    for index, op in enumerate(subgraph.operators):
        if index not in chosen:
            operators.append(op)
            continue
        inputs = []
        for tensor in op.inputs:
            if tensor >= 0 and subgraph.tensors[tensor].type in integer:
                if tensor not in twins:
                    twins[tensor] = float_twin(tensor, b"/dequantized")
                    operators.append(
                        convert(schema.BuiltinOperator.DEQUANTIZE, tensor, twins[tensor])
                    )
                tensor = twins[tensor]
            inputs.append(tensor)
        op.inputs, outputs, after = inputs, [], []
        for tensor in op.outputs:
            twins[tensor] = float_twin(tensor, b"/float")
            outputs.append(twins[tensor])
            if tensor in graph_outputs or any(u not in chosen for u in consumers[tensor]):
                after.append(convert(schema.BuiltinOperator.QUANTIZE, twins[tensor], tensor))
        op.outputs = outputs
        operators += [op, *after]
    subgraph.operators = operators
    builder = flatbuffers.Builder(len(model_bytes) + 65536)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
