package dev.lsnet.core

import kotlin.math.floor
import kotlin.math.min

/** An image as Android's `Bitmap.getPixels` gives it: row-major `0xAARRGGBB` ints. */
class ArgbImage(val pixels: IntArray, val width: Int, val height: Int) {
    init {
        require(width > 0 && height > 0) { "empty image ${width}x$height" }
        require(pixels.size == width * height) { "${pixels.size} pixels for ${width}x$height" }
    }

    /** The pixel at column [x], row [y]. */
    operator fun get(x: Int, y: Int): Int = pixels[y * width + x]
}

/** Sampling used by [centerCropResize]. */
enum class Resample { NEAREST, BILINEAR }

/**
 * Crops the largest centered square and resizes it to [dstWidth] x [dstHeight].
 *
 * Crop: side `s = min(width, height)`, left `(width - s) / 2`, top `(height - s) / 2` (integer
 * division). Resize, per axis with `scale = s / dst` in 32-bit float, pixel centers aligned:
 * - NEAREST takes source index `min(floor((x + 0.5) * scale), s - 1)`;
 * - BILINEAR samples at `u = clamp((x + 0.5) * scale - 0.5, 0, s - 1)` from the pixels
 *   `floor(u)` and `min(floor(u) + 1, s - 1)`, then rounds each channel half up.
 * No antialiasing, so strong downscaling aliases (unlike Pillow's BILINEAR). Output alpha is 0xFF.
 */
fun ArgbImage.centerCropResize(dstWidth: Int, dstHeight: Int, resample: Resample): ArgbImage {
    require(dstWidth > 0 && dstHeight > 0) { "empty target ${dstWidth}x$dstHeight" }
    val side = min(width, height)
    val left = (width - side) / 2
    val top = (height - side) / 2
    val xs = Axis(side, dstWidth, resample)
    val ys = Axis(side, dstHeight, resample)
    val out = IntArray(dstWidth * dstHeight)
    for (y in 0 until dstHeight) {
        val y0 = top + ys.lo[y]
        val y1 = top + ys.hi[y]
        for (x in 0 until dstWidth) {
            val x0 = left + xs.lo[x]
            val x1 = left + xs.hi[x]
            out[y * dstWidth + x] = if (resample == Resample.NEAREST) {
                0xFF000000.toInt() or this[x0, y0]
            } else {
                blend(this[x0, y0], this[x1, y0], this[x0, y1], this[x1, y1], xs.frac[x], ys.frac[y])
            }
        }
    }
    return ArgbImage(out, dstWidth, dstHeight)
}

/** Rotates clockwise by [degrees] (0, 90, 180 or 270), as CameraX's `rotationDegrees` asks. */
fun ArgbImage.rotate(degrees: Int): ArgbImage {
    val turns = ((degrees % 360) + 360) % 360
    require(turns % 90 == 0) { "rotation must be a multiple of 90 degrees, got $degrees" }
    if (turns == 0) return this
    val outW = if (turns == 180) width else height
    val outH = if (turns == 180) height else width
    val out = IntArray(pixels.size)
    for (y in 0 until outH) {
        for (x in 0 until outW) {
            out[y * outW + x] = when (turns) {
                90 -> this[y, height - 1 - x]
                180 -> this[width - 1 - x, height - 1 - y]
                else -> this[width - 1 - y, x]
            }
        }
    }
    return ArgbImage(out, outW, outH)
}

/** Source indices and weights along one axis, per destination index. */
private class Axis(side: Int, dst: Int, resample: Resample) {
    val lo = IntArray(dst)
    val hi = IntArray(dst)
    val frac = FloatArray(dst)

    init {
        val scale = side.toFloat() / dst
        for (i in 0 until dst) {
            if (resample == Resample.NEAREST) {
                lo[i] = min(floor((i + 0.5f) * scale).toInt(), side - 1)
                hi[i] = lo[i]
            } else {
                val u = ((i + 0.5f) * scale - 0.5f).coerceIn(0f, (side - 1).toFloat())
                lo[i] = floor(u).toInt()
                hi[i] = min(lo[i] + 1, side - 1)
                frac[i] = u - lo[i]
            }
        }
    }
}

private fun blend(p00: Int, p10: Int, p01: Int, p11: Int, fx: Float, fy: Float): Int {
    fun channel(shift: Int): Int {
        fun c(p: Int) = ((p shr shift) and 0xFF).toFloat()
        val top = c(p00) + (c(p10) - c(p00)) * fx
        val bottom = c(p01) + (c(p11) - c(p01)) * fx
        return floor(top + (bottom - top) * fy + 0.5f).toInt().coerceIn(0, 255) shl shift
    }
    return 0xFF000000.toInt() or channel(16) or channel(8) or channel(0)
}
