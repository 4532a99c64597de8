package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class ClassifierPipelineTest {
    private val labels = listOf("a", "b", "c", "d", "e", "f")
    private val rawInput = TensorSpec("in", listOf(1, 2, 2, 3), DType.UINT8, null)
    private val floatOutput = TensorSpec("out", listOf(1, 6), DType.FLOAT32, null)
    private val int8Output = TensorSpec("out", listOf(1, 6), DType.INT8, QuantParams(0.5f, -3))

    private fun crop(fraction: Double) =
        mapOf(Preprocessing.METADATA_NAME to "crop_fraction=$fraction\nresample=bicubic\n".toByteArray())

    private fun pipeline(output: TensorSpec = floatOutput, input: TensorSpec = rawInput, fraction: Double = 0.875) =
        ClassifierPipeline(ModelIo(listOf(input), listOf(output), crop(fraction)), labels)

    @Test
    fun preparesCameraFramesUprightThenCropped() {
        // An 8x4 sensor frame, left half dark (0), right half bright (200), turned 90 degrees
        // clockwise: upright it is 4x8, dark on top. Fraction 1: resized to 2x4, center 2x2 cut.
        val frame = ArgbImage(IntArray(32) { if (it % 8 < 4) 0 else 200 * 0x010101 }, 8, 4)
        val p = pipeline(fraction = 1.0)
        val upright = p.crop(frame, rotationDegrees = 90)
        assertEquals(2 to 2, upright.width to upright.height)
        val red = upright.pixels.map { (it shr 16) and 0xFF }
        assertTrue(red[0] < 100 && red[1] < 100 && red[2] > 100 && red[3] > 100, "red $red")
        val bytes = (p.prepare(frame, rotationDegrees = 90) as TensorData.Bytes).values
        assertEquals(red, bytes.filterIndexed { i, _ -> i % 3 == 0 }.map { it.toInt() and 0xFF })
        assertEquals(1.0, p.preprocessing.cropFraction)
    }

    @Test
    fun theCropComesFromTheModel() {
        val frame = ArgbImage(IntArray(40 * 30) { (it * 7919) and 0xFFFFFF }, 40, 30)
        val expected = EvalCrop(0.5).apply(frame, 2, 2).pixels.toList()
        assertEquals(expected, pipeline(fraction = 0.5).crop(frame, 0).pixels.toList())
        val bare = ModelIo(listOf(rawInput), listOf(floatOutput))
        assertFailsWith<IllegalArgumentException> { ClassifierPipeline(bare, labels) }
    }

    @Test
    fun decodesFloatLogitsToLabelledTop5() {
        val top = pipeline().decode(TensorData.Floats(floatArrayOf(0f, 4f, 4f, 6f, -62.5f, 1.5f)))
        assertEquals(listOf("d", "b", "c", "f", "a"), top.map { it.label })
        assertEquals(listOf(3, 1, 2, 5, 0), top.map { it.index })
        assertEquals(softmax(floatArrayOf(0f, 4f, 4f, 6f, -62.5f, 1.5f))[3], top[0].score)
    }

    @Test
    fun dequantizesIntegerOutputs() {
        val raw = byteArrayOf(-3, 5, 5, 9, -128, 0) // reals 0, 4, 4, 6, -62.5, 1.5
        val fromBytes = pipeline(int8Output).decode(TensorData.Bytes(raw), k = 3)
        val fromFloats = pipeline().decode(TensorData.Floats(floatArrayOf(0f, 4f, 4f, 6f, -62.5f, 1.5f)), k = 3)
        assertEquals(fromFloats, fromBytes)
    }

    @Test
    fun rejectsMismatchedModels() {
        val twoInputs = ModelIo(listOf(rawInput, rawInput), listOf(floatOutput), crop(0.875))
        assertFailsWith<IllegalArgumentException> { ClassifierPipeline(twoInputs, labels) }
        val oneInput = ModelIo(listOf(rawInput), listOf(floatOutput), crop(0.875))
        assertFailsWith<IllegalArgumentException> { ClassifierPipeline(oneInput, labels.drop(1)) }
        assertFailsWith<IllegalArgumentException> { pipeline(int8Output.copy(quant = null)) }
    }

    @Test
    fun rejectsOutputsOfTheWrongTypeOrSize() {
        assertFailsWith<IllegalArgumentException> { pipeline().decode(TensorData.Bytes(ByteArray(6))) }
        assertFailsWith<IllegalArgumentException> { pipeline(int8Output).decode(TensorData.Floats(FloatArray(6))) }
        assertFailsWith<IllegalArgumentException> { pipeline().decode(TensorData.Floats(FloatArray(5))) }
    }
}
