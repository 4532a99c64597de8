package dev.lsnet.core

/** Element types the app can feed to or read from a model; [TfliteReader] rejects any other. */
enum class DType(val bytesPerElement: Int, val qmin: Int, val qmax: Int) {
    FLOAT32(4, 0, 0),
    UINT8(1, 0, 255),
    INT8(1, -128, 127),
}

/** Per-tensor affine quantization: `real = scale * (q - zeroPoint)`. */
data class QuantParams(val scale: Float, val zeroPoint: Int) {
    init {
        require(scale > 0f && scale.isFinite()) { "quantization scale must be positive, got $scale" }
    }
}

/** Name, shape, element type and quantization (integer types only) of one model input or output. */
data class TensorSpec(
    val name: String,
    val shape: List<Int>,
    val dtype: DType,
    val quant: QuantParams?,
) {
    /** Number of elements, the product of [shape]. */
    val elementCount: Int get() = shape.fold(1, Int::times)
}

/**
 * The tensors behind `createInputBuffers()` / `createOutputBuffers()` of signature 0, in that
 * order, and the model's metadata entries (`Model.metadata`: name to buffer contents).
 */
data class ModelIo(
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>,
    val metadata: Map<String, ByteArray> = emptyMap(),
)

/**
 * Tensor contents in the two forms the LiteRT `TensorBuffer` Kotlin API moves them:
 * `writeFloat`/`readFloat` for float32, `writeInt8`/`readInt8` (raw bytes) for uint8 and int8.
 */
sealed interface TensorData {
    /** float32 elements. */
    class Floats(val values: FloatArray) : TensorData

    /** uint8 or int8 elements as stored, one byte each. */
    class Bytes(val values: ByteArray) : TensorData
}
