package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith

class ClassifierPipelineTest {
    private val labels = listOf("a", "b", "c", "d", "e", "f")
    private val rawInput = TensorSpec("in", listOf(1, 2, 2, 3), DType.UINT8, null)
    private val floatOutput = TensorSpec("out", listOf(1, 6), DType.FLOAT32, null)
    private val int8Output = TensorSpec("out", listOf(1, 6), DType.INT8, QuantParams(0.5f, -3))

    private fun pipeline(output: TensorSpec = floatOutput, input: TensorSpec = rawInput) =
        ClassifierPipeline(ModelIo(listOf(input), listOf(output)), labels)

    @Test
    fun preparesCameraFramesCroppedResizedAndUpright() {
        // A 4x2 landscape frame of grey pixels numbered 10 * y + x; its center square is x = 1..2.
        val frame = ArgbImage(IntArray(8) { (10 * (it / 4) + it % 4) * 0x010101 }, 4, 2)
        val input = pipeline().prepare(frame, rotationDegrees = 90, resample = Resample.NEAREST)
        val red = (input as TensorData.Bytes).values.filterIndexed { i, _ -> i % 3 == 0 }.map { it.toInt() }
        assertEquals(listOf(11, 1, 12, 2), red)
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
        val twoInputs = ModelIo(listOf(rawInput, rawInput), listOf(floatOutput))
        assertFailsWith<IllegalArgumentException> { ClassifierPipeline(twoInputs, labels) }
        val oneInput = ModelIo(listOf(rawInput), listOf(floatOutput))
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
