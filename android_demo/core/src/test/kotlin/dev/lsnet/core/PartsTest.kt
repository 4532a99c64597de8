package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertSame

class PartsTest {
    private class Part(val name: String, val log: MutableList<String>, val fail: Boolean = false) : AutoCloseable {
        override fun close() {
            log += name
            if (fail) throw IllegalStateException("cannot close $name")
        }
    }

    @Test
    fun closesLastMadeFirst() {
        val log = mutableListOf<String>()
        Parts().apply {
            add(Part("model", log))
            addAll(listOf(Part("in0", log), Part("in1", log)))
        }.close()
        assertEquals(listOf("in1", "in0", "model"), log)
    }

    @Test
    fun aFailedBuildClosesWhatWasMadeAndRethrows() {
        // The model compiles, the input buffers do, the output buffers throw: the others are closed.
        val log = mutableListOf<String>()
        val parts = Parts()
        val error = assertFailsWith<IllegalStateException> {
            parts.closeOnFailure {
                add(Part("model", log))
                add(Part("inputs", log))
                throw IllegalStateException("no output buffers")
            }
        }
        assertEquals("no output buffers", error.message)
        assertEquals(listOf("inputs", "model"), log)
    }

    @Test
    fun aSuccessfulBuildKeepsItsParts() {
        val log = mutableListOf<String>()
        val parts = Parts()
        val model = parts.closeOnFailure { add(Part("model", log)) }
        assertEquals(emptyList(), log)
        parts.close()
        assertEquals(listOf("model"), log)
        assertSame(model.log, log)
    }

    @Test
    fun everyPartIsClosedOnceEvenWhenOneThrows() {
        val log = mutableListOf<String>()
        val parts = Parts().apply {
            add(Part("a", log))
            add(Part("b", log, fail = true))
            add(Part("c", log, fail = true))
        }
        val error = assertFailsWith<IllegalStateException> { parts.close() }
        assertEquals("cannot close c", error.message)
        assertEquals(listOf("cannot close b"), error.suppressed.map { it.message })
        assertEquals(listOf("c", "b", "a"), log)
        parts.close()
        assertEquals(3, log.size)
    }

    @Test
    fun closeFailuresDuringACleanupAreSuppressedIntoTheCause() {
        val log = mutableListOf<String>()
        val error = assertFailsWith<IllegalArgumentException> {
            Parts().closeOnFailure {
                add(Part("model", log, fail = true))
                throw IllegalArgumentException("bad model")
            }
        }
        assertEquals(listOf("cannot close model"), error.suppressed.map { it.message })
    }
}
