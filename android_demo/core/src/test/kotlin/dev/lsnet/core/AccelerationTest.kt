package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class AccelerationTest {
    private val all = setOf(Backend.GPU, Backend.CPU, Backend.NPU)

    private fun rans(plan: List<Attempt>) = plan.map { it.ran }

    @Test
    fun gpuTriesGpuAloneThenWithCpuThenCpu() {
        val plan = compilePlan(Backend.GPU, all)
        assertEquals(listOf("GPU", "GPU+CPU", "CPU"), rans(plan))
        assertEquals(
            listOf(setOf(Backend.GPU), setOf(Backend.GPU, Backend.CPU), setOf(Backend.CPU)),
            plan.map { it.accelerators },
        )
    }

    @Test
    fun anAcceleratorLiteRtDoesNotHaveIsNotClaimed() {
        assertEquals(listOf("CPU"), rans(compilePlan(Backend.GPU, setOf(Backend.CPU))))
        assertEquals(listOf("CPU"), rans(compilePlan(Backend.NPU, setOf(Backend.GPU))))
        assertEquals(listOf("NPU+CPU", "CPU"), rans(compilePlan(Backend.NPU, all)))
        assertEquals(listOf("CPU"), rans(compilePlan(Backend.CPU, emptySet())))
    }

    @Test
    fun firstAttemptThatCompilesWinsAndTheRefusalIsShown() {
        val plan = compilePlan(Backend.GPU, all)
        val compiled = compileFirst(plan) { attempt ->
            if (attempt.accelerators == setOf(Backend.GPU)) {
                throw IllegalStateException("Some ops are not accelerated.\nsecond line")
            }
            "model on ${attempt.ran}"
        }
        assertEquals("model on GPU+CPU", compiled.value)
        assertEquals("GPU+CPU", compiled.ran.ran)
        assertEquals("GPU refused: Some ops are not accelerated.", compiled.note)
    }

    @Test
    fun noNoteWhenTheWantedAcceleratorTookEverything() {
        val compiled = compileFirst(compilePlan(Backend.GPU, all)) { it.ran }
        assertEquals("GPU", compiled.value)
        assertEquals("", compiled.note)
        assertTrue(compiled.refused.isEmpty())
    }

    @Test
    fun allRefusalsAreReportedWhenNothingCompiles() {
        val error = assertFailsWith<IllegalStateException> {
            compileFirst(compilePlan(Backend.GPU, all)) { throw IllegalArgumentException("no ${it.ran}") }
        }
        assertEquals("GPU: no GPU; GPU+CPU: no GPU+CPU; CPU: no CPU", error.message)
    }
}
