package dev.lsnet.demo

import android.content.Context
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.TensorBuffer
import dev.lsnet.core.ArgbImage
import dev.lsnet.core.Backend
import dev.lsnet.core.Choice
import dev.lsnet.core.ClassifierPipeline
import dev.lsnet.core.DType
import dev.lsnet.core.Prediction
import dev.lsnet.core.TensorData
import dev.lsnet.core.TfliteReader

/**
 * One model from the assets, compiled by LiteRT's `CompiledModel` API for the accelerator of
 * [choice], fed and read through [ClassifierPipeline]. Use from one thread, then [close].
 */
class LiteRtClassifier(
    context: Context,
    env: Environment,
    labels: List<String>,
    val choice: Choice,
) : AutoCloseable {
    private val pipeline: ClassifierPipeline
    private val model: CompiledModel
    private val inputs: List<TensorBuffer>
    private val outputs: List<TensorBuffer>

    init {
        val asset = choice.model.asset
        // Tensor details come from the file: the Kotlin API gives no uint8 type and no scale/zero-point.
        val io = context.assets.open(asset).use { TfliteReader.read(it.readBytes()) }
        pipeline = ClassifierPipeline(io, labels)
        // One accelerator only, so that a GPU that cannot load fails here rather than quietly running on the CPU.
        model = CompiledModel.create(context.assets, asset, CompiledModel.Options(choice.backend.accelerator), env)
        inputs = model.createInputBuffers()
        outputs = model.createOutputBuffers()
    }

    /**
     * Classifies a camera [frame] that needs a clockwise turn of [rotationDegrees] to be upright.
     * Returns the top-5 and the inference time in milliseconds (input write, run, output read).
     */
    fun classify(frame: ArgbImage, rotationDegrees: Int): Pair<List<Prediction>, Double> {
        val input = pipeline.prepare(frame, rotationDegrees)
        val start = System.nanoTime()
        when (input) {
            is TensorData.Floats -> inputs[0].writeFloat(input.values)
            is TensorData.Bytes -> inputs[0].writeInt8(input.values) // a byte copy, right for uint8 too
        }
        model.run(inputs, outputs)
        val raw = if (pipeline.output.dtype == DType.FLOAT32) {
            TensorData.Floats(outputs[0].readFloat())
        } else {
            TensorData.Bytes(outputs[0].readInt8())
        }
        val ms = (System.nanoTime() - start) / 1e6
        return pipeline.decode(raw) to ms
    }

    override fun close() {
        (inputs + outputs).forEach { it.close() }
        model.close()
    }
}

private val Backend.accelerator: Accelerator
    get() = when (this) {
        Backend.GPU -> Accelerator.GPU
        Backend.CPU -> Accelerator.CPU
        Backend.NPU -> Accelerator.NPU
    }
