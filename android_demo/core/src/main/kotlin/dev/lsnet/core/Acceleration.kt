package dev.lsnet.core

/**
 * One way to compile the model: the accelerators LiteRT may use ([accelerators], given to
 * `CompiledModel.Options`) and what then runs the model ([ran], shown on screen).
 */
data class Attempt(val accelerators: Set<Backend>, val ran: String)

/**
 * The attempts for [wanted], best first, keeping only those whose accelerators are all in
 * [available] (`Environment.getAvailableAccelerators()`; the CPU is always there). LiteRT
 * skips an accelerator it does not have without an error, so an attempt naming one would
 * report a run that did not happen.
 *
 * LiteRT's `CompiledModel` refuses to compile when an op is left over for an accelerator not in
 * the set ("Some ops are not accelerated"), and its Kotlin API does not say how the ops were
 * split. So for the GPU the app asks first for the GPU alone (compiles only if every op runs
 * there), then for the GPU with the CPU taking what the GPU refuses, then for the CPU alone
 * (the GPU delegate could not be created at all). The NPU always comes with the CPU (LiteRT adds
 * it itself when the NPU is asked alone).
 */
fun compilePlan(wanted: Backend, available: Set<Backend>): List<Attempt> {
    val plan = when (wanted) {
        Backend.GPU -> listOf(
            Attempt(setOf(Backend.GPU), "GPU"),
            Attempt(setOf(Backend.GPU, Backend.CPU), "GPU+CPU"),
            Attempt(setOf(Backend.CPU), "CPU"),
        )
        Backend.NPU -> listOf(Attempt(setOf(Backend.NPU, Backend.CPU), "NPU+CPU"), Attempt(setOf(Backend.CPU), "CPU"))
        Backend.CPU -> listOf(Attempt(setOf(Backend.CPU), "CPU"))
    }
    return plan.filter { attempt -> attempt.accelerators.all { it == Backend.CPU || it in available } }
}

/** What [compileFirst] built ([value]), with the attempt that worked and why earlier ones did not. */
data class Compiled<T>(val value: T, val ran: Attempt, val refused: List<Pair<Attempt, String>>) {
    /** One line for the screen: empty when the first attempt worked, else the first refusal. */
    val note: String
        get() = refused.firstOrNull()?.let { (attempt, why) ->
            "${attempt.ran} refused: ${why.lineSequence().first().take(NOTE_LENGTH)}"
        }.orEmpty()

    private companion object {
        const val NOTE_LENGTH = 100
    }
}

/**
 * Runs [compile] on each attempt of [plan] in order and returns the first result. Throws
 * [IllegalStateException] listing every refusal when none compiles.
 */
fun <T> compileFirst(plan: List<Attempt>, compile: (Attempt) -> T): Compiled<T> {
    require(plan.isNotEmpty()) { "nothing to try" }
    val refused = mutableListOf<Pair<Attempt, String>>()
    for (attempt in plan) {
        try {
            return Compiled(compile(attempt), attempt, refused.toList())
        } catch (e: Exception) {
            refused += attempt to (e.message ?: e.javaClass.simpleName)
        }
    }
    throw IllegalStateException(refused.joinToString("; ") { (a, why) -> "${a.ran}: $why" })
}
