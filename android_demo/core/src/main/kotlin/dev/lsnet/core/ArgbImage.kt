package dev.lsnet.core

/** An image as Android's `Bitmap.getPixels` gives it: row-major `0xAARRGGBB` ints. */
class ArgbImage(val pixels: IntArray, val width: Int, val height: Int) {
    init {
        require(width > 0 && height > 0) { "empty image ${width}x$height" }
        require(pixels.size == width * height) { "${pixels.size} pixels for ${width}x$height" }
    }

    /** The pixel at column [x], row [y]. */
    operator fun get(x: Int, y: Int): Int = pixels[y * width + x]
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
