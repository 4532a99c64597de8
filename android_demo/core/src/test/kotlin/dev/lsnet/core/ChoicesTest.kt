package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals

class ChoicesTest {
    @Test
    fun gpuDefaultsToFp16OthersToInt8() {
        assertEquals(ModelVariant.FP16, Backend.GPU.defaultModel)
        assertEquals(ModelVariant.INT8, Backend.CPU.defaultModel)
        assertEquals(ModelVariant.INT8, Backend.NPU.defaultModel)
        assertEquals("lsnet_fp16.tflite", ModelVariant.FP16.asset)
        assertEquals("lsnet_int8.tflite", ModelVariant.INT8.asset)
    }

    @Test
    fun reportShowsLatencyThenPredictions() {
        val window = LatencyWindow().apply { listOf(10.0, 12.0, 30.0).forEach(::add) }
        val top = listOf(Prediction(1, 0.875f, "goldfish"), Prediction(0, 0.0625f, "tench"))
        assertEquals(
            "CPU INT8  median 12.0 ms  p90 30.0 ms  (last 3)\n 87.5%  goldfish\n  6.3%  tench",
            formatReport("CPU", ModelVariant.INT8, "", top, window),
        )
    }

    @Test
    fun reportShowsWhatRanAndWhyTheFirstChoiceDidNot() {
        val window = LatencyWindow().apply { add(5.0) }
        val report = formatReport("GPU+CPU", ModelVariant.FP16, "GPU refused: op X", emptyList(), window)
        assertEquals("GPU+CPU FP16  median 5.0 ms  p90 5.0 ms  (last 1)\nGPU refused: op X", report)
    }
}
