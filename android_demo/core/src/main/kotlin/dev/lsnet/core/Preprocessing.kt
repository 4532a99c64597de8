package dev.lsnet.core

/**
 * How the model wants camera frames prepared, read from the model file itself: the export
 * (`lsnet export`) stores it as the TFLite model metadata entry [METADATA_NAME], a few UTF-8
 * `key=value` lines:
 *
 * ```
 * crop_fraction=0.875
 * resample=bicubic
 * ```
 *
 * `crop_fraction` is the side of the evaluation crop over the resized shorter side (224 / 256);
 * `resample` names the filter, and only `bicubic` (what [EvalCrop] implements) is accepted.
 * Unknown keys are ignored, so later exports can add some.
 */
data class Preprocessing(val cropFraction: Double) {
    /** The crop + resize this preprocessing asks for. */
    fun evalCrop(): EvalCrop = EvalCrop(cropFraction)

    companion object {
        /** Name of the model metadata entry (`Model.metadata` in the TFLite schema). */
        const val METADATA_NAME = "lsnet_preprocessing"

        /** Parses the entry's text; throws [IllegalArgumentException] naming the problem. */
        fun parse(text: String): Preprocessing {
            val fields = text.lines().filter { it.isNotBlank() }.associate { line ->
                val eq = line.indexOf('=')
                require(eq > 0) { "$METADATA_NAME: line '$line' is not key=value" }
                line.substring(0, eq).trim() to line.substring(eq + 1).trim()
            }
            val resample = fields["resample"]
            require(resample == "bicubic") { "$METADATA_NAME: resample '$resample' is not supported (bicubic is)" }
            val fraction = fields["crop_fraction"]?.toDoubleOrNull()
            require(fraction != null && fraction > 0.0 && fraction <= 1.0) {
                "$METADATA_NAME: crop_fraction '${fields["crop_fraction"]}' is not a number in (0, 1]"
            }
            return Preprocessing(fraction)
        }

        /** The preprocessing stored in [io]'s metadata; throws if the model has none. */
        fun of(io: ModelIo): Preprocessing {
            val entry = requireNotNull(io.metadata[METADATA_NAME]) {
                "the model has no '$METADATA_NAME' metadata (the crop it was evaluated with); " +
                    "export it with: lsnet export ... --android-assets DIR"
            }
            return parse(String(entry, Charsets.UTF_8))
        }
    }
}
