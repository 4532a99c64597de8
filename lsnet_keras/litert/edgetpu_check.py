"""Offline Edge TPU compatibility check for ``.tflite`` files (no ``edgetpu_compiler`` needed).

Reads the TF Lite flatbuffer with :func:`lsnet_keras.litert.graph.read_graph` and applies the
rules of Coral's "TensorFlow models on the Edge TPU" page as ``edgetpu_compiler`` 16 (runtime 14)
applies them, op by op in graph order (rules and sources: :mod:`lsnet_keras.litert.edgetpu_rules`):

* every op must be in Coral's supported-operations table, within its stated limits;
* activations must be int8/uint8; float is allowed only at the graph edges, in a QUANTIZE that
  reads a graph input or a DEQUANTIZE that writes a graph output ("boundary" ops, on the CPU);
* shapes are static, batch 1, and only the 3 innermost dimensions of a tensor may exceed 1;
* weights and biases are compile-time constants;
* op versions newer than the compiler's TF Lite knows make it reject the whole model.

The compiler builds one Edge TPU segment: the first op that cannot map and every op after it
run on the CPU (``first_fallback_index``). Only the main subgraph is checked; control-flow ops
that use other subgraphs are themselves unsupported. It is a static check: the real compiler can
still refuse an op for reasons it does not state (sizes, on-chip memory).

Example:
    >>> from lsnet_keras.litert.edgetpu_check import check_edgetpu, format_report
    >>> report = check_edgetpu("model_int8.tflite")  # doctest: +SKIP
    >>> print(format_report(report))  # doctest: +SKIP
    #  op                 v  shapes                             verdict  reason
    0  CONV_2D            3  1x16x16x3 -> 1x16x16x8             maps
    1  DEPTHWISE_CONV_2D  3  1x16x16x8 -> 1x16x16x8             maps
    2  ADD                2  1x16x16x8, 1x16x16x8 -> 1x16x16x8  maps
    3  MEAN               2  1x16x16x8 -> 1x8                   maps
    4  FULLY_CONNECTED    4  1x8 -> 1x10                        maps
    5 ops, 5 map to the Edge TPU, 0 blockers; all ops map to the Edge TPU
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lsnet_keras.errors import LSNetError
from lsnet_keras.io import require_file
from lsnet_keras.litert import edgetpu_rules as rules
from lsnet_keras.litert.graph import Tensor, TFLiteFileError, read_graph


class EdgeTpuCheckError(LSNetError):
    """The file cannot be read as a TF Lite model (missing, not a flatbuffer, corrupt)."""


@dataclass
class OpResult:
    """Verdict for one operator.

    ``status`` is "maps" (the Edge TPU can run it), "blocks" (it cannot; ``reasons`` say why) or
    "boundary" (a float QUANTIZE/DEQUANTIZE at the graph edge: CPU, but allowed). ``on_edgetpu``
    is whether it lands in the Edge TPU segment, i.e. maps and comes before the first fallback.
    """

    index: int
    op: str
    version: int
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    status: str
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    on_edgetpu: bool = False


@dataclass
class EdgeTpuReport:
    """Result of :func:`check_edgetpu`.

    ``model_errors`` lists problems that make edgetpu_compiler reject the whole model (op
    versions it cannot parse, dynamic shapes); then no op maps.
    """

    source: str
    ops: list[OpResult]
    model_errors: list[str]
    first_fallback_index: int | None

    @property
    def blockers(self) -> list[OpResult]:
        """Ops that cannot run on the Edge TPU."""
        return [r for r in self.ops if r.status == "blocks"]

    @property
    def mapped(self) -> int:
        """Number of ops in the Edge TPU segment."""
        return sum(r.on_edgetpu for r in self.ops)

    @property
    def mapped_fraction(self) -> float:
        """Share of all ops that run on the Edge TPU (0.0 for an empty graph)."""
        return self.mapped / len(self.ops) if self.ops else 0.0

    @property
    def ok(self) -> bool:
        """No blockers and nothing that makes the compiler reject the model."""
        return not self.blockers and not self.model_errors


class _OpView:
    """What a rule in :mod:`edgetpu_rules` sees: name, version, tensors, options, constants."""

    def __init__(self, operator, graph):
        self.name, self.version, self.options = operator.name, operator.version, operator.options
        self.inputs = [graph.tensors[i] if i >= 0 else None for i in operator.inputs]
        self.outputs = [graph.tensors[i] for i in operator.outputs if i >= 0]
        self._graph = graph

    def constant(self, position):
        """Values of constant input `position` as a NumPy array, or None if not constant."""
        tensor = self.inputs[position] if position < len(self.inputs) else None
        return None if tensor is None else self._graph.constant(tensor.index)


def _read(path_or_bytes):
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        return bytes(path_or_bytes), "<bytes>"
    try:
        path = require_file(path_or_bytes, "model")
    except LSNetError as err:
        raise EdgeTpuCheckError(str(err)) from None
    return Path(path).read_bytes(), path


def _parse(data, label):
    """(graph, [_OpView]) of the main subgraph; EdgeTpuCheckError if it is not a model."""
    try:
        graph = read_graph(data, label)
    except TFLiteFileError as err:
        raise EdgeTpuCheckError(str(err)) from None
    return graph, [_OpView(op, graph) for op in graph.operators]


def _version_error(op):
    if op.name.startswith("CUSTOM:"):
        return None
    newest = rules.MAX_OP_VERSION.get(op.name)
    if newest is None:
        return f"{op.name} is unknown to TF Lite 2.6, so edgetpu_compiler 16 cannot parse the model"
    if op.version > newest:
        return (
            f"{op.name} v{op.version} is newer than v{newest}, the newest TF Lite 2.6 "
            "(edgetpu_compiler 16) knows: it cannot parse the model"
        )
    return None


def _boundary(op, graph):
    first_in = op.inputs[0] if op.inputs else None
    out = op.outputs[0] if op.outputs else None
    if first_in is None or out is None:
        return False
    if op.name == "QUANTIZE" and first_in.index in graph.inputs:
        return first_in.dtype not in rules.EIGHT_BIT and out.dtype in rules.EIGHT_BIT
    if op.name == "DEQUANTIZE" and out.index in graph.outputs:
        return first_in.dtype in rules.EIGHT_BIT and out.dtype not in rules.EIGHT_BIT
    return False


def _tensor_reasons(op, graph):
    reasons = []
    tensors = [t for t in op.inputs + op.outputs if t is not None]
    activations = [t for t in tensors if not t.constant]
    types = {t.dtype for t in activations if t.dtype not in rules.EIGHT_BIT}
    types |= {t.dtype for t in tensors if t.constant and "float" in t.dtype}
    if types:
        reasons.append(f"works on {', '.join(sorted(types))} tensors (only int8/uint8 map)")
    if any(t.dynamic for t in tensors):
        reasons.append("dynamic-size tensor (shapes must be static)")
    for t in activations:
        if rules.non_unit(t.shape[:-3]):
            reasons.append(
                f"tensor {rules.fmt_shape(t.shape)}: more than 3 dimensions > 1 "
                "(only the 3 innermost may be > 1)"
            )
            break
    for t in op.inputs:
        if t is not None and t.index in graph.inputs and len(t.shape) >= 2 and t.shape[0] > 1:
            reasons.append(f"graph input has batch {t.shape[0]} (the Edge TPU needs batch 1)")
    for position in rules.PARAMETER_INPUTS.get(op.name, ()):
        if position < len(op.inputs) and op.inputs[position] is not None:
            if not op.inputs[position].constant:
                reasons.append(f"input {position} (weights/bias) is not a compile-time constant")
    return reasons


def _check(op, graph):
    """(status, reasons, notes, fatal error or None) for one op."""
    fatal = _version_error(op)
    if _boundary(op, graph):
        return ("blocks" if fatal else "boundary"), [fatal] if fatal else [], [], fatal
    reasons = [fatal] if fatal else []
    supported = op.name in rules.SUPPORTED_OPS
    if not supported:
        reasons.append("not in the Edge TPU supported-operations table")
    tensor_reasons = _tensor_reasons(op, graph)
    reasons += tensor_reasons
    rule = rules.OP_RULES.get(op.name)
    if supported and rule is not None and not tensor_reasons:
        try:
            reasons += rule(op)
        except (IndexError, ValueError, AttributeError, TypeError):
            reasons.append("malformed op: its limits could not be checked")
    notes = [rules.NOTES[op.name]] if op.name in rules.NOTES else []
    return ("blocks" if reasons else "maps"), reasons, notes, fatal


def check_edgetpu(path_or_bytes) -> EdgeTpuReport:
    """Check a ``.tflite`` file (path or bytes) against the Edge TPU compiler's rules.

    Raises:
        EdgeTpuCheckError: the file is missing, not a TF Lite flatbuffer, or corrupt.

    Example:
        >>> report = check_edgetpu("model_int8.tflite")  # doctest: +SKIP
        >>> report.first_fallback_index, [b.op for b in report.blockers]  # doctest: +SKIP
        (3, ['BATCH_MATMUL'])
    """
    data, label = _read(path_or_bytes)
    graph, views = _parse(data, label)
    results, model_errors = [], []
    for index, op in enumerate(views):
        status, reasons, notes, fatal = _check(op, graph)
        if fatal:
            model_errors.append(f"op #{index}: {fatal}")
        results.append(
            OpResult(index, op.name, op.version, op.inputs, op.outputs, status, reasons, notes)
        )
    if any(t is not None and t.dynamic for op in views for t in op.inputs + op.outputs):
        model_errors.append("dynamic-size tensors: edgetpu_compiler needs static shapes")
    first = next((r.index for r in results if r.status == "blocks"), None)
    if model_errors:
        first = 0 if results else None
    for r in results:
        r.on_edgetpu = r.status == "maps" and (first is None or r.index < first)
    return EdgeTpuReport(label, results, model_errors, first)


def _shapes(result):
    ins = [rules.fmt_shape(t.shape) for t in result.inputs if t is not None and not t.constant]
    outs = [rules.fmt_shape(t.shape) for t in result.outputs if t is not None]
    return f"{', '.join(ins) or '-'} -> {', '.join(outs) or '-'}"


def _verdict(result, first):
    if result.status == "blocks":
        return "BLOCKS", "; ".join(result.reasons)
    if result.status == "boundary":
        return "cpu", "float in/out conversion at the graph edge (allowed)"
    if not result.on_edgetpu:
        return "cpu", f"after the first fallback (op #{first})"
    return "maps", "; ".join(f"note: {n}" for n in result.notes)


def summary_line(report: EdgeTpuReport) -> str:
    """The last line of :func:`format_report`.

    Example:
        >>> summary_line(check_edgetpu("model_int8.tflite"))  # doctest: +SKIP
        '5 ops, 3 map to the Edge TPU, 1 blocker; first CPU fallback at op #3 (BATCH_MATMUL)'
    """
    n, k = len(report.ops), len(report.blockers)
    head = f"{n} ops, {report.mapped} map to the Edge TPU, {k} blocker{'' if k == 1 else 's'}"
    if report.model_errors:
        return f"{head}; edgetpu_compiler 16 would reject the model: {report.model_errors[0]}"
    if report.first_fallback_index is None:
        boundary = sum(r.status == "boundary" for r in report.ops)
        extra = f" (plus {boundary} float edge conversion(s) on the CPU)" if boundary else ""
        return f"{head}; all ops map to the Edge TPU{extra}"
    first = report.ops[report.first_fallback_index]
    return f"{head}; first CPU fallback at op #{first.index} ({first.op})"


def format_report(report: EdgeTpuReport) -> str:
    """A table (op index, op, version, shapes, verdict, reason) and a summary line.

    Example:
        >>> print(format_report(check_edgetpu("attention_int8.tflite")))  # doctest: +SKIP
        #  op            v  shapes                       verdict  reason
        0  CONV_2D       3  1x8x8x8 -> 1x8x8x8           maps
        1  RESHAPE       1  1x8x8x8 -> 1x64x8            maps
        2  CONV_2D       3  1x8x8x8 -> 1x8x8x8           maps
        3  BATCH_MATMUL  2  1x8x8x8, 1x64x8 -> 1x8x8x64  BLOCKS   not in the Edge TPU ... table
        4  CONV_2D       3  1x8x8x64 -> 1x8x8x4          cpu      after the first fallback (op #3)
        5 ops, 3 map to the Edge TPU, 1 blocker; first CPU fallback at op #3 (BATCH_MATMUL)
    """
    rows = [("#", "op", "v", "shapes", "verdict", "reason")]
    for r in report.ops:
        verdict, reason = _verdict(r, report.first_fallback_index)
        rows.append((str(r.index), r.op, str(r.version), _shapes(r), verdict, reason))
    widths = [max(len(row[c]) for row in rows) for c in range(5)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[5] for row in rows
    ]
    return "\n".join([line.rstrip() for line in lines] + [summary_line(report)])
