package dev.lsnet.core.golden

import dev.lsnet.core.ArgbImage
import dev.lsnet.core.ClassifierPipeline
import dev.lsnet.core.DType
import dev.lsnet.core.ImageNet
import dev.lsnet.core.ModelIo
import dev.lsnet.core.Preprocessing
import dev.lsnet.core.QuantParams
import dev.lsnet.core.TensorData
import dev.lsnet.core.TensorSpec
import dev.lsnet.core.TfliteReader
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import javax.imageio.ImageIO
import kotlin.math.abs
import kotlin.test.assertEquals
import kotlin.test.assertTrue
import kotlin.test.fail

/** One golden directory in the format of GOLDEN.md, checked against the Kotlin pipeline. */
class GoldenCase(private val dir: File) {
    private val meta = MiniJson.parse(file("meta.json").readText()) as Map<*, *>
    private val width = number("width").toInt()
    private val height = number("height").toInt()
    private val inputDtype = dtype("input_dtype")
    private val outputDtype = dtype("output_dtype")
    private val rawOutput = file("raw_output.bin").readBytes()
    private val classes = rawOutput.size / outputDtype.bytesPerElement
    private val preprocessing = Preprocessing(number("crop_fraction"))

    private val io = ModelIo(
        listOf(TensorSpec("input", listOf(1, height, width, 3), inputDtype, quant("input"))),
        listOf(TensorSpec("output", listOf(1, classes), outputDtype, quant("output"))),
        mapOf(Preprocessing.METADATA_NAME to "crop_fraction=${preprocessing.cropFraction}\nresample=bicubic".toByteArray()),
    )
    private val pipeline = ClassifierPipeline(io, List(classes) { "class $it" })

    companion object {
        /** A committed fixture directory under `src/test/resources/golden/` (see make_golden_fixtures.py). */
        fun fixture(case: String): File =
            File(checkNotNull(GoldenCase::class.java.getResource("/golden/$case/meta.json")).toURI()).parentFile

        /** Largest difference allowed between a Kotlin and a Python crop channel value (GOLDEN.md). */
        const val CROP_MAX_LEVELS = 1

        /** Largest fraction of crop channel values allowed to differ at all (GOLDEN.md). */
        const val CROP_MAX_DIFFERING = 0.01

        /** Reads a PNG (or any format ImageIO knows) as opaque ARGB pixels. */
        fun readImage(file: File): ArgbImage {
            val image = checkNotNull(ImageIO.read(file)) { "$file: not an image ImageIO can read" }
            val pixels = image.getRGB(0, 0, image.width, image.height, null, 0, image.width)
            return ArgbImage(IntArray(pixels.size) { pixels[it] or 0xFF000000.toInt() }, image.width, image.height)
        }
    }

    /**
     * Runs every check; throws [AssertionError] naming the first mismatch. With [fromExport]
     * (directories written by `lsnet android-golden`), `model.tflite` and `photo.png` must be
     * there, and the Kotlin input tensor made from the photo is written to `kotlin_input.bin`
     * for the Python side to run through the model. Returns what the crop check measured.
     */
    fun verify(fromExport: Boolean = false): String {
        checkModelFile(fromExport)
        checkNormalization()
        checkInput()
        checkTop5()
        return checkCrop(fromExport)
    }

    /** `model.tflite` must declare what meta.json says, its crop included. */
    private fun checkModelFile(required: Boolean) {
        val model = File(dir, "model.tflite")
        if (!model.exists() && !required) return
        val fromModel = TfliteReader.read(file("model.tflite").readBytes())
        fun strip(specs: List<TensorSpec>) = specs.map { Triple(it.shape, it.dtype, it.quant) }
        assertEquals(strip(io.inputs), strip(fromModel.inputs), "model.tflite input vs meta.json")
        assertEquals(strip(io.outputs), strip(fromModel.outputs), "model.tflite output vs meta.json")
        if (required || Preprocessing.METADATA_NAME in fromModel.metadata) {
            assertEquals(preprocessing, Preprocessing.of(fromModel), "model.tflite crop vs meta.json")
        }
    }

