package dev.lsnet.core

import dev.lsnet.core.golden.GoldenCase
import java.io.File
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class TfliteReaderTest {
    // Field ids from schema.fbs, written out by hand here to check the reader's constants.
    private fun tensor(name: String, shape: IntArray, type: Int?, quant: Fb.Table? = null) =
        Fb.Table(Fb.Ints(*shape), type?.let { Fb.I8(it) }, null, Fb.Str(name), quant)

    private fun quant(scales: FloatArray, zeroPoints: LongArray) =
        Fb.Table(null, null, Fb.Floats(*scales), Fb.Longs(*zeroPoints))

    private fun subgraph(tensors: List<Fb.Table>, inputs: IntArray, outputs: IntArray) =
        Fb.Table(Fb.Tables(*tensors.toTypedArray()), Fb.Ints(*inputs), Fb.Ints(*outputs))

    private fun model(
        subgraphs: List<Fb.Table>,
        signatures: List<Fb.Table>? = null,
        buffers: List<Fb.Table>? = null,
        metadata: List<Fb.Table>? = null,
    ) = Fb.file(
        Fb.Table(
            Fb.I32(3), null, Fb.Tables(*subgraphs.toTypedArray()), null,
            buffers?.let { Fb.Tables(*it.toTypedArray()) }, null,
            metadata?.let { Fb.Tables(*it.toTypedArray()) },
            signatures?.let { Fb.Tables(*it.toTypedArray()) },
        ),
    )

    private val image = tensor("image", intArrayOf(1, 224, 224, 3), type = null) // absent = FLOAT32
    private val logits = tensor("logits", intArrayOf(1, 1000), 9, quant(floatArrayOf(0.5f), longArrayOf(-3)))
    private val weights = tensor("weights", intArrayOf(8), 2) // int32, not an input or output

    @Test
    fun readsSubgraphInputsAndOutputs() {
        val graph = subgraph(listOf(weights, image, logits), intArrayOf(1), intArrayOf(2))
        val io = TfliteReader.read(model(listOf(graph)))
        assertEquals(listOf(TensorSpec("image", listOf(1, 224, 224, 3), DType.FLOAT32, null)), io.inputs)
        assertEquals(listOf(TensorSpec("logits", listOf(1, 1000), DType.INT8, QuantParams(0.5f, -3))), io.outputs)
    }

    @Test
    fun prefersSignatureZeroAndItsNames() {
        val pixels = tensor("serving_x:0", intArrayOf(1, 2, 2, 3), 3)
        val probs = tensor("Identity", intArrayOf(1, 4), 0)
        val signature = Fb.Table(
            Fb.Tables(Fb.Table(Fb.Str("pixels"), Fb.I32(0))),
            Fb.Tables(Fb.Table(Fb.Str("probs"), Fb.I32(1))),
            Fb.Str("serving_default"), null, Fb.I32(1),
        )
        val other = subgraph(listOf(image, logits), intArrayOf(0), intArrayOf(1))
        val served = subgraph(listOf(pixels, probs), intArrayOf(), intArrayOf())
        val io = TfliteReader.read(model(listOf(other, served), listOf(signature)))
        assertEquals(listOf(TensorSpec("pixels", listOf(1, 2, 2, 3), DType.UINT8, null)), io.inputs)
        assertEquals(listOf(TensorSpec("probs", listOf(1, 4), DType.FLOAT32, null)), io.outputs)
    }

    @Test
    fun integerTensorWithoutScalesIsUnquantized() {
        val bare = tensor("x", intArrayOf(1, 1, 1, 3), 3, quant(floatArrayOf(), longArrayOf()))
        val io = TfliteReader.read(model(listOf(subgraph(listOf(bare), intArrayOf(0), intArrayOf(0)))))
        assertEquals(null, io.inputs.single().quant)
    }

    @Test
    fun readsMetadataEntriesByName() {
        val graph = subgraph(listOf(image, logits), intArrayOf(0), intArrayOf(1))
        val text = "crop_fraction=0.875\nresample=bicubic\n".toByteArray()
        val io = TfliteReader.read(
            model(
                listOf(graph),
                buffers = listOf(Fb.Table(), Fb.Table(Fb.Bytes(1, 2)), Fb.Table(Fb.Bytes(*text))),
                metadata = listOf(
                    Fb.Table(Fb.Str("min_runtime_version"), Fb.I32(1)),
                    Fb.Table(Fb.Str(Preprocessing.METADATA_NAME), Fb.I32(2)),
                ),
            ),
        )
        assertEquals(listOf("min_runtime_version", Preprocessing.METADATA_NAME), io.metadata.keys.toList())
        assertEquals(listOf<Byte>(1, 2), io.metadata.getValue("min_runtime_version").toList())
        assertEquals(Preprocessing(0.875), Preprocessing.of(io))
        val dangling = listOf(Fb.Table(Fb.Str("x"), Fb.I32(5)))
        assertFailsWith<IllegalArgumentException> {
            TfliteReader.read(model(listOf(graph), buffers = listOf(Fb.Table()), metadata = dangling))
        }
    }

    @Test
    fun rejectsPerChannelQuantization() {
        val perChannel = tensor("x", intArrayOf(1, 2), 9, quant(floatArrayOf(0.1f, 0.2f), longArrayOf(0, 0)))
        val e = assertFailsWith<IllegalArgumentException> {
            TfliteReader.read(model(listOf(subgraph(listOf(perChannel), intArrayOf(0), intArrayOf(0)))))
        }
        assertTrue("per channel" in e.message!!)
    }

    @Test
    fun rejectsUnhandledInputType() {
        val e = assertFailsWith<IllegalArgumentException> {
            TfliteReader.read(model(listOf(subgraph(listOf(weights), intArrayOf(0), intArrayOf(0)))))
        }
        assertTrue("type 2" in e.message!!)
    }

    @Test
    fun rejectsOtherFilesAndTruncation() {
        val good = model(listOf(subgraph(listOf(image, logits), intArrayOf(0), intArrayOf(1))))
        assertFailsWith<IllegalArgumentException> { TfliteReader.read("PK\u0003\u0004 not a model".toByteArray()) }
        assertFailsWith<IllegalArgumentException> { TfliteReader.read(good.copyOf(good.size / 3)) }
    }

    @Test
    fun readsConverterOutput() {
        fun read(case: String) = TfliteReader.read(File(GoldenCase.fixture(case), "model.tflite").readBytes())
        val float = read("tiny_float")
        assertEquals(listOf(1, 4, 4, 3) to DType.FLOAT32, float.inputs.single().let { it.shape to it.dtype })
        assertEquals(listOf(1, 8) to DType.FLOAT32, float.outputs.single().let { it.shape to it.dtype })
        val quantized = read("tiny_uint8")
        val input = quantized.inputs.single()
        assertEquals(listOf(1, 4, 4, 3) to DType.UINT8, input.shape to input.dtype)
        assertEquals(QuantParams(1f, 0), input.quant)
        assertEquals(DType.INT8, quantized.outputs.single().dtype)
        assertEquals(37, quantized.outputs.single().quant?.zeroPoint)
        assertTrue("min_runtime_version" in quantized.metadata, "converter metadata: ${quantized.metadata.keys}")
    }
}
