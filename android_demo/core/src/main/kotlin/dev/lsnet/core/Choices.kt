package dev.lsnet.core

import java.util.Locale

/** Asset holding the class names, one per line (see [parseLabels]). */
const val LABELS_ASSET = "labels.txt"

/** The model files in the app's assets, written by `lsnet export --android-assets`. */
enum class ModelVariant(val asset: String) {
    FP16("lsnet_fp16.tflite"),
    INT8("lsnet_int8.tflite"),
}

/** An accelerator; the app maps these one-to-one to LiteRT's `Accelerator` (see [compilePlan]). */
enum class Backend {
    GPU,
    CPU,
    NPU;

    /** The model to preselect: fp16 for the GPU, int8 for CPU and NPU. */
    val defaultModel: ModelVariant get() = if (this == GPU) ModelVariant.FP16 else ModelVariant.INT8
}

/** What the user picked: a model on a backend. */
data class Choice(val backend: Backend, val model: ModelVariant) {
    /** As shown on screen, e.g. `GPU FP16`. */
    override fun toString() = "$backend $model"
}

/**
 * The on-screen text: what ran and the latency, the [note] of [compileFirst] if any, then one
 * `score% label` line per prediction. [ran] is the accelerator(s) the model was compiled for
 * ([Attempt.ran]), which may differ from the one picked when that one refused the model.
 */
fun formatReport(
    ran: String,
    model: ModelVariant,
    note: String,
    predictions: List<Prediction>,
    latency: LatencyWindow,
): String {
    val header = "%s %s  median %.1f ms  p90 %.1f ms  (last %d)".format(
        Locale.ROOT, ran, model, latency.median(), latency.percentile(90.0), latency.count,
    )
    val lines = predictions.map { "%5.1f%%  %s".format(Locale.ROOT, 100 * it.score, it.label) }
    return (listOf(header) + listOf(note).filter { it.isNotEmpty() } + lines).joinToString("\n")
}
