package dev.lsnet.core

import dev.lsnet.core.golden.GoldenCase
import org.junit.Assume.assumeTrue
import java.awt.image.BufferedImage
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.file.Files
import javax.imageio.ImageIO
import kotlin.math.exp
import kotlin.test.Test
import kotlin.test.assertFailsWith

/** The cross-language golden check of GOLDEN.md, on Python's directory and on our own fixtures. */
class GoldenTest {
    @Test
    fun pythonGoldenDir() {
        val dirs = System.getenv("LSNET_GOLDEN_DIR")
        assumeTrue("LSNET_GOLDEN_DIR is not set: the Python golden check did not run", !dirs.isNullOrEmpty())
        for (dir in dirs!!.split(File.pathSeparator)) println(GoldenCase(File(dir)).verify(fromExport = true))
    }

    @Test
    fun committedConverterFixtures() {
        for (case in listOf("tiny_float", "tiny_uint8")) println(GoldenCase(GoldenCase.fixture(case)).verify())
    }

    @Test
    fun syntheticQuantizedCase() {
        GoldenCase(quantizedCase()).verify()
    }

    @Test
    fun syntheticFloatCase() {
        GoldenCase(floatCase()).verify()
    }

    @Test
    fun cropOfThePhotoMustMatchPythons() {
        // floatCase's model input is the single pixel 0xFF0080; a flat photo of that colour crops to it.
        val dir = floatCase()
        photo(dir, 0xFF0080)
        GoldenCase(dir).verify()
        photo(dir, 0xFF0082) // two levels off in blue: over the tolerance
        assertFailsWith<AssertionError> { GoldenCase(dir).verify() }
    }

    @Test
    fun detectsWrongInputBytes() {
        val dir = quantizedCase()
        File(dir, "expected_input.bin").writeBytes(byteArrayOf(15, 16, 138.toByte(), 10, 11, 111))
        assertFailsWith<AssertionError> { GoldenCase(dir).verify() }
    }

    @Test
    fun detectsWrongTop5() {
        val dir = floatCase()
        val swapped = """{"indices": [3, 1, 5, 4, 0], "scores": [0.4, 0.3, 0.1, 0.1, 0.05]}"""
        File(dir, "expected_top5.json").writeText(swapped)
        assertFailsWith<AssertionError> { GoldenCase(dir).verify() }
    }

    @Test
    fun detectsMeanStdOtherThanTheApps() {
        val dir = floatCase()
        val meta = File(dir, "meta.json")
        meta.writeText(meta.readText().replace("0.229", "0.5"))
        assertFailsWith<AssertionError> { GoldenCase(dir).verify() }
    }

    /**
     * uint8 input (scale 2, zero point 10) and int8 output (scale 0.5, zero point -3), with the
     * expected values worked out by hand from the rules in GOLDEN.md.
     */
    private fun quantizedCase(): File {
        // Pixel 0: R=10 G=11 B=255; pixel 1: R=0 G=1 B=200 (alpha 0, ignored).
        val argb = intArrayOf(0xFF0A0BFF.toInt(), 0x000001C8)
        // roundHalfAwayFromZero(c / 2) + 10 per channel.
        val input = byteArrayOf(15, 16, 138.toByte(), 10, 11, 110)
        // Dequantized: 0, 4, 4, 6, -62.5, 1.5.
        val raw = byteArrayOf(-3, 5, 5, 9, -128, 0)
        val e = doubleArrayOf(0.0, 4.0, 4.0, 6.0, -62.5, 1.5).map { exp(it - 6.0) }
        val top = listOf(3, 1, 2, 5, 0)
        return writeCase(
            meta = """"width": 2, "height": 1, "input_dtype": "uint8", "input_scale": 2.0,
                "input_zero_point": 10, "crop_fraction": 0.875, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                "output_dtype": "int8", "output_scale": 0.5, "output_zero_point": -3""",
            argb = argb, input = input, raw = raw,
            top5 = """{"indices": $top, "scores": ${top.map { e[it] / e.sum() }}}""",
        )
    }

    /** float32 input and a float32 output that already is a distribution (kept as is). */
    private fun floatCase(): File {
        val probs = floatArrayOf(0.05f, 0.3f, 0.05f, 0.4f, 0.1f, 0.1f)
        return writeCase(
            meta = """"width": 1, "height": 1, "input_dtype": "float32", "crop_fraction": 0.875,
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "output_dtype": "float32"""",
            argb = intArrayOf(0xFFFF0080.toInt()), // (c / 255 - mean) / std, worked out by hand below
            input = le(12) { putFloat(2.2489083f).putFloat(-2.0357143f).putFloat(0.4264924f) },
            raw = le(4 * probs.size) { probs.forEach { putFloat(it) } },
            top5 = """{"indices": [3, 1, 4, 5, 0], "scores": [0.4, 0.3, 0.1, 0.1, 0.05]}""",
        )
    }

    private fun writeCase(meta: String, argb: IntArray, input: ByteArray, raw: ByteArray, top5: String): File {
        val dir = Files.createTempDirectory("golden").toFile().apply { deleteOnExit() }
        File(dir, "meta.json").writeText("{$meta}")
        File(dir, "input_argb.bin").writeBytes(le(4 * argb.size) { argb.forEach { putInt(it) } })
        File(dir, "expected_input.bin").writeBytes(input)
        File(dir, "raw_output.bin").writeBytes(raw)
        File(dir, "expected_top5.json").writeText(top5)
        dir.listFiles()!!.forEach { it.deleteOnExit() }
        return dir
    }

    private fun photo(dir: File, rgb: Int) {
        val image = BufferedImage(5, 4, BufferedImage.TYPE_INT_RGB)
        for (y in 0 until 4) for (x in 0 until 5) image.setRGB(x, y, rgb)
        val file = File(dir, "photo.png").apply { deleteOnExit() }
        check(ImageIO.write(image, "png", file))
    }

    private fun le(size: Int, fill: ByteBuffer.() -> Unit): ByteArray =
        ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN).apply(fill).array()
}
