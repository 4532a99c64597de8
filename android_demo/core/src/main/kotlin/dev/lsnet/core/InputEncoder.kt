package dev.lsnet.core

/** ImageNet channel statistics (R, G, B, on pixel values scaled to 0..1) of the float32 models. */
object ImageNet {
    /** Per-channel mean. */
    val MEAN = floatArrayOf(0.485f, 0.456f, 0.406f)

    /** Per-channel standard deviation. */
    val STD = floatArrayOf(0.229f, 0.224f, 0.225f)
}

/**
 * Packs an RGB image at model size into the model's input tensor, deciding everything from the
 * tensor's own details ([spec]: shape `[1, H, W, 3]`, type, quantization):
 * - float32: `(c / 255 - MEAN[c]) / STD[c]` in 32-bit float (the model expects normalized input);
 * - uint8 / int8: the model normalizes inside, so the real value is the pixel `c` in 0..255,
 *   quantized with the tensor's scale/zero-point ([quantize]). A uint8 tensor without
 *   quantization parameters takes `c` as is; an int8 one must have them.
 *
 * Channels are written R, G, B per pixel, pixels row-major (NHWC). Alpha is ignored.
 */
class InputEncoder(private val spec: TensorSpec) {
    /** Model input height, from the tensor shape. */
    val height: Int

    /** Model input width, from the tensor shape. */
    val width: Int

    private val quant: QuantParams? = spec.quant

    init {
        val s = spec.shape
        require(s.size == 4 && s[0] == 1 && s[3] == 3 && s[1] > 0 && s[2] > 0) {
            "input '${spec.name}' has shape $s; expected [1, height, width, 3] (NHWC RGB)"
        }
        require(spec.dtype != DType.INT8 || quant != null) {
            "int8 input '${spec.name}' has no quantization parameters"
        }
        height = s[1]
        width = s[2]
    }

    /** Encodes [image], which must already be [width] x [height]. */
    fun encode(image: ArgbImage): TensorData {
        require(image.width == width && image.height == height) {
            "image is ${image.width}x${image.height}, model input is ${width}x$height"
        }
        return if (spec.dtype == DType.FLOAT32) floats(image.pixels) else bytes(image.pixels)
    }

    private fun floats(pixels: IntArray): TensorData.Floats {
        val out = FloatArray(pixels.size * 3)
        for (i in pixels.indices) {
            for (c in 0..2) {
                out[3 * i + c] = (channel(pixels[i], c) / 255f - ImageNet.MEAN[c]) / ImageNet.STD[c]
            }
        }
        return TensorData.Floats(out)
    }

    private fun bytes(pixels: IntArray): TensorData.Bytes {
        val out = ByteArray(pixels.size * 3)
        for (i in pixels.indices) {
            for (c in 0..2) {
                val v = channel(pixels[i], c)
                out[3 * i + c] = quant?.quantize(v.toFloat(), spec.dtype) ?: v.toByte()
            }
        }
        return TensorData.Bytes(out)
    }

    private fun channel(argb: Int, c: Int): Int = (argb shr (16 - 8 * c)) and 0xFF
}
