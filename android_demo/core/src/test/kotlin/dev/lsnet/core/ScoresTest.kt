package dev.lsnet.core

import kotlin.math.exp
import kotlin.test.Test
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith

class ScoresTest {
    @Test
    fun softmaxMatchesTheDefinition() {
        val p = softmax(floatArrayOf(1f, 2f, 3f))
        val z = exp(1.0) + exp(2.0) + exp(3.0)
        listOf(exp(1.0) / z, exp(2.0) / z, exp(3.0) / z).forEachIndexed { i, want ->
            assertEquals(want.toFloat(), p[i], 1e-7f)
        }
    }

    @Test
    fun softmaxIsStableForLargeLogits() {
        val p = softmax(floatArrayOf(1000f, 1001f))
        assertEquals(1f, p.sum(), 1e-6f)
        assertEquals((1 / (1 + exp(-1.0))).toFloat(), p[1], 1e-7f)
    }

    @Test
    fun distributionsAreKeptLogitsAreSoftmaxed() {
        val probs = floatArrayOf(0.1f, 0.6f, 0.3f)
        assertContentEquals(probs, toProbabilities(probs))
        val notSummingToOne = floatArrayOf(0.1f, 0.2f, 0.3f)
        assertContentEquals(softmax(notSummingToOne), toProbabilities(notSummingToOne))
        val logits = floatArrayOf(-1f, 0.5f, 2f)
        assertContentEquals(softmax(logits), toProbabilities(logits))
    }

    @Test
    fun topKRanksDescendingWithLowerIndexFirstOnTies() {
        val v = floatArrayOf(0.1f, 0.5f, 0.2f, 0.5f, 0.9f, 0.2f)
        assertContentEquals(intArrayOf(4, 1, 3, 2, 5), topK(v, 5))
        assertContentEquals(intArrayOf(4), topK(v, 1))
        assertFailsWith<IllegalArgumentException> { topK(v, 7) }
        assertFailsWith<IllegalArgumentException> { topK(v, 0) }
    }
}
