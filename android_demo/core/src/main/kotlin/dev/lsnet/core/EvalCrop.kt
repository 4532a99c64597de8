package dev.lsnet.core

import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min

/**
 * The evaluation transform the model was measured with, on a whole (upright) camera frame:
 * resize so the shorter side is `floor(max(width, height) / cropFraction)`, then take the centered
 * `width` x `height` region. With [cropFraction] 0.875 and 224 that is the official "resize 256,
 * center crop 224" (the Python `lsnet_keras.preprocess.eval_crop`).
 *
 * - Resized size: shorter side `S` as above, longer side `floor(S * long / short)`.
 * - Crop offsets: `round((resized - crop) / 2)` with halves to even (Python's `round`).
 * - Filter: bicubic (Keys, a = -0.5), widened by the downscale factor so that downscaling
 *   averages every source pixel (antialiasing), weights normalized to sum 1 and held in 22-bit
 *   fixed point; one horizontal pass rounded to 8 bits, then one vertical pass. This is the
 *   arithmetic of Pillow's `Image.resize(..., BICUBIC)`, which the Python side uses, so on the
 *   same decoded pixels the two agree (GOLDEN.md states the tolerance checked).
 *
 * Only the pixels inside the crop are computed. Filters depend on the frame size only and are
 * reused while it stays the same.
 *
 * Example: `EvalCrop(0.875).apply(frame, 224, 224)`.
 */
class EvalCrop(val cropFraction: Double) {
    init {
        require(cropFraction > 0.0 && cropFraction <= 1.0) { "crop fraction must be in (0, 1], got $cropFraction" }
    }

    private var cached: Plan? = null

    /** The centered [width] x [height] crop of [frame], resized as described above; alpha 0xFF. */
    fun apply(frame: ArgbImage, width: Int, height: Int): ArgbImage {
        require(width > 0 && height > 0) { "empty target ${width}x$height" }
        val plan = cached?.takeIf { it.matches(frame, width, height) }
            ?: Plan(frame.width, frame.height, width, height, cropFraction).also { cached = it }
        return plan.run(frame)
    }

    /** Resized frame size `(width, height)` for a [frameWidth] x [frameHeight] frame and a crop. */
    fun resizedSize(frameWidth: Int, frameHeight: Int, width: Int, height: Int): Pair<Int, Int> {
        val short = floor(max(width, height) / cropFraction).toInt()
        return if (frameWidth <= frameHeight) {
            short to (short.toLong() * frameHeight / frameWidth).toInt()
        } else {
            (short.toLong() * frameWidth / frameHeight).toInt() to short
        }
    }

    private inner class Plan(val srcW: Int, val srcH: Int, val w: Int, val h: Int, fraction: Double) {
        val xs: Taps
        val ys: Taps

        init {
            val (rw, rh) = resizedSize(srcW, srcH, w, h)
            require(rw >= w && rh >= h) { "crop ${w}x$h does not fit the resized frame ${rw}x$rh (fraction $fraction)" }
            xs = Taps(srcW, rw, centerOffset(rw - w), w)
            ys = Taps(srcH, rh, centerOffset(rh - h), h)
        }

        fun matches(frame: ArgbImage, width: Int, height: Int) =
            frame.width == srcW && frame.height == srcH && width == w && height == h

        fun run(frame: ArgbImage): ArgbImage {
            // Horizontal pass over the source rows the vertical pass reads, rounded to 8 bits.
            val firstRow = ys.first.min()
            val rows = (0 until h).maxOf { ys.first[it] + ys.count[it] } - firstRow
            val mid = Array(3) { IntArray(rows * w) }
            for (r in 0 until rows) {
                val rowStart = (firstRow + r) * srcW
                for (x in 0 until w) {
                    val start = xs.first[x]
                    val k = xs.offset[x]
                    var red = HALF
                    var green = HALF
                    var blue = HALF
                    for (j in 0 until xs.count[x]) {
                        val p = frame.pixels[rowStart + start + j]
                        val c = xs.weights[k + j]
                        red += ((p shr 16) and 0xFF) * c
                        green += ((p shr 8) and 0xFF) * c
                        blue += (p and 0xFF) * c
                    }
                    mid[0][r * w + x] = clip8(red)
                    mid[1][r * w + x] = clip8(green)
                    mid[2][r * w + x] = clip8(blue)
                }
            }
            val out = IntArray(w * h)
            for (y in 0 until h) {
                val start = ys.first[y] - firstRow
                val k = ys.offset[y]
                for (x in 0 until w) {
                    var argb = OPAQUE
                    for (c in 0..2) {
                        var acc = HALF
                        for (j in 0 until ys.count[y]) acc += mid[c][(start + j) * w + x] * ys.weights[k + j]
                        argb = argb or (clip8(acc) shl (16 - 8 * c))
                    }
                    out[y * w + x] = argb
                }
            }
            return ArgbImage(out, w, h)
        }
    }

    /**
     * Fixed-point filter taps along one axis, for the [count] output indices starting at
     * [skip] of a resize from [inSize] to [outSize]: output `i` reads `count[i]` source pixels
     * from `first[i]` with the weights `weights[offset[i] ...]`.
     */
    private class Taps(inSize: Int, outSize: Int, skip: Int, count: Int) {
        val first = IntArray(count)
        val count = IntArray(count)
        val offset = IntArray(count)
        val weights: IntArray

        init {
            val scale = inSize.toDouble() / outSize
            val widen = max(scale, 1.0)
            val support = CUBIC_SUPPORT * widen
            val shrink = 1.0 / widen
            val all = ArrayList<Int>()
            for (i in 0 until count) {
                val center = (skip + i + 0.5) * scale
                val lo = max((center - support + 0.5).toInt(), 0)
                val hi = min((center + support + 0.5).toInt(), inSize)
                val real = DoubleArray(hi - lo) { cubic((lo + it - center + 0.5) * shrink) }
                val total = real.sum()
                first[i] = lo
                this.count[i] = hi - lo
                offset[i] = all.size
                real.forEach { all += toFixed(if (total != 0.0) it / total else it) }
            }
            weights = all.toIntArray()
        }
    }

    private companion object {
        const val PRECISION_BITS = 22 // 32 bits minus 8 for the pixel minus 2 for the cubic overshoot
        const val HALF = 1 shl (PRECISION_BITS - 1)
        const val CUBIC_SUPPORT = 2.0
        const val A = -0.5
        val OPAQUE = 0xFF000000.toInt()

        /** Keys' cubic convolution kernel with a = -0.5 (what Pillow calls BICUBIC). */
        fun cubic(x: Double): Double {
            val t = abs(x)
            return when {
                t < 1.0 -> ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0
                t < 2.0 -> (((t - 5.0) * t + 8.0) * t - 4.0) * A
                else -> 0.0
            }
        }

        /** A weight in fixed point, rounded half away from zero. */
        fun toFixed(w: Double): Int {
            val scaled = w * (1 shl PRECISION_BITS)
            return if (scaled < 0) (scaled - 0.5).toInt() else (scaled + 0.5).toInt()
        }

        fun clip8(acc: Int): Int = (acc shr PRECISION_BITS).coerceIn(0, 255)

        /** `round(d / 2)` with halves to even, as Python's `round` in torchvision's center crop. */
        fun centerOffset(d: Int): Int {
            val half = d / 2
            return if (d % 2 == 0 || half % 2 == 0) half else half + 1
        }
    }
}
