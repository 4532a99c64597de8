"""Edge TPU (Coral, edgetpu_compiler 16) rules used by :mod:`lsnet_keras.litert.edgetpu_check`.

Sources:
    * Coral, "TensorFlow models on the Edge TPU", model requirements and the supported-operations
      table (https://coral.ai/docs/edgetpu/models-intro/#supported-operations). The rows for
      runtime 13+/14+ (the v16 compiler's default target is runtime 14) were read from Axis'
      verbatim copy (https://developer.axis.com/computer-vision/on-device/system-on-chip/artpec-7/
      supported-ops/); the Softmax, Squeeze and StridedSlice wording from an older copy of the same
      table (dgist-datalab/Datalab_Intern, Edge_TPU/convert_model_for_Edge_TPU.md).
    * Partitioning: the compiler makes one Edge TPU subgraph; from the first op it cannot map,
      that op and every later one run on the CPU (google-coral/edgetpu issues #30 and #461).
    * Op versions: see ``MAX_OP_VERSION``.

Example:
    >>> from lsnet_keras.litert.edgetpu_rules import MAX_OP_VERSION, SUPPORTED_OPS
    >>> MAX_OP_VERSION["CONV_2D"], "BATCH_MATMUL" in SUPPORTED_OPS
    (5, False)
"""

from __future__ import annotations

import numpy as np

