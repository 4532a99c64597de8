package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith

class QuantizationTest {
    @Test
    fun roundsHalvesAwayFromZero() {
        val cases = mapOf(2.5f to 3, -2.5f to -3, 2.49f to 2, -0.5f to -1, 0.5f to 1, 0f to 0, -1.2f to -1)
        cases.forEach { (x, want) -> assertEquals(want, roundHalfAwayFromZero(x), "round($x)") }
    }

    @Test
    fun quantizeClampsToTheTypeRange() {
        val unit = QuantParams(1f, 0)
        assertEquals(255, DType.UINT8.toInt(unit.quantize(300f, DType.UINT8)))
        assertEquals(0, DType.UINT8.toInt(unit.quantize(-5f, DType.UINT8)))
        val half = QuantParams(0.5f, 0)
        assertEquals(127, DType.INT8.toInt(half.quantize(100f, DType.INT8)))
        assertEquals(-128, DType.INT8.toInt(half.quantize(-100f, DType.INT8)))
    }

    @Test
    fun storedBytesAreReadBackWithTheirSignedness() {
        val b = QuantParams(1f, 0).quantize(200f, DType.UINT8)
        assertEquals(-56, b.toInt())
        assertEquals(200, DType.UINT8.toInt(b))
        assertEquals(-56, DType.INT8.toInt(b))
    }

    @Test
    fun dequantizes() {
        assertEquals(0f, QuantParams(0.5f, -3).dequantize((-3).toByte(), DType.INT8))
        assertEquals(-62.5f, QuantParams(0.5f, -3).dequantize((-128).toByte(), DType.INT8))
        assertEquals(12.7f, QuantParams(0.1f, 128).dequantize(0xFF.toByte(), DType.UINT8), 1e-6f)
    }

    @Test
    fun uint8RoundTripsWithUnitScale() {
        val q = QuantParams(1f, 0)
        for (v in 0..255) assertEquals(v.toFloat(), q.dequantize(q.quantize(v.toFloat(), DType.UINT8), DType.UINT8))
    }

    @Test
    fun rejectsBadParameters() {
        assertFailsWith<IllegalArgumentException> { QuantParams(0f, 0) }
        assertFailsWith<IllegalArgumentException> { QuantParams(Float.NaN, 0) }
        assertFailsWith<IllegalArgumentException> { QuantParams(1f, 0).quantize(1f, DType.FLOAT32) }
    }
}
