package dev.lsnet.core

/**
 * Everything between a camera frame and the top-k that does not touch LiteRT, set up from the
 * model's own tensor details and preprocessing metadata ([io], from [TfliteReader]) and its
 * [labels]. Not thread-safe (the crop caches its filters): use one per thread.
 */
class ClassifierPipeline(io: ModelIo, private val labels: List<String>) {
    /** The single model input. */
    val input: TensorSpec

    /** The single model output: one score per label. */
    val output: TensorSpec

    /** The crop the model was evaluated with, from its metadata ([Preprocessing]). */
    val preprocessing: Preprocessing = Preprocessing.of(io)

    private val encoder: InputEncoder
    private val evalCrop = preprocessing.evalCrop()

    init {
        require(io.inputs.size == 1 && io.outputs.size == 1) {
            "expected one input and one output, got ${io.inputs.size} and ${io.outputs.size}"
        }
        input = io.inputs[0]
        output = io.outputs[0]
        encoder = InputEncoder(input)
        require(output.elementCount == labels.size) {
            "output '${output.name}' has ${output.elementCount} classes, the labels ${labels.size}"
        }
        require(output.dtype == DType.FLOAT32 || output.quant != null) {
            "${output.dtype} output '${output.name}' has no quantization parameters"
        }
    }

    /** Model input width in pixels. */
    val inputWidth: Int get() = encoder.width

    /** Model input height in pixels. */
    val inputHeight: Int get() = encoder.height

    /**
     * Turns a camera [frame] into the input tensor: a clockwise turn by [rotationDegrees] to make
     * it upright, then the evaluation crop and resize ([EvalCrop]), then [encode].
     */
    fun prepare(frame: ArgbImage, rotationDegrees: Int): TensorData = encode(crop(frame, rotationDegrees))

    /** The upright, cropped and resized image [prepare] encodes, at model size. */
    fun crop(frame: ArgbImage, rotationDegrees: Int): ArgbImage =
        evalCrop.apply(frame.rotate(rotationDegrees), inputWidth, inputHeight)

    /** Encodes an image already at model size, as [InputEncoder.encode]. */
    fun encode(image: ArgbImage): TensorData = encoder.encode(image)

    /**
     * The top [k] classes of a raw output tensor: dequantized if integer, made probabilities with
     * [toProbabilities], ranked with [topK].
     */
    fun decode(raw: TensorData, k: Int = 5): List<Prediction> {
        val probabilities = toProbabilities(dequantize(raw))
        return topK(probabilities, k).map { Prediction(it, probabilities[it], labels[it]) }
    }

    private fun dequantize(raw: TensorData): FloatArray = when (raw) {
        is TensorData.Floats -> raw.values.also { checkOutput(it.size, float = true) }
        is TensorData.Bytes -> {
            checkOutput(raw.values.size, float = false)
            val q = checkNotNull(output.quant)
            FloatArray(raw.values.size) { q.dequantize(raw.values[it], output.dtype) }
        }
    }

    private fun checkOutput(size: Int, float: Boolean) {
        require(float == (output.dtype == DType.FLOAT32)) { "output is ${output.dtype}" }
        require(size == output.elementCount) { "output has $size elements, expected ${output.elementCount}" }
    }
}