# Newest version of each builtin op that TF Lite 2.6 knows: for every (op, version) pair in
# tensorflow/lite/tools/versioning/runtime_version.cc (tensorflow/tensorflow, blob read at commit
# 00b1ec2ad4b0ecd5275167371cc5d5570fba8e4c), the highest version whose minimum runtime is <= 2.6.0.
# edgetpu_compiler 16.0.384591198 (mid-2021) links a TF Lite of that era. Consistent with
# google-coral/edgetpu #631 (CONV_2D v6, runtime 2.9) and #845 (TRANSPOSE_CONV v4, 2.9): it rejects
# the whole model ("Didn't find op for builtin opcode ... Model could not be parsed").
# Entries tagged 2.7.0 in that file (QUANTIZE v3, DEQUANTIZE v5, CAST v2) are left out: the
# compiler's snapshot may or may not have had them.
MAX_OP_VERSION = {
    "ABS": 4, "ADD": 4, "ADD_N": 1, "ARG_MAX": 2, "ARG_MIN": 2, "ASSIGN_VARIABLE": 1,
    "AVERAGE_POOL_2D": 3, "BATCH_MATMUL": 4, "BATCH_TO_SPACE_ND": 3,
    "BIDIRECTIONAL_SEQUENCE_LSTM": 3, "BIDIRECTIONAL_SEQUENCE_RNN": 3, "BROADCAST_ARGS": 1,
    "BROADCAST_TO": 3, "CALL_ONCE": 1, "CAST": 1, "CEIL": 1, "COMPLEX_ABS": 1,
    "CONCATENATION": 3, "CONV_2D": 5, "CONV_3D": 1, "CONV_3D_TRANSPOSE": 1, "COS": 1,
    "CUMSUM": 1, "DENSIFY": 1, "DEPTH_TO_SPACE": 2, "DEPTHWISE_CONV_2D": 6, "DEQUANTIZE": 4,
    "DIV": 2, "ELU": 1, "EMBEDDING_LOOKUP": 3, "EMBEDDING_LOOKUP_SPARSE": 1, "EQUAL": 3,
    "EXP": 1, "EXPAND_DIMS": 1, "FAKE_QUANT": 2, "FILL": 3, "FLOOR": 1, "FLOOR_DIV": 2,
    "FLOOR_MOD": 1, "FULLY_CONNECTED": 9, "GATHER": 5, "GATHER_ND": 3, "GREATER": 2,
    "GREATER_EQUAL": 2, "HARD_SWISH": 1, "HASHTABLE": 1, "HASHTABLE_FIND": 1,
    "HASHTABLE_IMPORT": 1, "HASHTABLE_LOOKUP": 1, "HASHTABLE_SIZE": 1, "IF": 1, "IMAG": 1,
    "L2_NORMALIZATION": 2, "L2_POOL_2D": 1, "LEAKY_RELU": 2, "LESS": 2, "LESS_EQUAL": 2,
    "LOCAL_RESPONSE_NORMALIZATION": 1, "LOG": 1, "LOG_SOFTMAX": 2, "LOGICAL_AND": 1,
    "LOGICAL_NOT": 1, "LOGICAL_OR": 1, "LOGISTIC": 3, "LSH_PROJECTION": 1, "LSTM": 4,
    "MATRIX_DIAG": 1, "MATRIX_SET_DIAG": 1, "MAX_POOL_2D": 3, "MAXIMUM": 4, "MEAN": 3,
    "MINIMUM": 4, "MIRROR_PAD": 2, "MUL": 5, "NEG": 1, "NON_MAX_SUPPRESSION_V4": 1,
    "NON_MAX_SUPPRESSION_V5": 1, "NOT_EQUAL": 3, "ONE_HOT": 1, "PACK": 3, "PAD": 4, "PADV2": 4,
    "POW": 1, "PRELU": 1, "QUANTIZE": 2, "RANGE": 1, "RANK": 1, "READ_VARIABLE": 1, "REAL": 1,
    "REDUCE_ALL": 1, "REDUCE_ANY": 1, "REDUCE_MAX": 3, "REDUCE_MIN": 3, "REDUCE_PROD": 2,
    "RELU": 3, "RELU6": 3, "RELU_N1_TO_1": 1, "RESHAPE": 1, "RESIZE_BILINEAR": 4,
    "RESIZE_NEAREST_NEIGHBOR": 4, "REVERSE_SEQUENCE": 1, "REVERSE_V2": 3, "RFFT2D": 1, "RNN": 3,
    "ROUND": 1, "RSQRT": 2, "SCATTER_ND": 1, "SEGMENT_SUM": 1, "SELECT": 2, "SELECT_V2": 1,
    "SHAPE": 1, "SIN": 1, "SKIP_GRAM": 1, "SLICE": 5, "SOFTMAX": 3, "SPACE_TO_BATCH_ND": 3,
    "SPACE_TO_DEPTH": 2, "SPARSE_TO_DENSE": 3, "SPLIT": 4, "SPLIT_V": 2, "SQRT": 1, "SQUARE": 1,
    "SQUARED_DIFFERENCE": 2, "SQUEEZE": 2, "STRIDED_SLICE": 6, "SUB": 5, "SUM": 2, "SVDF": 4,
    "TANH": 3, "TILE": 2, "TOPK_V2": 2, "TRANSPOSE": 5, "TRANSPOSE_CONV": 3,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 3, "UNIDIRECTIONAL_SEQUENCE_RNN": 3, "UNIQUE": 1,
    "UNPACK": 4, "VAR_HANDLE": 1, "WHERE": 1, "WHILE": 1, "ZEROS_LIKE": 1,
}  # fmt: skip

