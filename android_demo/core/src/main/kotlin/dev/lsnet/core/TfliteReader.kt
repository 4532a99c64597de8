package dev.lsnet.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Reads the input and output tensor details (shape, type, scale/zero-point) from a `.tflite`
 * flatbuffer.
 *
 * The LiteRT Kotlin API cannot provide them: `CompiledModel.getInputTensorType` reports only an
 * element type and dimensions, has no uint8 type (it throws on uint8 tensors) and no quantization
 * parameters. So the app parses the file itself, following `tflite/converter/schema/schema.fbs`.
 */
object TfliteReader {
    // Field ids, in declaration order of the schema tables.
    private const val MODEL_SUBGRAPHS = 2
    private const val MODEL_BUFFERS = 4
    private const val MODEL_METADATA = 6
    private const val MODEL_SIGNATURE_DEFS = 7
    private const val SUBGRAPH_TENSORS = 0
    private const val SUBGRAPH_INPUTS = 1
    private const val SUBGRAPH_OUTPUTS = 2
    private const val SIGNATURE_INPUTS = 0
    private const val SIGNATURE_OUTPUTS = 1
    private const val SIGNATURE_SUBGRAPH_INDEX = 4
    private const val TENSOR_MAP_NAME = 0
    private const val TENSOR_MAP_INDEX = 1
    private const val TENSOR_SHAPE = 0
    private const val TENSOR_TYPE = 1
    private const val TENSOR_NAME = 3
    private const val TENSOR_QUANTIZATION = 4
    private const val QUANT_SCALE = 2
    private const val QUANT_ZERO_POINT = 3
    private const val METADATA_NAME = 0
    private const val METADATA_BUFFER = 1
    private const val BUFFER_DATA = 0
    private const val BUFFER_OFFSET = 1
    private const val BUFFER_SIZE = 2

    // Values of the schema's TensorType enum.
    private val TYPES = mapOf(0 to DType.FLOAT32, 3 to DType.UINT8, 9 to DType.INT8)

    /**
     * Returns the tensors of signature 0 (or of subgraph 0 when the model has no signature),
     * in flatbuffer order, and the model's metadata entries. Throws [IllegalArgumentException] on a file that is not a TFLite
     * model, or on an input/output of a type or quantization the app does not handle.
     */
    fun read(model: ByteArray): ModelIo {
        val buf = ByteBuffer.wrap(model).order(ByteOrder.LITTLE_ENDIAN)
        require(model.size >= 8 && String(model, 4, 4, Charsets.US_ASCII) == "TFL3") {
            "not a .tflite file (no TFL3 identifier)"
        }
        try {
            val root = Table(buf, buf.getInt(0))
            return readIo(root).copy(metadata = readMetadata(root, model))
        } catch (e: IndexOutOfBoundsException) {
            throw IllegalArgumentException("corrupt .tflite flatbuffer", e)
        }
    }

    private fun readIo(model: Table): ModelIo {
        val subgraphs = model.tables(MODEL_SUBGRAPHS)
        require(subgraphs.isNotEmpty()) { "the .tflite file has no subgraph" }
        val signature = model.tables(MODEL_SIGNATURE_DEFS).firstOrNull()
        if (signature == null) {
            val graph = subgraphs[0]
            val tensors = graph.tables(SUBGRAPH_TENSORS)
            fun specs(field: Int) = graph.ints(field).map { spec(tensors[it], name = null) }
            return ModelIo(specs(SUBGRAPH_INPUTS), specs(SUBGRAPH_OUTPUTS))
        }
        val tensors = subgraphs[signature.int(SIGNATURE_SUBGRAPH_INDEX)].tables(SUBGRAPH_TENSORS)
        fun specs(field: Int) = signature.tables(field).map {
            spec(tensors[it.int(TENSOR_MAP_INDEX)], name = it.string(TENSOR_MAP_NAME))
        }
        return ModelIo(specs(SIGNATURE_INPUTS), specs(SIGNATURE_OUTPUTS))
    }

    /** `Model.metadata` entries: name to the bytes of the buffer they point at. */
    private fun readMetadata(model: Table, file: ByteArray): Map<String, ByteArray> {
        val buffers = model.tables(MODEL_BUFFERS)
        return model.tables(MODEL_METADATA).associate { entry ->
            val name = entry.string(METADATA_NAME).orEmpty()
            val index = entry.int(METADATA_BUFFER)
            require(index in buffers.indices) { "metadata '$name' points at missing buffer $index" }
            name to bufferBytes(buffers[index], file, name)
        }
    }

