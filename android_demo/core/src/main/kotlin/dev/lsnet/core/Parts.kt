package dev.lsnet.core

/**
 * The parts of something built in steps (a model, then its buffers), closed together, last made
 * first. Closing closes each part once even if some throw; the first exception is rethrown with
 * the others suppressed.
 *
 * Example: `val model = parts.add(CompiledModel.create(...))`, and in `close()`: `parts.close()`.
 */
class Parts : AutoCloseable {
    private val parts = ArrayDeque<AutoCloseable>()

    /** Registers [part] for closing and returns it. */
    fun <T : AutoCloseable> add(part: T): T = part.also { parts.addLast(it) }

    /** Registers every part of [list] and returns it. */
    fun <T : AutoCloseable> addAll(list: List<T>): List<T> = list.onEach { add(it) }

    override fun close() {
        var first: Throwable? = null
        while (parts.isNotEmpty()) {
            try {
                parts.removeLast().close()
            } catch (e: Throwable) {
                first?.addSuppressed(e) ?: run { first = e }
            }
        }
        first?.let { throw it }
    }
}

/**
 * Runs [build] on these resources; if it throws, closes every part added so far and rethrows
 * (failures while closing are suppressed into the original exception).
 */
inline fun <T> Parts.closeOnFailure(build: Parts.() -> T): T {
    try {
        return build()
    } catch (e: Throwable) {
        try {
            close()
        } catch (closing: Throwable) {
            e.addSuppressed(closing)
        }
        throw e
    }
}
