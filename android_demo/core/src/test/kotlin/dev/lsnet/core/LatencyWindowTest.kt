package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class LatencyWindowTest {
    private fun window(vararg ms: Double, capacity: Int = 50) = LatencyWindow(capacity).apply { ms.forEach(::add) }

    @Test
    fun emptyWindowHasNoStatistics() {
        assertTrue(window().median().isNaN())
        assertTrue(window().percentile(90.0).isNaN())
    }

    @Test
    fun medianOfOddAndEvenCounts() {
        assertEquals(3.0, window(5.0, 1.0, 3.0).median())
        assertEquals(2.5, window(4.0, 1.0, 3.0, 2.0).median())
    }

    @Test
    fun nearestRankPercentile() {
        val w = window(*DoubleArray(10) { 10.0 - it })
        assertEquals(9.0, w.percentile(90.0))
        assertEquals(10.0, w.percentile(100.0))
        assertEquals(1.0, w.percentile(1.0))
        assertEquals(45.0, window(*DoubleArray(50) { it + 1.0 }).percentile(90.0))
        assertFailsWith<IllegalArgumentException> { w.percentile(0.0) }
    }

    @Test
    fun slidesOverTheLastSamples() {
        val w = window(100.0, 1.0, 2.0, 3.0, capacity = 3)
        assertEquals(3, w.count)
        assertEquals(2.0, w.median())
        assertEquals(3.0, w.percentile(90.0))
        w.clear()
        assertEquals(0, w.count)
    }
}
