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
import dev.lsnet.core.Compiled
import dev.lsnet.core.DType
import dev.lsnet.core.Prediction
import dev.lsnet.core.Parts
import dev.lsnet.core.TensorData
import dev.lsnet.core.TfliteReader
import dev.lsnet.core.closeOnFailure
import dev.lsnet.core.compileFirst
import dev.lsnet.core.compilePlan

/**
 * One model from the assets, compiled by LiteRT's `CompiledModel` API for the accelerator of
 * [choice] or, when that one refuses it, the next attempt of [compilePlan] (for the GPU: the GPU
 * alone, then the GPU with the CPU running the ops it refuses, then the CPU); [compiled] says
 * which ran and why the first did not. Fed and read through [ClassifierPipeline]. Use from one
 * thread, then [close]. If the constructor throws, whatever it had created is closed.
 */
class LiteRtClassifier(
    context: Context,
    env: Environment,
    labels: List<String>,
    val choice: Choice,
) : AutoCloseable {
    // Tensor details and the crop come from the file: the Kotlin API gives no uint8 type, no
    // scale/zero-point and no metadata.
    private val pipeline = ClassifierPipeline(
        context.assets.open(choice.model.asset).use { TfliteReader.read(it.readBytes()) },
        labels,
    )

    // Each step closes what the steps before it created if it throws.
    private val parts = Parts()

    /** The compiled model, the attempt that compiled it (what runs it) and the refusals before. */
    val compiled: Compiled<CompiledModel> = parts.closeOnFailure {
        val available = env.getAvailableAccelerators().mapNotNull { it.backend }.toSet()
        compileFirst(compilePlan(choice.backend, available)) { attempt ->
            val options = CompiledModel.Options(attempt.accelerators.map { it.accelerator }.toSet())
            CompiledModel.create(context.assets, choice.model.asset, options, env)
        }.also { add(it.value) }
    }
    private val model = compiled.value
    private val inputs: List<TensorBuffer> = parts.closeOnFailure { addAll(model.createInputBuffers()) }
    private val outputs: List<TensorBuffer> = parts.closeOnFailure { addAll(model.createOutputBuffers()) }

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

    /** Closes the buffers, then the model. */
    override fun close() = parts.close()
}

private val Backend.accelerator: Accelerator
    get() = when (this) {
        Backend.GPU -> Accelerator.GPU
        Backend.CPU -> Accelerator.CPU
        Backend.NPU -> Accelerator.NPU
    }

private val Accelerator.backend: Backend?
    get() = when (this) {
        Accelerator.GPU -> Backend.GPU
        Accelerator.CPU -> Backend.CPU
        Accelerator.NPU -> Backend.NPU
        else -> null
    }
