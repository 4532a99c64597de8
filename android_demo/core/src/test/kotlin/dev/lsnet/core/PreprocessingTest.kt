package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class PreprocessingTest {
    @Test
    fun parsesKeyValueLinesIgnoringUnknownKeys() {
        val text = "crop_fraction = 0.875\nresample=bicubic\n\nfuture_key=1\n"
        assertEquals(Preprocessing(0.875), Preprocessing.parse(text))
        assertEquals(0.875, Preprocessing.parse(text).evalCrop().cropFraction)
    }

    @Test
    fun refusesWhatTheAppCannotDo() {
        fun message(text: String) = assertFailsWith<IllegalArgumentException> { Preprocessing.parse(text) }.message!!
        assertTrue("bilinear" in message("crop_fraction=0.875\nresample=bilinear"))
        assertTrue("resample 'null'" in message("crop_fraction=0.875"))
        assertTrue("crop_fraction '1.5'" in message("crop_fraction=1.5\nresample=bicubic"))
        assertTrue("crop_fraction 'x'" in message("crop_fraction=x\nresample=bicubic"))
        assertTrue("not key=value" in message("crop_fraction\nresample=bicubic"))
    }

    @Test
    fun aModelWithoutTheEntryIsRefusedWithTheFix() {
        val io = ModelIo(emptyList(), emptyList())
        val message = assertFailsWith<IllegalArgumentException> { Preprocessing.of(io) }.message!!
        assertTrue(Preprocessing.METADATA_NAME in message && "--android-assets" in message)
    }
}
