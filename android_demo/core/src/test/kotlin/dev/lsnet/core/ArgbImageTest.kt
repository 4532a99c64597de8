package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith

class ArgbImageTest {
    private fun grey(v: Int) = 0xFF000000.toInt() or (v shl 16) or (v shl 8) or v

    /** An image whose pixel (x, y) is the opaque value `10 * y + x`, for telling pixels apart. */
    private fun numbered(w: Int, h: Int) = ArgbImage(IntArray(w * h) { grey(10 * (it / w) + it % w) }, w, h)

    private fun values(img: ArgbImage) = img.pixels.map { it and 0xFF }

    @Test
    fun sameSizeIsIdentity() {
        val img = numbered(3, 3)
        for (mode in Resample.entries) assertContentEquals(img.pixels, img.centerCropResize(3, 3, mode).pixels)
    }

    @Test
    fun cropsTheCenteredSquare() {
        assertEquals(listOf(1, 2, 11, 12), values(numbered(4, 2).centerCropResize(2, 2, Resample.NEAREST)))
        assertEquals(listOf(10, 11, 20, 21), values(numbered(2, 4).centerCropResize(2, 2, Resample.NEAREST)))
        assertEquals(listOf(1, 2, 11, 12), values(numbered(5, 2).centerCropResize(2, 2, Resample.NEAREST)))
    }

    @Test
    fun nearestDownscalePicksPixelCenters() {
        assertEquals(listOf(11, 13, 31, 33), values(numbered(4, 4).centerCropResize(2, 2, Resample.NEAREST)))
    }

    @Test
    fun bilinearDownscaleAveragesAndRoundsHalfUp() {
        val img = ArgbImage(intArrayOf(grey(0), grey(1), grey(0), grey(1)), 2, 2)
        assertEquals(listOf(1), values(img.centerCropResize(1, 1, Resample.BILINEAR)))
    }

    @Test
    fun bilinearUpscaleClampsAtTheBorder() {
        val img = ArgbImage(intArrayOf(grey(0), grey(100), grey(0), grey(100)), 2, 2)
        assertEquals(listOf(0, 25, 75, 100), values(img.centerCropResize(4, 4, Resample.BILINEAR)).take(4))
    }

    @Test
    fun outputIsOpaque() {
        val clear = ArgbImage(intArrayOf(0x00102030), 1, 1)
        for (mode in Resample.entries) assertEquals(0xFF102030.toInt(), clear.centerCropResize(1, 1, mode).pixels[0])
    }

    @Test
    fun rotatesClockwise() {
        val img = numbered(3, 2) // rows: 0 1 2 / 10 11 12
        val r90 = img.rotate(90)
        assertEquals(2 to 3, r90.width to r90.height)
        assertEquals(listOf(10, 0, 11, 1, 12, 2), values(r90))
        assertEquals(listOf(12, 11, 10, 2, 1, 0), values(img.rotate(180)))
        assertEquals(listOf(2, 12, 1, 11, 0, 10), values(img.rotate(270)))
        assertEquals(values(img.rotate(270)), values(img.rotate(-90)))
        assertEquals(values(img), values(img.rotate(90).rotate(270)))
        assertFailsWith<IllegalArgumentException> { img.rotate(45) }
    }

    @Test
    fun rejectsInconsistentSizes() {
        assertFailsWith<IllegalArgumentException> { ArgbImage(IntArray(5), 2, 2) }
        assertFailsWith<IllegalArgumentException> { numbered(2, 2).centerCropResize(0, 2, Resample.NEAREST) }
    }
}
