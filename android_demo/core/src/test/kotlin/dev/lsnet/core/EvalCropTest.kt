package dev.lsnet.core

import dev.lsnet.core.golden.GoldenCase
import java.io.File
import kotlin.test.Test
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith

/**
 * [EvalCrop] against Python's `lsnet_keras.preprocess.eval_crop` (Pillow 13 bicubic) on a real
 * photo: the PNGs under `resources/crop/` were written by `make_golden_fixtures.py`.
 */
class EvalCropTest {
    private fun png(name: String): ArgbImage = GoldenCase.readImage(
        File(checkNotNull(EvalCropTest::class.java.getResource("/crop/$name")) { "no fixture $name" }.toURI()),
    )

    private fun grey(v: Int) = 0xFF000000.toInt() or (v shl 16) or (v shl 8) or v

    @Test
    fun matchesPythonOnARealPhotoExactly() {
        val photo = png("photo.png")
        for ((w, h, rotation) in listOf(Triple(64, 64, 0), Triple(224, 224, 0), Triple(64, 48, 0),
            Triple(64, 64, 90), Triple(33, 33, 270))) {
            val expected = png("expected_${w}x${h}_rot$rotation.png")
            val got = EvalCrop(0.875).apply(photo.rotate(rotation), w, h)
            assertEquals(expected.width to expected.height, got.width to got.height)
            assertContentEquals(expected.pixels, got.pixels, "crop ${w}x$h after turning $rotation degrees")
        }
    }

    @Test
    fun resizesTheShorterSideToCropOverFraction() {
        val crop = EvalCrop(0.875)
        assertEquals(341 to 256, crop.resizedSize(640, 480, 224, 224)) // the official 256 / 224
        assertEquals(256 to 341, crop.resizedSize(480, 640, 224, 224))
        assertEquals(73 to 97, crop.resizedSize(150, 201, 64, 64)) // int(256 / 224 * 64) = 73
        assertEquals(73 to 73, crop.resizedSize(5, 5, 64, 48)) // the larger side of the crop decides
        assertEquals(224 to 224, EvalCrop(1.0).resizedSize(9, 9, 224, 224))
    }

    @Test
    fun takesTheCenterWithHalvesRoundedToEven() {
        // Fraction 1 on frames whose shorter side is the crop: the filter is the identity, so the
        // result shows the offset round(margin / 2), Python's round: 2.5 -> 2, 1.5 -> 2, 3.5 -> 4.
        fun strip(w: Int, h: Int) = ArgbImage(IntArray(w * h) { grey(10 * (it % w)) }, w, h)
        fun values(img: ArgbImage) = img.pixels.map { it and 0xFF }
        assertEquals(listOf(20), values(EvalCrop(1.0).apply(strip(6, 1), 1, 1)))
        assertEquals(listOf(20, 30, 40), values(EvalCrop(1.0).apply(strip(6, 3), 3, 3)).take(3))
        assertEquals(listOf(40), values(EvalCrop(1.0).apply(strip(8, 1), 1, 1)))
    }

    @Test
    fun downscalingAveragesInsteadOfSkipping() {
        // A 1-pixel checkerboard of 0 and 200 shrunk 8 times: sampling would give 0 or 200,
        // an antialiasing filter gives the mean (within the filter's rounding).
        val board = ArgbImage(IntArray(64 * 64) { if ((it / 64 + it % 64) % 2 == 0) grey(0) else grey(200) }, 64, 64)
        val small = EvalCrop(1.0).apply(board, 8, 8)
        small.pixels.forEach { assertEquals(100.0, (it and 0xFF).toDouble(), 1.0) }
    }

    @Test
    fun outputIsOpaqueAndFlatStaysFlat() {
        val flat = ArgbImage(IntArray(30 * 20) { 0x00102030 }, 30, 20)
        EvalCrop(0.875).apply(flat, 7, 7).pixels.forEach { assertEquals(0xFF102030.toInt(), it) }
    }

    @Test
    fun rejectsBadFractionsAndSizes() {
        assertFailsWith<IllegalArgumentException> { EvalCrop(0.0) }
        assertFailsWith<IllegalArgumentException> { EvalCrop(1.5) }
        assertFailsWith<IllegalArgumentException> { EvalCrop(0.875).apply(ArgbImage(IntArray(4), 2, 2), 0, 2) }
    }
}