    /** A buffer's bytes: inline data, or `size` bytes at file `offset` (models over 2 GB). */
    private fun bufferBytes(buffer: Table, file: ByteArray, name: String): ByteArray {
        val offset = buffer.long(BUFFER_OFFSET)
        if (offset <= 1) return buffer.bytes(BUFFER_DATA)
        val size = buffer.long(BUFFER_SIZE)
        require(offset + size <= file.size) { "metadata '$name' lies outside the file" }
        return file.copyOfRange(offset.toInt(), (offset + size).toInt())
    }

    private fun spec(tensor: Table, name: String?): TensorSpec {
        val tensorName = name ?: tensor.string(TENSOR_NAME).orEmpty()
        val typeCode = tensor.byte(TENSOR_TYPE)
        val dtype = requireNotNull(TYPES[typeCode]) {
            "tensor '$tensorName' has TFLite type $typeCode; only float32, uint8 and int8 are handled"
        }
        val quant = if (dtype == DType.FLOAT32) null else tensor.table(TENSOR_QUANTIZATION)?.let {
            quantParams(it, tensorName)
        }
        return TensorSpec(tensorName, tensor.ints(TENSOR_SHAPE).toList(), dtype, quant)
    }

    private fun quantParams(q: Table, tensorName: String): QuantParams? {
        val scales = q.floats(QUANT_SCALE)
        val zeroPoints = q.longs(QUANT_ZERO_POINT)
        if (scales.isEmpty()) return null
        require(scales.size == 1 && zeroPoints.size <= 1) {
            "tensor '$tensorName' is quantized per channel; model inputs/outputs must be per tensor"
        }
        return QuantParams(scales[0], zeroPoints.firstOrNull()?.toInt() ?: 0)
    }

    /** A flatbuffer table at absolute position [pos]; absent fields read as their defaults. */
    private class Table(private val buf: ByteBuffer, private val pos: Int) {
        private val vtable = pos - buf.getInt(pos)
        private val vtableSize = buf.getShort(vtable).toInt() and 0xFFFF

        private fun field(id: Int): Int? {
            val slot = 4 + 2 * id
            if (slot >= vtableSize) return null
            val offset = buf.getShort(vtable + slot).toInt() and 0xFFFF
            return if (offset == 0) null else pos + offset
        }

        private fun deref(at: Int) = at + buf.getInt(at)

        private inline fun <T> vector(id: Int, read: (start: Int, count: Int) -> T): T? {
            val at = deref(field(id) ?: return null)
            val count = buf.getInt(at)
            require(count in 0..buf.limit()) { "corrupt .tflite flatbuffer (vector length $count)" }
            return read(at + 4, count)
        }

        fun byte(id: Int): Int = field(id)?.let { buf.get(it).toInt() } ?: 0
        fun int(id: Int): Int = field(id)?.let { buf.getInt(it) } ?: 0
        fun long(id: Int): Long = field(id)?.let { buf.getLong(it) } ?: 0L
        fun table(id: Int): Table? = field(id)?.let { Table(buf, deref(it)) }
        fun string(id: Int): String? =
            vector(id) { start, n -> String(buf.array(), start, n, Charsets.UTF_8) }
        fun bytes(id: Int): ByteArray =
            vector(id) { start, n -> buf.array().copyOfRange(start, start + n) } ?: ByteArray(0)
        fun tables(id: Int): List<Table> =
            vector(id) { start, n -> List(n) { Table(buf, deref(start + 4 * it)) } } ?: emptyList()
        fun ints(id: Int): IntArray =
            vector(id) { start, n -> IntArray(n) { buf.getInt(start + 4 * it) } } ?: IntArray(0)
        fun floats(id: Int): FloatArray =
            vector(id) { start, n -> FloatArray(n) { buf.getFloat(start + 4 * it) } } ?: FloatArray(0)
        fun longs(id: Int): LongArray =
            vector(id) { start, n -> LongArray(n) { buf.getLong(start + 8 * it) } } ?: LongArray(0)
    }
}