# Coral's supported-operations table (runtime 14, the v16 compiler's default), keyed by TF Lite
# builtin name, with the table's "known limitations" text. Ops missing here do not map.
SUPPORTED_OPS = {
    "ADD": "",
    "AVERAGE_POOL_2D": "No fused activation function.",
    "CONCATENATION": "No fused activation function. If any input is a compile-time constant "
    "tensor, there must be only 2 inputs, and this constant tensor must be all zeros.",
    "CONV_2D": "Must use the same dilation in x and y dimensions.",
    "DEPTHWISE_CONV_2D": "Must use the same dilation in x and y dimensions.",
    "EXPAND_DIMS": "",
    "FULLY_CONNECTED": "Only the default format is supported for fully-connected weights. "
    "Output tensor is one-dimensional.",
    "L2_NORMALIZATION": "",
    "LOGISTIC": "",
    "LSTM": "Unidirectional LSTM only.",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "Unidirectional LSTM only.",
    "MAXIMUM": "",
    "MAX_POOL_2D": "No fused activation function.",
    "MEAN": "No reduction in batch dimension. If a z-reduction, the z-dimension must be "
    "multiple of 4.",
    "MINIMUM": "",
    "MUL": "",
    "PACK": "No packing in batch dimension.",
    "PAD": "No padding in batch dimension.",
    "PRELU": "Alpha must be 1-dimensional (only the innermost dimension can be >1 size).",
    "QUANTIZE": "",
    "REDUCE_MAX": "Cannot operate on the batch dimension.",
    "REDUCE_MIN": "Cannot operate on the batch dimension.",
    "RELU": "",
    "RELU6": "",
    "RELU_N1_TO_1": "",
    "RESHAPE": "Certain reshapes might not be mapped for large tensor sizes.",
    "RESIZE_BILINEAR": "Input/output is a 3-dimensional tensor. Depending on input/output size, "
    "this operation might not be mapped to the Edge TPU to avoid loss in precision.",
    "RESIZE_NEAREST_NEIGHBOR": "Input/output is a 3-dimensional tensor. Depending on "
    "input/output size, this operation might not be mapped to the Edge TPU.",
    "RSQRT": "",
    "SLICE": "",
    "SOFTMAX": "Supports only 1-D input tensor with a max of 16,000 elements.",
    "SPACE_TO_DEPTH": "",
    "SPLIT": "No splitting in batch dimension.",
    "SQUARED_DIFFERENCE": "",
    "SQUEEZE": "",
    "STRIDED_SLICE": "Supported only when all strides are equal to 1, and with "
    "ellipsis-axis-mask == 0, and new-axis-mask == 0.",
    "SUB": "",
    "SUM": "Cannot operate on the batch dimension.",
    "TANH": "",
    "TRANSPOSE": "",
    "TRANSPOSE_CONV": "",
}

# Limitations the table states without a checkable rule: reported as notes, never as blockers.
NOTES = {
    "RESIZE_BILINEAR": "may stay on the CPU depending on sizes (Coral table)",
    "RESIZE_NEAREST_NEIGHBOR": "may stay on the CPU depending on sizes (Coral table)",
}

SOFTMAX_MAX_ELEMENTS = 16000
EIGHT_BIT = ("int8", "uint8")
# Weights and biases that must be compile-time constants ("Model parameters (such as bias
# tensors) are constant at compile-time"), by input position.
PARAMETER_INPUTS = {
    "CONV_2D": (1, 2),
    "DEPTHWISE_CONV_2D": (1, 2),
    "FULLY_CONNECTED": (1, 2),
    "TRANSPOSE_CONV": (0, 1, 3),
}


def non_unit(shape):
    """Number of dimensions larger than 1."""
    return sum(1 for d in shape if d > 1)


def batch_axes(rank):
    """Axes outside the 3 innermost ([y][x][z] in Coral's wording): the batch dimension(s)."""
    return set(range(max(rank - 3, 0)))


def _axes(values, rank):
    return sorted({int(a) % rank for a in np.asarray(values).reshape(-1)}) if rank else []


def _fused(op):
    return getattr(op.options, "fusedActivationFunction", 0)


def _no_fused_activation(op):
    return ["fused activation not allowed (Coral table)"] if _fused(op) else []


def _same_dilation(op):
    opts = op.options
    if opts is None:
        return []
    w, h = opts.dilationWFactor, opts.dilationHFactor
    return [] if w == h else [f"dilation {h}x{w} differs in x and y (Coral table)"]


def _constant_axes(op, position, what):
    """(axes, reasons): the constant axis list of input `position`, normalised."""
    values = op.constant(position)
    if values is None:
        return None, [f"{what} must be a compile-time constant"]
    return _axes(values, len(op.inputs[0].shape)), []


def _reduction(op, z_multiple_of_4=False):
    axes, reasons = _constant_axes(op, 1, "reduction axes")
    if axes is None:
        return reasons
    shape = op.inputs[0].shape
    if set(axes) & batch_axes(len(shape)):
        reasons.append(f"reduces the batch dimension (axes {axes}; Coral table)")
    z = len(shape) - 1
    if z_multiple_of_4 and z in axes and shape[z] % 4:
        reasons.append(f"z-reduction over {shape[z]} channels, not a multiple of 4 (Coral table)")
    return reasons


