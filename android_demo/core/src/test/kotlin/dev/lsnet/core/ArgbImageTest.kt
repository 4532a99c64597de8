package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith

class ArgbImageTest {
    private fun grey(v: Int) = 0xFF000000.toInt() or (v shl 16) or (v shl 8) or v

    /** An image whose pixel (x, y) is the opaque value `10 * y + x`, for telling pixels apart. */
    private fun numbered(w: Int, h: Int) = ArgbImage(IntArray(w * h) { grey(10 * (it / w) + it % w) }, w, h)

    private fun values(img: ArgbImage) = img.pixels.map { it and 0xFF }

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
    }
}