    /**
     * From `photo.png`, the app's upright crop + resize ([ClassifierPipeline.crop], the crop
     * fraction read from the model) must give Python's crop (`input_argb.bin`) within
     * [CROP_MAX_LEVELS] and [CROP_MAX_DIFFERING].
     */
    private fun checkCrop(fromExport: Boolean): String {
        val photoFile = File(dir, "photo.png")
        if (!photoFile.exists() && !fromExport) return "no photo"
        val crop = pipeline.crop(readImage(file("photo.png")), rotationDegrees = 0)
        val python = inputPixels()
        var differing = 0
        var worst = 0
        for (i in python.indices) {
            for (shift in intArrayOf(16, 8, 0)) {
                val d = abs(((python[i] shr shift) and 0xFF) - ((crop.pixels[i] shr shift) and 0xFF))
                if (d > 0) differing++
                worst = maxOf(worst, d)
            }
        }
        val values = 3 * python.size
        val summary = "crop of ${dir.name}: $differing of $values channel values differ from Python's, by at most $worst"
        assertTrue(worst <= CROP_MAX_LEVELS && differing <= CROP_MAX_DIFFERING * values, summary)
        if (fromExport) {
            val bytes = when (val tensor = pipeline.encode(crop)) {
                is TensorData.Bytes -> tensor.values
                is TensorData.Floats -> ByteBuffer.allocate(4 * tensor.values.size).order(ByteOrder.LITTLE_ENDIAN)
                    .apply { tensor.values.forEach { putFloat(it) } }.array()
            }
            File(dir, "kotlin_input.bin").writeBytes(bytes)
        }
        return summary
    }

    private fun inputPixels(): IntArray {
        val argb = le(file("input_argb.bin").readBytes()).asIntBuffer()
        assertEquals(width * height, argb.remaining(), "input_argb.bin pixel count")
        return IntArray(argb.remaining()).also { argb.get(it) }
    }

    /** A float32 input must use the app's ImageNet constants. */
    private fun checkNormalization() {
        if (inputDtype != DType.FLOAT32) return
        for ((key, expected) in listOf("mean" to ImageNet.MEAN, "std" to ImageNet.STD)) {
            val actual = (meta[key] as List<*>).map { (it as Double).toFloat() }
            assertEquals(expected.toList(), actual, "meta.json $key differs from the app's ImageNet $key")
        }
    }

    private fun checkInput() {
        val pixels = inputPixels()
        val expected = file("expected_input.bin").readBytes()
        when (val actual = pipeline.encode(ArgbImage(pixels, width, height))) {
            is TensorData.Bytes -> {
                assertEquals(expected.size, actual.values.size, "expected_input.bin size")
                firstMismatch(expected.size) { expected[it] == actual.values[it] }?.let {
                    fail("input element $it: expected ${expected[it]}, got ${actual.values[it]}")
                }
            }
            is TensorData.Floats -> {
                val want = floats(expected)
                assertEquals(want.size, actual.values.size, "expected_input.bin size")
                firstMismatch(want.size) { abs(want[it] - actual.values[it]) <= 1e-5f }?.let {
                    fail("input element $it: expected ${want[it]}, got ${actual.values[it]}")
                }
            }
        }
    }

    private fun checkTop5() {
        val expected = MiniJson.parse(file("expected_top5.json").readText()) as Map<*, *>
        val indices = (expected["indices"] as List<*>).map { (it as Double).toInt() }
        val scores = (expected["scores"] as List<*>).map { it as Double }
        val raw = when (outputDtype) {
            DType.FLOAT32 -> TensorData.Floats(floats(rawOutput))
            else -> TensorData.Bytes(rawOutput)
        }
        val got = pipeline.decode(raw, 5)
        assertEquals(indices, got.map { it.index }, "top-5 indices")
        scores.zip(got).forEach { (want, p) ->
            assertTrue(abs(want - p.score) <= 1e-5, "score of class ${p.index}: expected $want, got ${p.score}")
        }
    }

    private fun firstMismatch(n: Int, same: (Int) -> Boolean): Int? = (0 until n).firstOrNull { !same(it) }
    private fun file(name: String): File = File(dir, name).also { assertTrue(it.isFile, "missing $it") }
    private fun number(key: String): Double =
        meta[key] as? Double ?: throw AssertionError("meta.json: no number '$key'")
    private fun dtype(key: String): DType = DType.valueOf((meta[key] as String).uppercase())
    private fun quant(prefix: String): QuantParams? =
        (meta["${prefix}_scale"] as Double?)?.let { QuantParams(it.toFloat(), number("${prefix}_zero_point").toInt()) }
    private fun le(bytes: ByteArray): ByteBuffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
    private fun floats(bytes: ByteArray): FloatArray =
        le(bytes).asFloatBuffer().let { b -> FloatArray(b.remaining()).also { b.get(it) } }
}
