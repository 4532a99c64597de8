package dev.lsnet.core

import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.sign

/**
 * Quantizes [real] for a tensor of integer type [dtype]:
 * `q = clamp(roundHalfAwayFromZero(real / scale) + zeroPoint, qmin, qmax)`, returned as the byte
 * stored in the tensor (two's complement for int8, unsigned for uint8). The division and rounding
 * are done in 32-bit float, as TFLite's reference quantizer does.
 */
fun QuantParams.quantize(real: Float, dtype: DType): Byte {
    require(dtype != DType.FLOAT32) { "float32 tensors are not quantized" }
    val q = roundHalfAwayFromZero(real / scale) + zeroPoint
    return q.coerceIn(dtype.qmin, dtype.qmax).toByte()
}

/** Reads the stored byte [raw] of an integer tensor of type [dtype] back as `scale * (q - zeroPoint)`. */
fun QuantParams.dequantize(raw: Byte, dtype: DType): Float = scale * (dtype.toInt(raw) - zeroPoint)

/** The integer value of a stored byte: unsigned for [DType.UINT8], signed for [DType.INT8]. */
fun DType.toInt(raw: Byte): Int = when (this) {
    DType.UINT8 -> raw.toInt() and 0xFF
    DType.INT8 -> raw.toInt()
    DType.FLOAT32 -> throw IllegalArgumentException("float32 elements are not bytes")
}

/** Rounds to the nearest integer, halves away from zero (2.5 -> 3, -2.5 -> -3). */
fun roundHalfAwayFromZero(x: Float): Int = (sign(x) * floor(abs(x) + 0.5f)).toInt()
