package dev.lsnet.core

import kotlin.math.abs
import kotlin.math.exp

/** One class of a top-k answer: its index in the output, probability and label. */
data class Prediction(val index: Int, val score: Float, val label: String)

/**
 * Turns a (dequantized) output vector into class probabilities. A vector that already is a
 * distribution (every value in [0, 1], sum within 1e-3 of 1) is kept as is; anything else is
 * taken as logits and goes through [softmax].
 */
fun toProbabilities(values: FloatArray): FloatArray {
    val isDistribution = values.all { it in 0f..1f } && abs(values.sum() - 1f) <= 1e-3f
    return if (isDistribution) values.copyOf() else softmax(values)
}

/** Numerically stable softmax, accumulated in double precision. */
fun softmax(values: FloatArray): FloatArray {
    require(values.isNotEmpty()) { "softmax of an empty vector" }
    val max = values.max().toDouble()
    val exps = DoubleArray(values.size) { exp(values[it] - max) }
    val sum = exps.sum()
    return FloatArray(values.size) { (exps[it] / sum).toFloat() }
}

/** Indices of the [k] largest values, largest first; equal values go to the lower index first. */
fun topK(values: FloatArray, k: Int): IntArray {
    require(k in 1..values.size) { "k=$k for ${values.size} values" }
    val order = compareByDescending<Int> { values[it] }.thenBy { it }
    return values.indices.sortedWith(order).take(k).toIntArray()
}
