package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith

class InputEncoderTest {
    private fun spec(dtype: DType, quant: QuantParams? = null, shape: List<Int> = listOf(1, 1, 2, 3)) =
        TensorSpec("in", shape, dtype, quant)

    // Pixel 0: R=255 G=0 B=128 (opaque); pixel 1: R=10 G=11 B=200 with alpha 0.
    private val image = ArgbImage(intArrayOf(0xFFFF0080.toInt(), 0x000A0BC8), 2, 1)

    private fun bytes(dtype: DType, quant: QuantParams?) =
        (InputEncoder(spec(dtype, quant)).encode(image) as TensorData.Bytes).values.map { dtype.toInt(it) }

    @Test
    fun floatIsImageNetNormalizedNhwc() {
        val out = (InputEncoder(spec(DType.FLOAT32)).encode(image) as TensorData.Floats).values
        // (255/255 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128/255 - 0.406) / 0.225, then pixel 1.
        val expected = floatArrayOf(2.2489083f, -2.0357143f, 0.4264924f, -1.9466565f, -1.8431373f, 1.6813945f)
        assertEquals(expected.size, out.size)
        expected.forEachIndexed { i, e -> assertEquals(e, out[i], 1e-5f, "element $i") }
    }

    @Test
    fun uint8WithoutQuantizationIsRawRgb() {
        assertEquals(listOf(255, 0, 128, 10, 11, 200), bytes(DType.UINT8, null))
    }

    @Test
    fun uint8IsQuantizedFromPixelValues() {
        // q = roundHalfAwayFromZero(c / 2) + 10, clamped to 0..255.
        assertEquals(listOf(138, 10, 74, 15, 16, 110), bytes(DType.UINT8, QuantParams(2f, 10)))
    }

    @Test
    fun int8IsQuantizedAndClamped() {
        assertEquals(listOf(127, -128, 0, -118, -117, 72), bytes(DType.INT8, QuantParams(1f, -128)))
        assertEquals(listOf(127, 0, 64, 5, 6, 100), bytes(DType.INT8, QuantParams(2f, 0)))
    }

    @Test
    fun readsSizeFromTheShape() {
        val enc = InputEncoder(spec(DType.FLOAT32, shape = listOf(1, 224, 160, 3)))
        assertEquals(160 to 224, enc.width to enc.height)
    }

    @Test
    fun rejectsWhatItCannotFeed() {
        assertFailsWith<IllegalArgumentException> { InputEncoder(spec(DType.FLOAT32, shape = listOf(1, 3, 224, 224))) }
        assertFailsWith<IllegalArgumentException> { InputEncoder(spec(DType.INT8)) }
        val wrongSize = ArgbImage(IntArray(4), 2, 2)
        assertFailsWith<IllegalArgumentException> { InputEncoder(spec(DType.UINT8)).encode(wrongSize) }
    }
}
