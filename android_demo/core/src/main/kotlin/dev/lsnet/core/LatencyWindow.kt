package dev.lsnet.core

import kotlin.math.ceil

/** The last [capacity] latency samples (milliseconds), with order statistics over them. */
class LatencyWindow(val capacity: Int = 50) {
    private val samples = ArrayDeque<Double>()

    init {
        require(capacity > 0) { "capacity must be positive, got $capacity" }
    }

    /** Number of samples held, at most [capacity]. */
    val count: Int get() = samples.size

    /** Adds a sample, dropping the oldest once [capacity] are held. */
    fun add(ms: Double) {
        if (samples.size == capacity) samples.removeFirst()
        samples.addLast(ms)
    }

    /** Forgets all samples (after a change of model or accelerator). */
    fun clear() = samples.clear()

    /** Median; the mean of the two middle samples for an even count; NaN when empty. */
    fun median(): Double {
        val sorted = samples.sorted()
        val n = sorted.size
        if (n == 0) return Double.NaN
        return if (n % 2 == 1) sorted[n / 2] else (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }

    /** Nearest-rank percentile, [p] in (0, 100]: the `ceil(p * n / 100)`-th smallest; NaN when empty. */
    fun percentile(p: Double): Double {
        require(p > 0 && p <= 100) { "percentile must be in (0, 100], got $p" }
        val sorted = samples.sorted()
        if (sorted.isEmpty()) return Double.NaN
        return sorted[ceil(p * sorted.size / 100).toInt() - 1]
    }
}