def _concatenation(op):
    reasons = _no_fused_activation(op)
    constants = [i for i, t in enumerate(op.inputs) if t is not None and t.constant]
    if constants:
        if len(op.inputs) != 2:
            reasons.append("a constant input is allowed only with exactly 2 inputs (Coral table)")
        for i in constants:
            zero = op.inputs[i].zero_point or (0,)
            if np.any(op.constant(i) != zero[0]):
                reasons.append("constant input is not all zeros (Coral table)")
    return reasons


def _fully_connected(op):
    reasons = []
    if op.options is not None and op.options.weightsFormat != 0:
        reasons.append("weights not in the default format (Coral table)")
    out = op.outputs[0].shape
    if non_unit(out) > 1:
        reasons.append(f"output {fmt_shape(out)} is not one-dimensional (Coral table)")
    return reasons


def _pad(op):
    paddings = op.constant(1)
    if paddings is None:
        return ["paddings must be a compile-time constant"]
    rank = len(op.inputs[0].shape)
    padded = {i for i, row in enumerate(np.asarray(paddings).reshape(rank, 2)) if row.any()}
    return ["pads the batch dimension (Coral table)"] if padded & batch_axes(rank) else []


def _pack(op):
    rank = len(op.outputs[0].shape)
    axis = op.options.axis % rank if op.options is not None else 0
    return ["packs along the batch dimension (Coral table)"] if axis in batch_axes(rank) else []


def _split(op):
    axis = op.constant(0)
    if axis is None:
        return ["split axis must be a compile-time constant"]
    rank = len(op.inputs[1].shape)
    if int(np.asarray(axis).reshape(-1)[0]) % rank in batch_axes(rank):
        return ["splits along the batch dimension (Coral table)"]
    return []


def _prelu(op):
    alpha = op.inputs[1]
    if non_unit(alpha.shape[:-1]):
        return [f"alpha {fmt_shape(alpha.shape)} is not 1-dimensional (Coral table)"]
    return []


def _softmax(op):
    shape = op.inputs[0].shape
    reasons = []
    if non_unit(shape) > 1:
        reasons.append(f"input {fmt_shape(shape)} is not 1-D (Coral table: only 1-D softmax)")
    if int(np.prod(shape)) > SOFTMAX_MAX_ELEMENTS:
        reasons.append(f"input has more than {SOFTMAX_MAX_ELEMENTS} elements (Coral table)")
    return reasons


def _strided_slice(op):
    reasons = []
    strides = op.constant(3)
    if strides is None:
        reasons.append("strides must be a compile-time constant")
    elif np.any(np.asarray(strides) != 1):
        reasons.append(f"strides {np.asarray(strides).tolist()} are not all 1 (Coral table)")
    if op.options is not None:
        if op.options.ellipsisMask:
            reasons.append("ellipsis_mask != 0 (Coral table)")
        if op.options.newAxisMask:
            reasons.append("new_axis_mask != 0 (Coral table)")
    return reasons


OP_RULES = {
    "AVERAGE_POOL_2D": _no_fused_activation,
    "MAX_POOL_2D": _no_fused_activation,
    "CONCATENATION": _concatenation,
    "CONV_2D": _same_dilation,
    "DEPTHWISE_CONV_2D": _same_dilation,
    "FULLY_CONNECTED": _fully_connected,
    "MEAN": lambda op: _reduction(op, z_multiple_of_4=True),
    "SUM": _reduction,
    "REDUCE_MAX": _reduction,
    "REDUCE_MIN": _reduction,
    "PAD": _pad,
    "PACK": _pack,
    "SPLIT": _split,
    "PRELU": _prelu,
    "SOFTMAX": _softmax,
    "STRIDED_SLICE": _strided_slice,
}


def fmt_shape(shape):
    """'1x16x16x3' for (1, 16, 16, 3); 'scalar' for ()."""
    return "x".join(str(d) for d in shape) if len(shape) else "scalar"
